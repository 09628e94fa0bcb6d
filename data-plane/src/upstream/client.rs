//! The HTTP client every upstream call goes through.
//!
//! - **Direct** calls (the usual case: the provider, or a model server next
//!   to the sidecar) go through hyper-util's pooled client: keep-alive
//!   connections, HTTP/2 when the upstream offers it by ALPN, TLS by rustls
//!   with ring and the platform's verifier (the system's roots, plus any
//!   private CA given with `--upstream-ca-file`). It is the
//!   client a bare hyper proxy uses, without per-request layers this path
//!   does not need.
//! - **Proxied** calls: when the environment names a proxy for the URL
//!   (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, read as curl
//!   does), the call goes through reqwest, which speaks to proxies (CONNECT
//!   tunnels for HTTPS, proxy credentials). Which way a URL goes is decided
//!   once, with its parse.
//! - What a deployment's requests need (URL parsed, `Host`, direct or
//!   proxied, provider headers) is made once per upstream format and kept
//!   with the deployment ([`Target`], a provider's; this client only
//!   decides the proxy, [`Upstream::is_proxied`]).
//! - Every call has a **deadline** for the whole exchange, the answer's body
//!   included: a stream that stalls past it ends with an error, which closes
//!   the client's connection (a truncated answer, never a clean end).
//!
//! Upstream redirects are never followed: a provider that redirects a POST
//! is misconfigured, and following could send the key elsewhere.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HOST;
use hyper::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;

use super::UpstreamError;
use super::deadline::Deadline;
use crate::body::Body;
use crate::providers::target::Target;

/// How long an unused upstream connection is kept for the next request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("setting up TLS with the platform's certificate verifier: {0}")]
    Tls(#[from] rustls::Error),
    #[error("building the client for proxied upstreams: {0}")]
    Proxied(#[from] reqwest::Error),
}

/// The upstream client; cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    direct: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    proxied: reqwest::Client,
    proxies: Matcher,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The matcher's debug output would show proxy credentials.
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// The TLS settings of upstream calls: rustls with ring and the platform's
/// verifier, trusting the system's roots and any extra ones. Built once and
/// shared by every worker's client, direct and proxied alike, so the roots
/// are loaded once and both paths verify the same way.
#[derive(Clone)]
pub struct Tls {
    config: rustls::ClientConfig,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Trusting the system's roots and `extra_roots` (a private CA's, for
    /// model servers inside the network).
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Result<Tls, InitError> {
        // ring is the process's provider (tonic's too). Already installed is
        // fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots.iter().cloned(),
            Arc::clone(&provider),
        )?;
        // "dangerous" is rustls's name for any verifier of one's own; this
        // one is the platform's, as `with_platform_verifier` would set.
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Tls { config })
    }
}

impl Upstream {
    /// A client with `tls`, and the proxies this process's environment
    /// names. One per worker: its pooled connections live on the runtime
    /// that opened them.
    pub fn new(tls: &Tls) -> Result<Upstream, InitError> {
        Self::with_proxies(Matcher::from_env(), tls)
    }

    fn with_proxies(proxies: Matcher, tls: &Tls) -> Result<Upstream, InitError> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.config.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        // The router is the only retry loop (DESIGN §5). hyper-util's one
        // retry, kept on, resends only a request that was never written (a
        // pooled connection the upstream had just closed): the upstream never
        // saw it, so it is no second attempt, and without it the router
        // would count, and cool, a deployment for our own stale connection.
        let direct = Client::builder(TokioExecutor::new())
            .retry_canceled_requests(true)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        // reqwest takes a rustls `ClientConfig` of the rustls version it
        // was built with (one in this build; anything else fails here, at
        // start) as it is: it offers what hyper-rustls offers above.
        let mut proxied_tls = tls.config.clone();
        proxied_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let proxied = reqwest::Client::builder()
            .tls_backend_preconfigured(proxied_tls)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Upstream {
            inner: Arc::new(Inner {
                direct,
                proxied,
                proxies,
            }),
        })
    }

    /// Whether the environment's proxy settings send `uri` through a proxy:
    /// asked once per target, when it is made ([`Target::new`]).
    pub fn is_proxied(&self, uri: &Uri) -> bool {
        self.inner.proxies.intercept(uri).is_some()
    }

    /// Sends `request` to `target` (its URI, `Host` and way, direct or
    /// proxied) and returns the answer, whose body must arrive whole within
    /// `timeout` of now as well.
    pub async fn send(
        &self,
        target: &Target,
        mut request: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Response<Body>, UpstreamError> {
        *request.uri_mut() = target.uri().clone();
        // Set here, once per target, rather than formatted by the client on
        // every request.
        request.headers_mut().insert(HOST, target.host().clone());
        let mut deadline = Box::pin(tokio::time::sleep(timeout));
        if target.proxied() {
            // Errors without the URL: an `api_base` may carry a token.
            let request =
                reqwest::Request::try_from(request).map_err(|e| failed(&e.without_url()))?;
            let response = tokio::select! {
                sent = self.inner.proxied.execute(request) => sent.map_err(|e| failed(&e.without_url()))?,
                () = deadline.as_mut() => return Err(UpstreamError::Timeout(timeout)),
            };
            let response = Response::from(response);
            Ok(response.map(|body| Deadline::new(body, deadline, timeout).boxed_unsync()))
        } else {
            let response = tokio::select! {
                sent = self.inner.direct.request(request.map(Full::new)) => sent.map_err(|e| failed(&e))?,
                () = deadline.as_mut() => return Err(UpstreamError::Timeout(timeout)),
            };
            Ok(response.map(|body| Deadline::new(body, deadline, timeout).boxed_unsync()))
        }
    }
}

/// A failed exchange as an [`UpstreamError`], with every cause in the chain
/// ("client error (Connect): tcp connect error: Connection refused").
fn failed(e: &(dyn std::error::Error + 'static)) -> UpstreamError {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    UpstreamError::Connection(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(proxies: Matcher) -> Upstream {
        Upstream::with_proxies(proxies, &Tls::new(&[]).expect("TLS")).expect("client")
    }

    #[test]
    fn proxies_apply_as_the_environment_says() {
        let upstream = upstream(
            Matcher::builder()
                .https("http://proxy.internal:3128")
                .no("localhost,.cluster.local")
                .build(),
        );
        let route = |url: &str| upstream.is_proxied(&url.parse().unwrap());
        assert!(route("https://api.openai.com/v1/chat/completions"));
        assert!(!route(
            "https://vllm.ml.svc.cluster.local/v1/chat/completions"
        ));
        assert!(
            !route("http://api.openai.com/v1/chat/completions"),
            "no HTTP proxy is set"
        );
        assert!(!route("https://localhost:8000/v1/chat/completions"));
    }
}
