//! The production store: etcd v3 over gRPC (`etcd-client`).
//!
//! - **Deadlines**: every call is bounded by [`EtcdOptions::request_timeout`];
//!   a deadline, a refused connection or any transport failure is
//!   [`StoreError::Unavailable`]. A write that times out may still have been
//!   applied: callers re-read before they retry.
//! - **Reconnects**: the client's channel connects lazily and reconnects on
//!   the next call after etcd comes back, so a store outlives etcd restarts.
//!   Watch streams do not: they end with an error and the caller watches
//!   again from the revision it last saw.
//! - **Ranges** are paged ([`RANGE_PAGE`] keys per request, all pinned to the
//!   first page's revision), so millions of keys stay under gRPC's 4 MiB
//!   message limit.
//! - **Watches from an exact revision**: etcd replays a watch that starts *at*
//!   its compacted revision, the trait says a watch from there is compacted.
//!   We ask etcd for one revision earlier and drop it, so etcd itself reports
//!   the compaction when ours would (the one exception is a store compacted at
//!   exactly revision 1, where there is nothing to replay anyway).
//! - **Expiring keys** ([`Store::put_with_ttl`]): one lease per put, granted
//!   with the TTL rounded up to whole seconds (at least [`MIN_LEASE_TTL`]),
//!   and the put attached to it. Nothing keeps the lease alive, so it expires
//!   and etcd deletes the key; a later put with a new lease detaches the key
//!   from the old one, which then expires holding nothing.
//! - **TLS** ([`EtcdTls`]): rustls (ring) with no built-in trust roots, so a
//!   TLS connection needs a CA file. The files are read and checked when
//!   [`EtcdStore::connect`] runs; a bad one is [`StoreError::Other`] naming
//!   it, at once. A server that refuses our certificate, or one we do not
//!   trust, is [`StoreError::Unavailable`] after the connect timeout.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions,
    Identity, PutOptions, TlsOptions, TxnOp, WatchOptions,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::Code;

use super::{
    Compare, Event, EventKind, KeyValue, Op, Range, Store, StoreError, Txn, TxnOutcome,
    WatchMessage, WatchStream, check_watch_start,
};

/// Keys per range request. Large on purpose: etcd (3.4 and 3.5) walks the
/// whole remaining key range on every paged request to count it, so paging
/// is quadratic in the number of keys; with a million keys, 1,000-key pages
/// took minutes. 10,000 typical keys are ~2 MiB, under gRPC's 4 MiB limit;
/// pages of larger values are halved on "too large".
pub const RANGE_PAGE: i64 = 10_000;

/// How often a range restarts when etcd compacts the revision it was paging
/// at, before it gives up.
const RANGE_ATTEMPTS: usize = 3;

/// HTTP/2 pings on connections with open streams, so a watch on a host that
/// vanished (no RST, no FIN) fails instead of waiting forever. etcd refuses
/// pings more often than every 5 s (`--grpc-keepalive-min-time`) and pings on
/// idle connections (it answers both with GOAWAY).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest lease etcd grants with its default timing: it raises any
/// shorter TTL to ceil(1.5 × election timeout) = 2 s (etcd's `minTTL`), so we
/// ask for that rather than pretend.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// A TTL as etcd leases take it: whole seconds, rounded up, at least
/// [`MIN_LEASE_TTL`].
pub fn lease_seconds(ttl: Duration) -> i64 {
    let whole = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(whole.max(MIN_LEASE_TTL.as_secs())).unwrap_or(i64::MAX)
}

/// The key read to learn the store's revision; never written.
const REVISION_PROBE: &str = "/sluice/";

/// How to reach etcd.
#[derive(Clone)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `http://127.0.0.1:2379`; requests are balanced across them.
    pub endpoints: Vec<String>,
    /// User name and password, when etcd has authentication enabled.
    pub user: Option<(String, String)>,
    /// Deadline of every call.
    pub request_timeout: Duration,
    /// How long [`EtcdStore::connect`] keeps trying before it reports etcd unavailable.
    pub connect_timeout: Duration,
    /// TLS settings. TLS is used when this is set or an endpoint is
    /// `https://`; either way it needs [`EtcdTls::ca_file`].
    pub tls: Option<EtcdTls>,
}

/// TLS to etcd: file paths only, read by [`EtcdStore::connect`] (so `Debug`
/// shows no key material).
///
/// This build has no system or webpki trust roots (etcd clusters run on a
/// private CA), so `ca_file` is required whenever TLS is used; it is an
/// `Option` so that roots can be added later without an API change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA(s) that signed etcd's server certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for etcd's `--client-cert-auth`; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name etcd's certificate is checked against, when it is not the
    /// endpoint's host (e.g. endpoints by IP, certificate for a DNS name).
    pub domain: Option<String>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            user: None,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    request_timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects and checks that etcd answers, retrying until
    /// `options.connect_timeout` (etcd may be starting next to us); then
    /// [`StoreError::Unavailable`] with the last error.
    pub async fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Other("no etcd endpoints given".to_owned()));
        }
        // Configuration errors are final: report them before trying to connect.
        let connect = connect_options(&options)?;
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            // Without credentials `Client::connect` does no I/O (the channel is
            // lazy), so the revision probe is what proves etcd answers.
            let attempt = async {
                let client = Client::connect(&options.endpoints, Some(connect.clone()))
                    .await
                    .map_err(map_error)?;
                let store = Self {
                    client,
                    request_timeout: options.request_timeout,
                };
                store.revision().await?;
                Ok::<_, StoreError>(store)
            };
            let last_error = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(store)) => return Ok(store),
                Ok(Err(StoreError::Unavailable(reason))) => reason,
                Ok(Err(error)) => return Err(error),
                Err(_) => "no answer".to_owned(),
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "etcd at {} did not answer within {:?}: {last_error}",
                    options.endpoints.join(","),
                    options.connect_timeout
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Runs one etcd call under the request deadline.
    async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        self.within_deadline(what, call).await?.map_err(map_error)
    }

    /// Like [`Self::call`], leaving etcd's own errors to the caller.
    async fn within_deadline<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<Result<T, etcd_client::Error>, StoreError> {
        tokio::time::timeout(self.request_timeout, call)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "etcd {what}: no answer within {:?}",
                    self.request_timeout
                ))
            })
    }

    /// One range from scratch; `Err(None)` when etcd compacted the revision
    /// the pages were pinned to.
    async fn range_once(&self, prefix: &str) -> Result<Range, Option<StoreError>> {
        let mut revision = 0;
        let mut kvs = Vec::new();
        if prefix.is_empty() {
            // The empty key is not a valid start; "\0" with end "\0" is every key.
            let mut start = vec![0];
            loop {
                let (page, more) = self.page(&start, &[0], &mut revision).await?;
                let last = page.last().map(|kv| kv.key.clone());
                kvs.extend(page);
                match last {
                    Some(last) if more => {
                        start = last.into_bytes();
                        start.push(0);
                    }
                    _ => break,
                }
            }
        } else {
            self.scan_prefix(prefix.as_bytes().to_vec(), &mut revision, &mut kvs)
                .await?;
        }
        Ok(Range { kvs, revision })
    }

    /// One request for `[start, end)` at `revision` (the first request's
    /// revision, recorded, when 0): its keys, and whether more follow.
    async fn page(
        &self,
        start: &[u8],
        end: &[u8],
        revision: &mut i64,
    ) -> Result<(Vec<KeyValue>, bool), Option<StoreError>> {
        let mut limit = RANGE_PAGE;
        loop {
            let mut options = GetOptions::new().with_range(end.to_vec()).with_limit(limit);
            if *revision > 0 {
                options = options.with_revision(*revision);
            }
            let mut kv = self.client.kv_client();
            let page = self
                .within_deadline("range", kv.get(start.to_vec(), Some(options)))
                .await
                .map_err(Some)?;
            let mut page = match page {
                Ok(page) => page,
                Err(error) if is_compacted(&error) => return Err(None),
                Err(error) => match map_error(error) {
                    // Large values: fewer keys per page.
                    StoreError::TooLarge(_) if limit > 1 => {
                        limit /= 2;
                        continue;
                    }
                    error => return Err(Some(error)),
                },
            };
            if *revision == 0 {
                *revision = header_revision(page.header()).map_err(Some)?;
            }
            let more = page.more();
            let kvs = page
                .take_kvs()
                .into_iter()
                .map(to_key_value)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Some)?;
            return Ok((kvs, more));
        }
    }

    /// Every key starting with `prefix`, in order. etcd walks the whole
    /// remaining range on every paged request (to count it), so paging a
    /// million keys linearly is quadratic; a prefix with more than one page
    /// is instead split by the byte that follows it, recursively, which
    /// reads each key a handful of times instead of thousands.
    fn scan_prefix<'a>(
        &'a self,
        prefix: Vec<u8>,
        revision: &'a mut i64,
        out: &'a mut Vec<KeyValue>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Option<StoreError>>> + Send + 'a>> {
        Box::pin(async move {
            let end = prefix_end(&prefix);
            let (kvs, more) = self.page(&prefix, &end, revision).await?;
            if !more {
                out.extend(kvs);
                return Ok(());
            }
            // Sorted: a key equal to the prefix itself comes first.
            let mut first_byte = 0u8;
            if let Some(first) = kvs.first() {
                let key = first.key.as_bytes();
                if key == prefix.as_slice() {
                    out.push(first.clone());
                    first_byte = kvs
                        .get(1)
                        .and_then(|kv| kv.key.as_bytes().get(prefix.len()).copied())
                        .unwrap_or(0);
                } else {
                    first_byte = key.get(prefix.len()).copied().unwrap_or(0);
                }
            }
            for byte in first_byte..=u8::MAX {
                let mut sub = prefix.clone();
                sub.push(byte);
                self.scan_prefix(sub, revision, out).await?;
            }
            Ok(())
        })
    }

    /// The revision etcd compacted to. etcd tells it only to a watch that
    /// starts below it, so this opens one from revision 1 and waits briefly
    /// for the notice (etcd checks unsynced watchers every 100 ms).
    async fn compact_revision(&self) -> Option<i64> {
        let probe = async {
            let mut watch = self
                .client
                .watch_client()
                .watch(vec![0], Some(WatchOptions::new().with_start_revision(1)))
                .await
                .ok()?;
            while let Some(response) = watch.message().await.ok()? {
                if response.compact_revision() > 0 {
                    return Some(response.compact_revision());
                }
                if response.canceled() {
                    return None;
                }
            }
            None
        };
        let bound = self.request_timeout.min(Duration::from_secs(1));
        tokio::time::timeout(bound, probe).await.ok().flatten()
    }
}

fn connect_options(options: &EtcdOptions) -> Result<ConnectOptions, StoreError> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
        .with_keep_alive_while_idle(false);
    if let Some((name, password)) = &options.user {
        // etcd's simple tokens expire (5 minutes by default).
        connect = connect
            .with_user(name.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    if let Some(tls) = tls_options(options)? {
        connect = connect.with_tls(tls);
    }
    Ok(connect)
}

/// The TLS settings for etcd-client, from files read now; `None` for plain
/// HTTP. Every error names the setting or file at fault.
fn tls_options(options: &EtcdOptions) -> Result<Option<TlsOptions>, StoreError> {
    let https = options
        .endpoints
        .iter()
        .any(|endpoint| endpoint.starts_with("https://"));
    let Some(tls) = options.tls.clone().or_else(|| https.then(EtcdTls::default)) else {
        return Ok(None);
    };
    if let Some(plain) = options
        .endpoints
        .iter()
        .find(|endpoint| endpoint.starts_with("http://"))
    {
        return Err(StoreError::Other(format!(
            "etcd endpoint {plain} is plain http:// but TLS is configured: use https://"
        )));
    }
    let Some(ca_file) = &tls.ca_file else {
        return Err(StoreError::Other(
            "TLS to etcd needs the CA that signed etcd's certificate (--etcd-ca-file): \
             no system trust roots are built in"
                .to_owned(),
        ));
    };
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert_file), Some(key_file)) => Some((cert_file, key_file)),
        (None, None) => None,
        _ => {
            return Err(StoreError::Other(
                "an etcd client certificate needs both a certificate file and a key file"
                    .to_owned(),
            ));
        }
    };
    let ca = read_pem(ca_file, "CA")?;
    check_certificates(ca_file, "CA", &ca)?;
    let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert_file, key_file)) = identity {
        let cert = read_pem(cert_file, "client certificate")?;
        check_certificates(cert_file, "client certificate", &cert)?;
        let key = read_pem(key_file, "client key")?;
        if PrivateKeyDer::from_pem_slice(&key).is_err() {
            return Err(StoreError::Other(format!(
                "the etcd client key file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                key_file.display()
            )));
        }
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    // etcd-client builds the connector for each endpoint; a failure there
    // (a key that does not match its certificate, a bad server name) would
    // look like an unreachable etcd, so build one now to report it as is.
    tonic::transport::Endpoint::from_static("https://etcd.invalid")
        .tls_config(config.clone())
        .map_err(|error| {
            StoreError::Other(format!(
                "etcd TLS settings ({tls:?}): {}",
                error_chain(&error)
            ))
        })?;
    Ok(Some(config))
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|error| {
        StoreError::Other(format!(
            "reading the etcd {what} file {}: {error}",
            path.display()
        ))
    })
}

/// At least one certificate, and every PEM certificate section well formed.
fn check_certificates(path: &Path, what: &str, pem: &[u8]) -> Result<(), StoreError> {
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certificates {
        Ok(certificates) if !certificates.is_empty() => Ok(()),
        Ok(_) => Err(StoreError::Other(format!(
            "the etcd {what} file {} holds no PEM certificate",
            path.display()
        ))),
        Err(error) => Err(StoreError::Other(format!(
            "the etcd {what} file {} is not valid PEM: {error}",
            path.display()
        ))),
    }
}

/// An error and its sources, `: `-separated, each once (tonic's own text is
/// often just "transport error", with the why in the sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if parts.last() != Some(&part) {
            parts.push(part);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let mut kv = self.client.kv_client();
        let mut response = self.call("get", kv.get(key, None)).await?;
        response
            .take_kvs()
            .into_iter()
            .next()
            .map(to_key_value)
            .transpose()
    }

    async fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        for _ in 1..RANGE_ATTEMPTS {
            match self.range_once(prefix).await {
                Ok(range) => return Ok(range),
                Err(Some(error)) => return Err(error),
                Err(None) => {}
            }
        }
        self.range_once(prefix).await.map_err(|error| {
            error.unwrap_or_else(|| {
                StoreError::Other(format!(
                    "etcd range {prefix:?}: compacted while paging, {RANGE_ATTEMPTS} times"
                ))
            })
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let compares: Vec<EtcdCompare> = txn
            .compares
            .into_iter()
            .map(|Compare::ModRevision { key, mod_revision }| {
                EtcdCompare::mod_revision(key, CompareOp::Equal, mod_revision)
            })
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(key, value, None),
                Op::Delete { key } => TxnOp::delete(key, None),
            })
            .collect();
        let request = etcd_client::Txn::new().when(compares).and_then(ops);
        let mut kv = self.client.kv_client();
        let response = self.call("txn", kv.txn(request)).await?;
        Ok(TxnOutcome {
            succeeded: response.succeeded(),
            revision: header_revision(response.header())?,
        })
    }

    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<i64, StoreError> {
        let mut lease = self.client.lease_client();
        let granted = self
            .call("lease grant", lease.grant(lease_seconds(ttl), None))
            .await?;
        let mut kv = self.client.kv_client();
        let options = PutOptions::new().with_lease(granted.id());
        let response = self.call("put", kv.put(key, value, Some(options))).await?;
        header_revision(response.header())
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream, StoreError> {
        check_watch_start(from_revision)?;
        let key = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.as_bytes().to_vec()
        };
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_start_revision((from_revision - 1).max(1))
            .with_progress_notify();
        let mut client = self.client.watch_client();
        let mut watch = self.call("watch", client.watch(key, Some(options))).await?;
        // Waiting for etcd to confirm means the watch is registered when this
        // returns, and a refused watch (permissions) fails here.
        let created = self.call("watch", watch.message()).await?;
        match created {
            Some(response) if response.created() && !response.canceled() => {}
            Some(response) => {
                return Err(StoreError::Other(format!(
                    "etcd refused the watch on {prefix:?}: {}",
                    response.cancel_reason()
                )));
            }
            None => {
                return Err(StoreError::Unavailable(
                    "etcd closed the watch before confirming it".to_owned(),
                ));
            }
        }
        let state = WatchState {
            watch,
            from_revision,
            pending: VecDeque::new(),
            ended: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        match self
            .within_deadline("compact", kv.compact(revision, None))
            .await?
        {
            Ok(_) => Ok(()),
            Err(error) if is_compacted(&error) => Err(StoreError::Compacted {
                requested: revision,
                compact_revision: self.compact_revision().await.unwrap_or(revision),
            }),
            Err(error) => Err(map_error(error)),
        }
    }

    async fn revision(&self) -> Result<i64, StoreError> {
        let mut kv = self.client.kv_client();
        // A count of one key Sluice never writes: the cheapest request that
        // carries the revision in its header. Inside `/sluice/`, so an etcd
        // user whose role covers only Sluice's prefix may make it.
        let options = GetOptions::new().with_count_only();
        let response = self
            .call("revision", kv.get(REVISION_PROBE, Some(options)))
            .await?;
        header_revision(response.header())
    }
}

/// The state behind one watch stream. It owns the etcd watch: dropping the
/// stream closes the gRPC stream, which cancels the watch in etcd.
struct WatchState {
    watch: etcd_client::WatchStream,
    /// Events below this revision are the extra one etcd was asked for.
    from_revision: i64,
    pending: VecDeque<WatchMessage>,
    ended: bool,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchMessage, StoreError>, Self)> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some((Ok(message), self));
            }
            if self.ended {
                return None;
            }
            let response = match self.watch.message().await {
                Ok(Some(response)) => response,
                Ok(None) => {
                    self.ended = true;
                    let error = StoreError::Unavailable("etcd closed the watch".to_owned());
                    return Some((Err(error), self));
                }
                Err(error) => {
                    self.ended = true;
                    return Some((Err(map_error(error)), self));
                }
            };
            if response.compact_revision() > 0 {
                self.ended = true;
                let compact_revision = response.compact_revision();
                return Some((Ok(WatchMessage::Compacted { compact_revision }), self));
            }
            if response.canceled() {
                self.ended = true;
                let error = StoreError::Unavailable(format!(
                    "etcd cancelled the watch: {}",
                    response.cancel_reason()
                ));
                return Some((Err(error), self));
            }
            // etcd never splits one revision across responses (unless asked
            // to fragment), so grouping within a response is complete.
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                if kv.mod_revision() < self.from_revision {
                    continue;
                }
                let kind = match event.event_type() {
                    EventType::Put => EventKind::Put,
                    EventType::Delete => EventKind::Delete,
                };
                let event = match to_key_value(kv.clone()) {
                    Ok(kv) => Event { kind, kv },
                    Err(error) => {
                        self.ended = true;
                        return Some((Err(error), self));
                    }
                };
                match self.pending.back_mut() {
                    Some(WatchMessage::Events { revision, events })
                        if *revision == event.kv.mod_revision =>
                    {
                        events.push(event);
                    }
                    _ => self.pending.push_back(WatchMessage::Events {
                        revision: event.kv.mod_revision,
                        events: vec![event],
                    }),
                }
            }
        }
    }
}

/// The end of the key range that holds every key starting with `prefix`
/// (etcd's `GetPrefixRangeEnd`); `"\0"` means "to the end".
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<i64, StoreError> {
    header
        .map(|header| header.revision())
        .ok_or_else(|| StoreError::Other("etcd response without a header".to_owned()))
}

fn to_key_value(kv: etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let (create_revision, mod_revision, version) =
        (kv.create_revision(), kv.mod_revision(), kv.version());
    let (key, value) = kv.into_key_value();
    let key = String::from_utf8(key).map_err(|e| {
        StoreError::Other(format!(
            "etcd key is not UTF-8: {:?}",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })?;
    Ok(KeyValue {
        key,
        value,
        create_revision,
        mod_revision,
        version,
    })
}

/// etcd's "mvcc: required revision has been compacted".
fn is_compacted(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if status.code() == Code::OutOfRange && status.message().contains("compacted"))
}

fn map_error(error: etcd_client::Error) -> StoreError {
    use etcd_client::Error;
    match error {
        Error::GRpcStatus(status) => map_status(&status),
        Error::TransportError(e) => StoreError::Unavailable(format!("etcd transport: {e}")),
        Error::IoError(e) => StoreError::Unavailable(format!("etcd I/O: {e}")),
        other => StoreError::Other(format!("etcd: {other}")),
    }
}

fn map_status(status: &tonic::Status) -> StoreError {
    let message = status.message();
    let too_large = [
        // etcd's --max-txn-ops
        "too many operations in txn request",
        // etcd's --max-request-bytes
        "request is too large",
        // gRPC's message size limits, on either side
        "message length too large",
        "larger than max",
    ];
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            StoreError::Unavailable(format!("etcd: {message}"))
        }
        // The connection broke under a call (typically a watch whose etcd went
        // away): tonic reports that as a local status, not one etcd sent.
        Code::Unknown | Code::Internal
            if message.starts_with("h2 protocol error")
                || std::error::Error::source(status).is_some() =>
        {
            // tonic's message is often just "transport error"; the why (e.g.
            // etcd refusing our client certificate) is in the sources.
            let cause = match std::error::Error::source(status).map(error_chain) {
                Some(chain) if chain.starts_with(message) => chain,
                Some(chain) => format!("{message}: {chain}"),
                None => message.to_owned(),
            };
            StoreError::Unavailable(format!("etcd connection lost: {cause}"))
        }
        Code::ResourceExhausted => StoreError::TooLarge(format!("etcd: {message}")),
        _ if too_large.iter().any(|pattern| message.contains(pattern)) => {
            StoreError::TooLarge(format!("etcd: {message}"))
        }
        code => StoreError::Other(format!("etcd: {code:?}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{EtcdOptions, EtcdTls, StoreError, lease_seconds, prefix_end, tls_options};
    use std::time::Duration;

    fn refused(options: EtcdOptions) -> String {
        match tls_options(&options) {
            Err(StoreError::Other(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    fn https(tls: Option<EtcdTls>) -> EtcdOptions {
        EtcdOptions {
            endpoints: vec!["https://127.0.0.1:2379".to_owned()],
            tls,
            ..EtcdOptions::default()
        }
    }

    #[test]
    fn plain_http_needs_no_tls() {
        assert!(tls_options(&EtcdOptions::default()).unwrap().is_none());
    }

    #[test]
    fn tls_needs_a_ca_file() {
        assert!(refused(https(None)).contains("--etcd-ca-file"));
        assert!(refused(https(Some(EtcdTls::default()))).contains("--etcd-ca-file"));
    }

    #[test]
    fn tls_refuses_plain_endpoints() {
        let options = EtcdOptions {
            endpoints: vec![
                "https://10.0.0.1:2379".to_owned(),
                "http://10.0.0.2:2379".to_owned(),
            ],
            tls: Some(EtcdTls {
                ca_file: Some("ca.pem".into()),
                ..EtcdTls::default()
            }),
            ..EtcdOptions::default()
        };
        assert!(refused(options).contains("http://10.0.0.2:2379"));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let message = refused(https(Some(EtcdTls {
            ca_file: Some(missing.clone()),
            ..EtcdTls::default()
        })));
        assert!(message.contains(&*missing.to_string_lossy()), "{message}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not PEM at all\n").unwrap();
        let message = refused(https(Some(EtcdTls {
            ca_file: Some(empty.clone()),
            ..EtcdTls::default()
        })));
        assert!(message.contains("empty.pem"), "{message}");
        assert!(message.contains("no PEM certificate"), "{message}");
    }

    #[test]
    fn client_certificate_needs_its_key() {
        let message = refused(https(Some(EtcdTls {
            ca_file: Some("ca.pem".into()),
            cert_file: Some("client.pem".into()),
            ..EtcdTls::default()
        })));
        // Checked before any file is read.
        assert!(message.contains("key file"), "{message}");
    }

    #[test]
    fn debug_shows_paths_not_contents() {
        let options = https(Some(EtcdTls {
            ca_file: Some(PathBuf::from("/etc/sluice/ca.pem")),
            cert_file: Some(PathBuf::from("/etc/sluice/client.pem")),
            key_file: Some(PathBuf::from("/etc/sluice/client-key.pem")),
            domain: Some("etcd.internal".to_owned()),
        }));
        let debug = format!("{options:?}");
        assert!(debug.contains("/etc/sluice/client-key.pem"), "{debug}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn lease_ttls_round_up_to_whole_seconds_and_etcds_minimum() {
        assert_eq!(lease_seconds(Duration::from_millis(1)), 2);
        assert_eq!(lease_seconds(Duration::from_secs(2)), 2);
        assert_eq!(lease_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(lease_seconds(Duration::from_secs(3600)), 3600);
        assert_eq!(lease_seconds(Duration::MAX), i64::MAX);
    }

    #[test]
    fn prefix_end_is_etcds() {
        assert_eq!(prefix_end(b"/sluice/keys/"), b"/sluice/keys0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
