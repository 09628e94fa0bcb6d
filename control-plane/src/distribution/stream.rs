//! `sluice.config.v1.ConfigDiscovery/StreamConfig`: one session per data plane.
//!
//! A session checks the data-plane token, reads the Hello, then sends what
//! the data plane lacks — a delta from its held revision when the hub's
//! history covers it, else a snapshot — and after that, on every hub
//! publication, the merged delta since what it last sent. The outgoing
//! channel holds one message: a data plane that reads slowly makes its
//! session wait, and the hub's watch channel meanwhile keeps only the newest
//! state, so memory per session stays bounded and a slow data plane never
//! slows the others.
//!
//! Fleet cooldowns share the stream: right after the first configuration
//! step (the snapshot or delta, or nothing when the data plane is current),
//! every cooldown in force, then each new or extended one as this replica
//! hears of it. One loop makes every send, so a cooldown never lands in the
//! middle of a snapshot. Reports from the data plane go to
//! [`Cooldowns::report`], which never waits.
//!
//! Usage too: after the cooldowns, every usage total this replica holds
//! (in messages of at most `usage::totals::MAX_TOTALS_PER_MESSAGE`), then
//! the totals each store revision changes, together; all of them again
//! when the session fell behind the announcements or the totals were
//! listed afresh. Usage reports are handed, in order, to a task of the
//! session's own that counts them one after the other ([`Usage::apply`])
//! and sends each `UsageAck` on the same outgoing channel: the receive loop
//! never waits for the store (only, as back-pressure, for a data plane
//! with more than [`USAGE_QUEUE`] reports unanswered), and acks leave in
//! the order the reports came. Every send is one whole message, so nothing
//! lands inside another.
//!
//! Rate-limit leases too (`super::limits`): after the usage totals, a
//! `LimitLeases` with `data_planes` and every lease the data plane holds
//! from this replica, then one whenever the allocation tick changed its
//! shares or `data_planes` (so at most one per tick). Its `LimitDemand`s go
//! to [`Limits::demand`], which takes a lock briefly and never waits.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use prost::Message;
use prost::bytes::Bytes;
use sluice_proto::config::v1::data_plane_message::Message as Inbound;
use sluice_proto::config::v1::{
    DataPlaneMessage, FleetCooldowns, Hello, LimitLeases, UsageReport, UsageTotal,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::cooldowns::{self, CooldownRecord, Cooldowns};
use super::hub::{Hub, Published};
use super::limits::Limits;
use super::status::{Registry, StreamStatus};
use crate::secrets;
use crate::store::Store;
use crate::usage::{Announce, Totals, Usage, totals};

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an unknown token waits for the hub to catch up with the store.
const TOKEN_CATCH_UP: Duration = Duration::from_secs(2);
/// How long to wait for this replica to catch up with a data plane that
/// holds a newer revision (it came from a faster replica).
const CATCH_UP: Duration = Duration::from_secs(5);
/// Usage reports a session holds before its receive loop waits for them to
/// be counted. A data plane awaits each report's ack before the next one,
/// so this is far more than it needs.
pub const USAGE_QUEUE: usize = 64;

/// Who may receive snapshots (they can carry provider keys).
#[derive(Clone)]
pub struct Tokens {
    /// `SLUICE_DATA_PLANE_TOKEN`, accepted besides the tokens in the store.
    pub static_token: Option<Arc<str>>,
    /// Mutual TLS: a data plane must also present a client certificate
    /// (which the TLS handshake has verified against the client CA).
    pub require_client_certificate: bool,
}

impl Tokens {
    fn allows(&self, token: &str, published: &Published) -> bool {
        let static_ok = self
            .static_token
            .as_deref()
            .is_some_and(|t| secrets::constant_time_eq(t, token));
        static_ok || published.has_token(&secrets::sha256_hex(token))
    }
}

#[derive(Clone)]
pub struct Discovery {
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    pub registry: Registry,
    pub tokens: Tokens,
    pub cooldowns: Cooldowns,
    pub usage: Usage,
    pub totals: Totals,
    pub limits: Limits,
    /// Cancelled at shutdown (`crate::shutdown`): every session then ends.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Discovery {
    /// A token created a moment ago may not have reached the hub yet: wait
    /// (briefly) for the hub to catch up with the store, then look again.
    /// Unknown tokens are thereby also answered slowly, which costs guessing.
    async fn token_appears(&self, token: &str) -> bool {
        if let Ok(revision) = self.store.revision().await {
            self.hub.wait_for(revision, TOKEN_CATCH_UP).await;
        }
        self.tokens.allows(token, &self.hub.current())
    }
}

fn bearer(request: &Request<Streaming<DataPlaneMessage>>) -> Option<String> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    crate::auth::bearer_token(value).map(str::to_string)
}

/// `sluice.config.v1.ControlPlaneMessage` with its snapshot or delta already
/// encoded: encoded once per hub publication and shared by every stream that
/// sends it (an embedded message and a `bytes` field are the same on the
/// wire), instead of cloned and encoded again per stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedMessage {
    /// An encoded `Snapshot`.
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub snapshot: Option<Bytes>,
    /// An encoded `Delta`.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub delta: Option<Bytes>,
    #[prost(string, tag = "3")]
    pub control_plane_id: String,
    /// An encoded `FleetCooldowns` (per session: its times are relative to
    /// when it is sent).
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub cooldowns: Option<Bytes>,
    /// An encoded `UsageAck`.
    #[prost(bytes = "bytes", optional, tag = "5")]
    pub usage_ack: Option<Bytes>,
    /// An encoded `UsageTotals`.
    #[prost(bytes = "bytes", optional, tag = "6")]
    pub usage_totals: Option<Bytes>,
    /// An encoded `LimitLeases` (per session).
    #[prost(bytes = "bytes", optional, tag = "7")]
    pub limit_leases: Option<Bytes>,
}

fn leases_message(leases: &LimitLeases, control_plane_id: &str) -> EncodedMessage {
    EncodedMessage {
        limit_leases: Some(Bytes::from(leases.encode_to_vec())),
        control_plane_id: control_plane_id.to_owned(),
        ..Default::default()
    }
}

/// `UsageTotals` messages of `totals` (none for none).
fn totals_messages(all: Vec<UsageTotal>, control_plane_id: &str) -> Vec<EncodedMessage> {
    totals::messages(all)
        .into_iter()
        .map(|m| EncodedMessage {
            usage_totals: Some(Bytes::from(m.encode_to_vec())),
            control_plane_id: control_plane_id.to_owned(),
            ..Default::default()
        })
        .collect()
}

/// Counts a session's usage reports one after the other and sends each ack,
/// once the session has sent its first configuration (`ready`), so that an
/// ack never comes before the config it may refer to.
async fn count_reports(
    usage: Usage,
    node_id: String,
    replica: String,
    mut reports: mpsc::Receiver<UsageReport>,
    mut ready: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<EncodedMessage, Status>>,
) {
    while let Some(report) = reports.recv().await {
        let ack = match usage.apply(&node_id, &report).await {
            Ok(ack) => {
                crate::usage::fault::after_commit(
                    &node_id,
                    &report.journal_id,
                    report.from_record,
                    report.to_record,
                );
                ack
            }
            Err(e) => {
                tracing::warn!(%node_id, journal = %report.journal_id, from = report.from_record,
                    to = report.to_record, error = %e, "usage report not counted; not acknowledged");
                continue;
            }
        };
        if ready.wait_for(|r| *r).await.is_err() {
            return;
        }
        let out = EncodedMessage {
            usage_ack: Some(Bytes::from(ack.encode_to_vec())),
            control_plane_id: replica.clone(),
            ..Default::default()
        };
        if tx.send(Ok(out)).await.is_err() {
            return;
        }
    }
}

/// A `FleetCooldowns` message of the records still in force at `now_ms`;
/// `None` when none is.
fn fleet_message(
    records: &[CooldownRecord],
    now_ms: i64,
    control_plane_id: &str,
) -> Option<EncodedMessage> {
    let cooldowns: Vec<_> = records.iter().filter_map(|r| r.to_wire(now_ms)).collect();
    if cooldowns.is_empty() {
        return None;
    }
    Some(EncodedMessage {
        cooldowns: Some(Bytes::from(FleetCooldowns { cooldowns }.encode_to_vec())),
        control_plane_id: control_plane_id.to_owned(),
        ..Default::default()
    })
}

pub type Outgoing = Pin<Box<dyn Stream<Item = Result<EncodedMessage, Status>> + Send>>;

impl Discovery {
    /// Opens a session for one data plane's stream.
    pub async fn stream_config(
        &self,
        request: Request<Streaming<DataPlaneMessage>>,
    ) -> Result<Response<Outgoing>, Status> {
        if self.tokens.require_client_certificate
            && request.peer_certs().is_none_or(|certs| certs.is_empty())
        {
            tracing::warn!(remote = ?request.remote_addr(), "refused a config stream: no client certificate");
            return Err(Status::unauthenticated(
                "this control plane requires a client certificate on the config stream (mutual TLS): \
                 start the data plane with --control-plane-cert-file and --control-plane-key-file",
            ));
        }
        let Some(token) = bearer(&request) else {
            return Err(Status::unauthenticated(
                "missing data-plane token: send 'authorization: Bearer <token>' (SLUICE_DATA_PLANE_TOKEN)",
            ));
        };
        // The token set is only known once the hub has listed the store.
        if !self.hub.wait_for(1, HELLO_TIMEOUT).await {
            return Err(Status::unavailable(
                "the control plane has not loaded its configuration yet",
            ));
        }
        if !self.tokens.allows(&token, &self.hub.current()) && !self.token_appears(&token).await {
            tracing::warn!(remote = ?request.remote_addr(), "refused a config stream: unknown data-plane token");
            return Err(Status::unauthenticated("invalid data-plane token"));
        }
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(DataPlaneMessage {
                message: Some(Inbound::Hello(hello)),
            }))) => hello,
            Ok(Err(status)) => return Err(status),
            Ok(_) => {
                return Err(Status::invalid_argument(
                    "the first message of a stream must be a Hello",
                ));
            }
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10s")),
        };
        if let Err(e) = crate::validate::object_id("hello.node_id", &hello.node_id) {
            return Err(Status::invalid_argument(e.to_string()));
        }
        tracing::info!(node_id = %hello.node_id, held_revision = hello.held_revision, "data plane connected");
        let (tx, rx) = mpsc::channel(1);
        let status = self.registry.connect(
            hello.node_id.clone(),
            hello.labels.clone(),
            hello.held_revision,
            hello.version.clone(),
        );
        tokio::spawn(session(self.clone(), token, hello, inbound, tx, status));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn session(
    discovery: Discovery,
    token: String,
    hello: Hello,
    mut inbound: Streaming<DataPlaneMessage>,
    tx: mpsc::Sender<Result<EncodedMessage, Status>>,
    status: StreamStatus,
) {
    let node_id = hello.node_id.clone();
    let replica = discovery.registry.replica_id().to_string();
    let (ready_tx, ready) = watch::channel(false);
    let (reports_tx, reports) = mpsc::channel(USAGE_QUEUE);
    // Dropped with the session: the data plane's grace period starts.
    let leases = discovery.limits.connect(&node_id);
    tokio::spawn(count_reports(
        discovery.usage.clone(),
        node_id.clone(),
        replica.clone(),
        reports,
        ready,
        tx.clone(),
    ));
    let send = async {
        // Before the first read of the set, so nothing falls between them.
        let mut fleet = discovery.cooldowns.subscribe();
        let mut usage_totals = discovery.totals.subscribe();
        let mut fleet_sent = false;
        let mut updates = discovery.hub.subscribe();
        let mut held = hello.held_revision;
        if held > updates.borrow().revision {
            discovery.hub.wait_for(held, CATCH_UP).await;
        }
        let mut epoch = 0;
        loop {
            let published = updates.borrow_and_update().clone();
            if !discovery.tokens.allows(&token, &published) {
                tracing::warn!(%node_id, "data-plane token deleted: closing its stream");
                let _ = tx
                    .send(Err(Status::unauthenticated("data-plane token revoked")))
                    .await;
                return;
            }
            // A re-list starts a new history: anything behind it gets a snapshot.
            let relisted = epoch != 0 && epoch != published.epoch;
            epoch = published.epoch;
            if held != published.revision || relisted {
                let delta = if relisted || held == 0 {
                    None
                } else {
                    published.delta_since(held)
                };
                let kind = if delta.is_some() { "delta" } else { "snapshot" };
                tracing::debug!(%node_id, from = held, to = published.revision, kind, "sending config");
                let out = match delta {
                    Some(delta) => EncodedMessage {
                        delta: Some(delta),
                        control_plane_id: replica.clone(),
                        ..Default::default()
                    },
                    None => EncodedMessage {
                        snapshot: match Published::snapshot_off_runtime(&published).await {
                            Ok(snapshot) => Some(snapshot),
                            Err(e) => {
                                tracing::error!(%node_id, error = %e, "encoding a snapshot failed");
                                return;
                            }
                        },
                        control_plane_id: replica.clone(),
                        ..Default::default()
                    },
                };
                if tx.send(Ok(out)).await.is_err() {
                    return;
                }
                held = published.revision;
            }
            if !fleet_sent {
                fleet_sent = true;
                let all = discovery.cooldowns.current();
                if let Some(out) = fleet_message(&all, cooldowns::now_ms(), &replica)
                    && tx.send(Ok(out)).await.is_err()
                {
                    return;
                }
                for out in totals_messages(discovery.totals.current(), &replica) {
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
                if tx
                    .send(Ok(leases_message(&leases.initial(), &replica)))
                    .await
                    .is_err()
                {
                    return;
                }
                ready_tx.send_replace(true);
            }
            // Config changes and cooldowns, each sent whole before the next.
            loop {
                tokio::select! {
                    changed = updates.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    announced = fleet.recv() => {
                        let records = match announced {
                            Ok(record) => vec![(*record).clone()],
                            // Behind: the whole set again says everything missed.
                            Err(broadcast::error::RecvError::Lagged(_)) => discovery.cooldowns.current(),
                            Err(broadcast::error::RecvError::Closed) => return,
                        };
                        if let Some(out) = fleet_message(&records, cooldowns::now_ms(), &replica)
                            && tx.send(Ok(out)).await.is_err()
                        {
                            return;
                        }
                    }
                    () = leases.changed() => {
                        if let Some(changed) = leases.take()
                            && tx.send(Ok(leases_message(&changed, &replica))).await.is_err()
                        {
                            return;
                        }
                    }
                    announced = usage_totals.recv() => {
                        let changed = match announced {
                            Ok(Announce::Changed(changed)) => {
                                // What arrived together leaves together.
                                let mut all = (*changed).clone();
                                let mut everything = false;
                                loop {
                                    match usage_totals.try_recv() {
                                        Ok(Announce::Changed(more)) => all.extend(more.iter().cloned()),
                                        Ok(Announce::Relisted)
                                        | Err(broadcast::error::TryRecvError::Lagged(_)) => {
                                            everything = true;
                                            break;
                                        }
                                        Err(_) => break,
                                    }
                                }
                                if everything { discovery.totals.current() } else { all }
                            }
                            // Behind, or listed afresh: everything again.
                            Ok(Announce::Relisted) | Err(broadcast::error::RecvError::Lagged(_)) => {
                                discovery.totals.current()
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        };
                        for out in totals_messages(changed, &replica) {
                            if tx.send(Ok(out)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    };
    let receive = async {
        loop {
            match inbound.message().await {
                Ok(Some(DataPlaneMessage {
                    message: Some(Inbound::Ack(ack)),
                })) => status.ack(ack.revision),
                Ok(Some(DataPlaneMessage {
                    message: Some(Inbound::Nack(nack)),
                })) => {
                    tracing::warn!(%node_id, revision = nack.revision, reason = %nack.reason, "data plane refused a config");
                    status.nack(nack.revision, nack.reason);
                }
                Ok(Some(DataPlaneMessage {
                    message: Some(Inbound::CooldownReport(report)),
                })) => {
                    tracing::debug!(%node_id, cooldowns = report.cooldowns.len(), "cooldown report");
                    discovery.cooldowns.report(&node_id, &report.cooldowns);
                }
                Ok(Some(DataPlaneMessage {
                    message: Some(Inbound::UsageReport(report)),
                })) => {
                    tracing::debug!(%node_id, journal = %report.journal_id, from = report.from_record,
                        to = report.to_record, entries = report.entries.len(), "usage report");
                    if reports_tx.send(report).await.is_err() {
                        return;
                    }
                }
                Ok(Some(DataPlaneMessage {
                    message: Some(Inbound::LimitDemand(demand)),
                })) => {
                    tracing::trace!(%node_id, demands = demand.demands.len(), "limit demand");
                    discovery.limits.demand(&node_id, &demand);
                }
                Ok(Some(_)) => tracing::debug!(%node_id, "ignoring an unexpected message"),
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(%node_id, error = %e, "config stream ended");
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = send => {},
        _ = receive => {},
        // Shutdown: the service ends the response (UNAVAILABLE); ending the
        // session too releases the request stream and records the disconnect.
        () = discovery.shutdown.cancelled() => {},
    }
    tracing::info!(%node_id, "data plane disconnected");
    drop(status);
}
