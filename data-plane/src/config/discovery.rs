//! The config stream client (DESIGN §6): one `ConfigDiscovery/StreamConfig`
//! stream to a control plane at a time. It says hello with the revision it
//! holds, applies every snapshot or delta through [`AppliedConfig`], and ACKs
//! or NACKs each revision.
//!
//! When the stream cannot be opened or ends, it tries the control planes of
//! `--control-plane` in turn, and each address a name resolves to in turn
//! (replicas behind one DNS name), then waits an exponential backoff with full
//! jitter before the next round. Meanwhile the data plane keeps serving the
//! last good config: nothing here is on the request path.
//!
//! The same stream carries the fleet's cooldowns (DESIGN §5): the router's
//! own cooldowns ([`OwnCooldown`], queued by the router without waiting) go
//! to the control plane as `CooldownReport`s, and the `FleetCooldowns` it
//! relays from every data plane go to the router ([`Fleet::heard`]). They
//! are not configuration: never ACKed, never cached. So does usage (DESIGN
//! §7): the usage thread's reports go out as `UsageReport`s, and the
//! control plane's `UsageAck`s and `UsageTotals` go back to it
//! ([`UsageStream`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::config::v1::{
    Ack, Cooldown, CooldownReport, DataPlaneMessage, Hello, LimitDemand, LimitLeases, Nack,
    ProtocolVersion, UsageAck, UsageReport, UsageTotals, data_plane_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::config::applied::{AppliedConfig, Outcome};
use crate::config::secrets::Secret;
use crate::config::wire::{ControlPlaneMessageWire, UpdateWire};
use crate::metrics::Metrics;
use crate::tls::{ControlPlaneTls, TlsError};

/// `ConfigDiscovery/StreamConfig`, called with a codec that leaves keys encoded.
const STREAM_CONFIG: &str = "/sluice.config.v1.ConfigDiscovery/StreamConfig";

/// Where the control plane listens unless told otherwise.
pub const DEFAULT_CONTROL_PLANE: &str = "http://127.0.0.1:50051";

/// The environment variable holding the data-plane token. Never a flag: it
/// would show in `ps`.
pub const TOKEN_ENV: &str = "SLUICE_DATA_PLANE_TOKEN";

/// A cooldown this data plane entered, for the fleet: until `until_ms`
/// (unix milliseconds), for `reason` (a failure kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCooldown {
    pub deployment_id: String,
    pub until_ms: u64,
    pub reason: &'static str,
}

/// The router's end of the fleet's cooldowns.
pub struct Fleet {
    /// Own cooldowns to report; they wait here while the stream is down
    /// (the sender's bound caps how many), and the expired are dropped.
    pub reports: mpsc::Receiver<OwnCooldown>,
    /// Told the cooldowns the control plane relays.
    pub heard: Heard,
}

/// What is told of relayed cooldowns.
pub type Heard = Box<dyn Fn(&[Cooldown]) + Send + Sync>;

impl Fleet {
    /// No router listening (tests, tools): relayed cooldowns are ignored.
    pub fn none() -> Fleet {
        Fleet {
            reports: mpsc::channel(1).1,
            heard: Box::new(|_| {}),
        }
    }
}

/// The usage thread's end of the stream.
pub struct UsageStream {
    /// Reports to send; while the stream is down they wait here (the usage
    /// thread resends what is not answered, so none is lost if dropped).
    pub reports: mpsc::Receiver<UsageReport>,
    /// Rate limits' demands, about one a second.
    pub demands: mpsc::Receiver<LimitDemand>,
    /// Told the control plane's answers, totals and rate-limit shares.
    pub heard: Box<dyn Fn(UsageHeard) + Send + Sync>,
}

/// What the control plane says about usage.
pub enum UsageHeard {
    Counted(UsageAck),
    Totals(UsageTotals),
    Leases(LimitLeases),
}

impl UsageStream {
    /// Nothing metered (tests, tools).
    pub fn none() -> UsageStream {
        UsageStream {
            reports: mpsc::channel(1).1,
            demands: mpsc::channel(1).1,
            heard: Box::new(|_| {}),
        }
    }
}

/// What rides the config stream besides the configuration.
struct Alongside {
    fleet: Fleet,
    usage: UsageStream,
}

/// At most this many own cooldowns go in one report.
const REPORT_BATCH: usize = 64;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Own cooldowns as a report, relative to now; `None` when all expired.
fn report(cooldowns: Vec<OwnCooldown>) -> Option<DataPlaneMessage> {
    let now = now_ms();
    let cooldowns: Vec<Cooldown> = cooldowns
        .into_iter()
        .filter(|c| c.until_ms > now)
        .map(|c| Cooldown {
            deployment_id: c.deployment_id,
            remaining_ms: c.until_ms - now,
            reason: c.reason.to_owned(),
            reporter: String::new(),
        })
        .collect();
    (!cooldowns.is_empty()).then_some(DataPlaneMessage {
        message: Some(data_plane_message::Message::CooldownReport(
            CooldownReport { cooldowns },
        )),
    })
}

/// What the stream client needs to know.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// Control-plane URLs (`http://host:port`), tried in turn.
    pub endpoints: Vec<String>,
    pub node_id: String,
    pub labels: HashMap<String, String>,
    /// The data-plane token; without one the control plane refuses the
    /// stream, which is logged and retried like any other failure.
    pub token: Option<Secret>,
    pub backoff: BackoffPolicy,
    /// Per address; a blackholed address must not hold up the others.
    pub connect_timeout: Duration,
    /// For `https://` control planes; required by them.
    pub tls: Option<ControlPlaneTls>,
}

impl DiscoveryOptions {
    pub fn new(endpoints: Vec<String>, node_id: impl Into<String>) -> Self {
        DiscoveryOptions {
            endpoints,
            node_id: node_id.into(),
            labels: HashMap::new(),
            token: None,
            backoff: BackoffPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// A flag value the stream client cannot use; reported at start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("no control-plane URL given")]
    NoEndpoints,
    #[error("control-plane URL {url:?} is not valid: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("control-plane URL {url:?}: the scheme must be http:// or https://")]
    UnsupportedScheme { url: String },
    #[error(
        "control-plane URL {url:?} is https:// but no CA is given: pass --control-plane-ca-file \
         (no system trust roots are built in)"
    )]
    HttpsWithoutCa { url: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{TOKEN_ENV} contains characters that cannot go in a gRPC header")]
    InvalidToken,
}

/// A control plane as configured: its URL, and the parts to dial.
#[derive(Debug, Clone)]
struct ControlPlane {
    url: String,
    /// scheme://authority, sent as `:authority` whichever address is dialled.
    origin: Uri,
    host: String,
    port: u16,
    https: bool,
}

impl ControlPlane {
    fn parse(url: &str) -> Result<ControlPlane, DiscoveryError> {
        let invalid = |reason: String| DiscoveryError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.trim().parse().map_err(|e| invalid(format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => {
                return Err(DiscoveryError::UnsupportedScheme {
                    url: url.to_owned(),
                });
            }
            None => return Err(invalid("no scheme; write http://host:port".into())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("no host".into()))?
            .clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let origin = Uri::builder()
            .scheme(if https { "https" } else { "http" })
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| invalid(format!("{e}")))?;
        Ok(ControlPlane {
            url: url.trim().to_owned(),
            origin,
            host,
            port,
            https,
        })
    }
}

/// The stream client, ready to [`run`](Discovery::run).
#[derive(Debug)]
pub struct Discovery {
    control_planes: Vec<ControlPlane>,
    node_id: String,
    labels: HashMap<String, String>,
    authorization: Option<MetadataValue<Ascii>>,
    backoff: BackoffPolicy,
    connect_timeout: Duration,
    tls: Option<ControlPlaneTls>,
}

/// How one attempt ended.
enum SessionEnd {
    /// No stream: nothing answered, or the call was refused.
    NotOpened,
    /// The control plane refused the token.
    Unauthenticated,
    /// A stream ran, then ended; `worked` if any message came through.
    Ended { worked: bool },
}

impl Discovery {
    pub fn new(options: DiscoveryOptions) -> Result<Discovery, DiscoveryError> {
        let control_planes = options
            .endpoints
            .iter()
            .filter(|u| !u.trim().is_empty())
            .map(|u| ControlPlane::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        if control_planes.is_empty() {
            return Err(DiscoveryError::NoEndpoints);
        }
        if let Some(tls) = &options.tls {
            tls.check()?;
        }
        if let (Some(cp), None) = (control_planes.iter().find(|cp| cp.https), &options.tls) {
            return Err(DiscoveryError::HttpsWithoutCa {
                url: cp.url.clone(),
            });
        }
        let authorization = options
            .token
            .as_ref()
            .map(|t| {
                let mut value: MetadataValue<Ascii> = format!("Bearer {}", t.expose())
                    .parse()
                    .map_err(|_| DiscoveryError::InvalidToken)?;
                value.set_sensitive(true);
                Ok::<_, DiscoveryError>(value)
            })
            .transpose()?;
        Ok(Discovery {
            control_planes,
            node_id: options.node_id,
            labels: options.labels,
            authorization,
            backoff: options.backoff,
            connect_timeout: options.connect_timeout,
            tls: options.tls,
        })
    }

    /// Keeps a stream open to some control plane, forever: stop it by
    /// dropping (aborting) the future. Never fails; every failure is logged
    /// and retried.
    pub async fn run(self, applied: Arc<AppliedConfig>, metrics: Arc<Metrics>) {
        self.run_with_fleet(applied, metrics, Fleet::none()).await;
    }

    /// [`Discovery::run`], carrying the fleet's cooldowns both ways.
    pub async fn run_with_fleet(
        self,
        applied: Arc<AppliedConfig>,
        metrics: Arc<Metrics>,
        fleet: Fleet,
    ) {
        self.run_with(applied, metrics, fleet, UsageStream::none())
            .await;
    }

    /// [`Discovery::run_with_fleet`], carrying usage both ways too.
    pub async fn run_with(
        self,
        applied: Arc<AppliedConfig>,
        metrics: Arc<Metrics>,
        fleet: Fleet,
        usage: UsageStream,
    ) {
        let mut alongside = Alongside { fleet, usage };
        let mut backoff = Backoff::new(self.backoff);
        let mut next = 0;
        loop {
            let mut opened = false;
            // One round: every control plane once, starting after the last
            // one used, so a replica that drops streams is not retried first.
            for i in 0..self.control_planes.len() {
                let cp = &self.control_planes[(next + i) % self.control_planes.len()];
                match self.attempt(cp, &applied, &metrics, &mut alongside).await {
                    SessionEnd::NotOpened => continue,
                    SessionEnd::Unauthenticated => {}
                    SessionEnd::Ended { worked } => {
                        if worked {
                            backoff.reset();
                        }
                    }
                }
                next = (next + i + 1) % self.control_planes.len();
                opened = true;
                break;
            }
            if !opened {
                next = 0;
            }
            let wait = backoff.next_delay();
            tracing::info!(
                retry_in_ms = wait.as_millis() as u64,
                held_revision = applied.revision(),
                "reconnecting to the control plane; serving the last good configuration meanwhile"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Tries each address `cp` resolves to until one opens a stream.
    async fn attempt(
        &self,
        cp: &ControlPlane,
        applied: &Arc<AppliedConfig>,
        metrics: &Arc<Metrics>,
        alongside: &mut Alongside,
    ) -> SessionEnd {
        let addresses: Vec<SocketAddr> = match tokio::net::lookup_host((cp.host.as_str(), cp.port))
            .await
        {
            Ok(addresses) => addresses.collect(),
            Err(e) => {
                tracing::warn!(control_plane = %cp.url, error = %e, "cannot resolve the control plane's address");
                return SessionEnd::NotOpened;
            }
        };
        for address in addresses {
            let channel = match self.connect(cp, address).await {
                Ok(channel) => channel,
                Err(e) => {
                    tracing::warn!(control_plane = %cp.url, %address, error = %e, "cannot connect to the control plane");
                    continue;
                }
            };
            match self
                .session(cp, address, channel, applied, metrics, alongside)
                .await
            {
                SessionEnd::NotOpened => continue,
                end => return end,
            }
        }
        SessionEnd::NotOpened
    }

    async fn connect(&self, cp: &ControlPlane, address: SocketAddr) -> Result<Channel, String> {
        let scheme = if cp.https { "https" } else { "http" };
        let mut endpoint =
            Endpoint::from_shared(format!("{scheme}://{address}")).map_err(|e| e.to_string())?;
        if let (true, Some(tls)) = (cp.https, &self.tls) {
            // Dialled by address, checked against the URL's host name.
            endpoint = endpoint
                .tls_config(tls.client_config(&cp.host))
                .map_err(|e| error_chain(&e))?;
        }
        endpoint
            .origin(cp.origin.clone())
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            // A control plane behind a dead network path sends no FIN: pings
            // are how the stream notices and moves on.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|e| error_chain(&e))
    }

    async fn session(
        &self,
        cp: &ControlPlane,
        address: SocketAddr,
        channel: Channel,
        applied: &Arc<AppliedConfig>,
        metrics: &Arc<Metrics>,
        alongside: &mut Alongside,
    ) -> SessionEnd {
        let Alongside { fleet, usage } = alongside;
        let (outbound, outbound_rx) = mpsc::channel::<DataPlaneMessage>(16);
        let held_revision = applied.revision();
        let hello = DataPlaneMessage {
            message: Some(data_plane_message::Message::Hello(Hello {
                node_id: self.node_id.clone(),
                labels: self.labels.clone(),
                held_revision,
                protocol_version: ProtocolVersion::ProtocolVersion1 as i32,
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })),
        };
        if outbound.send(hello).await.is_err() {
            return SessionEnd::NotOpened;
        }
        let mut request = tonic::Request::new(ReceiverStream::new(outbound_rx));
        if let Some(auth) = &self.authorization {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        // The generated client would decode every key into a `Key` struct;
        // this codec leaves keys encoded (see `crate::config::wire`). And a snapshot
        // of a million keys is far beyond tonic's 4 MiB default limit.
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        if let Err(e) = grpc.ready().await {
            tracing::warn!(control_plane = %cp.url, %address, error = %error_chain(&e), "control plane not ready");
            return SessionEnd::NotOpened;
        }
        let codec = ProstCodec::<DataPlaneMessage, ControlPlaneMessageWire>::default();
        let path = PathAndQuery::from_static(STREAM_CONFIG);
        let mut inbound = match grpc.streaming(request, path, codec).await {
            Ok(response) => response.into_inner(),
            Err(status) => return self.refused(cp, address, &status),
        };
        let _connected = Connected::new(metrics);
        tracing::info!(control_plane = %cp.url, %address, held_revision, "config stream open");

        let mut worked = false;
        let mut reporting = true;
        let mut metering = true;
        let mut limiting = true;
        loop {
            let received = tokio::select! {
                received = inbound.message() => received,
                report = usage.reports.recv(), if metering => {
                    let Some(report) = report else {
                        metering = false;
                        continue;
                    };
                    let message = DataPlaneMessage {
                        message: Some(data_plane_message::Message::UsageReport(report)),
                    };
                    if outbound.send(message).await.is_err() {
                        return SessionEnd::Ended { worked };
                    }
                    continue;
                }
                demand = usage.demands.recv(), if limiting => {
                    let Some(demand) = demand else {
                        limiting = false;
                        continue;
                    };
                    let message = DataPlaneMessage {
                        message: Some(data_plane_message::Message::LimitDemand(demand)),
                    };
                    if outbound.send(message).await.is_err() {
                        return SessionEnd::Ended { worked };
                    }
                    continue;
                }
                first = fleet.reports.recv(), if reporting => {
                    let Some(first) = first else {
                        // Nobody reports any more.
                        reporting = false;
                        continue;
                    };
                    let mut batch = vec![first];
                    while batch.len() < REPORT_BATCH {
                        match fleet.reports.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    if let Some(report) = report(batch)
                        && outbound.send(report).await.is_err()
                    {
                        return SessionEnd::Ended { worked };
                    }
                    continue;
                }
            };
            let message = match received {
                Ok(Some(message)) => message,
                Ok(None) => {
                    tracing::warn!(control_plane = %cp.url, %address, "the control plane closed the config stream");
                    return SessionEnd::Ended { worked };
                }
                Err(status) if status.code() == Code::Unauthenticated => {
                    self.refused(cp, address, &status);
                    return SessionEnd::Unauthenticated;
                }
                Err(status) => {
                    tracing::warn!(
                        control_plane = %cp.url, %address,
                        code = ?status.code(), message = status.message(),
                        "config stream ended"
                    );
                    return SessionEnd::Ended { worked };
                }
            };
            worked = true;
            let message = match message.message {
                Some(UpdateWire::UsageAck(ack)) => {
                    (usage.heard)(UsageHeard::Counted(ack));
                    continue;
                }
                Some(UpdateWire::UsageTotals(totals)) => {
                    (usage.heard)(UsageHeard::Totals(totals));
                    continue;
                }
                Some(UpdateWire::LimitLeases(leases)) => {
                    (usage.heard)(UsageHeard::Leases(leases));
                    continue;
                }
                other => ControlPlaneMessageWire {
                    message: other,
                    control_plane_id: message.control_plane_id,
                },
            };
            if let Some(UpdateWire::Cooldowns(relayed)) = message.message {
                // Our own reports come back too: not news here.
                let others: Vec<Cooldown> = relayed
                    .cooldowns
                    .into_iter()
                    .filter(|c| c.reporter != self.node_id)
                    .collect();
                if !others.is_empty() {
                    (fleet.heard)(&others);
                }
                continue;
            }
            let replica = message.control_plane_id.clone();
            let applier = Arc::clone(applied);
            // Building a large config takes a while: keep it off the runtime
            // threads that serve HTTP.
            let outcome =
                match tokio::task::spawn_blocking(move || applier.apply_message(message)).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::error!(error = %e, "applying a configuration update failed");
                        return SessionEnd::Ended { worked };
                    }
                };
            let reply = match outcome {
                Outcome::Applied { revision } => {
                    tracing::debug!(revision, control_plane_id = %replica, "ACK");
                    data_plane_message::Message::Ack(Ack { revision })
                }
                Outcome::Refused { revision, reason } => {
                    data_plane_message::Message::Nack(Nack { revision, reason })
                }
            };
            let reply = DataPlaneMessage {
                message: Some(reply),
            };
            if outbound.send(reply).await.is_err() {
                tracing::warn!(control_plane = %cp.url, "config stream closed before the answer was sent");
                return SessionEnd::Ended { worked };
            }
        }
    }

    fn refused(&self, cp: &ControlPlane, address: SocketAddr, status: &Status) -> SessionEnd {
        if status.code() == Code::Unauthenticated {
            let hint = if self.authorization.is_some() {
                "the control plane does not accept this data plane's token: check \
                 SLUICE_DATA_PLANE_TOKEN against the control plane's data-plane tokens"
            } else {
                "SLUICE_DATA_PLANE_TOKEN is not set: the control plane only streams \
                 configuration to data planes that present a data-plane token"
            };
            tracing::error!(
                control_plane = %cp.url, %address, message = status.message(),
                "config stream refused (UNAUTHENTICATED): {hint}"
            );
            return SessionEnd::Unauthenticated;
        }
        tracing::warn!(
            control_plane = %cp.url, %address,
            code = ?status.code(), message = status.message(),
            "config stream refused"
        );
        SessionEnd::NotOpened
    }
}

/// Holds `sluice_config_stream_connected` at 1 while alive, including when
/// the stream's future is dropped mid-flight at shutdown.
struct Connected<'a>(&'a Metrics);

impl<'a> Connected<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.set_stream_connected(true);
        Connected(metrics)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.set_stream_connected(false);
    }
}

/// tonic's transport errors say "transport error" and keep the cause in
/// `source()`; an operator needs the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        // hyper-util repeats its own message one level down.
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_urls_are_checked_up_front() {
        let cp = ControlPlane::parse("http://control-plane.sluice:50051").expect("valid");
        assert_eq!((cp.host.as_str(), cp.port), ("control-plane.sluice", 50051));
        let cp = ControlPlane::parse("http://[::1]:7").expect("valid");
        assert_eq!((cp.host.as_str(), cp.port), ("::1", 7));
        let cp = ControlPlane::parse("https://cp").expect("valid");
        assert_eq!((cp.host.as_str(), cp.port, cp.https), ("cp", 443, true));
        assert!(matches!(
            ControlPlane::parse("ftp://cp:21"),
            Err(DiscoveryError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Discovery::new(DiscoveryOptions::new(vec!["https://cp:443".into()], "n")),
            Err(DiscoveryError::HttpsWithoutCa { .. })
        ));
        assert!(matches!(
            ControlPlane::parse("cp:50051"),
            Err(DiscoveryError::InvalidUrl { .. })
        ));
        let mut options = DiscoveryOptions::new(vec![" ".into()], "n");
        assert!(matches!(
            Discovery::new(options.clone()),
            Err(DiscoveryError::NoEndpoints)
        ));
        options.endpoints = vec!["http://a:1".into()];
        options.token = Some(Secret::new("bad\ntoken"));
        assert!(matches!(
            Discovery::new(options),
            Err(DiscoveryError::InvalidToken)
        ));
    }
}
