//! AWS Signature Version 4, as Bedrock wants each request signed: a
//! canonical form of the request (method, path, query, the signed headers,
//! the body's SHA-256) hashed into a string to sign, and that signed with a
//! key derived from the secret by HMAC-SHA256 over the date, region and
//! service. Pure: the clock is passed in. Checked against botocore's
//! signatures (the tests' vectors).

use std::time::SystemTime;

use hyper::Uri;
use hyper::header::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use ring::{digest, hmac};

use super::ProviderError;

/// What SigV4 (and AWS's URLs and forms) leave unencoded: letters, digits
/// and `-_.~`.
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The algorithm's name, first in the `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An access key, and the session token of temporary credentials.
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// The headers a signed request carries, values marked sensitive where
/// they are secret.
#[derive(Debug)]
pub struct Signed {
    pub authorization: HeaderValue,
    /// `x-amz-date`.
    pub date: HeaderValue,
    /// `x-amz-security-token`, for temporary credentials.
    pub security_token: Option<HeaderValue>,
}

/// What is signed of a request: all a POST to Bedrock needs.
pub struct Request<'a> {
    pub method: &'a str,
    pub uri: &'a Uri,
    /// `Host` as sent: the authority, with its port unless the default.
    pub host: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// Signs `request` for `service` in `region` at `now`.
pub fn sign(
    credentials: &Credentials<'_>,
    region: &str,
    service: &str,
    request: &Request<'_>,
    now: SystemTime,
) -> Result<Signed, ProviderError> {
    let stamp = timestamp(now);
    let date = &stamp[..8];
    let mut headers = vec![
        ("content-type", request.content_type.trim()),
        ("host", request.host),
        ("x-amz-date", stamp.as_str()),
    ];
    if let Some(token) = credentials.session_token {
        headers.push(("x-amz-security-token", token));
    }
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical = String::with_capacity(256);
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(&canonical_path(request.uri.path()));
    canonical.push('\n');
    canonical.push_str(&canonical_query(request.uri.query().unwrap_or("")));
    canonical.push('\n');
    for (name, value) in &headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    canonical.push_str(&sha256_hex(request.body));

    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{stamp}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let key = signing_key(credentials.secret_access_key, date, region, service);
    let signature = hex::encode(hmac::sign(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    let header = |value: &str, name: &'static str| {
        HeaderValue::from_str(value).map_err(|_| ProviderError::InvalidHeader(name))
    };
    let mut authorization = header(&authorization, "aws_access_key_id")?;
    authorization.set_sensitive(true);
    let security_token = match credentials.session_token {
        Some(token) => {
            let mut token = header(token, "aws_session_token")?;
            token.set_sensitive(true);
            Some(token)
        }
        None => None,
    };
    Ok(Signed {
        authorization,
        date: header(&stamp, "x-amz-date")?,
        security_token,
    })
}

/// `20261203T060000Z`: the UTC time to the second, ISO 8601's basic format.
fn timestamp(now: SystemTime) -> String {
    humantime::format_rfc3339_seconds(now)
        .to_string()
        .replace(['-', ':'], "")
}

/// The key for one day, region and service.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let step = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k_date = step(format!("AWS4{secret}").as_bytes(), date);
    let k_region = step(k_date.as_ref(), region);
    let k_service = step(k_region.as_ref(), service);
    let k_signing = step(k_service.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// The path as sent, each segment encoded once more: every AWS service but
/// S3 signs the path encoded twice (`%3A` in a Bedrock model id is signed
/// as `%253A`).
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(|segment| utf8_percent_encode(segment, UNRESERVED).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The query's parameters decoded, encoded the one way SigV4 wants and
/// sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let encode = |s: &str| {
                let decoded = percent_decode_str(s).decode_utf8_lossy();
                utf8_percent_encode(&decoded, UNRESERVED).to_string()
            };
            (encode(name), encode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const BODY: &[u8] = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"#;
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLETOKEN";

    /// 2026-12-03T06:00:00Z.
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_277_600)
    }

    fn signed(url: &str, session_token: Option<&str>) -> Signed {
        let uri: Uri = url.parse().unwrap();
        let host = uri.authority().unwrap().as_str().to_owned();
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: SECRET,
            session_token,
        };
        let request = Request {
            method: "POST",
            uri: &uri,
            host: &host,
            content_type: "application/json",
            body: BODY,
        };
        sign(&credentials, "us-east-1", "bedrock", &request, at()).unwrap()
    }

    /// The vectors are botocore's `SigV4Auth(credentials, "bedrock",
    /// "us-east-1").add_auth` of the same requests at the same time.
    #[test]
    fn signatures_are_botocores() {
        assert_eq!(timestamp(at()), "20261203T060000Z");
        let invoke = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke";
        let s = signed(invoke, None);
        assert_eq!(s.date, "20261203T060000Z");
        assert!(s.security_token.is_none());
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=68e13a6bb5a42acd47cbb37ce0d84670383c2a5d3d2a6f52ace951ed14bcbb88"
        );
        assert!(s.authorization.is_sensitive());
        let s = signed(invoke, Some(TOKEN));
        assert_eq!(s.security_token.as_ref().unwrap(), TOKEN);
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=c85a5df38372d5c9eca27eccd0b25473a83255454e2d68cf3c0f7b5de8057459"
        );
        // A port in the host, an inference profile, the streaming verb.
        let stream = "http://127.0.0.1:8080/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream";
        assert_eq!(
            signed(stream, None).authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=f6996ce2b6f3405824582b55a9ce9acc936cf87b3325030fa5ad85a2c7dc8953"
        );
        assert_eq!(
            signed(stream, Some(TOKEN)).authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=184ccb5b7392ab6e924025f5b56ca5149efa1124296e5fd45911f7ff8c880810"
        );
    }

    #[test]
    fn paths_are_encoded_twice_and_queries_sorted() {
        assert_eq!(
            canonical_path("/model/a.b-v1%3A0/invoke"),
            "/model/a.b-v1%253A0/invoke"
        );
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_query("b=2&a=x%20y&c"), "a=x%20y&b=2&c=");
        assert_eq!(canonical_query(""), "");
    }
}
