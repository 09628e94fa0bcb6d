//! Where a Bedrock deployment without keys of its own gets temporary ones,
//! as AWS's SDKs look for them in a pod or a container, after the
//! environment's static keys ([`crate::config::secrets::AWS_DEFAULTS`]):
//!
//! 1. a web identity (EKS's IAM roles for service accounts):
//!    `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, the token exchanged
//!    at STS (`AssumeRoleWithWebIdentity`, unsigned; the regional endpoint,
//!    or `AWS_ENDPOINT_URL_STS`) for the role's keys;
//! 2. the container credentials endpoint (EKS Pod Identity, ECS task
//!    roles): `AWS_CONTAINER_CREDENTIALS_FULL_URI` (or ECS's
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` under `169.254.170.2`), asked
//!    with the token in `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (or
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN`). Plain HTTP only to the
//!    addresses AWS serves it on, or loopback, as the SDKs allow;
//! 3. EC2's instance metadata service, the instance's role (an EKS node's,
//!    a plain EC2 host's), with IMDSv2's session token: `PUT
//!    /latest/api/token`, then the role's name from
//!    `/latest/meta-data/iam/security-credentials/` and its keys under it.
//!    At `169.254.169.254` (`[fd00:ec2::254]` when
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` is `IPv6`), or
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT`; never asked when
//!    `AWS_EC2_METADATA_DISABLED` is `true`. IMDSv1 (no token) is not used.
//!
//! Pure but for reading the token files; sending the requests and keeping
//! the keys are [`crate::forward`]'s and [`super::target::Fetched`]'s.

use std::time::{Duration, SystemTime};

use hyper::header::{self, HeaderValue};
use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use super::ProviderError;
use super::target::{TokenError, TokenRequest};

/// Where ECS serves container credentials, under a relative URI.
const ECS_HOST: &str = "http://169.254.170.2";
/// The hosts plain HTTP may reach for container credentials: ECS's, EKS
/// Pod Identity's, and loopback.
const PLAIN_HTTP_HOSTS: &[&str] = &[
    "169.254.170.2",
    "169.254.170.23",
    "[fd00:ec2::23]",
    "127.0.0.1",
    "localhost",
    "[::1]",
];

/// Where EC2's instance metadata service answers, by IPv4 and IPv6.
const IMDS_IPV4: &str = "http://169.254.169.254";
const IMDS_IPV6: &str = "http://[fd00:ec2::254]";
/// How long an IMDSv2 session token is asked for: it is used at once, for
/// the two requests after it.
const IMDS_TOKEN_SECONDS: &str = "60";
/// The header asking for an IMDSv2 session token, and the one sending it.
pub const IMDS_TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
pub const IMDS_TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Where the instance's role is named, and its keys are, under it.
const IMDS_ROLES: &str = "/latest/meta-data/iam/security-credentials/";

/// Where temporary keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    WebIdentity {
        role_arn: String,
        token_file: String,
        session_name: String,
        /// STS's URL.
        sts: String,
    },
    Container {
        url: String,
        /// The token file's path, read on each fetch (it is rotated).
        token_file: Option<String>,
        token: Option<String>,
    },
    /// EC2's instance metadata service at `endpoint` (no trailing `/`):
    /// three requests, [`request`]'s the first ([`metadata_role_request`],
    /// [`metadata_keys_request`]).
    InstanceMetadata { endpoint: String },
}

/// The source the environment names, `region` being the deployment's (for
/// STS's regional endpoint); `None` when it names none.
pub fn source(env: impl Fn(&str) -> Option<String>, region: &str) -> Option<Source> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let (Some(role_arn), Some(token_file)) =
        (var("AWS_ROLE_ARN"), var("AWS_WEB_IDENTITY_TOKEN_FILE"))
    {
        let sts = var("AWS_ENDPOINT_URL_STS").unwrap_or_else(|| {
            if region.is_empty() {
                "https://sts.amazonaws.com".to_owned()
            } else {
                format!("https://sts.{region}.amazonaws.com")
            }
        });
        return Some(Source::WebIdentity {
            role_arn,
            token_file,
            session_name: var("AWS_ROLE_SESSION_NAME")
                .unwrap_or_else(|| "sluice-data-plane".to_owned()),
            sts,
        });
    }
    let container = var("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
        var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .map(|relative| format!("{ECS_HOST}{relative}"))
    });
    if let Some(url) = container {
        return Some(Source::Container {
            url,
            token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        });
    }
    if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let endpoint = var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| {
        let ipv6 = var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("ipv6"));
        (if ipv6 { IMDS_IPV6 } else { IMDS_IPV4 }).to_owned()
    });
    Some(Source::InstanceMetadata {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
    })
}

/// The instance metadata service's second request: the role's name, with
/// the session `token` the first gave ([`read_metadata_token`]).
pub fn metadata_role_request(endpoint: &str, token: &str) -> Result<TokenRequest, ProviderError> {
    metadata_get(format!("{endpoint}{IMDS_ROLES}"), token)
}

/// Its third: the keys of `role` ([`read_metadata_role`]).
pub fn metadata_keys_request(
    endpoint: &str,
    token: &str,
    role: &str,
) -> Result<TokenRequest, ProviderError> {
    let role = utf8_percent_encode(role, super::sigv4::UNRESERVED);
    metadata_get(format!("{endpoint}{IMDS_ROLES}{role}"), token)
}

fn metadata_get(url: String, token: &str) -> Result<TokenRequest, ProviderError> {
    let mut value = HeaderValue::from_str(token).map_err(|_| {
        ProviderError::Credentials(
            "the instance metadata service's session token is not a valid header value".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(TokenRequest {
        url,
        method: hyper::Method::GET,
        form: None,
        headers: vec![(header::HeaderName::from_static(IMDS_TOKEN_HEADER), value)],
    })
}

/// The session token in the instance metadata service's answer to the
/// first request. A 403 or 404 is a service that does not serve IMDSv2
/// (or is off): the instance's identity cannot be had.
pub fn read_metadata_token(status: u16, body: &[u8]) -> Result<String, TokenError> {
    metadata_text(status, body, "a session token")
}

/// The instance's role: the first name listed. A 404 is an instance
/// without a role.
pub fn read_metadata_role(status: u16, body: &[u8]) -> Result<String, TokenError> {
    let roles = metadata_text(status, body, "a role")?;
    Ok(roles.lines().next().unwrap_or_default().trim().to_owned())
}

fn metadata_text(status: u16, body: &[u8], what: &str) -> Result<String, TokenError> {
    match status {
        200..=299 => {}
        403 | 404 => {
            return Err(TokenError::Refused(format!(
                "the instance metadata service gave no {what} ({status})"
            )));
        }
        _ => {
            return Err(TokenError::Failed(format!(
                "the instance metadata service answered {status} when asked for {what}"
            )));
        }
    }
    let text = std::str::from_utf8(body).unwrap_or_default().trim();
    let plain = !text.is_empty()
        && text.len() <= 4096
        && text.bytes().all(|b| b.is_ascii_graphic() || b == b'\n');
    if plain {
        Ok(text.to_owned())
    } else {
        Err(TokenError::Failed(format!(
            "the instance metadata service's answer holds no {what}"
        )))
    }
}

/// The request that fetches keys from `source`; `read_file` reads a token
/// file (whose contents never appear in an error).
pub fn request(
    source: &Source,
    read_file: impl Fn(&str) -> std::io::Result<String>,
) -> Result<TokenRequest, ProviderError> {
    let read = |path: &str| {
        read_file(path).map(|t| t.trim().to_owned()).map_err(|e| {
            ProviderError::Credentials(format!("the token file {path:?} cannot be read: {e}"))
        })
    };
    match source {
        Source::WebIdentity {
            role_arn,
            token_file,
            session_name,
            sts,
        } => {
            let token = read(token_file)?;
            let encode = |s: &str| utf8_percent_encode(s, super::sigv4::UNRESERVED).to_string();
            Ok(TokenRequest {
                url: format!("{}/", sts.trim_end_matches('/')),
                method: hyper::Method::POST,
                form: Some(format!(
                    "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
                    encode(role_arn),
                    encode(session_name),
                    encode(&token)
                )),
                headers: vec![(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                )],
            })
        }
        Source::Container {
            url,
            token_file,
            token,
        } => {
            if let Some(rest) = url.strip_prefix("http://") {
                let host = rest.split(['/', '?']).next().unwrap_or(rest);
                let host = host.rsplit_once(':').map_or(host, |(h, port)| {
                    if port.bytes().all(|b| b.is_ascii_digit()) {
                        h
                    } else {
                        host
                    }
                });
                if !PLAIN_HTTP_HOSTS.contains(&host) {
                    return Err(ProviderError::Credentials(format!(
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI may use plain HTTP only to {} (its host is {host:?})",
                        PLAIN_HTTP_HOSTS.join(", ")
                    )));
                }
            }
            let token = match (token_file, token) {
                (Some(path), _) => Some(read(path)?),
                (None, Some(token)) => Some(token.clone()),
                (None, None) => None,
            };
            let mut headers = Vec::new();
            if let Some(token) = token {
                let mut value = HeaderValue::from_str(&token).map_err(|_| {
                    ProviderError::Credentials(
                        "the container authorization token is not a valid header value".into(),
                    )
                })?;
                value.set_sensitive(true);
                headers.push((header::AUTHORIZATION, value));
            }
            Ok(TokenRequest {
                url: url.clone(),
                method: hyper::Method::GET,
                form: None,
                headers,
            })
        }
        Source::InstanceMetadata { endpoint } => Ok(TokenRequest {
            url: format!("{endpoint}/latest/api/token"),
            method: hyper::Method::PUT,
            form: None,
            headers: vec![(
                header::HeaderName::from_static(IMDS_TOKEN_TTL_HEADER),
                HeaderValue::from_static(IMDS_TOKEN_SECONDS),
            )],
        }),
    }
}

/// Temporary keys and how long they are good for, as read.
#[derive(Debug, PartialEq, Eq)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub life: Duration,
}

/// The answer of `source`'s endpoint, with HTTP `status`, at `now`.
pub fn read(
    source: &Source,
    status: u16,
    body: &[u8],
    now: SystemTime,
) -> Result<Keys, TokenError> {
    if !(200..300).contains(&status) {
        let code = error_code(body).unwrap_or_else(|| status.to_string());
        return Err(if (400..500).contains(&status) && status != 429 {
            TokenError::Refused(code)
        } else {
            TokenError::Failed(format!(
                "the AWS credentials endpoint answered {status} ({code})"
            ))
        });
    }
    let unreadable = |what: &str| {
        TokenError::Failed(format!(
            "the AWS credentials endpoint's answer has no {what}"
        ))
    };
    let (access_key_id, secret_access_key, session_token, expiration) = match source {
        Source::Container { .. } | Source::InstanceMetadata { .. } => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Answer {
                /// The instance metadata service's: `Success`, or why not.
                #[serde(default)]
                code: Option<String>,
                #[serde(default)]
                access_key_id: String,
                #[serde(default)]
                secret_access_key: String,
                #[serde(default)]
                token: String,
                expiration: Option<String>,
            }
            let a: Answer = serde_json::from_slice(body).map_err(|_| unreadable("keys"))?;
            if let Some(code) = a.code.filter(|c| c != "Success") {
                let code: String = code
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(64)
                    .collect();
                return Err(TokenError::Failed(format!(
                    "the instance metadata service gave no keys ({code})"
                )));
            }
            (a.access_key_id, a.secret_access_key, a.token, a.expiration)
        }
        Source::WebIdentity { .. } => {
            let text = std::str::from_utf8(body).map_err(|_| unreadable("keys"))?;
            let field = |name: &str| element(text, name).ok_or_else(|| unreadable(name));
            (
                field("AccessKeyId")?,
                field("SecretAccessKey")?,
                field("SessionToken")?,
                element(text, "Expiration"),
            )
        }
    };
    if access_key_id.is_empty() || secret_access_key.is_empty() {
        return Err(unreadable("keys"));
    }
    // Keys without an expiry are kept for an hour, then asked for again.
    let life = match expiration {
        Some(at) => {
            let at = humantime::parse_rfc3339_weak(at.trim())
                .map_err(|_| unreadable("readable Expiration"))?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
        None => Duration::from_secs(3600),
    };
    Ok(Keys {
        access_key_id,
        secret_access_key,
        session_token,
        life,
    })
}

/// An error's code: STS's `<Code>`, the container endpoint's `"code"`;
/// only a short word, never a message.
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let code = element(text, "Code").or_else(|| {
        #[derive(Deserialize)]
        struct Error {
            #[serde(alias = "Code")]
            code: String,
        }
        serde_json::from_str::<Error>(text).ok().map(|e| e.code)
    })?;
    (code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
    .then_some(code)
}

/// The text of the first `<name>` element of an XML document, its
/// entities decoded: STS's answers are flat enough for this.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::UNIX_EPOCH;

    /// Seconds since the Unix epoch: a fixed clock.
    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_web_identity_comes_before_the_container_endpoint() {
        let both = env(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/sluice"),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
        ]);
        assert_eq!(
            source(&both, "eu-west-1"),
            Some(Source::WebIdentity {
                role_arn: "arn:aws:iam::123456789012:role/sluice".into(),
                token_file: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token".into(),
                session_name: "sluice-data-plane".into(),
                sts: "https://sts.eu-west-1.amazonaws.com".into(),
            })
        );
        let pod = env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            ),
        ]);
        assert!(
            matches!(source(&pod, ""), Some(Source::Container { url, token_file: Some(_), .. }) if url == "http://169.254.170.23/v1/credentials")
        );
        let ecs = env(&[(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/abc",
        )]);
        assert!(
            matches!(source(&ecs, ""), Some(Source::Container { url, .. }) if url == "http://169.254.170.2/v2/credentials/abc")
        );
        // Else the instance's role, from the metadata service.
        assert_eq!(
            source(env(&[]), "us-east-1"),
            Some(Source::InstanceMetadata {
                endpoint: "http://169.254.169.254".into()
            })
        );
        assert_eq!(
            source(
                env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")]),
                ""
            ),
            Some(Source::InstanceMetadata {
                endpoint: "http://[fd00:ec2::254]".into()
            })
        );
        assert_eq!(
            source(
                env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")]),
                ""
            ),
            Some(Source::InstanceMetadata {
                endpoint: "http://127.0.0.1:9".into()
            })
        );
        assert_eq!(
            source(env(&[("AWS_EC2_METADATA_DISABLED", "TRUE")]), ""),
            None
        );
    }

    #[test]
    fn requests_carry_the_token_read_fresh() {
        let web = Source::WebIdentity {
            role_arn: "arn:aws:iam::1:role/r".into(),
            token_file: "/t".into(),
            session_name: "s".into(),
            sts: "http://127.0.0.1:9/".into(),
        };
        let asked = request(&web, |_| Ok("eyJ.a+b.c\n".into())).unwrap();
        assert_eq!(asked.url, "http://127.0.0.1:9/");
        assert_eq!(
            asked.form.as_deref(),
            Some(
                "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&RoleSessionName=s&WebIdentityToken=eyJ.a%2Bb.c"
            )
        );
        let pod = Source::Container {
            url: "http://169.254.170.23/v1/credentials".into(),
            token_file: Some("/t".into()),
            token: None,
        };
        let asked = request(&pod, |_| Ok("pod-token\n".into())).unwrap();
        assert_eq!(asked.form, None);
        assert_eq!(asked.headers[0].1, "pod-token");
        assert!(asked.headers[0].1.is_sensitive());
        let missing = request(&pod, |_| Err(std::io::Error::other("gone"))).unwrap_err();
        assert!(missing.to_string().contains("\"/t\""), "{missing}");
        let elsewhere = Source::Container {
            url: "http://evil.example:80/creds".into(),
            token_file: None,
            token: Some("x".into()),
        };
        assert!(request(&elsewhere, |_| Ok(String::new())).is_err());
        let loopback = Source::Container {
            url: "http://127.0.0.1:8080/creds".into(),
            token_file: None,
            token: None,
        };
        assert!(
            request(&loopback, |_| Ok(String::new()))
                .unwrap()
                .headers
                .is_empty()
        );
    }

    #[test]
    fn the_instance_metadata_service_is_asked_three_times_with_a_session_token() {
        let imds = Source::InstanceMetadata {
            endpoint: "http://169.254.169.254".into(),
        };
        let first = request(&imds, |_| unreachable!("no file")).unwrap();
        assert_eq!(first.url, "http://169.254.169.254/latest/api/token");
        assert_eq!(first.method, hyper::Method::PUT);
        assert_eq!(first.headers[0].0, IMDS_TOKEN_TTL_HEADER);
        let token = read_metadata_token(200, b"AQAEAOTP-session==\n").unwrap();
        assert_eq!(token, "AQAEAOTP-session==");
        let second = metadata_role_request("http://169.254.169.254", &token).unwrap();
        assert_eq!(
            second.url,
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
        );
        assert_eq!(second.method, hyper::Method::GET);
        assert_eq!(second.headers[0].0, IMDS_TOKEN_HEADER);
        assert!(second.headers[0].1.is_sensitive());
        let role = read_metadata_role(200, b"eks-node-role\nanother\n").unwrap();
        assert_eq!(role, "eks-node-role");
        let third = metadata_keys_request("http://169.254.169.254", &token, &role).unwrap();
        assert_eq!(
            third.url,
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/eks-node-role"
        );
        let now = at(1_796_277_600); // 2026-12-03T06:00:00Z
        let keys = br#"{"Code":"Success","LastUpdated":"2026-12-03T05:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIA3","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-03T12:00:00Z"}"#;
        let keys = read(&imds, 200, keys, now).unwrap();
        assert_eq!(keys.access_key_id, "ASIA3");
        assert_eq!(keys.life.as_secs(), 6 * 3600);

        // No IMDSv2 (or no metadata service at all), no role: the
        // instance's identity cannot be had, which is the deployment's
        // credentials to fix.
        assert!(matches!(
            read_metadata_token(403, b"Forbidden"),
            Err(TokenError::Refused(_))
        ));
        assert!(matches!(
            read_metadata_role(404, b"<html>Not Found</html>"),
            Err(TokenError::Refused(_))
        ));
        assert!(matches!(
            read_metadata_role(500, b""),
            Err(TokenError::Failed(_))
        ));
        assert!(matches!(
            read_metadata_token(200, b""),
            Err(TokenError::Failed(_))
        ));
        assert!(matches!(
            read_metadata_role(200, "r\u{0}".as_bytes()),
            Err(TokenError::Failed(_))
        ));
        let not_yet = br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"secret words"}"#;
        let error = read(&imds, 200, not_yet, now).unwrap_err();
        assert_eq!(
            error,
            TokenError::Failed(
                "the instance metadata service gave no keys (AssumeRoleUnauthorizedAccess)".into()
            )
        );
    }

    #[test]
    fn answers_are_read_with_their_expiry() {
        let now = at(1_796_277_600); // 2026-12-03T06:00:00Z
        let pod = Source::Container {
            url: String::new(),
            token_file: None,
            token: None,
        };
        let json = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-03T07:00:00Z"}"#;
        assert_eq!(
            read(&pod, 200, json, now).unwrap(),
            Keys {
                access_key_id: "ASIA1".into(),
                secret_access_key: "s".into(),
                session_token: "t".into(),
                life: Duration::from_secs(3600),
            }
        );
        let web = Source::WebIdentity {
            role_arn: String::new(),
            token_file: String::new(),
            session_name: String::new(),
            sts: String::new(),
        };
        let xml = br#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>FwoG&amp;token</SessionToken>
      <SecretAccessKey>secret</SecretAccessKey>
      <Expiration>2026-12-03T06:30:00.123Z</Expiration>
      <AccessKeyId>ASIA2</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        let keys = read(&web, 200, xml, now).unwrap();
        assert_eq!(keys.session_token, "FwoG&token");
        assert_eq!(keys.access_key_id, "ASIA2");
        assert_eq!(keys.life.as_secs(), 1800);
        let refused = br#"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>secret words</Message></Error></ErrorResponse>"#;
        assert_eq!(
            read(&web, 400, refused, now),
            Err(TokenError::Refused("InvalidIdentityToken".into()))
        );
        assert!(matches!(
            read(&pod, 500, b"", now),
            Err(TokenError::Failed(_))
        ));
        assert!(matches!(
            read(&pod, 200, b"{}", now),
            Err(TokenError::Failed(_))
        ));
    }
}
