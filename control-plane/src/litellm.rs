//! LiteLLM's proxy `config.yaml`, read as Sluice resources and written back
//! (DESIGN §2, §8 `ConfigService`).
//!
//! Pure functions over text: no I/O, no store. [`parse`] says what a file
//! means ([`Deployment`]s, access group names, [`RouterSettings`]) and reports
//! every key it does not understand as a warning, so nothing in an operator's
//! file is dropped without a word. [`export`] writes the same shape back, such
//! that parsing an export reproduces what was exported, ids included.
//!
//! Choices beyond LiteLLM's own behaviour, because an operator will meet them:
//! - `os.environ/NAME` references are kept verbatim; the data plane resolves
//!   them, so the control plane never needs the secret.
//! - A deployment without `model_info.id` gets an id derived from its content,
//!   so importing the same file twice updates rather than duplicates.
//! - An `api_key` of `<redacted>` (what an export without secrets writes) is
//!   refused: stored, it would fail every upstream call much later.
//! - Azure deployments must name an `api_base`: Azure has no default endpoint,
//!   and a deployment that can only fail is refused at import (DESIGN §4).
//! - Access group names must be valid [`AccessGroup`] names, since an import
//!   creates those groups and teams are granted them by name.
//! - The result carries router settings as soon as the file has a
//!   `router_settings` section, even an empty one: that file describes
//!   routing, defaults included. A file that says nothing about routing leaves
//!   the stored settings alone (`None`).
//! - LiteLLM also reads some routing keys from `litellm_settings` (as
//!   `litellm.<name>` defaults the router falls back on): `num_retries`,
//!   `request_timeout` (our `timeout`), `allowed_fails` and the four fallback
//!   lists. Both sections are read; where both set a key, `router_settings`
//!   wins, as it does in LiteLLM, and the `litellm_settings` value is reported
//!   as ignored. The router-only keys (`routing_strategy`, `retry_policy`,
//!   `cooldown_time`, ...) under `litellm_settings` are warned about, not read.
//! - `retry_policy` and `allowed_fails_policy` are read by LiteLLM's names
//!   (`RateLimitErrorRetries`, `RateLimitErrorAllowedFails`, ...); classes
//!   Sluice does not distinguish (`NotFoundErrorRetries`, ...) are warnings.
//! - `litellm_params.order: 0` reads as unset (ranked after every set order),
//!   with a warning: Sluice's orders start at 1.
//!
//! [`AccessGroup`]: sluice_proto::admin::v1::AccessGroup

use std::collections::{BTreeSet, HashMap};

use prost_types::Duration;
use serde_yaml_ng::{Mapping, Number, Value};
use sha2::{Digest, Sha256};
use sluice_proto::admin::v1::{
    AllowedFailsPolicy, Deployment, Fallback, RetryPolicy, RouterSettings,
};
use sluice_proto::providers;

/// How a LiteLLM config refers to an environment variable instead of a literal.
pub const ENV_REFERENCE_PREFIX: &str = "os.environ/";

/// What [`export`] writes in place of a literal `api_key` when secrets are left out.
pub const REDACTED: &str = "<redacted>";

/// The routing strategies Sluice implements (DESIGN §5), by LiteLLM's names.
pub const ROUTING_STRATEGIES: &[&str] = &[
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
    "cost-based-routing",
];

/// Longest model-name slug in a derived id, leaving room for the hash and a
/// duplicate suffix within the 64-character id limit.
const SLUG_MAX_CHARS: usize = 40;

const ID_MAX_CHARS: usize = 64;
const ACCESS_GROUP_MAX_CHARS: usize = 63;

/// `google.protobuf.Duration`'s documented range: about 10,000 years.
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

/// What a LiteLLM config means to Sluice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    /// In file order, each with its id set.
    pub deployments: Vec<Deployment>,
    /// Every name in any `model_info.access_groups`, sorted, without duplicates.
    pub access_groups: Vec<String>,
    /// `None` when the file says nothing about routing.
    pub router_settings: Option<RouterSettings>,
    /// One per key not understood (or understood differently), with its path,
    /// e.g. `model_list[2].litellm_params.stream_timeout: not supported, ignored`.
    pub warnings: Vec<String>,
}

/// Why a config was refused as a whole. Nothing of a refused file is imported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// Not YAML at all. `line` and `column` are 1-based; both are 0 in the rare
    /// case where the parser cannot say where (e.g. a second `---` document).
    #[error("not valid YAML (line {line}, column {column}): {message}")]
    Yaml {
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed YAML with a value Sluice cannot accept. `path` names it the
    /// way warnings do (`model_list[1].litellm_params.model`); empty for the
    /// document itself.
    #[error("{}", describe_invalid(.path, .message))]
    Invalid { path: String, message: String },
}

fn describe_invalid(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// Whether `s` is a reference to an environment variable (`os.environ/NAME`)
/// rather than a literal secret.
pub fn secret_is_reference(s: &str) -> bool {
    s.starts_with(ENV_REFERENCE_PREFIX)
}

/// Reads a LiteLLM proxy `config.yaml`.
pub fn parse(yaml: &str) -> Result<Imported, ImportError> {
    let mut root: Value = serde_yaml_ng::from_str(yaml).map_err(yaml_error)?;
    // LiteLLM configs share settings between entries with `<<: *anchor`;
    // resolve those so merged keys are read like any other.
    root.apply_merge().map_err(yaml_error)?;
    let Value::Mapping(top) = &root else {
        return Err(invalid(
            "",
            format!(
                "expected a mapping with `model_list`, `router_settings`, ... at the top level, found {}",
                found(&root)
            ),
        ));
    };

    let mut warnings = Vec::new();
    let mut entries = Vec::new();
    let mut from_router = None;
    let mut from_litellm = RoutingKeys::default();
    for (key, value) in top {
        match key.as_str() {
            Some("model_list") => entries = parse_model_list(value, &mut warnings)?,
            Some("router_settings") => {
                from_router = Some(parse_router_settings(value, &mut warnings)?);
            }
            Some("litellm_settings") => {
                from_litellm = parse_litellm_settings(value, &mut warnings)?;
            }
            _ => warnings.push(unsupported(&key_name(key))),
        }
    }

    let deployments = assign_ids(entries)?;
    let access_groups = deployments
        .iter()
        .flat_map(|d| d.access_groups.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let router_settings = merge_routing(from_router, from_litellm, &mut warnings);
    Ok(Imported {
        deployments,
        access_groups,
        router_settings,
        warnings,
    })
}

/// Writes deployments and router settings as a LiteLLM proxy `config.yaml`,
/// with only the fields that differ from their defaults.
///
/// Literal `api_key`s are written as [`REDACTED`] unless `include_secrets`;
/// `os.environ/` references are always written as they are. Output-only fields
/// (`created_at`, `updated_at`, `revision`) are left out.
pub fn export(
    deployments: &[Deployment],
    router: Option<&RouterSettings>,
    include_secrets: bool,
) -> String {
    let mut redacted_any = false;
    let model_list = deployments
        .iter()
        .map(|d| {
            let (node, redacted) = deployment_node(d, include_secrets);
            redacted_any |= redacted;
            node
        })
        .collect();
    let mut doc = vec![("model_list".to_owned(), Node::List(model_list))];
    if let Some(router) = router {
        doc.push(("router_settings".to_owned(), router_node(router)));
    }

    let mut out = String::new();
    if redacted_any {
        out.push_str(&format!(
            "# Literal api_key values are written as \"{REDACTED}\": put the keys (or\n\
             # {ENV_REFERENCE_PREFIX}NAME references) back before importing this file.\n"
        ));
    }
    write_map(&mut out, &doc, 0);
    out
}

// ---------------------------------------------------------------------------
// model_list

/// A deployment as read, before ids are settled across the whole file.
struct Entry {
    deployment: Deployment,
    /// Where the entry is, for errors about its id.
    path: String,
    explicit_id: bool,
}

fn parse_model_list(value: &Value, warnings: &mut Vec<String>) -> Result<Vec<Entry>, ImportError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(items) => items,
        other => {
            return Err(invalid(
                "model_list",
                format!("expected a list of models, found {}", found(other)),
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_entry(item, &format!("model_list[{i}]"), warnings))
        .collect()
}

fn parse_entry(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Entry, ImportError> {
    let mut d = Deployment::default();
    let mut model_name = None;
    let mut params_costs = None;
    let mut info = None;
    let params_path = format!("{path}.litellm_params");
    let info_path = format!("{path}.model_info");
    // Sections are read where they stand, so warnings come in file order.
    for (key, value) in mapping(value, path)? {
        match key.as_str() {
            Some("model_name") => model_name = Some(value),
            Some("litellm_params") if !value.is_null() => {
                params_costs = Some(read_litellm_params(&mut d, value, &params_path, warnings)?);
            }
            Some("model_info") if !value.is_null() => {
                info = Some(read_model_info(&mut d, value, &info_path, warnings)?);
            }
            Some("litellm_params" | "model_info") => {}
            _ => warnings.push(unsupported(&child(path, key))),
        }
    }

    let name_path = format!("{path}.model_name");
    d.model_name = model_name
        .map(|v| string(v, &name_path))
        .transpose()?
        .flatten()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| invalid(&name_path, "required: the model group clients ask for"))?;
    let params_costs =
        params_costs.ok_or_else(|| invalid(&params_path, "required, with at least `model`"))?;
    let (explicit_id, info_costs) = info.unwrap_or_default();

    // LiteLLM accepts prices in either place; litellm_params is where it
    // registers them for cost tracking, so it decides.
    d.input_cost_per_token = pick_cost(
        params_costs.input,
        info_costs.input,
        "input_cost_per_token",
        path,
        warnings,
    );
    d.output_cost_per_token = pick_cost(
        params_costs.output,
        info_costs.output,
        "output_cost_per_token",
        path,
        warnings,
    );
    // Unset stays unset: the cache's tokens then cost the input price.
    d.cache_read_input_token_cost = pick_optional_cost(
        params_costs.cache_read,
        info_costs.cache_read,
        "cache_read_input_token_cost",
        path,
        warnings,
    );
    d.cache_creation_input_token_cost = pick_optional_cost(
        params_costs.cache_creation,
        info_costs.cache_creation,
        "cache_creation_input_token_cost",
        path,
        warnings,
    );
    d.output_cost_per_image = pick_cost(
        params_costs.image,
        info_costs.image,
        "output_cost_per_image",
        path,
        warnings,
    );

    let explicit = explicit_id.is_some();
    d.id = explicit_id.unwrap_or_default();
    Ok(Entry {
        deployment: d,
        path: path.to_owned(),
        explicit_id: explicit,
    })
}

#[derive(Default)]
struct Costs {
    input: Option<f64>,
    output: Option<f64>,
    cache_read: Option<f64>,
    cache_creation: Option<f64>,
    image: Option<f64>,
}

impl Costs {
    /// Reads `key` when it is one of the five prices; false when it is not.
    fn read(&mut self, key: Option<&str>, value: &Value, path: &str) -> Result<bool, ImportError> {
        let slot = match key {
            Some("input_cost_per_token") => &mut self.input,
            Some("output_cost_per_token") => &mut self.output,
            Some("cache_read_input_token_cost") => &mut self.cache_read,
            Some("cache_creation_input_token_cost") => &mut self.cache_creation,
            Some("output_cost_per_image") => &mut self.image,
            _ => return Ok(false),
        };
        *slot = price(value, path)?;
        Ok(true)
    }
}

fn read_litellm_params(
    d: &mut Deployment,
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Costs, ImportError> {
    let mut model = None;
    let mut costs = Costs::default();
    for (key, value) in mapping(value, path)? {
        let p = child(path, key);
        match key.as_str() {
            Some("model") => model = string(value, &p)?.map(|m| (m, p)),
            Some("api_base") => d.api_base = string(value, &p)?.unwrap_or_default(),
            Some("api_key") => d.api_key = api_key(value, &p)?,
            Some("api_version") => d.api_version = string(value, &p)?.unwrap_or_default(),
            Some("vertex_project") => d.vertex_project = string(value, &p)?.unwrap_or_default(),
            Some("vertex_location") => {
                d.vertex_location = string(value, &p)?.unwrap_or_default();
            }
            // Vertex AI's credentials are the deployment's api_key: a key
            // file's path, or os.environ/NAME holding the key or a path.
            Some("vertex_credentials") => d.api_key = api_key(value, &p)?,
            Some("aws_region_name") => d.aws_region_name = string(value, &p)?.unwrap_or_default(),
            Some("aws_access_key_id") => {
                d.aws_access_key_id = string(value, &p)?.unwrap_or_default();
            }
            Some("aws_secret_access_key") => d.aws_secret_access_key = api_key(value, &p)?,
            Some("aws_session_token") => d.aws_session_token = api_key(value, &p)?,
            // Azure's Entra ID identity of the deployment's own.
            Some("tenant_id") => d.azure_tenant_id = string(value, &p)?.unwrap_or_default(),
            Some("client_id") => d.azure_client_id = string(value, &p)?.unwrap_or_default(),
            Some("client_secret") => d.azure_client_secret = api_key(value, &p)?,
            Some("azure_ad_token") => d.azure_ad_token = api_key(value, &p)?,
            // Bedrock's runtime at another URL (a VPC endpoint, a proxy).
            Some("aws_bedrock_runtime_endpoint") => {
                d.api_base = string(value, &p)?.unwrap_or_default();
            }
            Some("rpm") => d.rpm = count(value, &p)?.unwrap_or_default(),
            Some("tpm") => d.tpm = count(value, &p)?.unwrap_or_default(),
            Some("weight") => d.weight = count_u32(value, &p)?.unwrap_or_default(),
            Some("timeout") => d.timeout = seconds(value, &p)?,
            Some("stream_timeout") => d.stream_timeout = seconds(value, &p)?,
            Some("order") => {
                d.order = count_u32(value, &p)?.unwrap_or_default();
                if d.order == 0 && !value.is_null() {
                    warnings.push(format!(
                        "{p}: 0 read as unset (ranked after every set order); orders start at 1"
                    ));
                }
            }
            other => {
                if !costs.read(other, value, &p)? {
                    warnings.push(unsupported(&p));
                }
            }
        }
    }

    let model_path = format!("{path}.model");
    let (model, model_path) = model
        .filter(|(m, _)| !m.is_empty())
        .ok_or_else(|| invalid(&model_path, "required, e.g. \"openai/gpt-4o\""))?;
    let (provider, upstream) = providers::split_model(&model);
    let Some(known) = providers::lookup(provider) else {
        return Err(invalid(
            model_path,
            format!(
                "unknown provider prefix {provider:?}; known: {}",
                providers::known_prefixes()
            ),
        ));
    };
    if upstream.is_empty() {
        return Err(invalid(
            model_path,
            format!("no model after the provider prefix in {model:?}"),
        ));
    }
    if known.default_api_base.is_none() && d.api_base.is_empty() {
        return Err(invalid(
            format!("{path}.api_base"),
            format!("required for provider {provider:?}, which has no default endpoint"),
        ));
    }
    d.provider = provider.to_owned();
    d.model = upstream.to_owned();
    Ok(costs)
}

fn read_model_info(
    d: &mut Deployment,
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(Option<String>, Costs), ImportError> {
    let mut id = None;
    let mut costs = Costs::default();
    for (key, value) in mapping(value, path)? {
        let p = child(path, key);
        match key.as_str() {
            Some("id") => id = explicit_id(value, &p)?,
            Some("access_groups") => d.access_groups = access_groups(value, &p)?,
            Some("credits_per_call") => {
                d.credits_per_call = match count(value, &p)? {
                    Some(n) => i64::try_from(n).map_err(|_| invalid(&p, "too large"))?,
                    None => 0,
                };
            }
            Some("max_input_tokens") => d.max_input_tokens = count(value, &p)?,
            Some("supported_endpoints") => {
                d.supported_endpoints = string_list(value, &p)?.unwrap_or_default();
            }
            other => {
                if !costs.read(other, value, &p)? {
                    warnings.push(unsupported(&p));
                }
            }
        }
    }
    Ok((id, costs))
}

fn pick_cost(
    in_params: Option<f64>,
    in_info: Option<f64>,
    name: &str,
    entry_path: &str,
    warnings: &mut Vec<String>,
) -> f64 {
    pick_optional_cost(in_params, in_info, name, entry_path, warnings).unwrap_or_default()
}

fn pick_optional_cost(
    in_params: Option<f64>,
    in_info: Option<f64>,
    name: &str,
    entry_path: &str,
    warnings: &mut Vec<String>,
) -> Option<f64> {
    if in_params.is_some() && in_info.is_some() {
        warnings.push(format!(
            "{entry_path}.model_info.{name}: ignored, {entry_path}.litellm_params.{name} takes precedence"
        ));
    }
    in_params.or(in_info)
}

fn api_key(value: &Value, path: &str) -> Result<String, ImportError> {
    let key = string(value, path)?.unwrap_or_default();
    if key == REDACTED {
        return Err(invalid(
            path,
            format!(
                "is {REDACTED:?} (from an export without secrets); put the key or an \
                 {ENV_REFERENCE_PREFIX}NAME reference back"
            ),
        ));
    }
    Ok(key)
}

fn explicit_id(value: &Value, path: &str) -> Result<Option<String>, ImportError> {
    let Some(id) = string(value, path)? else {
        return Ok(None);
    };
    if !is_valid_id(&id) {
        return Err(invalid(
            path,
            format!(
                "{id:?} is not a valid deployment id (lowercase letters, digits, '.', '_', '-'; \
                 1-{ID_MAX_CHARS} chars; starting with a letter or digit)"
            ),
        ));
    }
    Ok(Some(id))
}

fn access_groups(value: &Value, path: &str) -> Result<Vec<String>, ImportError> {
    let names = string_list(value, path)?.unwrap_or_default();
    let mut kept: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        if !is_valid_access_group(&name) {
            return Err(invalid(
                format!("{path}[{i}]"),
                format!(
                    "{name:?} is not a valid access group name (lowercase letters, digits and \
                     hyphens; 1-{ACCESS_GROUP_MAX_CHARS} chars; starting with a letter or digit)"
                ),
            ));
        }
        if !kept.contains(&name) {
            kept.push(name);
        }
    }
    Ok(kept)
}

/// Settles every deployment's id: explicit ids as given (each at most once),
/// then derived ids in file order, suffixed `-2`, `-3`... past any id taken.
fn assign_ids(entries: Vec<Entry>) -> Result<Vec<Deployment>, ImportError> {
    let mut taken: HashMap<String, String> = HashMap::new();
    for entry in entries.iter().filter(|e| e.explicit_id) {
        let id = &entry.deployment.id;
        if let Some(first) = taken.insert(id.clone(), entry.path.clone()) {
            return Err(invalid(
                format!("{}.model_info.id", entry.path),
                format!("{id:?} is already the id of {first}"),
            ));
        }
    }
    let mut deployments = Vec::with_capacity(entries.len());
    for mut entry in entries {
        if !entry.explicit_id {
            let base = derived_id(&entry.deployment);
            let mut id = base.clone();
            let mut n = 2;
            while taken.contains_key(&id) {
                id = format!("{base}-{n}");
                n += 1;
            }
            taken.insert(id.clone(), entry.path);
            entry.deployment.id = id;
        }
        deployments.push(entry.deployment);
    }
    Ok(deployments)
}

/// A readable, deterministic id: the model name's slug and a hash of what
/// identifies the endpoint, so the same entry gets the same id on every import.
fn derived_id(d: &Deployment) -> String {
    let mut hasher = Sha256::new();
    for part in [&d.model_name, &d.provider, &d.model, &d.api_base] {
        // Length-prefixed so that ("ab", "c") and ("a", "bc") hash apart.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    let hash = &digest[..8];
    let slug = slug(&d.model_name);
    if slug.is_empty() {
        hash.to_owned()
    } else {
        format!("{slug}-{hash}")
    }
}

fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        let c = if is_id_char(c) { c } else { '-' };
        // `openai/*` becomes `openai`, not `openai--`: a run of replaced
        // characters says nothing more than one.
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    // An id must start with a letter or digit, and a separator before the
    // '-' that joins the hash only adds noise.
    let is_separator = |c: char| matches!(c, '-' | '.' | '_');
    let trimmed: String = out
        .trim_start_matches(is_separator)
        .chars()
        .take(SLUG_MAX_CHARS)
        .collect();
    trimmed.trim_end_matches(is_separator).to_owned()
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
}

fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= ID_MAX_CHARS
        && chars.all(is_id_char)
}

fn is_valid_access_group(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= ACCESS_GROUP_MAX_CHARS
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

// ---------------------------------------------------------------------------
// router_settings and litellm_settings

/// The routing keys one section sets; `None` where it is silent.
#[derive(Default)]
struct RoutingKeys {
    routing_strategy: Option<String>,
    lowest_latency_buffer: Option<f64>,
    num_retries: Option<u32>,
    retry_policy: Option<RetryPolicy>,
    allowed_fails: Option<u32>,
    allowed_fails_policy: Option<AllowedFailsPolicy>,
    timeout: Option<Duration>,
    cooldown_time: Option<Duration>,
    fallbacks: Option<Vec<Fallback>>,
    context_window_fallbacks: Option<Vec<Fallback>>,
    content_policy_fallbacks: Option<Vec<Fallback>>,
    default_fallbacks: Option<Vec<String>>,
    max_fallbacks: Option<u32>,
    enable_pre_call_checks: Option<bool>,
}

/// Keys LiteLLM reads only under `router_settings` (they are `Router`
/// arguments with no `litellm.<name>` default): under `litellm_settings`
/// they do nothing in LiteLLM, so they do nothing here either, with a word.
const ROUTER_ONLY_KEYS: &[&str] = &[
    "routing_strategy",
    "routing_strategy_args",
    "retry_policy",
    "allowed_fails_policy",
    "cooldown_time",
    "timeout",
    "max_fallbacks",
    "enable_pre_call_checks",
];

fn parse_router_settings(
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<RoutingKeys, ImportError> {
    let path = "router_settings";
    let mut keys = RoutingKeys::default();
    if value.is_null() {
        return Ok(keys);
    }
    for (key, value) in mapping(value, path)? {
        let p = child(path, key);
        match key.as_str() {
            Some("routing_strategy") => keys.routing_strategy = routing_strategy(value, &p)?,
            Some("routing_strategy_args") => {
                keys.lowest_latency_buffer = routing_strategy_args(value, &p, warnings)?;
            }
            Some("retry_policy") => keys.retry_policy = retry_policy(value, &p, warnings)?,
            Some("allowed_fails_policy") => {
                keys.allowed_fails_policy = allowed_fails_policy(value, &p, warnings)?;
            }
            Some("timeout") => keys.timeout = seconds(value, &p)?,
            Some("cooldown_time") => keys.cooldown_time = seconds(value, &p)?,
            Some("max_fallbacks") => keys.max_fallbacks = count_u32(value, &p)?,
            Some("enable_pre_call_checks") => keys.enable_pre_call_checks = boolean(value, &p)?,
            Some(name) if read_shared_key(&mut keys, name, value, &p)? => {}
            _ => warnings.push(unsupported(&p)),
        }
    }
    Ok(keys)
}

fn parse_litellm_settings(
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<RoutingKeys, ImportError> {
    let path = "litellm_settings";
    let mut keys = RoutingKeys::default();
    if value.is_null() {
        return Ok(keys);
    }
    for (key, value) in mapping(value, path)? {
        let p = child(path, key);
        match key.as_str() {
            Some("request_timeout") => keys.timeout = seconds(value, &p)?,
            Some(name) if read_shared_key(&mut keys, name, value, &p)? => {}
            Some(name) if ROUTER_ONLY_KEYS.contains(&name) => warnings.push(format!(
                "{p}: LiteLLM reads it only under router_settings; ignored"
            )),
            _ => warnings.push(unsupported(&p)),
        }
    }
    Ok(keys)
}

/// Reads `name` if it is one of the keys both sections accept (in
/// `litellm_settings` they are the `litellm.<name>` defaults LiteLLM's router
/// falls back on); returns whether it was.
fn read_shared_key(
    keys: &mut RoutingKeys,
    name: &str,
    value: &Value,
    path: &str,
) -> Result<bool, ImportError> {
    match name {
        "num_retries" => keys.num_retries = count_u32(value, path)?,
        "allowed_fails" => keys.allowed_fails = count_u32(value, path)?,
        "fallbacks" => keys.fallbacks = fallbacks(value, path)?,
        "context_window_fallbacks" => keys.context_window_fallbacks = fallbacks(value, path)?,
        "content_policy_fallbacks" => keys.content_policy_fallbacks = fallbacks(value, path)?,
        "default_fallbacks" => keys.default_fallbacks = string_list(value, path)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn routing_strategy(value: &Value, path: &str) -> Result<Option<String>, ImportError> {
    let Some(strategy) = string(value, path)? else {
        return Ok(None);
    };
    if !ROUTING_STRATEGIES.contains(&strategy.as_str()) {
        return Err(invalid(
            path,
            format!(
                "unknown routing strategy {strategy:?}; known: {}",
                ROUTING_STRATEGIES.join(", ")
            ),
        ));
    }
    Ok(Some(strategy))
}

/// `routing_strategy_args: {lowest_latency_buffer: 0.5}`; its other keys
/// (`ttl`, ...) tune LiteLLM's Redis-backed bookkeeping, which Sluice has not.
fn routing_strategy_args(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<f64>, ImportError> {
    if value.is_null() {
        return Ok(None);
    }
    let mut buffer = None;
    for (key, value) in mapping(value, path)? {
        let p = child(path, key);
        match key.as_str() {
            Some("lowest_latency_buffer") => buffer = fraction(value, &p)?,
            _ => warnings.push(unsupported(&p)),
        }
    }
    Ok(buffer)
}

/// One error class of a per-class policy: LiteLLM's name for it, and the
/// field of `P` that holds its count.
type Class<P> = (&'static str, fn(&mut P) -> &mut Option<u32>);

/// The retry classes Sluice tells apart, by LiteLLM's `RetryPolicy` names.
const RETRY_CLASSES: [Class<RetryPolicy>; 6] = [
    ("BadRequestErrorRetries", |p| {
        &mut p.bad_request_error_retries
    }),
    ("AuthenticationErrorRetries", |p| {
        &mut p.authentication_error_retries
    }),
    ("TimeoutErrorRetries", |p| &mut p.timeout_error_retries),
    ("RateLimitErrorRetries", |p| &mut p.rate_limit_error_retries),
    ("ContentPolicyViolationErrorRetries", |p| {
        &mut p.content_policy_violation_error_retries
    }),
    ("InternalServerErrorRetries", |p| {
        &mut p.internal_server_error_retries
    }),
];

/// The same classes, by LiteLLM's `AllowedFailsPolicy` names.
const ALLOWED_FAILS_CLASSES: [Class<AllowedFailsPolicy>; 6] = [
    ("BadRequestErrorAllowedFails", |p| {
        &mut p.bad_request_error_allowed_fails
    }),
    ("AuthenticationErrorAllowedFails", |p| {
        &mut p.authentication_error_allowed_fails
    }),
    ("TimeoutErrorAllowedFails", |p| {
        &mut p.timeout_error_allowed_fails
    }),
    ("RateLimitErrorAllowedFails", |p| {
        &mut p.rate_limit_error_allowed_fails
    }),
    ("ContentPolicyViolationErrorAllowedFails", |p| {
        &mut p.content_policy_violation_error_allowed_fails
    }),
    ("InternalServerErrorAllowedFails", |p| {
        &mut p.internal_server_error_allowed_fails
    }),
];

/// A mapping of LiteLLM class names to counts into `P`; names not in
/// `classes` are warnings.
fn per_class<P: Default>(
    value: &Value,
    path: &str,
    classes: &[Class<P>],
    warnings: &mut Vec<String>,
) -> Result<Option<P>, ImportError> {
    if value.is_null() {
        return Ok(None);
    }
    let mut policy = P::default();
    for (key, value) in mapping(value, path)? {
        let p = child(path, key);
        match classes.iter().find(|(name, _)| key.as_str() == Some(*name)) {
            Some((_, field)) => *field(&mut policy) = count_u32(value, &p)?,
            None => warnings.push(unsupported(&p)),
        }
    }
    Ok(Some(policy))
}

fn retry_policy(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<RetryPolicy>, ImportError> {
    per_class(value, path, &RETRY_CLASSES, warnings)
}

fn allowed_fails_policy(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<AllowedFailsPolicy>, ImportError> {
    per_class(value, path, &ALLOWED_FAILS_CLASSES, warnings)
}

/// `router_settings` decides what both sections set; `None` when neither
/// says anything about routing.
fn merge_routing(
    router: Option<RoutingKeys>,
    litellm: RoutingKeys,
    warnings: &mut Vec<String>,
) -> Option<RouterSettings> {
    let litellm_sets_any = litellm.num_retries.is_some()
        || litellm.allowed_fails.is_some()
        || litellm.timeout.is_some()
        || litellm.fallbacks.is_some()
        || litellm.context_window_fallbacks.is_some()
        || litellm.content_policy_fallbacks.is_some()
        || litellm.default_fallbacks.is_some();
    if router.is_none() && !litellm_sets_any {
        return None;
    }
    let router = router.unwrap_or_default();

    fn pick<T>(
        router: Option<T>,
        litellm: Option<T>,
        router_key: &str,
        litellm_key: &str,
        warnings: &mut Vec<String>,
    ) -> Option<T> {
        if router.is_some() && litellm.is_some() {
            warnings.push(format!(
                "litellm_settings.{litellm_key}: ignored, router_settings.{router_key} takes precedence"
            ));
        }
        router.or(litellm)
    }
    // In field order, so the warnings come in a stable, readable order.
    let num_retries = pick(
        router.num_retries,
        litellm.num_retries,
        "num_retries",
        "num_retries",
        warnings,
    );
    let allowed_fails = pick(
        router.allowed_fails,
        litellm.allowed_fails,
        "allowed_fails",
        "allowed_fails",
        warnings,
    );
    let timeout = pick(
        router.timeout,
        litellm.timeout,
        "timeout",
        "request_timeout",
        warnings,
    );
    let mut list = |router: Option<Vec<Fallback>>, litellm: Option<Vec<Fallback>>, key: &str| {
        pick(router, litellm, key, key, warnings).unwrap_or_default()
    };
    let fallbacks = list(router.fallbacks, litellm.fallbacks, "fallbacks");
    let context_window_fallbacks = list(
        router.context_window_fallbacks,
        litellm.context_window_fallbacks,
        "context_window_fallbacks",
    );
    let content_policy_fallbacks = list(
        router.content_policy_fallbacks,
        litellm.content_policy_fallbacks,
        "content_policy_fallbacks",
    );
    let default_fallbacks = pick(
        router.default_fallbacks,
        litellm.default_fallbacks,
        "default_fallbacks",
        "default_fallbacks",
        warnings,
    )
    .unwrap_or_default();

    Some(RouterSettings {
        routing_strategy: router.routing_strategy.unwrap_or_default(),
        num_retries,
        allowed_fails,
        cooldown_time: router.cooldown_time,
        timeout,
        fallbacks,
        context_window_fallbacks,
        content_policy_fallbacks,
        default_fallbacks,
        revision: 0,
        retry_policy: router.retry_policy,
        allowed_fails_policy: router.allowed_fails_policy,
        max_fallbacks: router.max_fallbacks,
        enable_pre_call_checks: router.enable_pre_call_checks.unwrap_or_default(),
        lowest_latency_buffer: router.lowest_latency_buffer,
    })
}

/// LiteLLM's shape: `[{"gpt-4o": ["gpt-4o-mini", "claude"]}, ...]`, in order.
fn fallbacks(value: &Value, path: &str) -> Result<Option<Vec<Fallback>>, ImportError> {
    let items = match value {
        Value::Null => return Ok(None),
        Value::Sequence(items) => items,
        other => {
            return Err(invalid(
                path,
                format!(
                    "expected a list like [{{\"gpt-4o\": [\"gpt-4o-mini\"]}}], found {}",
                    found(other)
                ),
            ));
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Value::Mapping(map) = item else {
            return Err(invalid(
                item_path,
                format!(
                    "expected a mapping like {{\"gpt-4o\": [\"gpt-4o-mini\"]}}, found {}",
                    found(item)
                ),
            ));
        };
        // One mapping may name several groups; each is its own fallback, in order.
        for (group, targets) in map {
            let group_path = child(&item_path, group);
            let Some(model_group) = group.as_str().filter(|g| !g.is_empty()) else {
                return Err(invalid(
                    group_path,
                    "expected a model group name as the key",
                ));
            };
            let fallbacks = string_list(targets, &group_path)?.unwrap_or_default();
            out.push(Fallback {
                model_group: model_group.to_owned(),
                fallbacks,
            });
        }
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------------------
// Export
//
// Written by hand rather than through serde_yaml_ng because LiteLLM reads the
// file with PyYAML (YAML 1.1), where an unquoted `2024-10-21` is a date and
// `on` a boolean; every string that could be read as anything else is quoted.

/// A YAML tree whose scalars are already rendered.
enum Node {
    Scalar(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn string(s: &str) -> Node {
        Node::Scalar(yaml_string(s))
    }

    fn strings(items: &[String]) -> Node {
        Node::List(items.iter().map(|s| Node::string(s)).collect())
    }
}

/// The entry for one deployment, and whether a secret of it (its api_key,
/// an AWS secret key or session token, an Azure client secret or token)
/// was redacted.
fn deployment_node(d: &Deployment, include_secrets: bool) -> (Node, bool) {
    let mut params = Vec::new();
    let model = if d.provider.is_empty() {
        d.model.clone()
    } else {
        format!("{}/{}", d.provider, d.model)
    };
    params.push(("model".to_owned(), Node::string(&model)));
    put_string(&mut params, "api_base", &d.api_base);
    let literal = |secret: &str| !secret.is_empty() && !secret_is_reference(secret);
    let redact = !include_secrets && literal(&d.api_key);
    let vertex = d.provider == "vertex_ai";
    put_string(
        &mut params,
        if vertex {
            "vertex_credentials"
        } else {
            "api_key"
        },
        if redact { REDACTED } else { &d.api_key },
    );
    put_string(&mut params, "api_version", &d.api_version);
    put_string(&mut params, "vertex_project", &d.vertex_project);
    put_string(&mut params, "vertex_location", &d.vertex_location);
    put_string(&mut params, "aws_region_name", &d.aws_region_name);
    put_string(&mut params, "aws_access_key_id", &d.aws_access_key_id);
    put_string(&mut params, "tenant_id", &d.azure_tenant_id);
    put_string(&mut params, "client_id", &d.azure_client_id);
    let mut redacted = redact;
    for (name, secret) in [
        ("aws_secret_access_key", &d.aws_secret_access_key),
        ("aws_session_token", &d.aws_session_token),
        ("client_secret", &d.azure_client_secret),
        ("azure_ad_token", &d.azure_ad_token),
    ] {
        let hide = !include_secrets && literal(secret);
        redacted |= hide;
        put_string(&mut params, name, if hide { REDACTED } else { secret });
    }
    put_count(&mut params, "rpm", d.rpm);
    put_count(&mut params, "tpm", d.tpm);
    put_count(&mut params, "weight", u64::from(d.weight));
    if let Some(timeout) = &d.timeout {
        params.push(("timeout".to_owned(), seconds_node(timeout)));
    }
    if let Some(timeout) = &d.stream_timeout {
        params.push(("stream_timeout".to_owned(), seconds_node(timeout)));
    }
    put_count(&mut params, "order", u64::from(d.order));
    put_price(&mut params, "input_cost_per_token", d.input_cost_per_token);
    put_price(
        &mut params,
        "output_cost_per_token",
        d.output_cost_per_token,
    );
    put_price(
        &mut params,
        "output_cost_per_image",
        d.output_cost_per_image,
    );
    for (name, price) in [
        ("cache_read_input_token_cost", d.cache_read_input_token_cost),
        (
            "cache_creation_input_token_cost",
            d.cache_creation_input_token_cost,
        ),
    ] {
        if let Some(p) = price {
            params.push((name.to_owned(), Node::Scalar(yaml_float(p))));
        }
    }

    let mut info = Vec::new();
    put_string(&mut info, "id", &d.id);
    if !d.access_groups.is_empty() {
        info.push(("access_groups".to_owned(), Node::strings(&d.access_groups)));
    }
    if d.credits_per_call != 0 {
        info.push((
            "credits_per_call".to_owned(),
            Node::Scalar(d.credits_per_call.to_string()),
        ));
    }
    if let Some(n) = d.max_input_tokens {
        info.push(("max_input_tokens".to_owned(), Node::Scalar(n.to_string())));
    }
    if !d.supported_endpoints.is_empty() {
        info.push((
            "supported_endpoints".to_owned(),
            Node::strings(&d.supported_endpoints),
        ));
    }

    let mut entry = vec![
        ("model_name".to_owned(), Node::string(&d.model_name)),
        ("litellm_params".to_owned(), Node::Map(params)),
    ];
    if !info.is_empty() {
        entry.push(("model_info".to_owned(), Node::Map(info)));
    }
    (Node::Map(entry), redacted)
}

fn router_node(r: &RouterSettings) -> Node {
    let mut map = Vec::new();
    put_string(&mut map, "routing_strategy", &r.routing_strategy);
    if let Some(buffer) = r.lowest_latency_buffer {
        map.push((
            "routing_strategy_args".to_owned(),
            Node::Map(vec![(
                "lowest_latency_buffer".to_owned(),
                Node::Scalar(yaml_float(buffer)),
            )]),
        ));
    }
    if let Some(n) = r.num_retries {
        map.push(("num_retries".to_owned(), Node::Scalar(n.to_string())));
    }
    if let Some(policy) = &r.retry_policy {
        let mut policy = *policy;
        map.push((
            "retry_policy".to_owned(),
            per_class_node(&mut policy, &RETRY_CLASSES),
        ));
    }
    if let Some(timeout) = &r.timeout {
        map.push(("timeout".to_owned(), seconds_node(timeout)));
    }
    if let Some(n) = r.allowed_fails {
        map.push(("allowed_fails".to_owned(), Node::Scalar(n.to_string())));
    }
    if let Some(policy) = &r.allowed_fails_policy {
        let mut policy = *policy;
        map.push((
            "allowed_fails_policy".to_owned(),
            per_class_node(&mut policy, &ALLOWED_FAILS_CLASSES),
        ));
    }
    if let Some(cooldown) = &r.cooldown_time {
        map.push(("cooldown_time".to_owned(), seconds_node(cooldown)));
    }
    if let Some(n) = r.max_fallbacks {
        map.push(("max_fallbacks".to_owned(), Node::Scalar(n.to_string())));
    }
    if r.enable_pre_call_checks {
        map.push((
            "enable_pre_call_checks".to_owned(),
            Node::Scalar("true".into()),
        ));
    }
    for (key, list) in [
        ("fallbacks", &r.fallbacks),
        ("context_window_fallbacks", &r.context_window_fallbacks),
        ("content_policy_fallbacks", &r.content_policy_fallbacks),
    ] {
        if !list.is_empty() {
            let items = list
                .iter()
                .map(|f| Node::Map(vec![(f.model_group.clone(), Node::strings(&f.fallbacks))]))
                .collect();
            map.push((key.to_owned(), Node::List(items)));
        }
    }
    if !r.default_fallbacks.is_empty() {
        map.push((
            "default_fallbacks".to_owned(),
            Node::strings(&r.default_fallbacks),
        ));
    }
    Node::Map(map)
}

/// A policy's set classes by LiteLLM's names (an empty policy is `{}`, which
/// reads back as the same empty policy).
fn per_class_node<P>(policy: &mut P, classes: &[Class<P>]) -> Node {
    Node::Map(
        classes
            .iter()
            .filter_map(|(name, field)| {
                field(policy).map(|n| ((*name).to_owned(), Node::Scalar(n.to_string())))
            })
            .collect(),
    )
}

/// Whole seconds as an integer, anything finer as a decimal, which is how
/// LiteLLM configs write timeouts; [`duration_from_secs`] reads it back exactly.
fn seconds_node(d: &Duration) -> Node {
    if d.nanos == 0 {
        return Node::Scalar(d.seconds.to_string());
    }
    let text = format!("{}.{:09}", d.seconds, d.nanos.unsigned_abs());
    let text = text.trim_end_matches('0');
    // A negative Duration cannot come from `parse`; written with its sign so
    // the import refuses it instead of reading something else.
    if d.seconds < 0 || d.nanos < 0 {
        Node::Scalar(format!("-{}", text.trim_start_matches('-')))
    } else {
        Node::Scalar(text.to_owned())
    }
}

fn put_string(map: &mut Vec<(String, Node)>, key: &str, value: &str) {
    if !value.is_empty() {
        map.push((key.to_owned(), Node::string(value)));
    }
}

fn put_count(map: &mut Vec<(String, Node)>, key: &str, value: u64) {
    if value != 0 {
        map.push((key.to_owned(), Node::Scalar(value.to_string())));
    }
}

fn put_price(map: &mut Vec<(String, Node)>, key: &str, value: f64) {
    if value != 0.0 {
        map.push((key.to_owned(), Node::Scalar(yaml_float(value))));
    }
}

/// Rust prints the shortest decimal that reads back as the same f64, and
/// never in exponent form, which PyYAML would read as a string (`1e-7`).
fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else {
        f.to_string()
    }
}

/// Plain when every YAML reader, YAML 1.1 included, reads it back as this
/// same string; double-quoted otherwise.
fn yaml_string(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Control characters, and what YAML treats as line breaks or a BOM.
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_map(out: &mut String, entries: &[(String, Node)], indent: usize) {
    for (key, value) in entries {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_string(key));
        out.push(':');
        write_value(out, value, indent);
    }
}

/// Writes what follows a `key:` or `-`: on the same line for scalars and
/// lists of scalars (`[a, b]`), indented below for the rest.
fn write_value(out: &mut String, value: &Node, indent: usize) {
    match value {
        Node::Scalar(s) => {
            out.push(' ');
            out.push_str(s);
            out.push('\n');
        }
        Node::List(items) if items.iter().all(|i| matches!(i, Node::Scalar(_))) => {
            let items: Vec<&str> = items
                .iter()
                .filter_map(|i| match i {
                    Node::Scalar(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect();
            out.push_str(&format!(" [{}]\n", items.join(", ")));
        }
        Node::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Node::Map(entries) => {
            out.push('\n');
            write_map(out, entries, indent + 2);
        }
        Node::List(items) => {
            out.push('\n');
            for item in items {
                write_item(out, item, indent + 2);
            }
        }
    }
}

fn write_item(out: &mut String, item: &Node, indent: usize) {
    match item {
        // A mapping's first key shares the dash's line, LiteLLM-docs style.
        Node::Map(entries) if !entries.is_empty() => {
            let mut block = String::new();
            write_map(&mut block, entries, indent + 2);
            out.push_str(&" ".repeat(indent));
            out.push_str("- ");
            out.push_str(block.get(indent + 2..).unwrap_or_default());
        }
        other => {
            out.push_str(&" ".repeat(indent));
            out.push('-');
            write_value(out, other, indent);
        }
    }
}

// ---------------------------------------------------------------------------
// Reading values. Null reads as "not set" throughout: `api_base:` with nothing
// after it is how YAML templates leave a field empty.

fn mapping<'a>(value: &'a Value, path: &str) -> Result<&'a Mapping, ImportError> {
    match value {
        Value::Mapping(map) => Ok(map),
        other => Err(invalid(
            path,
            format!("expected a mapping, found {}", found(other)),
        )),
    }
}

fn string(value: &Value, path: &str) -> Result<Option<String>, ImportError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(invalid(
            path,
            format!("expected a string, found {}", found(other)),
        )),
    }
}

fn string_list(value: &Value, path: &str) -> Result<Option<Vec<String>>, ImportError> {
    let items = match value {
        Value::Null => return Ok(None),
        Value::Sequence(items) => items,
        other => {
            return Err(invalid(
                path,
                format!("expected a list of strings, found {}", found(other)),
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            other => Err(invalid(
                format!("{path}[{i}]"),
                format!("expected a non-empty string, found {}", found(other)),
            )),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A non-negative integer; a float with no fractional part (`1e3`, `100.0`) counts.
fn count(value: &Value, path: &str) -> Result<Option<u64>, ImportError> {
    let Value::Number(n) = value else {
        return match value {
            Value::Null => Ok(None),
            other => Err(invalid(
                path,
                format!("expected a non-negative integer, found {}", found(other)),
            )),
        };
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    // 2^64 as f64; every integral f64 below it fits in a u64.
    const U64_LIMIT: f64 = 18_446_744_073_709_551_616.0;
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..U64_LIMIT).contains(&f) => Ok(Some(f as u64)),
        _ if is_negative(n) => Err(invalid(path, format!("must not be negative, found {n}"))),
        _ => Err(invalid(
            path,
            format!("expected a non-negative integer, found {n}"),
        )),
    }
}

fn count_u32(value: &Value, path: &str) -> Result<Option<u32>, ImportError> {
    count(value, path)?
        .map(|n| {
            u32::try_from(n).map_err(|_| invalid(path, format!("must be at most {}", u32::MAX)))
        })
        .transpose()
}

fn boolean(value: &Value, path: &str) -> Result<Option<bool>, ImportError> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(invalid(
            path,
            format!("expected true or false, found {}", found(other)),
        )),
    }
}

/// A non-negative, finite number such as `0.5` (LiteLLM's
/// `lowest_latency_buffer`: 0.5 means up to 50% slower than the fastest).
fn fraction(value: &Value, path: &str) -> Result<Option<f64>, ImportError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
            _ => Err(invalid(
                path,
                format!("expected a non-negative number, found {n}"),
            )),
        },
        other => Err(invalid(
            path,
            format!(
                "expected a non-negative number (e.g. 0.5), found {}",
                found(other)
            ),
        )),
    }
}

/// USD per token.
fn price(value: &Value, path: &str) -> Result<Option<f64>, ImportError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
            _ => Err(invalid(
                path,
                format!("expected a non-negative price in USD per token, found {n}"),
            )),
        },
        other => Err(invalid(
            path,
            format!(
                "expected a price in USD per token (e.g. 0.0000025), found {}",
                found(other)
            ),
        )),
    }
}

/// Seconds, written as an integer or a decimal.
fn seconds(value: &Value, path: &str) -> Result<Option<Duration>, ImportError> {
    let n = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => n,
        other => {
            return Err(invalid(
                path,
                format!("expected a number of seconds, found {}", found(other)),
            ));
        }
    };
    let too_large = || {
        invalid(
            path,
            format!("must be at most {MAX_DURATION_SECONDS} seconds, found {n}"),
        )
    };
    if let Some(u) = n.as_u64() {
        let seconds = i64::try_from(u)
            .ok()
            .filter(|_| u <= MAX_DURATION_SECONDS)
            .ok_or_else(too_large)?;
        return Ok(Some(Duration { seconds, nanos: 0 }));
    }
    if is_negative(n) {
        return Err(invalid(path, format!("must not be negative, found {n}")));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f <= MAX_DURATION_SECONDS as f64 => duration_from_secs(f)
            .map(Some)
            .ok_or_else(|| invalid(path, format!("cannot read {n} as seconds"))),
        Some(f) if f.is_finite() => Err(too_large()),
        _ => Err(invalid(
            path,
            format!("expected a number of seconds, found {n}"),
        )),
    }
}

/// Reads non-negative, finite seconds through their shortest decimal form, so
/// that `0.1` is exactly 100ms rather than 100ms less the binary rounding
/// error, and an exported timeout reads back identical. Digits past
/// nanoseconds are dropped.
fn duration_from_secs(secs: f64) -> Option<Duration> {
    // `Display` for f64 never uses exponent notation.
    let text = secs.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let seconds = whole.parse::<i64>().ok()?;
    let nanos_text: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    let nanos = nanos_text.parse::<i32>().ok()?;
    Some(Duration { seconds, nanos })
}

fn is_negative(n: &Number) -> bool {
    n.as_i64().is_some_and(|i| i < 0) || n.as_f64().is_some_and(|f| f < 0.0)
}

/// How a value is named in an error: its kind, and the value itself when short.
fn found(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        _ => "<non-scalar key>".to_owned(),
    }
}

fn child(path: &str, key: &Value) -> String {
    format!("{path}.{}", key_name(key))
}

fn unsupported(path: &str) -> String {
    format!("{path}: not supported, ignored")
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

fn yaml_error(e: serde_yaml_ng::Error) -> ImportError {
    let (line, column) = e.location().map_or((0, 0), |at| (at.line(), at.column()));
    ImportError::Yaml {
        line,
        column,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = include_str!("../tests/fixtures/litellm/full.yaml");

    fn secs(seconds: i64, nanos: i32) -> Option<Duration> {
        Some(Duration { seconds, nanos })
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn fallback(group: &str, targets: &[&str]) -> Fallback {
        Fallback {
            model_group: group.to_owned(),
            fallbacks: strings(targets),
        }
    }

    fn parse_ok(yaml: &str) -> Imported {
        match parse(yaml) {
            Ok(imported) => imported,
            Err(e) => panic!("expected {yaml:?} to parse, got {e}"),
        }
    }

    /// The path and message of the `Invalid` error `yaml` must produce.
    fn invalid_at(yaml: &str) -> (String, String) {
        match parse(yaml) {
            Err(ImportError::Invalid { path, message }) => (path, message),
            other => panic!("expected Invalid for {yaml:?}, got {other:?}"),
        }
    }

    #[test]
    fn full_config_imports_every_field() {
        let imported = parse_ok(FULL);

        let expected = vec![
            Deployment {
                id: "openai-gpt-4o".into(),
                model_name: "gpt-4o".into(),
                provider: "openai".into(),
                model: "gpt-4o".into(),
                api_key: "os.environ/OPENAI_API_KEY".into(),
                rpm: 600,
                tpm: 150_000,
                weight: 3,
                timeout: secs(30, 0),
                order: 1,
                input_cost_per_token: 0.0000025,
                output_cost_per_token: 0.00001,
                access_groups: strings(&["gpt-family", "beta-models"]),
                credits_per_call: 2,
                max_input_tokens: Some(128_000),
                ..Default::default()
            },
            Deployment {
                id: "gpt-4o-23629b12".into(),
                model_name: "gpt-4o".into(),
                provider: "azure".into(),
                model: "prod-gpt-4o".into(),
                api_base: "os.environ/AZURE_API_BASE".into(),
                api_key: "os.environ/AZURE_API_KEY".into(),
                api_version: "2024-10-21".into(),
                rpm: 300,
                weight: 1,
                timeout: secs(12, 500_000_000),
                stream_timeout: secs(60, 0),
                order: 2,
                input_cost_per_token: 2.75e-6,
                output_cost_per_token: 1.1e-5,
                access_groups: strings(&["gpt-family"]),
                ..Default::default()
            },
            Deployment {
                id: "llama3-8b-faa4b8dc".into(),
                model_name: "llama3-8b".into(),
                provider: "groq".into(),
                model: "llama3-8b-8192".into(),
                api_key: "gsk_literal_key".into(),
                tpm: 30_000,
                access_groups: strings(&["open-models"]),
                ..Default::default()
            },
            Deployment {
                id: "gpt-4o-mini-7bcf0d31".into(),
                model_name: "gpt-4o-mini".into(),
                provider: "openai".into(),
                model: "gpt-4o-mini".into(),
                api_key: "sk-literal".into(),
                ..Default::default()
            },
            Deployment {
                id: "local-llama-def510f3".into(),
                model_name: "Local Llama".into(),
                provider: "hosted_vllm".into(),
                model: "meta-llama/Llama-3.1-8B-Instruct".into(),
                api_base: "http://vllm.internal:8000/v1".into(),
                ..Default::default()
            },
            Deployment {
                id: "fake-74fc9c8f".into(),
                model_name: "fake".into(),
                provider: "mock".into(),
                model: "anything".into(),
                ..Default::default()
            },
        ];
        assert_eq!(imported.deployments, expected);
        assert_eq!(
            imported.access_groups,
            strings(&["beta-models", "gpt-family", "open-models"])
        );
        assert_eq!(
            imported.router_settings,
            Some(RouterSettings {
                routing_strategy: "usage-based-routing-v2".into(),
                lowest_latency_buffer: Some(0.25),
                num_retries: Some(3),
                retry_policy: Some(RetryPolicy {
                    rate_limit_error_retries: Some(4),
                    bad_request_error_retries: Some(0),
                    ..Default::default()
                }),
                allowed_fails: Some(2),
                allowed_fails_policy: Some(AllowedFailsPolicy {
                    internal_server_error_allowed_fails: Some(20),
                    timeout_error_allowed_fails: Some(5),
                    ..Default::default()
                }),
                max_fallbacks: Some(3),
                enable_pre_call_checks: true,
                cooldown_time: secs(0, 500_000_000),
                timeout: secs(45, 0),
                fallbacks: vec![fallback("gpt-4o", &["gpt-4o-mini", "llama3-8b"])],
                context_window_fallbacks: vec![
                    fallback("gpt-4o-mini", &["gpt-4o"]),
                    fallback("llama3-8b", &["gpt-4o"]),
                ],
                content_policy_fallbacks: vec![fallback("gpt-4o", &["Local Llama"])],
                default_fallbacks: strings(&["fake"]),
                revision: 0,
            })
        );
        assert_eq!(
            imported.warnings,
            strings(&[
                "model_list[1].model_info.mode: not supported, ignored",
                "model_list[3].litellm_params.max_retries: not supported, ignored",
                "model_list[3].tags: not supported, ignored",
                "router_settings.routing_strategy_args.ttl: not supported, ignored",
                "router_settings.retry_policy.NotFoundErrorRetries: not supported, ignored",
                "router_settings.redis_host: not supported, ignored",
                "litellm_settings.cooldown_time: LiteLLM reads it only under router_settings; ignored",
                "litellm_settings.drop_params: not supported, ignored",
                "litellm_settings.success_callback: not supported, ignored",
                "general_settings: not supported, ignored",
                "environment_variables: not supported, ignored",
                "litellm_settings.num_retries: ignored, router_settings.num_retries takes precedence",
                "litellm_settings.allowed_fails: ignored, router_settings.allowed_fails takes precedence",
                "litellm_settings.request_timeout: ignored, router_settings.timeout takes precedence",
            ])
        );
    }

    #[test]
    fn litellm_settings_alone_supply_retries_timeout_and_every_fallback_kind() {
        let imported = parse_ok(
            r#"
litellm_settings:
  num_retries: 2
  allowed_fails: 4
  request_timeout: 10.25
  fallbacks: [{"gpt-4o": ["gpt-4o-mini"]}, {"claude": ["gpt-4o"]}]
  context_window_fallbacks: [{"gpt-4o-mini": ["gpt-4o"]}]
  content_policy_fallbacks: [{"claude": ["gpt-4o-mini"]}]
  default_fallbacks: ["gpt-4o-mini"]
  set_verbose: true
"#,
        );
        assert_eq!(
            imported.router_settings,
            Some(RouterSettings {
                num_retries: Some(2),
                allowed_fails: Some(4),
                timeout: secs(10, 250_000_000),
                fallbacks: vec![
                    fallback("gpt-4o", &["gpt-4o-mini"]),
                    fallback("claude", &["gpt-4o"]),
                ],
                context_window_fallbacks: vec![fallback("gpt-4o-mini", &["gpt-4o"])],
                content_policy_fallbacks: vec![fallback("claude", &["gpt-4o-mini"])],
                default_fallbacks: strings(&["gpt-4o-mini"]),
                ..Default::default()
            })
        );
        assert_eq!(
            imported.warnings,
            strings(&["litellm_settings.set_verbose: not supported, ignored"])
        );
        assert!(imported.deployments.is_empty());
    }

    #[test]
    fn router_settings_win_over_litellm_settings_per_key() {
        let imported = parse_ok(
            r#"
litellm_settings:
  fallbacks: [{"a": ["from-litellm"]}]
  default_fallbacks: [from-litellm]
  context_window_fallbacks: [{"a": ["only-in-litellm"]}]
router_settings:
  fallbacks: [{"a": ["from-router"]}]
  default_fallbacks: [from-router]
"#,
        );
        let router = imported.router_settings.unwrap_or_default();
        assert_eq!(router.fallbacks, vec![fallback("a", &["from-router"])]);
        assert_eq!(router.default_fallbacks, strings(&["from-router"]));
        // A key only litellm_settings sets still counts.
        assert_eq!(
            router.context_window_fallbacks,
            vec![fallback("a", &["only-in-litellm"])]
        );
        assert_eq!(
            imported.warnings,
            strings(&[
                "litellm_settings.fallbacks: ignored, router_settings.fallbacks takes precedence",
                "litellm_settings.default_fallbacks: ignored, router_settings.default_fallbacks takes precedence",
            ])
        );
    }

    #[test]
    fn order_zero_reads_as_unset_with_a_warning() {
        let imported = parse_ok(
            "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a, order: 0}\n",
        );
        assert_eq!(imported.deployments[0].order, 0);
        assert_eq!(
            imported.warnings,
            strings(&[
                "model_list[0].litellm_params.order: 0 read as unset (ranked after every set order); orders start at 1"
            ])
        );
        // Unset is not written back, so the export reads back warning-free.
        let text = export(&imported.deployments, None, true);
        assert!(!text.contains("order"), "{text}");
        assert_eq!(parse_ok(&text).warnings, Vec::<String>::new());
    }

    #[test]
    fn router_only_keys_under_litellm_settings_are_warned_about_not_read() {
        let imported = parse_ok(
            "litellm_settings:\n  retry_policy: {RateLimitErrorRetries: 1}\n  max_fallbacks: 2\n  routing_strategy: least-busy\n",
        );
        // Nothing LiteLLM would read there, so nothing about routing at all.
        assert_eq!(imported.router_settings, None);
        assert_eq!(
            imported.warnings,
            strings(&[
                "litellm_settings.retry_policy: LiteLLM reads it only under router_settings; ignored",
                "litellm_settings.max_fallbacks: LiteLLM reads it only under router_settings; ignored",
                "litellm_settings.routing_strategy: LiteLLM reads it only under router_settings; ignored",
            ])
        );
    }

    #[test]
    fn router_settings_are_none_only_when_the_file_says_nothing_about_routing() {
        let models_only = "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n";
        assert_eq!(parse_ok(models_only).router_settings, None);

        let unrelated = parse_ok("litellm_settings:\n  drop_params: true\n");
        assert_eq!(unrelated.router_settings, None);
        assert_eq!(
            unrelated.warnings,
            strings(&["litellm_settings.drop_params: not supported, ignored"])
        );

        // An explicit section means "these settings", defaults included.
        assert_eq!(
            parse_ok("router_settings: {}\n").router_settings,
            Some(RouterSettings::default())
        );
        assert_eq!(
            parse_ok("router_settings:\n  redis_host: r\n").router_settings,
            Some(RouterSettings::default())
        );
    }

    #[test]
    fn export_then_parse_reproduces_the_import_exactly() {
        let first = parse_ok(FULL);
        let text = export(&first.deployments, first.router_settings.as_ref(), true);
        let second = parse_ok(&text);
        assert_eq!(second.deployments, first.deployments);
        assert_eq!(second.router_settings, first.router_settings);
        assert_eq!(second.access_groups, first.access_groups);
        // Export writes only what it understands, so nothing is left to warn about.
        assert_eq!(second.warnings, Vec::<String>::new());
        // And the text is a fixed point.
        assert_eq!(
            export(&second.deployments, second.router_settings.as_ref(), true),
            text
        );
    }

    #[test]
    fn export_round_trips_values_made_through_the_admin_api() {
        let stored = Deployment {
            id: "x.y_z-1".into(),
            // YAML 1.1 would read these unquoted as a boolean, a number, a date.
            model_name: "on".into(),
            provider: "openrouter".into(),
            model: "anthropic/claude-3.5-sonnet".into(),
            api_base: "https://openrouter.ai/api/v1#frag: x".into(),
            api_key: "sk-\"quoted\" \\ back\nslash\ttab é 🔑 \u{7}".into(),
            api_version: "2024-10-21".into(),
            weight: u32::MAX,
            rpm: u64::MAX,
            tpm: 1,
            timeout: secs(3, 123_456_789),
            stream_timeout: secs(0, 1),
            order: u32::MAX,
            max_input_tokens: Some(u64::MAX),
            supported_endpoints: strings(&["/v1/chat/completions", "/v1/responses"]),
            access_groups: strings(&["g1", "2024"]),
            input_cost_per_token: 1e-7,
            output_cost_per_token: 0.1 + 0.2,
            // Free cache reads are a price, distinct from unset.
            cache_read_input_token_cost: Some(0.0),
            cache_creation_input_token_cost: Some(3.75e-6),
            output_cost_per_image: 0.04,
            // Read back as strings, however YAML would read them unquoted.
            vertex_project: "2024".into(),
            vertex_location: "null".into(),
            aws_region_name: "yes".into(),
            aws_access_key_id: "0x1F".into(),
            aws_secret_access_key: "~".into(),
            aws_session_token: "a: b # c".into(),
            azure_tenant_id: "123".into(),
            azure_client_id: "false".into(),
            azure_client_secret: "- x".into(),
            azure_ad_token: "'t'".into(),
            credits_per_call: i64::MAX,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            updated_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_001,
                nanos: 0,
            }),
            revision: 42,
        };
        let wildcard = Deployment {
            id: "wild".into(),
            model_name: "openai/*".into(),
            provider: "openai".into(),
            model: "*".into(),
            ..Default::default()
        };
        let router = RouterSettings {
            routing_strategy: String::new(),
            num_retries: Some(0),
            allowed_fails: None,
            cooldown_time: secs(0, 1),
            timeout: secs(600, 0),
            fallbacks: vec![
                fallback("group: with colon", &["yes", "no"]),
                fallback("group: with colon", &["null"]),
            ],
            context_window_fallbacks: vec![],
            content_policy_fallbacks: vec![fallback("a", &[])],
            default_fallbacks: strings(&["~", "- dash"]),
            revision: 7,
            // An empty policy is "set, every class at num_retries", distinct from unset.
            retry_policy: Some(RetryPolicy::default()),
            allowed_fails_policy: Some(AllowedFailsPolicy {
                bad_request_error_allowed_fails: Some(u32::MAX),
                authentication_error_allowed_fails: Some(0),
                timeout_error_allowed_fails: Some(1),
                rate_limit_error_allowed_fails: Some(2),
                content_policy_violation_error_allowed_fails: Some(3),
                internal_server_error_allowed_fails: Some(4),
            }),
            max_fallbacks: Some(0),
            enable_pre_call_checks: true,
            lowest_latency_buffer: Some(0.1 + 0.2),
        };

        let text = export(&[stored.clone(), wildcard.clone()], Some(&router), true);
        assert!(!text.contains("created_at") && !text.contains("revision"));
        let back = parse_ok(&text);
        let without_output_only = Deployment {
            created_at: None,
            updated_at: None,
            revision: 0,
            ..stored
        };
        assert_eq!(back.deployments, vec![without_output_only, wildcard]);
        assert_eq!(
            back.router_settings,
            Some(RouterSettings {
                revision: 0,
                ..router
            })
        );
        assert_eq!(back.warnings, Vec::<String>::new());

        // Default settings survive as an empty section rather than vanishing.
        let text = export(&[], Some(&RouterSettings::default()), true);
        assert_eq!(text, "model_list: []\nrouter_settings: {}\n");
        assert_eq!(
            parse_ok(&text).router_settings,
            Some(RouterSettings::default())
        );
        assert_eq!(parse_ok(&export(&[], None, true)), Imported::default());
    }

    #[test]
    fn export_writes_litellm_docs_shaped_yaml() {
        let d = Deployment {
            id: "gpt-4o-1".into(),
            model_name: "gpt-4o".into(),
            provider: "azure".into(),
            model: "prod".into(),
            api_base: "os.environ/AZURE_API_BASE".into(),
            api_key: "os.environ/AZURE_API_KEY".into(),
            api_version: "2024-10-21".into(),
            timeout: secs(12, 500_000_000),
            stream_timeout: secs(5, 0),
            order: 2,
            input_cost_per_token: 2.5e-6,
            access_groups: strings(&["beta-models"]),
            max_input_tokens: Some(128_000),
            ..Default::default()
        };
        let router = RouterSettings {
            routing_strategy: "latency-based-routing".into(),
            lowest_latency_buffer: Some(0.5),
            num_retries: Some(2),
            retry_policy: Some(RetryPolicy {
                rate_limit_error_retries: Some(3),
                internal_server_error_retries: Some(1),
                ..Default::default()
            }),
            allowed_fails_policy: Some(AllowedFailsPolicy {
                timeout_error_allowed_fails: Some(12),
                ..Default::default()
            }),
            fallbacks: vec![fallback("gpt-4o", &["gpt-4o-mini"])],
            max_fallbacks: Some(2),
            enable_pre_call_checks: true,
            ..Default::default()
        };
        assert_eq!(
            export(&[d], Some(&router), false),
            r#"model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/prod
      api_base: os.environ/AZURE_API_BASE
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-10-21"
      timeout: 12.5
      stream_timeout: 5
      order: 2
      input_cost_per_token: 0.0000025
    model_info:
      id: gpt-4o-1
      access_groups: [beta-models]
      max_input_tokens: 128000
router_settings:
  routing_strategy: latency-based-routing
  routing_strategy_args:
    lowest_latency_buffer: 0.5
  num_retries: 2
  retry_policy:
    RateLimitErrorRetries: 3
    InternalServerErrorRetries: 1
  allowed_fails_policy:
    TimeoutErrorAllowedFails: 12
  max_fallbacks: 2
  enable_pre_call_checks: true
  fallbacks:
    - gpt-4o: [gpt-4o-mini]
"#
        );
    }

    #[test]
    fn export_without_secrets_redacts_literal_keys_and_keeps_references() {
        let imported = parse_ok(FULL);
        let text = export(&imported.deployments, None, false);
        assert!(text.starts_with("# Literal api_key values are written as \"<redacted>\""));
        assert!(!text.contains("gsk_literal_key") && !text.contains("sk-literal"));
        assert!(text.contains("api_key: os.environ/OPENAI_API_KEY\n"));
        assert!(text.contains("api_key: os.environ/AZURE_API_KEY\n"));
        assert_eq!(text.matches("api_key: \"<redacted>\"\n").count(), 2);

        // Importing the redacted file back is refused at the first placeholder,
        // rather than storing a key that fails every call.
        assert_eq!(
            invalid_at(&text),
            (
                "model_list[2].litellm_params.api_key".to_owned(),
                "is \"<redacted>\" (from an export without secrets); put the key or an \
                 os.environ/NAME reference back"
                    .to_owned()
            )
        );

        // Nothing to redact: no header.
        let refs_only = export(&imported.deployments[..2], None, false);
        assert!(refs_only.starts_with("model_list:\n"));
        assert_eq!(refs_only, export(&imported.deployments[..2], None, true));
    }

    #[test]
    fn secret_is_reference_means_os_environ_prefix() {
        assert!(secret_is_reference("os.environ/OPENAI_API_KEY"));
        assert!(!secret_is_reference("sk-123"));
        assert!(!secret_is_reference("OS.ENVIRON/X"));
        assert!(!secret_is_reference(""));
    }

    #[test]
    fn ids_are_stable_and_duplicates_get_numbered_in_file_order() {
        let first: Vec<String> = parse_ok(FULL)
            .deployments
            .into_iter()
            .map(|d| d.id)
            .collect();
        let again: Vec<String> = parse_ok(FULL)
            .deployments
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(first, again);

        let yaml = r#"
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, rpm: 5}
  - model_name: gpt-4o
    litellm_params: {model: gpt-4o}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_base: "https://eu.example/v1"}
"#;
        let ids: Vec<String> = parse_ok(yaml)
            .deployments
            .into_iter()
            .map(|d| d.id)
            .collect();
        let base = &ids[0];
        assert!(base.starts_with("gpt-4o-") && base.len() == "gpt-4o-".len() + 8);
        // rpm is not part of the identity; a bare model is openai's.
        assert_eq!(ids[1], format!("{base}-2"));
        assert_eq!(ids[2], format!("{base}-3"));
        assert!(ids[3].starts_with("gpt-4o-") && ids[3].len() == base.len() && ids[3] != *base);
        assert_eq!(
            ids,
            parse_ok(yaml)
                .deployments
                .into_iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        );

        // An explicit id takes precedence; a derived id steps around it.
        let explicit = format!(
            "{yaml}  - model_name: other\n    litellm_params: {{model: mock/x}}\n    model_info: {{id: {base}}}\n"
        );
        let ids: Vec<String> = parse_ok(&explicit)
            .deployments
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids[0], format!("{base}-2"));
        assert_eq!(ids[4], *base);
    }

    #[test]
    fn derived_ids_slug_the_model_name() {
        let id_for = |name: &str| {
            let yaml = format!(
                "model_list:\n  - model_name: {name:?}\n    litellm_params: {{model: mock/m}}\n"
            );
            parse_ok(&yaml).deployments[0].id.clone()
        };
        let hash_len = 8;
        let wildcard = id_for("OpenAI/*");
        assert!(wildcard.starts_with("openai-"), "{wildcard}");
        assert_eq!(wildcard.len(), "openai-".len() + hash_len);
        let star = id_for("*");
        assert_eq!(star.len(), hash_len);
        assert!(star.chars().all(|c| c.is_ascii_hexdigit()), "{star}");
        let long = id_for(&"a".repeat(100));
        assert_eq!(long, format!("{}-{}", "a".repeat(40), &long[41..]));
        assert_eq!(
            id_for("__Claude 3.5 (Sonnet)").len(),
            "claude-3.5-sonnet-".len() + hash_len
        );
        assert!(id_for("__Claude 3.5 (Sonnet)").starts_with("claude-3.5-sonnet-"));
        for id in [wildcard, star, long, id_for("ünïcødé"), id_for("-.-")] {
            assert!(is_valid_id(&id), "{id}");
        }
    }

    #[test]
    fn malformed_yaml_reports_line_and_column() {
        let bad_indent = "model_list:\n  - model_name: a\n   litellm_params: x\n";
        match parse(bad_indent) {
            Err(ImportError::Yaml {
                line,
                column,
                message,
            }) => {
                assert_eq!((line, column), (3, 4));
                assert!(
                    message.contains("did not find expected '-' indicator"),
                    "{message}"
                );
            }
            other => panic!("expected a YAML error, got {other:?}"),
        }
        let unclosed = "router_settings:\n  fallbacks: [{\"a\": [\"b\"]}\n";
        assert!(matches!(
            parse(unclosed),
            Err(ImportError::Yaml {
                line: 3,
                column: 1,
                ..
            })
        ));
        // serde_yaml_ng places a duplicate key at the start of its mapping,
        // and names the key.
        let duplicate_key =
            "model_list:\n  - model_name: a\n    litellm_params: {}\n    model_name: b\n";
        assert_eq!(
            parse(duplicate_key),
            Err(ImportError::Yaml {
                line: 2,
                column: 5,
                message:
                    "model_list[0]: duplicate entry with key \"model_name\" at line 2 column 5"
                        .into()
            })
        );
        // Two documents in one file: the parser gives no position.
        let two_documents = "model_list: []\n---\nmodel_list: []\n";
        assert!(matches!(
            parse(two_documents),
            Err(ImportError::Yaml {
                line: 0,
                column: 0,
                ..
            })
        ));
        assert_eq!(
            parse(bad_indent).map(|_| ()).unwrap_err().to_string(),
            "not valid YAML (line 3, column 4): did not find expected '-' indicator at line 3 \
             column 4, while parsing a block collection at line 2 column 3"
        );
    }

    #[test]
    fn unknown_provider_prefix_is_refused_naming_it_and_the_known_ones() {
        let yaml = r#"
model_list:
  - model_name: ok
    litellm_params: {model: mock/ok}
  - model_name: claude
    litellm_params: {model: sagemaker/claude-endpoint}
"#;
        let (path, message) = invalid_at(yaml);
        assert_eq!(path, "model_list[1].litellm_params.model");
        assert_eq!(
            message,
            format!(
                "unknown provider prefix \"sagemaker\"; known: {}",
                providers::known_prefixes()
            )
        );
        assert!(message.contains("anthropic, azure, bedrock, deepinfra"));
        assert_eq!(
            parse(yaml).map(|_| ()).unwrap_err().to_string(),
            format!("model_list[1].litellm_params.model: {message}")
        );
    }

    #[test]
    fn unknown_keys_at_every_level_become_warnings_with_their_paths() {
        let imported = parse_ok(
            r#"
model_list:
  - model_name: a
    litellm_params:
      model: mock/a
      max_retries: 5
      input_cost_per_second: 0.1
    model_info:
      base_model: gpt-4
      id: a-1
    extra: 1
general_settings: {master_key: sk-1}
router_settings:
  redis_host: localhost
  disable_cooldowns: true
  retry_policy: {DefaultRetries: 2}
  allowed_fails_policy: {NotFoundErrorAllowedFails: 1}
litellm_settings:
  cache: true
  timeout: 5
environment_variables: {}
1: numeric key
"#,
        );
        assert_eq!(
            imported.warnings,
            strings(&[
                "model_list[0].litellm_params.max_retries: not supported, ignored",
                "model_list[0].litellm_params.input_cost_per_second: not supported, ignored",
                "model_list[0].model_info.base_model: not supported, ignored",
                "model_list[0].extra: not supported, ignored",
                "general_settings: not supported, ignored",
                "router_settings.redis_host: not supported, ignored",
                "router_settings.disable_cooldowns: not supported, ignored",
                "router_settings.retry_policy.DefaultRetries: not supported, ignored",
                "router_settings.allowed_fails_policy.NotFoundErrorAllowedFails: not supported, ignored",
                "litellm_settings.cache: not supported, ignored",
                "litellm_settings.timeout: LiteLLM reads it only under router_settings; ignored",
                "environment_variables: not supported, ignored",
                "1: not supported, ignored",
            ])
        );
        assert_eq!(imported.deployments[0].id, "a-1");
    }

    #[test]
    fn a_model_without_prefix_is_openais() {
        let imported = parse_ok(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: gpt-4o\n",
        );
        let d = &imported.deployments[0];
        assert_eq!(
            (d.provider.as_str(), d.model.as_str()),
            ("openai", "gpt-4o")
        );
        assert_eq!(imported.warnings, Vec::<String>::new());
    }

    #[test]
    fn a_gemini_model_is_googles_with_its_default_base() {
        let imported = parse_ok(
            r#"
model_list:
  - model_name: gemini-flash
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_key: os.environ/GEMINI_API_KEY
"#,
        );
        let d = &imported.deployments[0];
        assert_eq!(
            (d.provider.as_str(), d.model.as_str(), d.api_base.as_str()),
            ("gemini", "gemini-2.5-flash", "")
        );
        assert_eq!(d.api_key, "os.environ/GEMINI_API_KEY");
        assert_eq!(imported.warnings, Vec::<String>::new());
        assert_eq!(
            providers::lookup("gemini").and_then(|p| p.default_api_base),
            Some("https://generativelanguage.googleapis.com/v1beta/openai")
        );
    }

    #[test]
    fn a_vertex_model_takes_its_project_location_and_credentials() {
        let yaml = r#"
model_list:
  - model_name: gemini-pro
    litellm_params:
      model: vertex_ai/gemini-2.5-pro
      vertex_project: my-project
      vertex_location: europe-west4
      vertex_credentials: os.environ/VERTEX_CREDENTIALS
"#;
        let imported = parse_ok(yaml);
        let d = &imported.deployments[0];
        assert_eq!(
            (d.provider.as_str(), d.model.as_str()),
            ("vertex_ai", "gemini-2.5-pro")
        );
        assert_eq!(
            (d.vertex_project.as_str(), d.vertex_location.as_str()),
            ("my-project", "europe-west4")
        );
        assert_eq!(d.api_key, "os.environ/VERTEX_CREDENTIALS");
        assert_eq!(imported.warnings, Vec::<String>::new());
        // Exported as LiteLLM writes it, and read back the same.
        let exported = export(&imported.deployments, None, false);
        assert!(
            exported.contains("vertex_credentials: os.environ/VERTEX_CREDENTIALS"),
            "{exported}"
        );
        assert!(!exported.contains("api_key"), "{exported}");
        assert_eq!(parse_ok(&exported).deployments, imported.deployments);
    }

    #[test]
    fn an_azure_model_takes_its_own_service_principal_or_token() {
        let yaml = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-team-a
      api_base: https://team-a.openai.azure.com
      tenant_id: os.environ/TEAM_A_TENANT
      client_id: 0b6c2b5e-1d1a-4c8e-9d3b-1a2b3c4d5e6f
      client_secret: Xy8Q~a-literal-client-secret
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt-4o-team-b
      api_base: https://team-b.openai.azure.com
      azure_ad_token: os.environ/TEAM_B_TOKEN
"#;
        let imported = parse_ok(yaml);
        let (a, b) = (&imported.deployments[0], &imported.deployments[1]);
        assert_eq!(a.azure_tenant_id, "os.environ/TEAM_A_TENANT");
        assert_eq!(a.azure_client_id, "0b6c2b5e-1d1a-4c8e-9d3b-1a2b3c4d5e6f");
        assert_eq!(a.azure_client_secret, "Xy8Q~a-literal-client-secret");
        assert_eq!(b.azure_ad_token, "os.environ/TEAM_B_TOKEN");
        assert_eq!(imported.warnings, Vec::<String>::new());
        let exported = export(&imported.deployments, None, false);
        assert!(!exported.contains("literal-client-secret"), "{exported}");
        assert!(
            exported.contains("client_secret: \"<redacted>\""),
            "{exported}"
        );
        assert!(
            exported.contains("azure_ad_token: os.environ/TEAM_B_TOKEN"),
            "{exported}"
        );
        let with_secrets = export(&imported.deployments, None, true);
        assert_eq!(parse_ok(&with_secrets).deployments, imported.deployments);
    }

    #[test]
    fn a_bedrock_model_takes_its_region_keys_and_endpoint() {
        let yaml = r#"
model_list:
  - model_name: claude
    litellm_params:
      model: bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0
      aws_region_name: us-west-2
      aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID
      aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
      aws_session_token: os.environ/AWS_SESSION_TOKEN
      aws_bedrock_runtime_endpoint: https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com
"#;
        let imported = parse_ok(yaml);
        let d = &imported.deployments[0];
        assert_eq!(
            (d.provider.as_str(), d.model.as_str()),
            ("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0")
        );
        assert_eq!(d.aws_region_name, "us-west-2");
        assert_eq!(d.aws_access_key_id, "os.environ/AWS_ACCESS_KEY_ID");
        assert_eq!(
            d.aws_secret_access_key,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(d.aws_session_token, "os.environ/AWS_SESSION_TOKEN");
        assert_eq!(
            d.api_base,
            "https://vpce-1.bedrock-runtime.us-west-2.vpce.amazonaws.com"
        );
        assert_eq!(imported.warnings, Vec::<String>::new());
        // The literal secret key leaves only when asked for.
        let exported = export(&imported.deployments, None, false);
        assert!(!exported.contains("EXAMPLEKEY"), "{exported}");
        assert!(
            exported.contains("aws_secret_access_key: \"<redacted>\""),
            "{exported}"
        );
        assert!(exported.starts_with("# Literal"), "{exported}");
        let with_secrets = export(&imported.deployments, None, true);
        assert_eq!(parse_ok(&with_secrets).deployments, imported.deployments);
    }

    #[test]
    fn prices_in_both_places_prefer_litellm_params() {
        let imported = parse_ok(
            r#"
model_list:
  - model_name: a
    litellm_params: {model: mock/a, input_cost_per_token: 0.000001}
    model_info: {input_cost_per_token: 0.000002, output_cost_per_token: 0.000003}
"#,
        );
        let d = &imported.deployments[0];
        assert_eq!(d.input_cost_per_token, 0.000001);
        assert_eq!(d.output_cost_per_token, 0.000003);
        assert_eq!(
            imported.warnings,
            strings(&[
                "model_list[0].model_info.input_cost_per_token: ignored, model_list[0].litellm_params.input_cost_per_token takes precedence"
            ])
        );
    }

    #[test]
    fn a_price_per_image_is_read_in_either_place() {
        let imported = parse_ok(
            r#"
model_list:
  - model_name: dall-e-3
    litellm_params: {model: openai/dall-e-3, output_cost_per_image: 0.04}
  - model_name: imagen
    litellm_params: {model: openai/imagen}
    model_info: {output_cost_per_image: 0.02}
"#,
        );
        assert_eq!(imported.deployments[0].output_cost_per_image, 0.04);
        assert_eq!(imported.deployments[1].output_cost_per_image, 0.02);
        assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    }

    #[test]
    fn cache_prices_are_read_in_either_place_and_unset_stays_unset() {
        let imported = parse_ok(
            r#"
model_list:
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      input_cost_per_token: 0.000003
      cache_read_input_token_cost: 0.0000003
    model_info:
      cache_read_input_token_cost: 0.000001
      cache_creation_input_token_cost: 0.00000375
  - model_name: plain
    litellm_params: {model: mock/a, input_cost_per_token: 0.000001}
"#,
        );
        let claude = &imported.deployments[0];
        assert_eq!(claude.cache_read_input_token_cost, Some(3e-7));
        assert_eq!(claude.cache_creation_input_token_cost, Some(3.75e-6));
        assert_eq!(
            imported.warnings,
            strings(&[
                "model_list[0].model_info.cache_read_input_token_cost: ignored, model_list[0].litellm_params.cache_read_input_token_cost takes precedence"
            ])
        );
        let plain = &imported.deployments[1];
        assert_eq!(plain.cache_read_input_token_cost, None);
        assert_eq!(plain.cache_creation_input_token_cost, None);
        let bad = parse(
            "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a, cache_creation_input_token_cost: -1}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("model_list[0].litellm_params.cache_creation_input_token_cost"),
            "{bad}"
        );
    }

    #[test]
    fn numbers_are_read_as_written_ints_or_floats() {
        let imported = parse_ok(
            r#"
model_list:
  - model_name: a
    litellm_params: {model: mock/a, rpm: 1e3, tpm: 2000.0, timeout: 0.1, input_cost_per_token: 0}
router_settings: {timeout: 1.000000001, cooldown_time: 60}
"#,
        );
        let d = &imported.deployments[0];
        assert_eq!((d.rpm, d.tpm), (1000, 2000));
        // Exactly 100ms, not 100ms less the binary rounding error of 0.1.
        assert_eq!(d.timeout, secs(0, 100_000_000));
        assert_eq!(d.input_cost_per_token, 0.0);
        let router = imported.router_settings.unwrap_or_default();
        assert_eq!(router.timeout, secs(1, 1));
        assert_eq!(router.cooldown_time, secs(60, 0));
    }

    #[test]
    fn yaml_anchors_and_merge_keys_are_resolved() {
        let imported = parse_ok(
            r#"
x-azure: &azure
  model: azure/prod
  api_base: os.environ/AZURE_API_BASE
  api_key: os.environ/AZURE_API_KEY
model_list:
  - model_name: gpt-4o
    litellm_params:
      <<: *azure
      rpm: 10
"#,
        );
        let d = &imported.deployments[0];
        assert_eq!((d.provider.as_str(), d.model.as_str()), ("azure", "prod"));
        assert_eq!(d.api_base, "os.environ/AZURE_API_BASE");
        assert_eq!(d.api_key, "os.environ/AZURE_API_KEY");
        assert_eq!(d.rpm, 10);
        assert_eq!(
            imported.warnings,
            strings(&["x-azure: not supported, ignored"])
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        fn entry(params: &str) -> String {
            format!(
                "model_list:\n  - model_name: a\n    litellm_params: {{model: mock/a, {params}}}\n"
            )
        }
        let cases: Vec<(String, &str, &str)> = vec![
            ("model_list:\n  - litellm_params: {model: mock/a}\n".into(),
             "model_list[0].model_name", "required: the model group clients ask for"),
            ("model_list:\n  - model_name: \"\"\n    litellm_params: {model: mock/a}\n".into(),
             "model_list[0].model_name", "required: the model group clients ask for"),
            ("model_list:\n  - model_name: a\n".into(),
             "model_list[0].litellm_params", "required, with at least `model`"),
            ("model_list:\n  - model_name: a\n    litellm_params: {rpm: 1}\n".into(),
             "model_list[0].litellm_params.model", "required, e.g. \"openai/gpt-4o\""),
            ("model_list:\n  - model_name: a\n    litellm_params: {model: openai/}\n".into(),
             "model_list[0].litellm_params.model", "no model after the provider prefix in \"openai/\""),
            ("model_list:\n  - model_name: a\n    litellm_params: {model: azure/prod}\n".into(),
             "model_list[0].litellm_params.api_base",
             "required for provider \"azure\", which has no default endpoint"),
            (entry("rpm: -5"), "model_list[0].litellm_params.rpm", "must not be negative, found -5"),
            (entry("tpm: many"), "model_list[0].litellm_params.tpm",
             "expected a non-negative integer, found the string \"many\""),
            (entry("rpm: 1.5"), "model_list[0].litellm_params.rpm", "expected a non-negative integer, found 1.5"),
            (entry("weight: 5000000000"), "model_list[0].litellm_params.weight", "must be at most 4294967295"),
            (entry("timeout: -1"), "model_list[0].litellm_params.timeout", "must not be negative, found -1"),
            (entry("timeout: 30s"), "model_list[0].litellm_params.timeout",
             "expected a number of seconds, found the string \"30s\""),
            (entry("timeout: 1e300"), "model_list[0].litellm_params.timeout",
             "must be at most 315576000000 seconds, found 1e300"),
            (entry("input_cost_per_token: -0.1"), "model_list[0].litellm_params.input_cost_per_token",
             "expected a non-negative price in USD per token, found -0.1"),
            (entry("api_key: [a]"), "model_list[0].litellm_params.api_key", "expected a string, found a list"),
            ("model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n    model_info: {id: GPT 4}\n".into(),
             "model_list[0].model_info.id",
             "\"GPT 4\" is not a valid deployment id (lowercase letters, digits, '.', '_', '-'; 1-64 chars; starting with a letter or digit)"),
            ("model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n    model_info: {id: x}\n  - model_name: b\n    litellm_params: {model: mock/b}\n    model_info: {id: x}\n".into(),
             "model_list[1].model_info.id", "\"x\" is already the id of model_list[0]"),
            ("model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n    model_info: {access_groups: [ok, Beta_Models]}\n".into(),
             "model_list[0].model_info.access_groups[1]",
             "\"Beta_Models\" is not a valid access group name (lowercase letters, digits and hyphens; 1-63 chars; starting with a letter or digit)"),
            ("model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n    model_info: {credits_per_call: -1}\n".into(),
             "model_list[0].model_info.credits_per_call", "must not be negative, found -1"),
            ("model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n    model_info: [id]\n".into(),
             "model_list[0].model_info", "expected a mapping, found a list"),
            ("model_list: gpt-4o\n".into(), "model_list", "expected a list of models, found the string \"gpt-4o\""),
            ("model_list: [gpt-4o]\n".into(), "model_list[0]", "expected a mapping, found the string \"gpt-4o\""),
            ("router_settings: {routing_strategy: fastest}\n".into(),
             "router_settings.routing_strategy",
             "unknown routing strategy \"fastest\"; known: simple-shuffle, least-busy, latency-based-routing, usage-based-routing, usage-based-routing-v2, cost-based-routing"),
            (entry("order: -1"), "model_list[0].litellm_params.order", "must not be negative, found -1"),
            (entry("stream_timeout: -2"), "model_list[0].litellm_params.stream_timeout", "must not be negative, found -2"),
            ("model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n    model_info: {max_input_tokens: 1.5}\n".into(),
             "model_list[0].model_info.max_input_tokens", "expected a non-negative integer, found 1.5"),
            ("router_settings: {routing_strategy_args: {lowest_latency_buffer: -0.5}}\n".into(),
             "router_settings.routing_strategy_args.lowest_latency_buffer", "expected a non-negative number, found -0.5"),
            ("router_settings: {routing_strategy_args: [a]}\n".into(),
             "router_settings.routing_strategy_args", "expected a mapping, found a list"),
            ("router_settings: {retry_policy: {RateLimitErrorRetries: many}}\n".into(),
             "router_settings.retry_policy.RateLimitErrorRetries",
             "expected a non-negative integer, found the string \"many\""),
            ("router_settings: {allowed_fails_policy: [1]}\n".into(),
             "router_settings.allowed_fails_policy", "expected a mapping, found a list"),
            ("router_settings: {max_fallbacks: -1}\n".into(), "router_settings.max_fallbacks", "must not be negative, found -1"),
            ("router_settings: {enable_pre_call_checks: \"yes\"}\n".into(),
             "router_settings.enable_pre_call_checks", "expected true or false, found the string \"yes\""),
            ("litellm_settings: {allowed_fails: -3}\n".into(), "litellm_settings.allowed_fails", "must not be negative, found -3"),
            ("router_settings: {num_retries: -1}\n".into(), "router_settings.num_retries", "must not be negative, found -1"),
            ("router_settings: {fallbacks: {a: [b]}}\n".into(), "router_settings.fallbacks",
             "expected a list like [{\"gpt-4o\": [\"gpt-4o-mini\"]}], found a mapping"),
            ("router_settings: {fallbacks: [a]}\n".into(), "router_settings.fallbacks[0]",
             "expected a mapping like {\"gpt-4o\": [\"gpt-4o-mini\"]}, found the string \"a\""),
            ("router_settings: {context_window_fallbacks: [{a: b}]}\n".into(), "router_settings.context_window_fallbacks[0].a",
             "expected a list of strings, found the string \"b\""),
            ("router_settings: {default_fallbacks: [a, 3]}\n".into(), "router_settings.default_fallbacks[1]",
             "expected a non-empty string, found the number 3"),
            ("litellm_settings: {num_retries: \"3\"}\n".into(), "litellm_settings.num_retries",
             "expected a non-negative integer, found the string \"3\""),
            ("router_settings: [a]\n".into(), "router_settings", "expected a mapping, found a list"),
        ];
        for (yaml, path, message) in cases {
            assert_eq!(
                invalid_at(&yaml),
                (path.to_owned(), message.to_owned()),
                "{yaml}"
            );
        }
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_refused() {
        for yaml in ["", "- model_name: a\n", "just text\n"] {
            let (path, message) = invalid_at(yaml);
            assert_eq!(path, "");
            assert!(
                message.starts_with("expected a mapping with `model_list`"),
                "{message}"
            );
            // With no path, the message stands alone.
            assert_eq!(parse(yaml).map(|_| ()).unwrap_err().to_string(), message);
        }
    }
}
