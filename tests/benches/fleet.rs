//! Fleet cooldown benchmark (not a test): how long a cooldown one data plane
//! enters takes to reach the rest of the fleet (DESIGN §5, goal p99 ≤ 250 ms
//! with 2 control-plane replicas).
//!
//! Real etcd, two control-plane replicas on it, three data planes (release
//! binaries at the binaries' default log level): dp-0 and dp-1 on replica 1,
//! dp-2 on replica 2, so one receiver shares the reporter's replica and one
//! hears of it through etcd on the other. [`SLOTS`] model groups, each a
//! deployment `limited-{i}` (order 1, its own mock upstream) and a
//! `spare-{i}` (order 2); `cooldown_time` 1 s.
//!
//! Each of the [`EVENTS`] events takes the next group whose previous
//! cooldown is over on every data plane, scripts one 429 on its `limited`
//! upstream and sends one chat completion to dp-0, which meets the 429,
//! cools `limited` (a 429 cools at once), reports it on its config stream
//! and answers from `spare`. From just before that request is sent, dp-1
//! and dp-2 are polled (`GET /debug/routing`, every [`POLL`]) until each
//! shows `limited` cooling with `source: "fleet"`: the event's time is when
//! the last of them does. Two upper bounds in it: the start includes dp-0's
//! request up to its cooldown (a loopback round trip to the mock, well under
//! a millisecond), and the end is found by polling, so up to one interval
//! plus one poll's own time late. The data planes stamp no time of receipt
//! (their only trace of a fleet cooldown is `/debug/routing` and the
//! `sluice_router_cooldowns_total{source="fleet"}` counter, both read by
//! polling), so polling is the finest signal there is without changing them.
//!
//! Baseline in the same run: for [`BASELINE`] admin writes on replica 1, the
//! write's own latency and the time until dp-1 and dp-2 have applied it
//! (their `sluice_config_revision`, polled the same way), the path a config
//! change takes (it includes the hub's 20 ms batch window).
//!
//! Run: `cargo build --release --bins && cargo bench -p sluice-tests --bench fleet`
//! (~15 s once built). `SLUICE_FLEET_BENCH_EVENTS` changes the number of events;
//! events slower than 50 ms are listed on stderr as they happen.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::ControlPlane;
use sluice_tests::data_plane::DataPlane;
use sluice_tests::etcd::EtcdServer;
use sluice_tests::gateway::{Answer, chat_body, millis, openai_deployment};
use sluice_tests::mock_upstream::{Fault, MockUpstream};

const EVENTS: usize = 100;
/// Model groups taken in turn, so an event rarely waits for the previous
/// cooldown of its deployment to end.
const SLOTS: usize = 10;
const COOLDOWN_MS: u64 = 1_000;
const POLL: Duration = Duration::from_millis(2);
/// An event whose cooldown has not reached a data plane by then is missed.
const MISSED: Duration = Duration::from_secs(5);
const BASELINE: usize = 50;
/// Events slower than this are listed as they happen (on stderr).
const SLOW: Duration = Duration::from_millis(50);
const GOAL_P99_MS: f64 = 250.0;
/// The data planes log as deployed (the harness's default adds debug spans).
const PRODUCTION_LOG: &[(&str, &str)] = &[("SLUICE_LOG", "info")];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `p50 / p99 / max` of `xs`, in ms.
fn summary(xs: &[Duration]) -> String {
    let mut sorted = xs.to_vec();
    sorted.sort();
    format!(
        "{:>7.1} {:>7.1} {:>7.1}",
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted[sorted.len() - 1]),
    )
}

/// Where deployment `id` cools on `dp`, if it does: `own` or `fleet`.
async fn cooling(dp: &DataPlane, id: &str) -> anyhow::Result<Option<String>> {
    let routing = dp.routing().await?;
    let found = routing["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["deployments"].as_array().into_iter().flatten())
        .find(|d| d["id"] == id)
        .with_context(|| format!("{id} not in /debug/routing: {routing}"))?;
    Ok(found["cooling"]["source"].as_str().map(str::to_owned))
}

/// From `since` until `dp` shows `id` cooling from the fleet; `None` after
/// [`MISSED`].
async fn heard(dp: &DataPlane, id: &str, since: Instant) -> anyhow::Result<Option<Duration>> {
    loop {
        let source = cooling(dp, id).await?;
        let elapsed = since.elapsed();
        match source.as_deref() {
            Some("fleet") => return Ok(Some(elapsed)),
            Some(other) => bail!("{id} cooling on its own ({other}): it met the 429 itself"),
            None if elapsed > MISSED => return Ok(None),
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// From `since` until `dp` has applied `revision`.
async fn applied_by(dp: &DataPlane, revision: i64, since: Instant) -> anyhow::Result<Duration> {
    loop {
        if dp.metric("sluice_config_revision").await? as i64 >= revision {
            return Ok(since.elapsed());
        }
        if since.elapsed() > MISSED {
            bail!("revision {revision} not applied within {MISSED:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::var("SLUICE_FLEET_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS);
    let etcd = EtcdServer::start().await?;
    let replicas = [
        ControlPlane::start_etcd(&etcd.endpoint())?,
        ControlPlane::start_etcd(&etcd.endpoint())?,
    ];
    let dir = tempfile::tempdir()?;
    let planes: Vec<DataPlane> = [("dp-0", 0), ("dp-1", 0), ("dp-2", 1)]
        .into_iter()
        .map(|(name, cp)| {
            DataPlane::start_with_env(&[replicas[cp].url()], name, dir.path(), &[], PRODUCTION_LOG)
        })
        .collect::<anyhow::Result<_>>()?;
    for p in &planes {
        p.wait_ready(Duration::from_secs(30)).await?;
    }
    let admin = Admin::connect(&replicas[0].url()).await?;

    let spare = MockUpstream::start().await?;
    let mut limited = Vec::with_capacity(SLOTS);
    let mut revision = 0;
    let mut groups = Vec::with_capacity(SLOTS);
    for slot in 0..SLOTS {
        let up = MockUpstream::start().await?;
        let group = format!("g-{slot}");
        for (id, order, at) in [("limited", 1, &up), ("spare", 2, &spare)] {
            let deployment = api::Deployment {
                id: format!("{id}-{slot}"),
                order,
                ..openai_deployment(at, &group, "gpt-4o")
            };
            revision = revision.max(admin.deploy(deployment).await?);
        }
        limited.push(up);
        groups.push(group);
    }
    let settings = api::RouterSettings {
        cooldown_time: Some(millis(COOLDOWN_MS)),
        ..Default::default()
    };
    revision = revision.max(admin.set_router(settings).await?);
    let key = admin
        .keys
        .clone()
        .generate_key(api::GenerateKeyRequest {
            key: Some(api::Key {
                models: groups.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    revision = revision.max(key.revision);
    let key = key.key;
    for p in &planes {
        p.wait_for_revision(revision, Duration::from_secs(30))
            .await?;
    }

    let http = sluice_tests::http_client();
    let chat = |dp: &DataPlane, group: &str| {
        let request = http
            .post(dp.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(chat_body(group).to_string());
        async move { anyhow::Ok(Answer::read(request.send().await?).await) }
    };
    // Every data plane has called every deployment it will see: pooled
    // connections, a routing state for each.
    for p in &planes {
        for (slot, group) in groups.iter().enumerate() {
            let a = chat(p, group).await?;
            if a.status != 200
                || a.header("x-sluice-deployment") != Some(&format!("limited-{slot}"))
            {
                bail!("warm-up: {group} on {}: {} {}", p.port(), a.status, a.text);
            }
        }
    }

    // The baseline: a config write's path to every data plane.
    let mut writes = Vec::with_capacity(BASELINE);
    let mut applied = Vec::with_capacity(BASELINE);
    for i in 0..BASELINE {
        let issued = Instant::now();
        let team_id = format!("bench-{i:03}");
        let revision = admin
            .create_team(api::Team {
                team_id,
                ..Default::default()
            })
            .await?;
        writes.push(issued.elapsed());
        let (one, two) = tokio::join!(
            applied_by(&planes[1], revision, issued),
            applied_by(&planes[2], revision, issued),
        );
        applied.push(one?.max(two?));
    }

    let mut same_replica = Vec::with_capacity(events);
    let mut other_replica = Vec::with_capacity(events);
    let mut last = Vec::with_capacity(events);
    let mut reporter = Vec::with_capacity(events);
    let mut waited = Duration::ZERO;
    let mut missed = 0;
    let started = Instant::now();
    for event in 0..events {
        let slot = event % SLOTS;
        let id = format!("limited-{slot}");
        // Its previous cooldown (1 s) is over everywhere.
        let wait = Instant::now();
        for p in &planes {
            while cooling(p, &id).await?.is_some() {
                if wait.elapsed() > MISSED {
                    bail!("{id} still cooling after {MISSED:?}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        waited += wait.elapsed();
        limited[slot].script([Fault::status(429, "rate_limit_exceeded")]);
        let since = Instant::now();
        let (answer, one, two) = tokio::join!(
            async {
                let a = chat(&planes[0], &groups[slot]).await;
                (a, since.elapsed())
            },
            heard(&planes[1], &id, since),
            heard(&planes[2], &id, since),
        );
        let (answer, answered) = (answer.0?, answer.1);
        if answer.status != 200
            || answer.header("x-sluice-deployment") != Some(&format!("spare-{slot}"))
        {
            bail!(
                "event {event}: dp-0 answered {} from {:?}: {}",
                answer.status,
                answer.header("x-sluice-deployment"),
                answer.text
            );
        }
        reporter.push(answered);
        match (one?, two?) {
            (Some(one), Some(two)) => {
                if one.max(two) > SLOW {
                    eprintln!(
                        "event {event} ({id}): dp-1 {:.1} ms, dp-2 {:.1} ms, dp-0 answered in {:.1} ms",
                        ms(one),
                        ms(two),
                        ms(answered)
                    );
                }
                same_replica.push(one);
                other_replica.push(two);
                last.push(one.max(two));
            }
            _ => missed += 1,
        }
    }
    let elapsed = started.elapsed();
    if last.is_empty() {
        bail!("no cooldown reached both other data planes within {MISSED:?}");
    }

    let mut sorted = last.clone();
    sorted.sort();
    let p99 = ms(percentile(&sorted, 0.99));
    println!();
    println!(
        "fleet cooldowns: {} events in {:.1} s ({:.1} s of it waiting for earlier cooldowns to end); etcd, 2 control-plane replicas, 3 data planes; cooldown_time {COOLDOWN_MS} ms",
        events,
        elapsed.as_secs_f64(),
        waited.as_secs_f64()
    );
    println!(
        "  {:<58} {:>7} {:>7} {:>7}",
        "", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "  {:<58} {}",
        "baseline: admin write (issue -> committed)",
        summary(&writes)
    );
    println!(
        "  {:<58} {}",
        "baseline: admin write -> applied by dp-1 and dp-2",
        summary(&applied)
    );
    println!(
        "  {:<58} {}",
        "dp-0's request (429, cooldown, retry on spare) answered",
        summary(&reporter)
    );
    println!(
        "  {:<58} {}",
        "dp-0 sends -> dp-1 skips it (same replica as dp-0)",
        summary(&same_replica)
    );
    println!(
        "  {:<58} {}",
        "dp-0 sends -> dp-2 skips it (the other replica)",
        summary(&other_replica)
    );
    println!(
        "  {:<58} {}",
        "dp-0 sends -> the last of dp-1 and dp-2 skips it",
        summary(&last)
    );
    println!(
        "(the end found by polling /debug/routing every {} ms: up to that plus one poll late; missed within {:?}: {missed})",
        POLL.as_millis(),
        MISSED
    );
    println!(
        "p99 to the last data plane: {p99:.1} ms   goal <= {GOAL_P99_MS:.0} ms: {}",
        if p99 <= GOAL_P99_MS && missed == 0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
