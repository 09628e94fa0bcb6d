//! Azure OpenAI without a key: a Microsoft Entra ID token for the data
//! plane's identity, found in its environment in the order of Azure SDKs'
//! `DefaultAzureCredential`: a service principal's secret
//! (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), else the
//! pod's workload identity, as on AKS. The workload identity
//! webhook puts `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_FEDERATED_TOKEN_FILE` (a projected service account token, which
//! the kubelet rotates: read again at every fetch) and
//! `AZURE_AUTHORITY_HOST` in the pod; the token is exchanged at
//! `{authority}/{tenant}/oauth2/v2.0/token` (OAuth's client credentials
//! grant with a JWT client assertion) for an access token scoped to
//! Cognitive Services, sent as `Authorization: Bearer`.
//!
//! Pure: the environment and the file are read through the caller's
//! closures; sending is [`crate::forward`]'s.

use hyper::header::{self, HeaderValue};
use percent_encoding::utf8_percent_encode;

use super::ProviderError;
use super::sigv4::UNRESERVED;
use super::target::TokenRequest;
use crate::config::secrets::Secret;

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

/// The identity `env` names, or why there is none.
pub fn workload(env: impl Fn(&str) -> Option<String>) -> Result<Workload, ProviderError> {
    let var = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let proof = var("AZURE_CLIENT_SECRET")
        .map(|s| Proof::Secret(Secret::new(s)))
        .or_else(|| var("AZURE_FEDERATED_TOKEN_FILE").map(Proof::TokenFile));
    let (Some(tenant_id), Some(client_id), Some(proof)) =
        (var("AZURE_TENANT_ID"), var("AZURE_CLIENT_ID"), proof)
    else {
        return Err(ProviderError::Credentials(
            "an azure deployment without api_key needs an identity in the data plane's \
             environment (AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or a \
             workload identity's AZURE_FEDERATED_TOKEN_FILE)"
                .into(),
        ));
    };
    let authority = var("AZURE_AUTHORITY_HOST")
        .unwrap_or_else(|| DEFAULT_AUTHORITY.into())
        .trim_end_matches('/')
        .to_owned();
    Ok(Workload {
        authority,
        tenant_id,
        client_id,
        proof,
    })
}

/// The token request for `workload`, a federated token read with `read`.
pub fn token_request(
    workload: &Workload,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<TokenRequest, ProviderError> {
    let encode = |s: &str| utf8_percent_encode(s, UNRESERVED).to_string();
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
    use super::*;

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

    #[test]
    fn a_pods_workload_identity_is_read_from_the_webhooks_variables() {
        let w = workload(env(POD)).unwrap();
        assert_eq!(w.authority, "https://login.microsoftonline.com");
        assert_eq!(w.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        let no_host = &POD[..3];
        assert_eq!(workload(env(no_host)).unwrap().authority, DEFAULT_AUTHORITY);
        for missing in 0..3 {
            let vars: Vec<_> = POD
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, v)| *v)
                .collect();
            let e = workload(env(&vars)).unwrap_err().to_string();
            assert!(e.contains("AZURE_FEDERATED_TOKEN_FILE"), "{e}");
        }
    }

    #[test]
    fn the_federated_token_is_exchanged_with_a_client_assertion() {
        let w = workload(env(POD)).unwrap();
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
        let w = workload(env(POD)).unwrap();
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
        let w = workload(env(&vars)).unwrap();
        assert_eq!(w.proof, Proof::Secret(Secret::new("Q~s3cr3t+/=")));
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
}
