//! Field rules for admin requests. Every failure is INVALID_ARGUMENT naming
//! the field and the rule it breaks.
//!
//! | what | rule |
//! |---|---|
//! | team, organization ids | 1-64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit |
//! | deployment ids | 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit |
//! | access group names | 1-63 of `a-z 0-9 -`, starting and ending with a letter or digit |
//! | model names, aliases, allow-list entries | 1-256 printable characters, no whitespace |
//! | lists (models, access groups) | at most 1,000 entries |
//! | metadata | at most 64 entries; keys 1-128 chars, values at most 4,096 |
//! | money | micro-USD, non-negative |
//! | budget windows | `<n>s`, `<n>m`, `<n>h` or `<n>d`, n ≥ 1, at most 3650 days |
//!
//! [`deployment`] checks a whole deployment (and puts it in canonical form);
//! both the admin API and distribution use it, so it lives here, below both.

use std::collections::HashMap;

use sluice_proto::admin::v1::Deployment;
use sluice_proto::providers;

use crate::error::{AdminError, AdminResult};
use crate::litellm::secret_is_reference;

pub const MAX_ID_LEN: usize = 64;
pub const MAX_GROUP_NAME_LEN: usize = 63;
pub const MAX_MODEL_NAME_LEN: usize = 256;
pub const MAX_LIST_LEN: usize = 1000;
pub const MAX_METADATA_ENTRIES: usize = 64;
pub const MAX_TEXT_LEN: usize = 1024;
/// The longest credential: room for a service account's JSON key (about
/// 2.4 KB), an STS session token or an Entra ID access token (1 to 4 KB).
pub const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

fn bad(field: &str, rule: impl Into<String>) -> AdminError {
    AdminError::invalid(field, rule)
}

fn check_id(field: &str, value: &str, lowercase_only: bool) -> AdminResult<()> {
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '.' | '_' | '-')
            || (!lowercase_only && c.is_ascii_uppercase())
    };
    let charset = if lowercase_only {
        "a-z 0-9 . _ -"
    } else {
        "A-Z a-z 0-9 . _ -"
    };
    if value.is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(bad(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() && (!lowercase_only || !c.is_ascii_uppercase()));
    if !first_ok || !value.chars().all(allowed) {
        return Err(bad(
            field,
            format!("{value:?} must use only {charset} and start with a letter or digit"),
        ));
    }
    Ok(())
}

/// Team and organization ids.
pub fn object_id(field: &str, value: &str) -> AdminResult<()> {
    check_id(field, value, false)
}

/// Deployment ids.
pub fn deployment_id(field: &str, value: &str) -> AdminResult<()> {
    check_id(field, value, true)
}

/// Access group names: lowercase letters, digits and hyphens (DESIGN §2).
pub fn group_name(field: &str, value: &str) -> AdminResult<()> {
    if value.is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if value.len() > MAX_GROUP_NAME_LEN {
        return Err(bad(
            field,
            format!("must be at most {MAX_GROUP_NAME_LEN} characters"),
        ));
    }
    let ok = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !ok {
        return Err(bad(
            field,
            format!(
                "{value:?} must use only lowercase letters, digits and hyphens, and start and end with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// Model group names, aliases, and allow-list entries.
pub fn model_name(field: &str, value: &str) -> AdminResult<()> {
    if value.is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if value.len() > MAX_MODEL_NAME_LEN {
        return Err(bad(
            field,
            format!("must be at most {MAX_MODEL_NAME_LEN} characters"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            field,
            format!("{value:?} must not contain whitespace or control characters"),
        ));
    }
    Ok(())
}

/// A list of model names: each valid, no more than [`MAX_LIST_LEN`].
pub fn model_list(field: &str, values: &[String]) -> AdminResult<()> {
    list_len(field, values.len())?;
    for (i, v) in values.iter().enumerate() {
        model_name(&format!("{field}[{i}]"), v)?;
    }
    Ok(())
}

/// A list of access group names.
pub fn group_list(field: &str, values: &[String]) -> AdminResult<()> {
    list_len(field, values.len())?;
    for (i, v) in values.iter().enumerate() {
        group_name(&format!("{field}[{i}]"), v)?;
    }
    Ok(())
}

pub fn list_len(field: &str, len: usize) -> AdminResult<()> {
    if len > MAX_LIST_LEN {
        return Err(bad(
            field,
            format!("has {len} entries; at most {MAX_LIST_LEN} are allowed"),
        ));
    }
    Ok(())
}

/// A credential (or a reference to one): longer than free text may be;
/// `multiline` for a JSON key, whose file has line breaks (a header value
/// never may).
pub fn credential(field: &str, value: &str, multiline: bool) -> AdminResult<()> {
    if value.len() > MAX_CREDENTIAL_LEN {
        return Err(bad(
            field,
            format!("must be at most {MAX_CREDENTIAL_LEN} bytes"),
        ));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(())
}

/// Free text such as aliases and descriptions.
pub fn text(field: &str, value: &str) -> AdminResult<()> {
    if value.len() > MAX_TEXT_LEN {
        return Err(bad(field, format!("must be at most {MAX_TEXT_LEN} bytes")));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(())
}

pub fn metadata(field: &str, values: &HashMap<String, String>) -> AdminResult<()> {
    if values.len() > MAX_METADATA_ENTRIES {
        return Err(bad(
            field,
            format!(
                "has {} entries; at most {MAX_METADATA_ENTRIES} are allowed",
                values.len()
            ),
        ));
    }
    for (k, v) in values {
        if k.is_empty() || k.len() > 128 {
            return Err(bad(field, format!("key {k:?} must be 1-128 characters")));
        }
        if v.len() > 4096 {
            return Err(bad(&format!("{field}[{k}]"), "must be at most 4096 bytes"));
        }
    }
    Ok(())
}

/// Money in micro-USD.
pub fn money(field: &str, value: Option<i64>) -> AdminResult<()> {
    match value {
        Some(v) if v < 0 => Err(bad(field, format!("must be >= 0 (micro-USD), got {v}"))),
        _ => Ok(()),
    }
}

pub fn non_negative(field: &str, value: i64) -> AdminResult<()> {
    if value < 0 {
        return Err(bad(field, format!("must be >= 0, got {value}")));
    }
    Ok(())
}

/// A per-token price in USD: finite and non-negative.
pub fn price(field: &str, value: f64) -> AdminResult<()> {
    if !value.is_finite() || value < 0.0 {
        return Err(bad(
            field,
            format!("must be a finite number >= 0 (USD per token), got {value}"),
        ));
    }
    Ok(())
}

/// A budget window like `30s`, `15m`, `1h`, `1d`, `30d` in seconds: the rule
/// both planes share.
pub use sluice_proto::budget::parse_window;

/// A budget window; empty means none.
pub fn window(field: &str, value: &str) -> AdminResult<()> {
    if value.is_empty() || parse_window(value).is_some() {
        return Ok(());
    }
    Err(bad(
        field,
        format!(
            "{value:?} must be a number and a unit s, m, h or d (like 30s, 1h, 1d, 30d), at most 3650d"
        ),
    ))
}

/// A protobuf duration: non-negative and at most a day.
pub fn duration(field: &str, value: Option<&prost_types::Duration>) -> AdminResult<()> {
    if let Some(d) = value
        && (d.seconds < 0 || d.nanos < 0 || d.seconds > 86_400)
    {
        return Err(bad(field, "must be between 0s and 86400s"));
    }
    Ok(())
}

/// Normalises and checks a deployment: a LiteLLM-style `model` such as
/// `openai/gpt-4o` with no `provider` is split, a bare model means `openai`,
/// and an unknown provider is refused here rather than failing later.
pub fn deployment(d: &mut Deployment, field: &str) -> AdminResult<()> {
    let f = |name: &str| format!("{field}.{name}");
    if d.provider.is_empty() {
        let (provider, model) = providers::split_model(&d.model);
        (d.provider, d.model) = (provider.to_string(), model.to_string());
    }
    let Some(provider) = providers::lookup(&d.provider) else {
        return Err(AdminError::invalid(
            f("provider"),
            format!(
                "unknown provider prefix {:?}; known: {}",
                d.provider,
                providers::known_prefixes()
            ),
        ));
    };
    deployment_id(&f("id"), &d.id)?;
    model_name(&f("model_name"), &d.model_name)?;
    model_name(&f("model"), &d.model)?;
    if d.api_base.is_empty() {
        if provider.default_api_base.is_none() {
            return Err(AdminError::invalid(
                f("api_base"),
                format!("is required for provider {:?}", d.provider),
            ));
        }
    } else if provider.wire == providers::Wire::Mock {
        // The mock provider reads its knobs from api_base: `mock://?latency_ms=200&fail=429`.
        if !(d.api_base.starts_with("mock://") || d.api_base.starts_with('?')) {
            return Err(AdminError::invalid(
                f("api_base"),
                "for a mock deployment must be mock://?knob=value&... (latency_ms, chunk_delay_ms, fail, content)",
            ));
        }
    } else if !(d.api_base.starts_with("http://")
        || d.api_base.starts_with("https://")
        || secret_is_reference(&d.api_base))
    {
        return Err(AdminError::invalid(
            f("api_base"),
            "must be an http:// or https:// URL, or os.environ/NAME",
        ));
    }
    // Vertex AI's is a service account's JSON key, or a path to one.
    let json_key = provider.wire == providers::Wire::Vertex;
    credential(&f("api_key"), &d.api_key, json_key)?;
    text(&f("api_version"), &d.api_version)?;
    vertex(d, provider, &f)?;
    bedrock(d, provider, &f)?;
    azure(d, provider, &f)?;
    price(&f("input_cost_per_token"), d.input_cost_per_token)?;
    price(&f("output_cost_per_token"), d.output_cost_per_token)?;
    if let Some(p) = d.cache_read_input_token_cost {
        price(&f("cache_read_input_token_cost"), p)?;
    }
    if let Some(p) = d.cache_creation_input_token_cost {
        price(&f("cache_creation_input_token_cost"), p)?;
    }
    price(&f("output_cost_per_image"), d.output_cost_per_image)?;
    non_negative(&f("credits_per_call"), d.credits_per_call)?;
    duration(&f("timeout"), d.timeout.as_ref())?;
    duration(&f("stream_timeout"), d.stream_timeout.as_ref())?;
    endpoints(&f("supported_endpoints"), &mut d.supported_endpoints)?;
    if d.max_input_tokens == Some(0) {
        // Every prompt has a token: the deployment could never be picked.
        return Err(AdminError::invalid(
            f("max_input_tokens"),
            "must be at least 1 (leave it unset for no limit)",
        ));
    }
    dedup(&mut d.access_groups);
    group_list(&f("access_groups"), &d.access_groups)?;
    Ok(())
}

/// Whether `provider` is the one (`wire`, named `name`) the settings
/// `fields` are for; refused when it is not and one of them is set.
fn only_for(
    provider: &providers::Provider,
    wire: providers::Wire,
    name: &str,
    fields: &[(&str, &String)],
    f: &dyn Fn(&str) -> String,
) -> AdminResult<bool> {
    if provider.wire == wire {
        return Ok(true);
    }
    match fields.iter().find(|(_, value)| !value.is_empty()) {
        Some((field, _)) => Err(AdminError::invalid(
            f(field),
            format!("is only for provider {name:?}"),
        )),
        None => Ok(false),
    }
}

/// Vertex AI's settings: a project (or an `api_base` naming the location's
/// URL) and names that can go into its URL; none of them on another
/// provider.
fn vertex(
    d: &Deployment,
    provider: &providers::Provider,
    f: &dyn Fn(&str) -> String,
) -> AdminResult<()> {
    let fields = [
        ("vertex_project", &d.vertex_project),
        ("vertex_location", &d.vertex_location),
    ];
    if !only_for(provider, providers::Wire::Vertex, "vertex_ai", &fields, f)? {
        return Ok(());
    }
    if d.vertex_project.is_empty() && d.api_base.is_empty() {
        return Err(AdminError::invalid(
            f("vertex_project"),
            "is required for provider \"vertex_ai\" (or an api_base naming the location's URL)",
        ));
    }
    for (name, value) in fields {
        let plain = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !(plain || secret_is_reference(value)) {
            return Err(AdminError::invalid(
                f(name),
                "may hold only letters, digits, '-', '_' and '.' (or be os.environ/NAME)",
            ));
        }
    }
    Ok(())
}

/// Azure's Entra ID settings: a client secret only with the app it is
/// for, a token or an identity (not both), neither beside an `api_key`
/// (which would be sent instead); none of them on another provider.
fn azure(
    d: &Deployment,
    provider: &providers::Provider,
    f: &dyn Fn(&str) -> String,
) -> AdminResult<()> {
    let fields = [
        ("azure_tenant_id", &d.azure_tenant_id),
        ("azure_client_id", &d.azure_client_id),
        ("azure_client_secret", &d.azure_client_secret),
        ("azure_ad_token", &d.azure_ad_token),
    ];
    if !only_for(provider, providers::Wire::Azure, "azure", &fields, f)? {
        return Ok(());
    }
    text(&f("azure_tenant_id"), &d.azure_tenant_id)?;
    text(&f("azure_client_id"), &d.azure_client_id)?;
    credential(&f("azure_client_secret"), &d.azure_client_secret, false)?;
    credential(&f("azure_ad_token"), &d.azure_ad_token, false)?;
    if let Some((name, _)) = fields.iter().find(|(_, v)| !v.is_empty())
        && !d.api_key.is_empty()
    {
        return Err(AdminError::invalid(
            f(name),
            "is for a deployment without api_key (the key would be sent instead): clear one",
        ));
    }
    if !d.azure_client_secret.is_empty()
        && (d.azure_tenant_id.is_empty() || d.azure_client_id.is_empty())
    {
        return Err(AdminError::invalid(
            f("azure_client_secret"),
            "belongs to an app: set azure_tenant_id and azure_client_id too",
        ));
    }
    if !d.azure_ad_token.is_empty() {
        if d.azure_ad_token.starts_with("oidc/") {
            return Err(AdminError::invalid(
                f("azure_ad_token"),
                "oidc/ tokens are not supported: leave it empty for the pod's workload identity \
                 (AZURE_FEDERATED_TOKEN_FILE), with azure_client_id to pick the app",
            ));
        }
        if let Some((name, _)) = fields[..3].iter().find(|(_, v)| !v.is_empty()) {
            return Err(AdminError::invalid(
                f(name),
                "and azure_ad_token are two ways to authenticate: set one",
            ));
        }
    }
    Ok(())
}

/// Amazon Bedrock's settings: a region that can go into a host name, AWS
/// keys in pairs, and a model id; none of them on another provider.
fn bedrock(
    d: &Deployment,
    provider: &providers::Provider,
    f: &dyn Fn(&str) -> String,
) -> AdminResult<()> {
    let fields = [
        ("aws_region_name", &d.aws_region_name),
        ("aws_access_key_id", &d.aws_access_key_id),
        ("aws_secret_access_key", &d.aws_secret_access_key),
        ("aws_session_token", &d.aws_session_token),
    ];
    if !only_for(provider, providers::Wire::Bedrock, "bedrock", &fields, f)? {
        return Ok(());
    }
    for (name, value) in &fields {
        credential(&f(name), value, false)?;
    }
    let region = &d.aws_region_name;
    if !(secret_is_reference(region)
        || region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return Err(AdminError::invalid(
            f("aws_region_name"),
            "must be an AWS region (us-east-1), or os.environ/NAME",
        ));
    }
    if d.aws_access_key_id.is_empty() != d.aws_secret_access_key.is_empty() {
        return Err(AdminError::invalid(
            f("aws_secret_access_key"),
            "and aws_access_key_id go together: set both, or neither (for the data plane's \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        ));
    }
    if !d.aws_session_token.is_empty() && d.aws_access_key_id.is_empty() {
        return Err(AdminError::invalid(
            f("aws_session_token"),
            "belongs to an access key: set aws_access_key_id and aws_secret_access_key too",
        ));
    }
    let model = d
        .model
        .strip_prefix("invoke/")
        .or_else(|| d.model.strip_prefix("converse/"))
        .unwrap_or(&d.model);
    if model.is_empty() || model.contains('*') {
        return Err(AdminError::invalid(
            f("model"),
            "must name a Bedrock model id (anthropic.claude-sonnet-4-20250514-v1:0)",
        ));
    }
    // Every model id has an API that serves it
    // (`providers::bedrock_api`): Bedrock answers for one it does not know.
    Ok(())
}

/// Deduplicates a list keeping the first occurrence of each entry.
pub fn dedup(list: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|x| seen.insert(x.clone()));
}

/// `supported_endpoints`: API paths (`/v1/responses`), each at most once.
/// Any well-formed path is kept, as LiteLLM lists endpoints Sluice does not
/// serve; only `/v1/responses` changes anything today (a data plane passes
/// those requests through instead of translating them).
fn endpoints(field: &str, endpoints: &mut Vec<String>) -> Result<(), AdminError> {
    for (i, e) in endpoints.iter_mut().enumerate() {
        let trimmed = e.trim().trim_end_matches('/');
        let well_formed = trimmed.len() > 1
            && trimmed.len() <= 64
            && trimmed.starts_with('/')
            && trimmed
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/_-.".contains(&b));
        if !well_formed {
            return Err(AdminError::invalid(
                format!("{field}[{i}]"),
                "must be an API path such as \"/v1/responses\" (lowercase; at most 64 chars)",
            ));
        }
        *e = trimmed.to_owned();
    }
    dedup(endpoints);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(parse_window("30s"), Some(30));
        assert_eq!(parse_window("1h"), Some(3600));
        assert_eq!(parse_window("1d"), Some(86_400));
        assert_eq!(parse_window("30d"), Some(30 * 86_400));
        for bad in ["", "d", "0d", "01d", "1w", "-1d", "1.5h", "99999d", "1dd"] {
            assert_eq!(parse_window(bad), None, "{bad}");
        }
        assert!(window("f", "").is_ok());
        assert!(
            window("team.budget_duration", "1w")
                .unwrap_err()
                .to_string()
                .starts_with("team.budget_duration: ")
        );
    }

    #[test]
    fn group_names() {
        for ok in ["a", "prod-models", "g1", "a-b-c"] {
            assert!(group_name("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Prod", "a_b", "-a", "a-", "a b", &"a".repeat(64)] {
            assert!(group_name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert!(object_id("team.team_id", "Team_1.x-y").is_ok());
        assert!(object_id("team.team_id", "_x").is_err());
        assert!(object_id("team.team_id", "a/b").is_err());
        assert!(deployment_id("deployment.id", "Gpt").is_err());
        assert!(deployment_id("deployment.id", "gpt-4o.1").is_ok());
        assert!(object_id("x", &"a".repeat(65)).is_err());
    }

    #[test]
    fn money_and_models() {
        assert!(
            money("team.max_budget", Some(-1))
                .unwrap_err()
                .to_string()
                .contains("team.max_budget")
        );
        assert!(money("team.max_budget", Some(0)).is_ok());
        assert!(model_name("m", "openai/*").is_ok());
        assert!(model_name("m", "gpt 4").is_err());
        assert!(model_list("m", &vec!["a".to_string(); 1001]).is_err());
        assert!(price("p", f64::NAN).is_err());
    }
}
