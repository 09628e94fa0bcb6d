//! Provider secrets: a deployment's `api_key`, `api_base` and `api_version`
//! (Vertex AI's `vertex_project` and `vertex_location`, Bedrock's `aws_…`
//! settings) are each a
//! literal or a reference `os.environ/NAME` (LiteLLM's convention),
//! resolved here, on the data plane, when a config is applied. The control
//! plane and etcd only ever hold the reference.
//!
//! A reference to a variable that is not set makes that one deployment
//! unusable; it never refuses the whole config, since the other deployments
//! are still right. A Bedrock deployment that leaves its AWS settings empty
//! takes them from the environment AWS's SDKs read (`AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, …; [`AWS_DEFAULTS`]).

use std::collections::HashMap;
use std::fmt;

use sluice_proto::admin::v1::Deployment;

/// The prefix of a reference to an environment variable.
pub const ENV_REFERENCE_PREFIX: &str = "os.environ/";

/// What a literal `api_key` is replaced with wherever a config is shown.
pub const REDACTED: &str = "<redacted>";

/// Where references are looked up: the process environment in production, a
/// map in tests (Rust 2024 makes mutating the process environment `unsafe`,
/// and tests run in parallel).
pub trait Env: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        // A value that is not UTF-8 cannot go into an HTTP header either.
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A value that must not be logged: `Debug` and `Display` never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (a header to the upstream,
    /// a constant-time comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(REDACTED)
        }
    }
}

/// A deployment's provider settings with every reference resolved. All three
/// are kept as [`Secret`]s: an `api_base` can carry a token in its URL too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSecrets {
    pub api_key: Secret,
    pub api_base: Secret,
    pub api_version: Secret,
    /// Vertex AI's project and location: not secret, but references too.
    pub vertex_project: Secret,
    pub vertex_location: Secret,
    /// Bedrock's region and AWS credentials.
    pub aws_region: Secret,
    pub aws_access_key_id: Secret,
    pub aws_secret_access_key: Secret,
    pub aws_session_token: Secret,
    /// Azure's Entra ID identity of the deployment's own, or its token.
    pub azure: AzureIdentity,
}

/// An Azure deployment's own Entra ID settings, resolved; all empty for the
/// data plane's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureIdentity {
    pub tenant_id: Secret,
    pub client_id: Secret,
    pub client_secret: Secret,
    pub ad_token: Secret,
}

/// For a Bedrock deployment, the variables an empty setting falls back to,
/// in order, as AWS's SDKs read them (`api_key`: a Bedrock API key).
pub const AWS_DEFAULTS: &[(&str, &[&str])] = &[
    ("aws_region_name", &["AWS_REGION", "AWS_DEFAULT_REGION"]),
    ("aws_access_key_id", &["AWS_ACCESS_KEY_ID"]),
    ("aws_secret_access_key", &["AWS_SECRET_ACCESS_KEY"]),
    ("aws_session_token", &["AWS_SESSION_TOKEN"]),
    ("api_key", &["AWS_BEARER_TOKEN_BEDROCK"]),
];

/// Why a deployment is unusable: a reference to a variable that is not set.
/// Names the deployment, the field and the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "deployment {deployment_id:?} is unusable: its {field} refers to the environment variable \
     {variable}, which is not set (or empty) on this data plane"
)]
pub struct MissingVariable {
    pub deployment_id: String,
    pub field: &'static str,
    pub variable: String,
}

/// Resolves the references of `deployment` in `env`.
pub fn resolve(deployment: &Deployment, env: &dyn Env) -> Result<ProviderSecrets, MissingVariable> {
    let field = |field: &'static str, value: &str| -> Result<Secret, MissingVariable> {
        let Some(variable) = value.strip_prefix(ENV_REFERENCE_PREFIX) else {
            return Ok(Secret::new(value));
        };
        // An empty value counts as missing: it would only fail later, at the
        // upstream, with a less helpful message.
        match env.var(variable).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Secret::new(v)),
            None => Err(MissingVariable {
                deployment_id: deployment.id.clone(),
                field,
                variable: variable.to_owned(),
            }),
        }
    };
    let bedrock = bedrock(deployment);
    // An empty Bedrock setting is the environment's, as AWS's SDKs read it.
    let aws = |name: &'static str, value: &str| -> Result<Secret, MissingVariable> {
        let resolved = field(name, value)?;
        if !resolved.is_empty() || !bedrock {
            return Ok(resolved);
        }
        let fallbacks = AWS_DEFAULTS
            .iter()
            .find(|(field, _)| *field == name)
            .map_or(&[][..], |(_, vars)| *vars);
        Ok(fallbacks
            .iter()
            .find_map(|var| env.var(var).filter(|v| !v.is_empty()))
            .map(Secret::new)
            .unwrap_or_default())
    };
    // A deployment with keys of its own signs with them alone: the
    // environment's session token belongs to the environment's keys, and its
    // Bedrock API key would be sent instead of signing.
    let own_keys = !deployment.aws_access_key_id.is_empty();
    let (session_token, api_key) = if own_keys {
        (
            field("aws_session_token", &deployment.aws_session_token)?,
            field("api_key", &deployment.api_key)?,
        )
    } else {
        (
            aws("aws_session_token", &deployment.aws_session_token)?,
            aws("api_key", &deployment.api_key)?,
        )
    };
    Ok(ProviderSecrets {
        api_key,
        api_base: field("api_base", &deployment.api_base)?,
        api_version: field("api_version", &deployment.api_version)?,
        vertex_project: field("vertex_project", &deployment.vertex_project)?,
        vertex_location: field("vertex_location", &deployment.vertex_location)?,
        aws_region: aws("aws_region_name", &deployment.aws_region_name)?,
        aws_access_key_id: aws("aws_access_key_id", &deployment.aws_access_key_id)?,
        aws_secret_access_key: aws("aws_secret_access_key", &deployment.aws_secret_access_key)?,
        aws_session_token: session_token,
        azure: AzureIdentity {
            tenant_id: field("azure_tenant_id", &deployment.azure_tenant_id)?,
            client_id: field("azure_client_id", &deployment.azure_client_id)?,
            client_secret: field("azure_client_secret", &deployment.azure_client_secret)?,
            ad_token: field("azure_ad_token", &deployment.azure_ad_token)?,
        },
    })
}

/// Whether `deployment` is Bedrock's (its provider, or its model's prefix).
fn bedrock(deployment: &Deployment) -> bool {
    let provider = if deployment.provider.is_empty() {
        sluice_proto::providers::split_model(&deployment.model).0
    } else {
        &deployment.provider
    };
    provider == "bedrock"
}

/// Whether `value` is an `os.environ/` reference rather than a literal.
pub fn is_reference(value: &str) -> bool {
    value.starts_with(ENV_REFERENCE_PREFIX)
}

/// `api_key` as it may be shown: a reference as is, a literal as
/// [`REDACTED`], an empty one empty.
pub fn displayable_api_key(api_key: &str) -> &str {
    if api_key.is_empty() || is_reference(api_key) {
        api_key
    } else {
        REDACTED
    }
}

/// A copy of `deployment` whose literal `api_key` (and AWS secret key and
/// session token, Azure client secret and token) is replaced by
/// [`REDACTED`]; references are kept, so an operator can see which variable
/// each data plane needs.
pub fn redacted(deployment: &Deployment) -> Deployment {
    let mut d = deployment.clone();
    for secret in [
        &mut d.api_key,
        &mut d.aws_secret_access_key,
        &mut d.aws_session_token,
        &mut d.azure_client_secret,
        &mut d.azure_ad_token,
    ] {
        if displayable_api_key(secret) == REDACTED {
            *secret = REDACTED.to_owned();
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bedrock_settings_left_empty_are_the_environments() {
        let bedrock = Deployment {
            id: "b".into(),
            provider: "bedrock".into(),
            model: "anthropic.claude-sonnet-4-20250514-v1:0".into(),
            ..Default::default()
        };
        let aws = env(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret-env"),
            ("AWS_SESSION_TOKEN", "token-env"),
        ]);
        let s = resolve(&bedrock, &aws).unwrap();
        assert_eq!(s.aws_region.expose(), "eu-west-1");
        assert_eq!(s.aws_access_key_id.expose(), "AKIDENV");
        assert_eq!(s.aws_secret_access_key.expose(), "secret-env");
        assert_eq!(s.aws_session_token.expose(), "token-env");
        assert!(s.api_key.is_empty());
        // AWS_REGION before AWS_DEFAULT_REGION; the Bedrock API key too.
        let mut more = aws.clone();
        more.insert("AWS_REGION".into(), "us-west-2".into());
        more.insert("AWS_BEARER_TOKEN_BEDROCK".into(), "bedrock-api-key".into());
        let s = resolve(&bedrock, &more).unwrap();
        assert_eq!(s.aws_region.expose(), "us-west-2");
        assert_eq!(s.api_key.expose(), "bedrock-api-key");
        // Keys of its own: nothing of the environment's credentials.
        let own = Deployment {
            aws_access_key_id: "AKIDOWN".into(),
            aws_secret_access_key: "os.environ/MY_SECRET".into(),
            ..bedrock.clone()
        };
        more.insert("MY_SECRET".into(), "secret-own".into());
        let s = resolve(&own, &more).unwrap();
        assert_eq!(s.aws_access_key_id.expose(), "AKIDOWN");
        assert_eq!(s.aws_secret_access_key.expose(), "secret-own");
        assert!(s.aws_session_token.is_empty());
        assert!(s.api_key.is_empty());
        assert_eq!(s.aws_region.expose(), "us-west-2");
        // Another provider's deployment takes none of it.
        let openai = Deployment {
            model: "gpt-4o".into(),
            ..Default::default()
        };
        let s = resolve(&openai, &more).unwrap();
        assert!(s.aws_region.is_empty() && s.api_key.is_empty());
        // Shown redacted.
        let literal = Deployment {
            aws_secret_access_key: "secret-own".into(),
            aws_session_token: "os.environ/T".into(),
            ..own
        };
        let shown = redacted(&literal);
        assert_eq!(shown.aws_secret_access_key, REDACTED);
        assert_eq!(shown.aws_session_token, "os.environ/T");
    }

    #[test]
    fn literals_pass_through_and_references_resolve() {
        let d = Deployment {
            id: "d1".into(),
            api_key: "os.environ/OPENAI_KEY".into(),
            api_base: "https://api.example.com/v1".into(),
            api_version: "os.environ/AZURE_VERSION".into(),
            azure_client_id: "app-a".into(),
            azure_client_secret: "os.environ/APP_A_SECRET".into(),
            ..Default::default()
        };
        let secrets = resolve(
            &d,
            &env(&[
                ("OPENAI_KEY", "sk-real"),
                ("AZURE_VERSION", "2024-02-01"),
                ("APP_A_SECRET", "Xy8Q~app-a"),
            ]),
        )
        .expect("all set");
        assert_eq!(secrets.azure.client_id.expose(), "app-a");
        assert_eq!(secrets.azure.client_secret.expose(), "Xy8Q~app-a");
        assert_eq!(secrets.api_key.expose(), "sk-real");
        assert_eq!(secrets.api_base.expose(), "https://api.example.com/v1");
        assert_eq!(secrets.api_version.expose(), "2024-02-01");
        let debug = format!("{secrets:?}");
        assert!(!debug.contains("sk-real"), "{debug}");
        assert!(!debug.contains("2024-02-01"), "{debug}");
        assert!(!debug.contains("Xy8Q~app-a"), "{debug}");
    }

    #[test]
    fn missing_or_empty_variable_names_deployment_and_variable() {
        let d = Deployment {
            id: "d1".into(),
            api_key: "os.environ/NOPE".into(),
            ..Default::default()
        };
        for e in [env(&[]), env(&[("NOPE", "")])] {
            let err = resolve(&d, &e).expect_err("missing");
            assert_eq!(err.deployment_id, "d1");
            assert_eq!(err.field, "api_key");
            assert_eq!(err.variable, "NOPE");
            assert!(err.to_string().contains("NOPE"), "{err}");
        }
    }

    #[test]
    fn redaction_keeps_references() {
        let literal = Deployment {
            api_key: "sk-secret".into(),
            ..Default::default()
        };
        assert_eq!(redacted(&literal).api_key, REDACTED);
        let reference = Deployment {
            api_key: "os.environ/K".into(),
            ..Default::default()
        };
        assert_eq!(redacted(&reference).api_key, "os.environ/K");
        assert_eq!(redacted(&Deployment::default()).api_key, "");
    }
}
