//! What a provider fetches to authenticate (Vertex AI's bearer token,
//! Azure's Entra ID token, Bedrock's temporary AWS keys): taken from the
//! deployment's [`Fetched`] cell without a lock while it is usable, fetched again in the
//! background before it goes stale, and fetched by one request at a time
//! (the others waiting for it) when there is none. Only the first request
//! to a deployment, and those after a failed fetch, wait on the endpoint.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};

use crate::config::secrets::{AzureIdentity, Secret};
use crate::metrics::Metrics;
use crate::providers::aws_credentials::{self, Source};
use crate::providers::target::{
    AwsKeys, Expiring, Fetched, Target, Token, TokenCell, TokenError, TokenRequest,
};
use crate::providers::{entra, vertex};
use crate::upstream::{Upstream, UpstreamError};

/// How long a credentials endpoint has to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long EC2's instance metadata service has, for each of its three
/// answers: as AWS's SDKs, one second, since off EC2 (or from a pod its
/// IMDSv2 hop limit keeps out) nothing answers at all.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// The `Authorization` for a request to a deployment whose provider
/// fetches its token, kept in `cell`, with the credentials `api_key` names.
pub async fn authorization(
    cell: &Arc<TokenCell>,
    api_key: &Secret,
    upstream: &Upstream,
    metrics: &Arc<Metrics>,
) -> Result<HeaderValue, UpstreamError> {
    let (api_key, upstream) = (api_key.clone(), upstream.clone());
    let token = current(cell, metrics, move || {
        let (api_key, upstream) = (api_key.clone(), upstream.clone());
        async move { fetch_token(&api_key, &upstream).await }
    })
    .await?;
    Ok(token.authorization.clone())
}

/// The `Authorization` for a request to an Azure deployment without a key:
/// a token for the identity it names (`own`) or the data plane's, kept in
/// `cell`.
pub async fn entra_authorization(
    cell: &Arc<TokenCell>,
    own: &AzureIdentity,
    upstream: &Upstream,
    metrics: &Arc<Metrics>,
) -> Result<HeaderValue, UpstreamError> {
    let (own, upstream) = (own.clone(), upstream.clone());
    let token = current(cell, metrics, move || {
        let (own, upstream) = (own.clone(), upstream.clone());
        async move { fetch_entra_token(&own, &upstream).await }
    })
    .await?;
    Ok(token.authorization.clone())
}

/// The temporary AWS keys of a deployment in `region` whose provider
/// fetches them, kept in `cell`, from the source the environment names.
pub async fn aws_keys(
    cell: &Arc<Fetched<AwsKeys>>,
    region: &Secret,
    upstream: &Upstream,
    metrics: &Arc<Metrics>,
) -> Result<Arc<AwsKeys>, UpstreamError> {
    let (region, upstream) = (region.clone(), upstream.clone());
    current(cell, metrics, move || {
        let (region, upstream) = (region.clone(), upstream.clone());
        async move { fetch_aws_keys(&region, &upstream).await }
    })
    .await
}

/// The value in `cell`, fetched with `fetch` when there is none usable, and
/// again in the background when it is no longer fresh (a failure there
/// counted in `metrics`).
async fn current<T, F, Fut>(
    cell: &Arc<Fetched<T>>,
    metrics: &Arc<Metrics>,
    fetch: F,
) -> Result<Arc<T>, UpstreamError>
where
    T: Expiring,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>> + Send + 'static,
{
    if let Some((value, fresh)) = cell.usable(Instant::now()) {
        if !fresh && cell.start_refresh() {
            let (cell, fetching, metrics) = (Arc::clone(cell), fetch(), Arc::clone(metrics));
            tokio::spawn(async move {
                match fetching.await {
                    Ok(value) => {
                        cell.store(value);
                    }
                    // The current one is still usable; the next request
                    // past FRESH tries again.
                    Err(e) => {
                        metrics.credential_refresh_failed();
                        tracing::warn!(error = %e, "refreshing provider credentials failed");
                    }
                }
                cell.refreshed();
            });
        }
        return Ok(value);
    }
    let _fetching = cell.fetching().await;
    // Another request may have fetched it while this one waited, or found
    // the endpoint unreachable: the requests queued behind that one do not
    // each wait out the same timeout.
    if let Some((value, _)) = cell.usable(Instant::now()) {
        return Ok(value);
    }
    unreachable(cell)?;
    match fetch().await {
        // Used even when it is short-lived: it was just fetched.
        Ok(value) => Ok(cell.store(value)),
        Err(e) => {
            if let UpstreamError::Connection(_) | UpstreamError::Timeout(_) = e {
                cell.mark_unreachable(Instant::now(), e.to_string());
            }
            Err(e)
        }
    }
}

/// The endpoint's failure to answer, while it is not to be asked again:
/// a connection error, as the fetch's was (the deployment cools from it and
/// the request goes on to another).
fn unreachable<T: Expiring>(cell: &Fetched<T>) -> Result<(), UpstreamError> {
    match cell.unreachable(Instant::now()) {
        Some((why, left)) => Err(UpstreamError::Connection(format!(
            "{why} (not asked again for {} ms)",
            left.as_millis()
        ))),
        None => Ok(()),
    }
}

/// Fetches a token with the credentials `api_key` names.
async fn fetch_token(api_key: &Secret, upstream: &Upstream) -> Result<Token, UpstreamError> {
    let credentials = vertex::credentials(api_key.expose(), |name| std::env::var(name).ok())?;
    let asked = vertex::token_request(&credentials, unix_now())?;
    let started = Instant::now();
    let (status, body) = send(asked, upstream, "the Google token endpoint", FETCH_TIMEOUT).await?;
    match vertex::read_token(status.as_u16(), &body, unix_now()) {
        Ok((authorization, life)) => Ok(Token {
            authorization,
            expires_at: started + life,
        }),
        Err(e) => Err(refused(e)),
    }
}

/// Fetches an Entra ID token for the identity the deployment (`own`) and
/// the environment name, a federated token read afresh (the kubelet
/// rotates it); with none named, the host's managed identity, given as long
/// as on EC2 (off Azure nothing answers).
async fn fetch_entra_token(
    own: &AzureIdentity,
    upstream: &Upstream,
) -> Result<Token, UpstreamError> {
    let identity = entra::identity(own, |name| std::env::var(name).ok());
    let asked = entra::token_request(&identity, |path| std::fs::read_to_string(path))?;
    let started = Instant::now();
    let answered = match &identity {
        entra::Identity::App(_) => send(asked, upstream, "Microsoft Entra ID", FETCH_TIMEOUT).await,
        entra::Identity::Hosted { .. } => {
            send(asked, upstream, "the app's identity endpoint", FETCH_TIMEOUT).await
        }
        entra::Identity::Managed { endpoint, .. } => {
            send(asked, upstream, "Azure's instance metadata service", IMDS_TIMEOUT)
                .await
                .map_err(|e| {
                    crate::providers::ProviderError::Credentials(format!(
                        "an azure deployment without api_key needs an identity: none in the data \
                         plane's environment (AZURE_TENANT_ID, AZURE_CLIENT_ID and \
                         AZURE_CLIENT_SECRET, a workload identity's AZURE_FEDERATED_TOKEN_FILE, or an \
                         app's IDENTITY_ENDPOINT and IDENTITY_HEADER), and no managed identity at \
                         {endpoint} ({e})"
                    ))
                    .into()
                })
        }
    };
    let (status, body) = answered?;
    match vertex::read_token(status.as_u16(), &body, unix_now()) {
        Ok((authorization, life)) => Ok(Token {
            authorization,
            expires_at: started + life,
        }),
        Err(e) => Err(refused(e)),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Fetches temporary AWS keys from the source the environment names.
async fn fetch_aws_keys(region: &Secret, upstream: &Upstream) -> Result<AwsKeys, UpstreamError> {
    let source = aws_credentials::source(|name| std::env::var(name).ok(), region.expose())
        .ok_or_else(|| {
            crate::providers::ProviderError::Credentials(
                "no AWS credentials in the data plane's environment".into(),
            )
        })?;
    let asked = aws_credentials::request(&source, |path| std::fs::read_to_string(path))?;
    let started = Instant::now();
    let (status, body) = match &source {
        Source::InstanceMetadata { endpoint } => {
            // IMDSv2: a session token, the role's name, its keys.
            let ask = |asked| {
                send(
                    asked,
                    upstream,
                    "the instance metadata service",
                    IMDS_TIMEOUT,
                )
            };
            let (status, body) = ask(asked).await?;
            let token =
                aws_credentials::read_metadata_token(status.as_u16(), &body).map_err(refused)?;
            let (status, body) =
                ask(aws_credentials::metadata_role_request(endpoint, &token)?).await?;
            let role =
                aws_credentials::read_metadata_role(status.as_u16(), &body).map_err(refused)?;
            ask(aws_credentials::metadata_keys_request(
                endpoint, &token, &role,
            )?)
            .await?
        }
        _ => {
            send(
                asked,
                upstream,
                "the AWS credentials endpoint",
                FETCH_TIMEOUT,
            )
            .await?
        }
    };
    match aws_credentials::read(&source, status.as_u16(), &body, SystemTime::now()) {
        Ok(keys) => Ok(AwsKeys {
            access_key_id: keys.access_key_id,
            secret_access_key: keys.secret_access_key,
            session_token: keys.session_token,
            expires_at: started + keys.life,
        }),
        Err(e) => Err(refused(e)),
    }
}

/// Sends a credentials request; `what` names the endpoint in errors.
async fn send(
    asked: TokenRequest,
    upstream: &Upstream,
    what: &str,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), UpstreamError> {
    let target = Target::new(&asked.url, Vec::new(), |uri| upstream.is_proxied(uri))?;
    let mut request = Request::new(asked.form.map(Bytes::from).unwrap_or_default());
    *request.method_mut() = asked.method;
    request.headers_mut().extend(asked.headers);
    let response = upstream
        .send(&target, request, timeout)
        .await
        .map_err(|e| match e {
            UpstreamError::Connection(detail) => {
                UpstreamError::Connection(format!("{what}: {detail}"))
            }
            other => other,
        })?;
    let status = response.status();
    let body = super::read_error_body(response.into_body()).await;
    Ok((status, body))
}

/// A failed fetch as the request's error. Refused credentials are answered
/// as the upstream refusing the deployment's: the deployment cools, and the
/// client is told its credentials need fixing, never what the endpoint
/// said.
fn refused(e: TokenError) -> UpstreamError {
    match e {
        TokenError::Refused(code) => UpstreamError::Status {
            status: StatusCode::UNAUTHORIZED,
            body: Bytes::from(format!(r#"{{"error":{{"code":"{code}"}}}}"#)),
            shape: crate::formats::ErrorShape::Other,
            relayed: Box::default(),
        },
        TokenError::Failed(detail) => UpstreamError::Connection(detail),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Fetches into `cell` as a request would, with a fetch that counts
    /// its calls in `calls` and fails with `error` after 20 ms.
    async fn fetch_failing(
        cell: &Arc<TokenCell>,
        calls: &Arc<AtomicUsize>,
        error: fn() -> UpstreamError,
    ) -> Result<Arc<Token>, UpstreamError> {
        let metrics = Arc::new(Metrics::new());
        current(cell, &metrics, || {
            let calls = Arc::clone(calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(error())
            }
        })
        .await
    }

    fn silent() -> UpstreamError {
        UpstreamError::Connection("the metadata service: timed out".into())
    }

    #[tokio::test]
    async fn an_endpoint_that_does_not_answer_is_not_asked_again_for_a_while() {
        let (cell, calls) = (
            Arc::new(TokenCell::default()),
            Arc::new(AtomicUsize::new(0)),
        );
        // Requests queued behind the fetch that failed do not fetch again.
        let queued =
            futures::future::join_all((0..4).map(|_| fetch_failing(&cell, &calls, silent))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        for result in queued {
            match result.unwrap_err() {
                UpstreamError::Connection(why) => assert!(why.contains("metadata service")),
                other => panic!("{other:?}"),
            }
        }
        // Nor does the next request.
        let why = fetch_failing(&cell, &calls, silent).await.unwrap_err();
        assert!(why.to_string().contains("not asked again for"), "{why}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Once it passes, the endpoint is asked again.
        let later = Instant::now() + TokenCell::UNREACHABLE_FOR;
        assert!(cell.unreachable(later).is_none());
        assert!(cell.unreachable(Instant::now()).is_some());
        // A token fetched forgets it.
        cell.store(Token {
            authorization: HeaderValue::from_static("Bearer t"),
            expires_at: Instant::now() + Duration::from_secs(3600),
        });
        assert!(cell.unreachable(Instant::now()).is_none());
    }

    #[tokio::test]
    async fn an_endpoint_that_refused_is_asked_again_at_once() {
        let (cell, calls) = (
            Arc::new(TokenCell::default()),
            Arc::new(AtomicUsize::new(0)),
        );
        let refusal = || refused(TokenError::Refused("invalid_client".into()));
        for _ in 0..2 {
            let e = fetch_failing(&cell, &calls, refusal).await.unwrap_err();
            assert!(matches!(e, UpstreamError::Status { .. }), "{e:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
