//! What requests to one deployment in one upstream format need, made once
//! and kept with the deployment: the URL parsed and normalised, its `Host`
//! header, the provider's headers, and whether the environment's proxy
//! settings send it through a proxy ([`Target`]); and the deployment's
//! targets, one per upstream format ([`Targets`]). A provider that
//! authenticates with a token it fetches (Vertex AI) keeps the token with
//! the targets too, one for all of them ([`TokenCell`]).
//!
//! A leaf beside the providers: it imports nothing of this crate but
//! [`crate::formats`], so the config can hold [`Targets`] without depending
//! on the providers, the upstream client or the request path.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};

use crate::formats::Format;

/// A deployment whose settings cannot make a request. The control plane
/// validates these, so this is a misconfiguration reaching the data plane
/// through a path that skipped validation, or a secret from the environment
/// that is not a valid header value or URL. Permanent until the config
/// changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("provider {0:?} is not one Sluice knows")]
    UnknownProvider(String),
    #[error("provider {0:?} needs an api_base and the deployment has none")]
    MissingApiBase(&'static str),
    #[error("the deployment's {0} cannot be sent in an HTTP header")]
    InvalidHeader(&'static str),
    /// The message leaves the URL out: an `api_base` may carry a token.
    #[error("the deployment's upstream URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("the deployment's upstream URL is not valid: its scheme is neither http nor https")]
    UnsupportedScheme,
    #[error("the deployment's upstream URL has no host")]
    NoHost,
    /// Never the credentials themselves, nor their path's contents.
    #[error("the deployment's credentials cannot be used: {0}")]
    Credentials(String),
}

/// Where and how requests to one deployment in one upstream format go.
/// Secret header values are marked sensitive, so `Debug` hides them.
#[derive(Debug)]
pub struct Target {
    uri: Uri,
    /// `Host`: the URI's host, and its port unless the scheme's default.
    host: HeaderValue,
    /// Whether the request goes through the environment's proxy.
    proxied: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    /// A target for `url` with the provider's `headers`; `proxied` says
    /// whether the environment's proxy settings intercept the parsed URI
    /// (the upstream client's to decide, once, here).
    pub fn new(
        url: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        proxied: impl FnOnce(&Uri) -> bool,
    ) -> Result<Target, ProviderError> {
        let uri = parse(url)?;
        Ok(Target {
            host: host_header(&uri)?,
            proxied: proxied(&uri),
            uri,
            headers,
        })
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    pub fn proxied(&self) -> bool {
        self.proxied
    }

    /// The provider's headers (authentication), set on every request.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}

/// What a provider fetches for a deployment and the requests to it share,
/// whatever their target (a Google token, temporary AWS keys): read without
/// a lock on every request, fetched by one request at a time. It is used
/// while more than [`Fetched::USABLE`] of its life is left, and fetched
/// again, in the background, once less than [`Fetched::FRESH`] is. An
/// endpoint that did not answer is not asked again for
/// [`Fetched::UNREACHABLE_FOR`]: off Azure or EC2 the metadata service never
/// answers, and every request would otherwise wait out its timeout.
#[derive(Debug)]
pub struct Fetched<T> {
    current: ArcSwapOption<T>,
    /// One fetch at a time; requests without a usable one wait on it.
    fetching: tokio::sync::Mutex<()>,
    /// A background fetch is under way.
    refreshing: AtomicBool,
    /// When a fetch last found the endpoint unreachable, and why.
    unreachable: ArcSwapOption<(Instant, String)>,
}

/// A provider's fetched token.
pub type TokenCell = Fetched<Token>;

/// What [`Fetched`] keeps: something that expires.
pub trait Expiring: Send + Sync + 'static {
    fn expires_at(&self) -> Instant;
}

impl<T> Default for Fetched<T> {
    fn default() -> Self {
        Fetched {
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            unreachable: ArcSwapOption::empty(),
        }
    }
}

/// A fetched token: its `Authorization` value (marked sensitive) and when
/// it expires.
#[derive(Debug)]
pub struct Token {
    pub authorization: HeaderValue,
    pub expires_at: Instant,
}

impl Expiring for Token {
    fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

/// Temporary AWS keys fetched for a deployment (EKS Pod Identity, a web
/// identity's role): `Debug` shows only the key id.
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expires_at: Instant,
}

impl fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKeys")
            .field("access_key_id", &self.access_key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Expiring for AwsKeys {
    fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

impl<T: Expiring> Fetched<T> {
    /// Below this much life left it is not used: the request could reach
    /// the upstream after it expired.
    pub const USABLE: Duration = Duration::from_secs(60);
    /// Below this much life left it is fetched again while it is still
    /// used.
    pub const FRESH: Duration = Duration::from_secs(300);
    /// How long an endpoint that did not answer is not asked again.
    pub const UNREACHABLE_FOR: Duration = Duration::from_secs(5);

    /// The current one when it is usable at `now`, and whether it is still
    /// fresh.
    pub fn usable(&self, now: Instant) -> Option<(Arc<T>, bool)> {
        let current = self.current.load_full()?;
        let left = current.expires_at().saturating_duration_since(now);
        (left > Self::USABLE).then_some((current, left > Self::FRESH))
    }

    /// Keeps `value` as the current one, and gives it back.
    pub fn store(&self, value: T) -> Arc<T> {
        let value = Arc::new(value);
        self.current.store(Some(Arc::clone(&value)));
        self.unreachable.store(None);
        value
    }

    /// A fetch at `now` found the endpoint unreachable, for `why`.
    pub fn mark_unreachable(&self, now: Instant, why: String) {
        self.unreachable.store(Some(Arc::new((now, why))));
    }

    /// Why the endpoint is not to be asked at `now`, and for how much
    /// longer: `None` once [`Fetched::UNREACHABLE_FOR`] has passed since a
    /// fetch found it unreachable, or when none did.
    pub fn unreachable(&self, now: Instant) -> Option<(String, Duration)> {
        let guard = self.unreachable.load();
        let (at, why) = guard.as_deref()?;
        let left = (*at + Self::UNREACHABLE_FOR).saturating_duration_since(now);
        (!left.is_zero()).then(|| (why.clone(), left))
    }

    /// Waits for the fetch under way, if any; the caller then fetches
    /// unless [`Fetched::usable`] says another just did, or
    /// [`Fetched::unreachable`] that the endpoint did not answer it.
    pub async fn fetching(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.fetching.lock().await
    }

    /// Whether the caller should start a background fetch: true for one
    /// caller until [`Fetched::refreshed`].
    pub fn start_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// The background fetch is over (done or failed).
    pub fn refreshed(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

/// A request that fetches credentials: a token endpoint's, a metadata
/// server's, STS's.
#[derive(Debug)]
pub struct TokenRequest {
    pub url: String,
    pub method: hyper::Method,
    /// A form to send (a POST's), or `None` for no body.
    pub form: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Why a credentials endpoint's answer gave none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The credentials were refused (a 4xx): the endpoint's error code,
    /// when the answer had one (`invalid_grant`), never its description.
    #[error("refused the credentials ({0})")]
    Refused(String),
    /// The endpoint failed (5xx, 429) or answered something unreadable.
    #[error("{0}")]
    Failed(String),
}

/// A deployment's [`Target`]s, one per upstream format, made on first use:
/// parsing the URL (with IDNA processing of the host) and building the
/// headers cost more than the rest of building a request. A provider's
/// target is a function of (deployment, upstream format, upstream model, and
/// for a provider that streams at another URL whether the request streams),
/// so each is kept with the upstream model it was made for and made anew for
/// another (a wildcard deployment's other models on Azure). Kept with the
/// deployment in the config, so a config change starts afresh; so is what
/// a provider fetches ([`Targets::token`], [`Targets::aws_keys`]).
#[derive(Debug, Default)]
pub struct Targets {
    /// By format, then by whether streamed: a target and the model it is for.
    made: [[Slot; 2]; Format::COUNT],
    token: Arc<TokenCell>,
    aws_keys: Arc<Fetched<AwsKeys>>,
}

type Slot = OnceLock<(String, Arc<Target>)>;

impl Targets {
    /// The target for `format`, `streamed` (true only where a stream goes
    /// elsewhere) and `upstream_model`, made by `make` unless kept.
    pub fn get_or_make<E>(
        &self,
        format: Format,
        streamed: bool,
        upstream_model: &str,
        make: impl FnOnce() -> Result<Target, E>,
    ) -> Result<Arc<Target>, E> {
        let slot = &self.made[format.index()][usize::from(streamed)];
        if let Some((model, target)) = slot.get()
            && model == upstream_model
        {
            return Ok(Arc::clone(target));
        }
        let made = Arc::new(make()?);
        let _ = slot.set((upstream_model.to_owned(), Arc::clone(&made)));
        // Requests that raced to make it share the one kept.
        match slot.get() {
            Some((model, kept)) if model == upstream_model => Ok(Arc::clone(kept)),
            _ => Ok(made),
        }
    }
}

impl Targets {
    /// The deployment's token, for a provider that fetches one: every
    /// target's requests send it.
    pub fn token(&self) -> &Arc<TokenCell> {
        &self.token
    }

    /// The deployment's temporary AWS keys, when its provider fetches them.
    pub fn aws_keys(&self) -> &Arc<Fetched<AwsKeys>> {
        &self.aws_keys
    }
}

/// `url` as a request URI. Parsed as a URL first, as a browser or curl
/// would: an international host becomes punycode, stray characters are
/// percent-encoded. The error leaves the URL out: an `api_base` may carry a
/// token.
fn parse(url: &str) -> Result<Uri, ProviderError> {
    let invalid = |e: &dyn fmt::Display| ProviderError::InvalidUrl(e.to_string());
    let mut url = reqwest::Url::parse(url).map_err(|e| invalid(&e))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProviderError::UnsupportedScheme);
    }
    // Credentials in the URL are never sent: they would travel in the
    // clear as HTTP/2's `:authority`. Providers authenticate with `api_key`.
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.as_str().parse::<Uri>().map_err(|e| invalid(&e))
}

/// The `Host` header for `uri`: its authority, which [`parse`] leaves
/// without credentials or a default port, so it is also exactly what
/// HTTP/2 sends as `:authority`.
fn host_header(uri: &Uri) -> Result<HeaderValue, ProviderError> {
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or(ProviderError::NoHost)?;
    HeaderValue::from_str(authority.as_str()).map_err(|_| ProviderError::NoHost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(url: &str) -> Result<Target, ProviderError> {
        Target::new(url, Vec::new(), |_| false)
    }

    #[test]
    fn targets_are_kept_per_format_and_upstream_model() {
        let targets = Targets::default();
        let made = std::cell::Cell::new(0);
        let get = |format, model: &str| {
            targets
                .get_or_make(format, false, model, || {
                    made.set(made.get() + 1);
                    make(&format!("http://upstream.local/{model}/{format:?}"))
                })
                .unwrap()
                .uri()
                .to_string()
        };
        let chat = Format::ChatCompletions;
        assert_eq!(get(chat, "m1"), "http://upstream.local/m1/ChatCompletions");
        assert_eq!(get(chat, "m1"), "http://upstream.local/m1/ChatCompletions");
        assert_eq!(made.get(), 1, "kept");
        assert_eq!(get(chat, "m2"), "http://upstream.local/m2/ChatCompletions");
        assert_eq!(
            get(Format::Embeddings, "m1"),
            "http://upstream.local/m1/Embeddings"
        );
        assert_eq!(made.get(), 3, "another model or format is made anew");
        let e = make("http://sk-secret@[bad/embeddings")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("sk-secret"), "{e}");
    }

    #[test]
    fn requests_racing_to_make_a_target_share_the_one_kept() {
        let targets = Targets::default();
        let first = targets
            .get_or_make(Format::ChatCompletions, false, "m", || {
                // Another request makes and keeps it meanwhile.
                let kept = targets
                    .get_or_make(Format::ChatCompletions, false, "m", || {
                        make("http://upstream.local/kept")
                    })
                    .unwrap();
                assert_eq!(kept.uri().to_string(), "http://upstream.local/kept");
                make("http://upstream.local/lost")
            })
            .unwrap();
        assert_eq!(first.uri().to_string(), "http://upstream.local/kept");
    }

    #[test]
    fn a_token_is_sent_while_usable_and_fetched_again_before_it_goes_stale() {
        let cell = TokenCell::default();
        let now = Instant::now();
        assert!(cell.usable(now).is_none());
        let token = |life: u64| Token {
            authorization: HeaderValue::from_static("Bearer t"),
            expires_at: now + Duration::from_secs(life),
        };
        cell.store(token(3600));
        assert_eq!(cell.usable(now).map(|(_, fresh)| fresh), Some(true));
        assert_eq!(
            cell.usable(now)
                .map(|(token, _)| token.authorization.clone()),
            Some(HeaderValue::from_static("Bearer t"))
        );
        cell.store(token(200));
        assert_eq!(cell.usable(now).map(|(_, fresh)| fresh), Some(false));
        cell.store(token(60));
        assert!(cell.usable(now).is_none(), "a minute or less: not sent");
        assert!(cell.start_refresh());
        assert!(!cell.start_refresh(), "one background fetch at a time");
        cell.refreshed();
        assert!(cell.start_refresh());
    }

    #[test]
    fn the_proxy_decision_is_made_once_on_the_parsed_uri() {
        let asked = std::cell::Cell::new(None);
        let target = Target::new("https://bücher.example/v1", Vec::new(), |uri| {
            asked.set(Some(uri.to_string()));
            true
        })
        .unwrap();
        assert!(target.proxied());
        assert_eq!(
            asked.take().as_deref(),
            Some("https://xn--bcher-kva.example/v1")
        );
    }

    #[test]
    fn urls_are_normalised_as_a_browser_would() {
        let target = make("https://bücher.example/v1/completions").unwrap();
        assert_eq!(
            target.uri().to_string(),
            "https://xn--bcher-kva.example/v1/completions"
        );
        let e = make("ftp://files.example/v1/embeddings").unwrap_err();
        assert_eq!(e, ProviderError::UnsupportedScheme);
        assert!(e.to_string().contains("neither http nor https"), "{e}");
        assert!(matches!(
            make("not a url"),
            Err(ProviderError::InvalidUrl(_))
        ));
    }

    #[test]
    fn host_headers_name_the_port_unless_it_is_the_schemes() {
        let host = |url| make(url).unwrap().host().clone();
        assert_eq!(host("https://api.openai.com/v1/x"), "api.openai.com");
        assert_eq!(host("https://api.openai.com:443/v1/x"), "api.openai.com");
        assert_eq!(host("http://vllm.local:8000/v1/x"), "vllm.local:8000");
        assert_eq!(host("http://user:pw@[::1]:80/v1"), "[::1]");
        assert_eq!(host("https://10.0.0.1:8443/"), "10.0.0.1:8443");
        let target = make("https://user:pw@api.example/v1").unwrap();
        assert_eq!(
            target.uri().to_string(),
            "https://api.example/v1",
            "credentials are not sent"
        );
    }
}
