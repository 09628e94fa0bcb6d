//! A simulated data plane speaking the real `ConfigDiscovery` protocol, for
//! protocol tests and for benchmarks with many streams in one process.
//! It keeps the configuration as a map of encoded objects, applies snapshots
//! and deltas exactly (a delta must start at the held revision), and ACKs.
//! It records every fleet cooldown it is sent, and can report its own; likewise
//! usage: it records every `UsageAck` and `UsageTotal` and can send reports;
//! and rate limits: it records every `LimitLeases` (applying each lease at
//! once, as a real data plane does) and can send demands.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use sluice_proto::config::v1::config_discovery_client::ConfigDiscoveryClient;
use sluice_proto::config::v1::control_plane_message::Message as Outbound;
use sluice_proto::config::v1::data_plane_message::Message as Inbound;
use sluice_proto::config::v1::{
    Ack, Cooldown, CooldownReport, DataPlaneMessage, Hello, Kind, LimitDemand, LimitLeases, Nack,
    ProtocolVersion, Snapshot, UsageAck, UsageReport, UsageTotal,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// (kind, id) -> encoded object.
pub type Objects = BTreeMap<(i32, String), Vec<u8>>;

#[derive(Clone, Debug, Default)]
pub struct SimState {
    pub revision: i64,
    pub objects: Objects,
    pub snapshots: u64,
    pub deltas: u64,
    pub nacks: u64,
    /// When each revision was applied (the newest 10,000).
    pub applied: std::collections::VecDeque<(i64, Instant)>,
    /// Every fleet cooldown received, with when, in order.
    pub cooldowns: Vec<(Cooldown, Instant)>,
    /// Messages received, in order: "snapshot", "delta", "cooldowns".
    pub kinds: Vec<&'static str>,
    /// Every usage ack received, in order.
    pub usage_acks: Vec<UsageAck>,
    /// Every usage total received (in `UsageTotals` messages), in order.
    pub usage_totals: Vec<UsageTotal>,
    /// Every `LimitLeases` received, with when, in order.
    pub limit_leases: Vec<(LimitLeases, Instant)>,
    /// The `data_planes` of the last `LimitLeases`.
    pub data_planes: u32,
    /// The share of each limit leased explicitly: (scope, id, kind) -> share.
    pub shares: BTreeMap<(i32, String, i32), u64>,
    /// Why the stream ended, once it has (the server's status, or "closed").
    pub ended: Option<String>,
}

impl SimState {
    /// The share it applies of a limit: its lease, else the even default
    /// `floor(limit / data_planes)` (alone when never told).
    pub fn share_of(&self, scope: i32, id: &str, kind: i32, limit: u64) -> u64 {
        self.shares
            .get(&(scope, id.to_string(), kind))
            .copied()
            .unwrap_or(limit / u64::from(self.data_planes.max(1)))
    }

    /// When a revision at or after `revision` was first applied.
    pub fn applied_at(&self, revision: i64) -> Option<Instant> {
        self.applied
            .iter()
            .find(|(r, _)| *r >= revision)
            .map(|(_, t)| *t)
    }
}

/// Flattens a snapshot-shaped message into addressed, encoded objects.
pub fn objects_of(s: &Snapshot) -> Objects {
    let mut out = Objects::new();
    for d in &s.deployments {
        out.insert((Kind::Deployment as i32, d.id.clone()), d.encode_to_vec());
    }
    for a in &s.aliases {
        out.insert(
            (Kind::ModelAlias as i32, a.alias.clone()),
            a.encode_to_vec(),
        );
    }
    for g in &s.access_groups {
        out.insert(
            (Kind::AccessGroup as i32, g.name.clone()),
            g.encode_to_vec(),
        );
    }
    for t in &s.teams {
        out.insert((Kind::Team as i32, t.team_id.clone()), t.encode_to_vec());
    }
    for o in &s.organizations {
        out.insert(
            (Kind::Organization as i32, o.organization_id.clone()),
            o.encode_to_vec(),
        );
    }
    for k in &s.keys {
        out.insert((Kind::Key as i32, k.key_id.clone()), k.encode_to_vec());
    }
    if let Some(r) = &s.router_settings {
        out.insert(
            (Kind::RouterSettings as i32, String::new()),
            r.encode_to_vec(),
        );
    }
    out
}

pub struct SimDataPlane {
    state: Arc<Mutex<SimState>>,
    revision: watch::Receiver<i64>,
    /// Counts fleet cooldowns received, to wait on.
    cooldowns: watch::Receiver<usize>,
    /// Counts usage messages received, to wait on.
    usage: watch::Receiver<usize>,
    /// Counts `LimitLeases` received, to wait on.
    leases: watch::Receiver<usize>,
    outbound: mpsc::Sender<DataPlaneMessage>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl SimDataPlane {
    /// Connects with `token`, says hello holding `held` (revision and objects).
    pub async fn connect(
        url: &str,
        token: &str,
        node_id: &str,
        held: SimState,
    ) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
            .connect()
            .await?;
        let mut client = ConfigDiscoveryClient::new(channel);
        let (tx, rx) = mpsc::channel(16);
        tx.send(DataPlaneMessage {
            message: Some(Inbound::Hello(Hello {
                node_id: node_id.to_string(),
                held_revision: held.revision,
                protocol_version: ProtocolVersion::ProtocolVersion1 as i32,
                version: "sim".into(),
                ..Default::default()
            })),
        })
        .await?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let mut inbound = client.stream_config(request).await?.into_inner();
        let (rev_tx, rev_rx) = watch::channel(held.revision);
        let (cooldowns_tx, cooldowns_rx) = watch::channel(0usize);
        let (usage_tx, usage_rx) = watch::channel(0usize);
        let (leases_tx, leases_rx) = watch::channel(0usize);
        let state = Arc::new(Mutex::new(held));
        let shared = state.clone();
        let outbound = tx.clone();
        let ended = state.clone();
        let task = tokio::spawn(async move {
            let result: anyhow::Result<()> = async {
                while let Some(msg) = inbound.message().await? {
                    let reply = {
                        let mut s = shared.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                        let kind = match &msg.message {
                            Some(Outbound::Snapshot(_)) => "snapshot",
                            Some(Outbound::Delta(_)) => "delta",
                            Some(Outbound::Cooldowns(_)) => "cooldowns",
                            Some(Outbound::UsageAck(_)) => "usage_ack",
                            Some(Outbound::UsageTotals(_)) => "usage_totals",
                            Some(Outbound::LimitLeases(_)) => "limit_leases",
                            None => "none",
                        };
                        s.kinds.push(kind);
                        match msg.message {
                            Some(Outbound::Cooldowns(fleet)) => {
                                let at = Instant::now();
                                s.cooldowns
                                    .extend(fleet.cooldowns.into_iter().map(|c| (c, at)));
                                let _ = cooldowns_tx.send(s.cooldowns.len());
                                continue;
                            }
                            // Usage is not configuration: nothing to answer.
                            Some(Outbound::UsageAck(ack)) => {
                                s.usage_acks.push(ack);
                                let _ = usage_tx.send(s.usage_acks.len() + s.usage_totals.len());
                                continue;
                            }
                            Some(Outbound::UsageTotals(totals)) => {
                                s.usage_totals.extend(totals.totals);
                                let _ = usage_tx.send(s.usage_acks.len() + s.usage_totals.len());
                                continue;
                            }
                            Some(Outbound::LimitLeases(leases)) => {
                                s.data_planes = leases.data_planes;
                                for l in &leases.leases {
                                    s.shares.insert((l.scope, l.id.clone(), l.kind), l.share);
                                }
                                s.limit_leases.push((leases, Instant::now()));
                                let _ = leases_tx.send(s.limit_leases.len());
                                continue;
                            }
                            Some(Outbound::Snapshot(snap)) => {
                                s.objects = objects_of(&snap);
                                s.revision = snap.revision;
                                s.snapshots += 1;
                                Inbound::Ack(Ack {
                                    revision: snap.revision,
                                })
                            }
                            Some(Outbound::Delta(d)) if d.from_revision == s.revision => {
                                if let Some(up) = &d.upserts {
                                    s.objects.extend(objects_of(up));
                                }
                                for r in &d.removals {
                                    s.objects.remove(&(r.kind, r.id.clone()));
                                }
                                s.revision = d.to_revision;
                                s.deltas += 1;
                                Inbound::Ack(Ack {
                                    revision: d.to_revision,
                                })
                            }
                            Some(Outbound::Delta(d)) => {
                                s.nacks += 1;
                                Inbound::Nack(Nack {
                                    revision: d.to_revision,
                                    reason: format!(
                                        "delta from {} but I hold {}",
                                        d.from_revision, s.revision
                                    ),
                                })
                            }
                            None => continue,
                        }
                    };
                    if let Inbound::Ack(a) = &reply {
                        if let Ok(mut s) = shared.lock() {
                            if s.applied.len() >= 10_000 {
                                s.applied.pop_front();
                            }
                            s.applied.push_back((a.revision, Instant::now()));
                        }
                        let _ = rev_tx.send(a.revision);
                    }
                    if tx
                        .send(DataPlaneMessage {
                            message: Some(reply),
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(())
            }
            .await;
            if let Ok(mut s) = ended.lock() {
                s.ended = Some(match &result {
                    Ok(()) => "closed".to_owned(),
                    Err(e) => format!("{e:#}"),
                });
            }
            result
        });
        Ok(Self {
            state,
            revision: rev_rx,
            cooldowns: cooldowns_rx,
            usage: usage_rx,
            leases: leases_rx,
            outbound,
            task,
        })
    }

    /// Reports deployments this data plane has just cooled, as a real one does.
    pub async fn report_cooldowns(&self, cooldowns: Vec<Cooldown>) -> anyhow::Result<()> {
        self.outbound
            .send(DataPlaneMessage {
                message: Some(Inbound::CooldownReport(CooldownReport { cooldowns })),
            })
            .await
            .map_err(|_| anyhow::anyhow!("stream closed"))
    }

    /// Sends a usage report, as a real data plane does from its journal.
    pub async fn report_usage(&self, report: UsageReport) -> anyhow::Result<()> {
        self.outbound
            .send(DataPlaneMessage {
                message: Some(Inbound::UsageReport(report)),
            })
            .await
            .map_err(|_| anyhow::anyhow!("stream closed"))
    }

    /// Sends a rate-limit demand, as a real data plane does every second.
    pub async fn send_limit_demand(&self, demand: LimitDemand) -> anyhow::Result<()> {
        self.outbound
            .send(DataPlaneMessage {
                message: Some(Inbound::LimitDemand(demand)),
            })
            .await
            .map_err(|_| anyhow::anyhow!("stream closed"))
    }

    /// Waits until the leases received so far satisfy `done`; returns the state.
    pub async fn wait_for_leases(
        &mut self,
        within: Duration,
        done: impl Fn(&SimState) -> bool,
    ) -> anyhow::Result<SimState> {
        let shared = Arc::clone(&self.state);
        wait_until(&shared, &mut self.leases, within, done, |s| {
            format!(
                "leases not as awaited within {within:?}; data_planes {}, shares {:?}",
                s.data_planes, s.shares
            )
        })
        .await
    }

    /// Sends `report` and waits for the next usage ack.
    pub async fn report_usage_and_wait(
        &mut self,
        report: UsageReport,
        within: Duration,
    ) -> anyhow::Result<UsageAck> {
        let acked = self.state().usage_acks.len();
        self.report_usage(report).await?;
        let state = self
            .wait_for_usage(within, |s| s.usage_acks.len() > acked)
            .await?;
        state
            .usage_acks
            .get(acked)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no ack"))
    }

    /// Waits until the usage received so far satisfies `done`; returns the state.
    pub async fn wait_for_usage(
        &mut self,
        within: Duration,
        done: impl Fn(&SimState) -> bool,
    ) -> anyhow::Result<SimState> {
        let shared = Arc::clone(&self.state);
        wait_until(&shared, &mut self.usage, within, done, |s| {
            format!(
                "usage not as awaited within {within:?}; acks {:?}, totals {:?}",
                s.usage_acks, s.usage_totals
            )
        })
        .await
    }

    /// Waits for a fleet cooldown of `deployment_id`; returns it and when it
    /// arrived.
    pub async fn wait_for_cooldown(
        &mut self,
        deployment_id: &str,
        within: Duration,
    ) -> anyhow::Result<(Cooldown, Instant)> {
        self.wait_for_cooldown_where(deployment_id, within, |_| true)
            .await
    }

    /// Waits for a fleet cooldown of `deployment_id` that `wanted` accepts.
    pub async fn wait_for_cooldown_where(
        &mut self,
        deployment_id: &str,
        within: Duration,
        wanted: impl Fn(&Cooldown) -> bool,
    ) -> anyhow::Result<(Cooldown, Instant)> {
        let find = |s: &SimState| {
            s.cooldowns
                .iter()
                .find(|(c, _)| c.deployment_id == deployment_id && wanted(c))
                .cloned()
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(found) = find(&self.state()) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, self.cooldowns.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!(
                    "stream ended before a cooldown of {deployment_id}: {}",
                    self.state().ended.unwrap_or_default()
                ),
                Err(_) => anyhow::bail!(
                    "no cooldown of {deployment_id} within {within:?}; got {:?}",
                    self.state().cooldowns
                ),
            }
        }
    }

    pub fn state(&self) -> SimState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until the applied revision is at least `revision`.
    pub async fn wait_for(&mut self, revision: i64, within: Duration) -> anyhow::Result<Instant> {
        let waited = tokio::time::timeout(within, self.revision.wait_for(|r| *r >= revision))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(Instant::now()),
            Ok(false) => anyhow::bail!(
                "stream ended before revision {revision}: {}",
                self.state().ended.unwrap_or_default()
            ),
            Err(_) => anyhow::bail!(
                "revision {revision} not applied within {within:?}; at {}",
                self.state().revision
            ),
        }
    }

    /// Ends the stream and returns its final error, if any.
    pub async fn close(self) -> Option<anyhow::Error> {
        self.task.abort();
        match self.task.await {
            Ok(Err(e)) => Some(e),
            _ => None,
        }
    }

    /// Waits for the stream to end by itself (e.g. the token was revoked).
    pub async fn ended(self, within: Duration) -> anyhow::Result<Option<String>> {
        match tokio::time::timeout(within, self.task).await {
            Ok(Ok(Ok(()))) => Ok(None),
            Ok(Ok(Err(e))) => Ok(Some(e.to_string())),
            Ok(Err(e)) => Ok(Some(e.to_string())),
            Err(_) => anyhow::bail!("stream still open after {within:?}"),
        }
    }
}

/// What every data plane should hold: each valid distributed object in the
/// store, encoded as a snapshot carries it; and the store's revision.
pub async fn expected(store: &dyn sluice_control_plane::store::Store) -> (Objects, i64) {
    use sluice_control_plane::distribution::objects::{Address, Object, address_of, decode_object};
    let range = store.range("/sluice/").await.expect("store answers");
    let mut out = Objects::new();
    for kv in &range.kvs {
        let Some(address) = address_of(&kv.key) else {
            continue;
        };
        let Address::Distributed(kind, id) = address.clone() else {
            continue;
        };
        let Ok(object) = decode_object(&address, &kv.value, kv.mod_revision) else {
            continue;
        };
        let bytes = match object {
            Object::Deployment(d) => d.encode_to_vec(),
            Object::Alias(a) => a.encode_to_vec(),
            Object::Group(g) => g.encode_to_vec(),
            Object::Team(t) => t.encode_to_vec(),
            Object::Organization(o) => o.encode_to_vec(),
            Object::Key(k) => k.to_vec(),
            Object::Router(r) => r.encode_to_vec(),
            Object::Token(_) => continue,
        };
        out.insert((kind as i32, id), bytes);
    }
    (out, range.revision)
}

/// Waits until `state` satisfies `done`, woken by `changes`; on time-out
/// fails with `why` of the last state seen.
async fn wait_until(
    state: &Mutex<SimState>,
    changes: &mut watch::Receiver<usize>,
    within: Duration,
    done: impl Fn(&SimState) -> bool,
    why: impl Fn(&SimState) -> String,
) -> anyhow::Result<SimState> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = state.lock().map(|s| s.clone()).unwrap_or_default();
        if done(&seen) {
            return Ok(seen);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => anyhow::bail!("the stream ended: {}", why(&seen)),
            Err(_) => anyhow::bail!("{}", why(&seen)),
        }
    }
}
