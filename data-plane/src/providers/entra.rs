//! Azure OpenAI without a key: a Microsoft Entra ID token for the data
//! plane's identity, found in its environment in the order of Azure SDKs'
//! `DefaultAzureCredential`: a service principal's secret
//! (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), else the
//! pod's workload identity, as on AKS, else the host's managed identity
//! from its platform: App Service's, Functions' and Container Apps' local
//! endpoint (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`), else Azure's instance
//! metadata service (a VM's, an AKS node's). The workload identity
//! webhook puts `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_FEDERATED_TOKEN_FILE` (a projected service account token, which
//! the kubelet rotates: read again at every fetch) and
//! `AZURE_AUTHORITY_HOST` in the pod; the token is exchanged at
//! `{authority}/{tenant}/oauth2/v2.0/token` (OAuth's client credentials
//! grant with a JWT client assertion) for an access token scoped to
//! Cognitive Services, sent as `Authorization: Bearer`.
//!
//! A deployment may name an identity of its own ([`AzureIdentity`]): its
//! settings take the place of the variables of the same meaning, and once
//! it names the app (a tenant or a client id) the environment's client
//! secret, which belongs to the environment's app, is never sent for it.
//!
//! Pure: the environment and the file are read through the caller's
//! closures; sending is [`crate::forward`]'s.

use hyper::header::{self, HeaderName, HeaderValue};
use percent_encoding::utf8_percent_encode;

use super::ProviderError;
use super::sigv4::UNRESERVED;
use super::target::TokenRequest;
use crate::config::secrets::{AzureIdentity, Secret};

/// Where Entra ID's public cloud issues tokens, when the environment names
/// no other (sovereign clouds set `AZURE_AUTHORITY_HOST`).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The scope of a token Azure OpenAI takes.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An identity, as the environment names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub authority: String,
    pub tenant_id: String,
    pub client_id: String,
    pub proof: Proof,
}

/// What proves the identity to Entra ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A service principal's client secret.
    Secret(Secret),
    /// A file holding a federated (service account) token.
    TokenFile(String),
}

/// The identity a token is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A service principal or a workload identity, at Entra ID's token
    /// endpoint.
    App(Workload),
    /// The host's managed identity (an Azure VM's, an AKS node's), from
    /// Azure's instance metadata service; `client_id` picks a user-assigned
    /// one.
    Managed {
        endpoint: String,
        client_id: Option<String>,
    },
    /// An App Service, Functions or Container Apps app's managed identity,
    /// from the platform's local endpoint (`IDENTITY_ENDPOINT`, the whole
    /// URL), which wants the secret it puts beside it (`IDENTITY_HEADER`).
    Hosted {
        endpoint: String,
        header: Secret,
        client_id: Option<String>,
    },
}

/// Where Azure's instance metadata service answers, when
/// `AZURE_POD_IDENTITY_AUTHORITY_HOST` names no other (as Azure's SDKs).
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// The identity a deployment's `own` settings and `env` name: a service
/// principal's secret, else a workload identity, else the host's managed
/// identity.
pub fn identity(own: &AzureIdentity, env: impl Fn(&str) -> Option<String>) -> Identity {
    let picks_the_app = !own.tenant_id.is_empty() || !own.client_id.is_empty();
    let var = |name: &str| {
        let own = match name {
            "AZURE_TENANT_ID" => Some(&own.tenant_id),
            "AZURE_CLIENT_ID" => Some(&own.client_id),
            "AZURE_CLIENT_SECRET" => Some(&own.client_secret),
            _ => None,
        };
        let value = if let Some(own) = own.filter(|s| !s.is_empty()) {
            Some(own.expose().to_owned())
        } else if picks_the_app && name == "AZURE_CLIENT_SECRET" {
            None
        } else {
            env(name)
        };
        value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    };
    let proof = var("AZURE_CLIENT_SECRET")
        .map(|s| Proof::Secret(Secret::new(s)))
        .or_else(|| var("AZURE_FEDERATED_TOKEN_FILE").map(Proof::TokenFile));
    match (var("AZURE_TENANT_ID"), var("AZURE_CLIENT_ID"), proof) {
        (Some(tenant_id), Some(client_id), Some(proof)) => Identity::App(Workload {
            authority: var("AZURE_AUTHORITY_HOST")
                .unwrap_or_else(|| DEFAULT_AUTHORITY.into())
                .trim_end_matches('/')
                .to_owned(),
            tenant_id,
            client_id,
            proof,
        }),
        (_, client_id, _) => match (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => Identity::Hosted {
                endpoint,
                header: Secret::new(header),
                client_id,
            },
            _ => Identity::Managed {
                endpoint: var("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                    .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.into())
                    .trim_end_matches('/')
                    .to_owned(),
                client_id,
            },
        },
    }
}

/// The token request for `identity`, a federated token read with `read`.
pub fn token_request(
    identity: &Identity,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<TokenRequest, ProviderError> {
    let encode = |s: &str| utf8_percent_encode(s, UNRESERVED).to_string();
    // Managed identities' endpoints want the resource, not a scope.
    let resource = SCOPE.trim_end_matches(".default");
    let workload = match identity {
        Identity::App(workload) => workload,
        Identity::Hosted {
            endpoint,
            header,
            client_id,
        } => {
            let mut url = format!(
                "{endpoint}{}api-version=2019-08-01&resource={}",
                if endpoint.contains('?') { '&' } else { '?' },
                encode(resource)
            );
            if let Some(id) = client_id {
                url.push_str(&format!("&client_id={}", encode(id)));
            }
            let mut proof = HeaderValue::from_str(header.expose()).map_err(|_| {
                ProviderError::Credentials("IDENTITY_HEADER is not a valid header value".into())
            })?;
            proof.set_sensitive(true);
            return Ok(TokenRequest {
                url,
                method: hyper::Method::GET,
                form: None,
                headers: vec![(HeaderName::from_static("x-identity-header"), proof)],
            });
        }
        Identity::Managed {
            endpoint,
            client_id,
        } => {
            let mut url = format!(
                "{endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
                encode(resource)
            );
            if let Some(id) = client_id {
                url.push_str(&format!("&client_id={}", encode(id)));
            }
            return Ok(TokenRequest {
                url,
                method: hyper::Method::GET,
                form: None,
                headers: vec![(
                    HeaderName::from_static("metadata"),
                    HeaderValue::from_static("true"),
                )],
            });
        }
    };
    let proof = match &workload.proof {
        Proof::Secret(secret) => format!("client_secret={}", encode(secret.expose())),
        Proof::TokenFile(file) => {
            let assertion = read(file).map_err(|e| {
                ProviderError::Credentials(format!(
                    "the federated token file {file} cannot be read: {}",
                    e.kind()
                ))
            })?;
            let assertion = assertion.trim();
            if assertion.is_empty() {
                return Err(ProviderError::Credentials(format!(
                    "the federated token file {file} is empty"
                )));
            }
            format!(
                "client_assertion_type={}&client_assertion={}",
                encode(ASSERTION_TYPE),
                encode(assertion)
            )
        }
    };
    Ok(TokenRequest {
        url: format!(
            "{}/{}/oauth2/v2.0/token",
            workload.authority,
            encode(&workload.tenant_id)
        ),
        method: hyper::Method::POST,
        form: Some(format!(
            "grant_type=client_credentials&client_id={}&scope={}&{proof}",
            encode(&workload.client_id),
            encode(SCOPE),
        )),
        headers: vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )],
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    // Entra ID and the metadata service answer as OAuth endpoints do.
    use crate::providers::target::TokenError;
    use crate::providers::vertex::read_token;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const POD: &[(&str, &str)] = &[
        ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("AZURE_CLIENT_ID", "0b6c2b5e-1d1a-4c8e-9d3b-1a2b3c4d5e6f"),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
    ];

    fn app(identity: Identity) -> Workload {
        match identity {
            Identity::App(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_hosts_managed_identity_is_asked_of_the_metadata_service() {
        let asked = token_request(&identity(&AzureIdentity::default(), env(&[])), |_| {
            panic!("no file")
        })
        .unwrap();
        assert_eq!(
            asked.url,
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01\
             &resource=https%3A%2F%2Fcognitiveservices.azure.com%2F"
        );
        assert_eq!(asked.method, hyper::Method::GET);
        assert_eq!(asked.headers[0].0, "metadata");
        let user_assigned = identity(
            &AzureIdentity::default(),
            env(&[
                ("AZURE_CLIENT_ID", "0b6c"),
                ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9/"),
            ]),
        );
        let asked = token_request(&user_assigned, |_| panic!("no file")).unwrap();
        assert!(
            asked
                .url
                .starts_with("http://127.0.0.1:9/metadata/identity/oauth2/token?")
                && asked.url.ends_with("&client_id=0b6c"),
            "{}",
            asked.url
        );
        // Its answer's `expires_in` is a string; Entra ID's a number.
        let (bearer, life) = read_token(
            200,
            br#"{"access_token":"eyJ0.mi","expires_in":"86399","token_type":"Bearer"}"#,
            0,
        )
        .unwrap();
        assert_eq!(bearer, "Bearer eyJ0.mi");
        assert_eq!(life, Duration::from_secs(86399));
        let (_, life) = read_token(200, br#"{"access_token":"t","expires_in":3599}"#, 0).unwrap();
        assert_eq!(life, Duration::from_secs(3599));
        assert_eq!(
            read_token(
                400,
                br#"{"error":"invalid_request","error_description":"Identity not found"}"#,
                0
            ),
            Err(TokenError::Refused("invalid_request".into()))
        );
        assert!(read_token(200, b"{}", 0).is_err());
        // App Service's says when it expires, not in how long: the token it
        // hands out may be a cached one, near its end.
        let (_, life) = read_token(
            200,
            br#"{"access_token":"t","expires_on":"1700000600","token_type":"Bearer"}"#,
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(life, Duration::from_secs(600));
    }

    #[test]
    fn a_pods_workload_identity_is_read_from_the_webhooks_variables() {
        let w = app(identity(&AzureIdentity::default(), env(POD)));
        assert_eq!(w.authority, "https://login.microsoftonline.com");
        assert_eq!(w.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        let no_host = &POD[..3];
        assert_eq!(
            app(identity(&AzureIdentity::default(), env(no_host))).authority,
            DEFAULT_AUTHORITY
        );
        for (missing, (name, _)) in POD.iter().enumerate().take(3) {
            let vars: Vec<_> = POD
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, v)| *v)
                .collect();
            assert!(
                matches!(
                    identity(&AzureIdentity::default(), env(&vars)),
                    Identity::Managed { .. }
                ),
                "without {name}, the host's managed identity"
            );
        }
    }

    #[test]
    fn the_federated_token_is_exchanged_with_a_client_assertion() {
        let w = identity(&AzureIdentity::default(), env(POD));
        let asked = token_request(&w, |path| {
            assert_eq!(path, "/var/run/secrets/azure/tokens/azure-identity-token");
            Ok("eyJhbGc.pod-token.sig\n".into())
        })
        .unwrap();
        assert_eq!(
            asked.url,
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
        );
        assert_eq!(asked.method, hyper::Method::POST);
        assert_eq!(
            asked.form.as_deref(),
            Some(
                "grant_type=client_credentials&client_id=0b6c2b5e-1d1a-4c8e-9d3b-1a2b3c4d5e6f\
                 &scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default\
                 &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
                 &client_assertion=eyJhbGc.pod-token.sig"
            )
        );
        assert_eq!(asked.headers[0].1, "application/x-www-form-urlencoded");
    }

    #[test]
    fn an_unreadable_or_empty_token_file_is_said_without_its_contents() {
        let w = identity(&AzureIdentity::default(), env(POD));
        let e = token_request(&w, |_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
        let e = token_request(&w, |_| Ok(" \n".into())).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }

    #[test]
    fn a_client_secret_comes_first_as_in_azures_sdks_and_is_never_shown() {
        let mut vars = POD.to_vec();
        vars.push(("AZURE_CLIENT_SECRET", "Q~s3cr3t+/="));
        let w = identity(&AzureIdentity::default(), env(&vars));
        assert_eq!(
            app(w.clone()).proof,
            Proof::Secret(Secret::new("Q~s3cr3t+/="))
        );
        assert!(!format!("{w:?}").contains("s3cr3t"), "{w:?}");
        let asked = token_request(&w, |_| panic!("no file is read")).unwrap();
        assert_eq!(
            asked.form.as_deref(),
            Some(
                "grant_type=client_credentials&client_id=0b6c2b5e-1d1a-4c8e-9d3b-1a2b3c4d5e6f\
                 &scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default\
                 &client_secret=Q~s3cr3t%2B%2F%3D"
            )
        );
    }

    #[test]
    fn a_deployments_own_identity_takes_the_place_of_the_environments() {
        let own = |tenant: &str, client: &str, secret: &str| AzureIdentity {
            tenant_id: Secret::new(tenant),
            client_id: Secret::new(client),
            client_secret: Secret::new(secret),
            ad_token: Secret::default(),
        };
        let mut pod = POD.to_vec();
        pod.push(("AZURE_CLIENT_SECRET", "the-pods-own-secret"));
        // A service principal of its own: nothing of the pod's app.
        let w = app(identity(&own("team-a", "app-a", "secret-a"), env(&pod)));
        assert_eq!(
            (w.tenant_id.as_str(), w.client_id.as_str()),
            ("team-a", "app-a")
        );
        assert_eq!(w.proof, Proof::Secret(Secret::new("secret-a")));
        assert_eq!(w.authority, DEFAULT_AUTHORITY, "the cloud is the pod's");
        // Another app for the pod's federated token: the pod's secret,
        // which is its own app's, is not sent for it.
        let w = app(identity(&own("", "app-b", ""), env(&pod)));
        assert_eq!(w.client_id, "app-b");
        assert_eq!(w.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert_eq!(
            w.proof,
            Proof::TokenFile("/var/run/secrets/azure/tokens/azure-identity-token".into())
        );
        // A user-assigned managed identity picked by the deployment.
        assert_eq!(
            identity(&own("", "mi-c", ""), env(&[])),
            Identity::Managed {
                endpoint: DEFAULT_METADATA_ENDPOINT.into(),
                client_id: Some("mi-c".into()),
            }
        );
        // Without a federated token, the pod's secret never goes to app-b.
        let secret_only = [
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "pod-app"),
            ("AZURE_CLIENT_SECRET", "the-pods-own-secret"),
        ];
        assert!(matches!(
            identity(&own("", "app-b", ""), env(&secret_only)),
            Identity::Managed { .. }
        ));
    }

    #[test]
    fn an_apps_managed_identity_is_asked_of_its_platforms_endpoint_with_its_header() {
        let app_service = [
            ("IDENTITY_ENDPOINT", "http://localhost:42356/msi/token"),
            ("IDENTITY_HEADER", "853b9a84-5bfa-4b22-a3f3-0b9a43d9ad8a"),
        ];
        let hosted = identity(&AzureIdentity::default(), env(&app_service));
        assert!(!format!("{hosted:?}").contains("853b9a84"), "{hosted:?}");
        let asked = token_request(&hosted, |_| panic!("no file")).unwrap();
        assert_eq!(
            asked.url,
            "http://localhost:42356/msi/token?api-version=2019-08-01\
             &resource=https%3A%2F%2Fcognitiveservices.azure.com%2F"
        );
        assert_eq!(asked.method, hyper::Method::GET);
        assert_eq!(asked.headers[0].0, "x-identity-header");
        assert!(asked.headers[0].1.is_sensitive());
        // A user-assigned one, picked by the deployment or the environment.
        let own = AzureIdentity {
            client_id: Secret::new("mi-d"),
            ..AzureIdentity::default()
        };
        let asked = token_request(&identity(&own, env(&app_service)), |_| panic!()).unwrap();
        assert!(asked.url.ends_with("&client_id=mi-d"), "{}", asked.url);
        // A service principal or a workload identity comes first.
        let mut both = POD.to_vec();
        both.extend(app_service);
        assert!(matches!(
            identity(&AzureIdentity::default(), env(&both)),
            Identity::App(_)
        ));
        // The endpoint without its secret is no identity of an app.
        assert!(matches!(
            identity(&AzureIdentity::default(), env(&app_service[..1])),
            Identity::Managed { .. }
        ));
    }
}
