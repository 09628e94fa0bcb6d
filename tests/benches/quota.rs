//! Overshoot benchmark (not a test): how far past a limit and a budget the
//! fleet goes under load, against the bounds the README documents.
//!
//! Three release data planes on one control plane and etcd, 32 concurrent
//! clients on each (96 in all), the mock upstream answering at once:
//!
//! - an `rpm_limit` of 60 on one key: the requests admitted in one minute
//!   window, against 60 (documented worst case while every data plane is
//!   connected: 0 past the limit);
//! - a `max_budget` of 100 requests' cost on another key (no reset): the
//!   spend `GetUsage` counts once every report is in, against the README's
//!   worst case: budget + data planes × the dearest request + (n−1)/n of
//!   what the other data planes spent in a report round a data plane had
//!   not heard of, which is at most ((n−1)/n)² × budget when the whole
//!   budget goes in one round, as it does here.
//!
//! Run: `cargo build --release --bins && cargo bench -p sluice-tests --bench
//! quota` (about 1 minute, most of it waiting for a fresh minute window).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use serde_json::json;
use sluice_tests::admin_client::api;
use sluice_tests::admin_client::api::get_usage_request::Scope;
use sluice_tests::gateway::{Gateway, chat_body, openai_deployment};

const DATA_PLANES: usize = 3;
const CLIENTS_PER_DATA_PLANE: usize = 32;
const RPM: u64 = 60;
/// µ$ per request: 1,000 prompt tokens at $0.10 per million.
const REQUEST_COST: i64 = 100;
const BUDGET_REQUESTS: i64 = 100;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 96 clients for `secs` seconds against `key`; returns (admitted, refused).
async fn load(gw: &Gateway, key: &str, body: &serde_json::Value, secs: u64) -> (usize, usize) {
    let until = Instant::now() + Duration::from_secs(secs);
    let counts = join_all(
        (0..DATA_PLANES * CLIENTS_PER_DATA_PLANE).map(|client| async move {
            let (mut ok, mut refused) = (0, 0);
            while Instant::now() < until {
                let r = gw
                    .http
                    .post(gw.planes[client % DATA_PLANES].url("/v1/chat/completions"))
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                match r.map(|r| r.status().as_u16()) {
                    Ok(200) => ok += 1,
                    Ok(429) => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            (ok, refused)
        }),
    )
    .await;
    counts
        .into_iter()
        .fold((0, 0), |(a, b), (ok, r)| (a + ok, b + r))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let gw = Gateway::start(DATA_PLANES).await;
    gw.deploy(api::Deployment {
        input_cost_per_token: 1e-7,
        ..openai_deployment(&gw.upstream, "gpt-4o", "gpt-4o")
    })
    .await;
    let rpm_key = gw
        .key_from(api::Key {
            models: vec!["gpt-4o".into()],
            rpm_limit: Some(RPM),
            ..Default::default()
        })
        .await;
    let budget_key = gw
        .key_from(api::Key {
            models: vec!["gpt-4o".into()],
            max_budget: Some(BUDGET_REQUESTS * REQUEST_COST),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    // Every data plane knows the fleet before the load.
    for dp in &gw.planes {
        while dp.metric("sluice_fleet_data_planes").await.unwrap_or(0.0) as usize != DATA_PLANES {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A prompt Sluice estimates at about 1,000 tokens, reported as 1,000.
    let mut body = chat_body("gpt-4o");
    body["messages"] = json!([{"role": "user", "content": "word ".repeat(800)}]);
    body["mock_usage"] = json!({"prompt_tokens": 1000, "completion_tokens": 0});
    body["max_tokens"] = json!(1);

    // RPM: a fresh minute with 15 s to spare.
    if 60 - now_s() % 60 < 15 {
        tokio::time::sleep(Duration::from_secs(60 - now_s() % 60 + 1)).await;
    }
    let minute = now_s() / 60;
    let (admitted, refused) = load(&gw, &rpm_key, &chat_body("gpt-4o"), 10).await;
    assert_eq!(now_s() / 60, minute, "the load ran over a minute boundary");

    // Budget: load until every data plane refuses, then wait for the reports.
    let (served, budget_refused) = load(&gw, &budget_key, &body, 5).await;
    let key_id = sluice_control_plane::secrets::sha256_hex(&budget_key);
    let mut spend = 0;
    for _ in 0..100 {
        let usage = gw
            .admin
            .usage_of(Scope::KeyId(key_id.clone()))
            .await
            .unwrap();
        let u = usage.usage.unwrap_or_default();
        if u.requests as usize == served {
            spend = u.spend;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let budget = BUDGET_REQUESTS * REQUEST_COST;
    println!(
        "quota: {DATA_PLANES} data planes x {CLIENTS_PER_DATA_PLANE} clients, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "rpm_limit {RPM}: admitted {admitted} in one minute window ({refused} refused)   overshoot {} (documented bound 0 while connected): {}",
        admitted as i64 - RPM as i64,
        if admitted as u64 <= RPM {
            "met"
        } else {
            "NOT met"
        }
    );
    let n = DATA_PLANES as i64;
    let stale = budget * (n - 1) * (n - 1) / (n * n);
    let bound = budget + n * REQUEST_COST + stale;
    println!(
        "max_budget {budget} µ$ ({BUDGET_REQUESTS} requests): served {served} ({budget_refused} refused), spend {spend} µ$ = {:.2}x the budget (each judging alone: {n}x)   bound budget + {n} x {REQUEST_COST} + {stale} = {bound} µ$: {}",
        spend as f64 / budget as f64,
        if spend <= bound { "met" } else { "NOT met" }
    );
}
