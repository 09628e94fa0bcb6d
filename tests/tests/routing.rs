//! Routing end to end (DESIGN §5): strategies, retries, cooldowns,
//! fallbacks and streams, against real etcd, the real control plane and
//! data-plane binaries, and mock upstreams (one per deployment, so each
//! deployment's faults are its own and its hits are counted).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sluice_tests::admin_client::api;
use sluice_tests::gateway::{Answer, Gateway, WAIT, chat_body, millis, openai_deployment, strings};
use sluice_tests::mock_upstream::{Fault, MockUpstream};

/// A deployment `id` of `group` at `upstream`.
fn dep(id: &str, group: &str, upstream: &MockUpstream) -> api::Deployment {
    api::Deployment {
        id: id.into(),
        ..openai_deployment(upstream, group, "gpt-4o")
    }
}

/// [`dep`] with an `order`.
fn ordered(id: &str, group: &str, upstream: &MockUpstream, order: u32) -> api::Deployment {
    api::Deployment {
        order,
        ..dep(id, group, upstream)
    }
}

async fn upstreams(n: usize) -> Vec<MockUpstream> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(MockUpstream::start().await.unwrap());
    }
    all
}

fn fallback(group: &str, to: &[&str]) -> api::Fallback {
    api::Fallback {
        model_group: group.into(),
        fallbacks: strings(to),
    }
}

/// `n` chat completions of `model`, `concurrency` at a time.
async fn chats(gw: &Gateway, key: &str, model: &str, n: usize, concurrency: usize) -> Vec<Answer> {
    futures::stream::iter(0..n)
        .map(|_| gw.chat(key, model))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

fn served_by(answers: &[Answer]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for a in answers {
        a.assert_ok();
        *by.entry(a.header("x-sluice-deployment").unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    by
}

/// Polls `check` every 20 ms until it holds or [`WAIT`] passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The routing state of deployment `id` on data plane `dp`.
async fn state(gw: &Gateway, dp: usize, id: &str) -> Value {
    let routing = gw.planes[dp].routing().await.expect("/debug/routing");
    routing["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["deployments"].as_array().cloned().unwrap_or_default())
        .find(|d| d["id"] == id)
        .unwrap_or(Value::Null)
}

async fn cooling(gw: &Gateway, dp: usize, id: &str) -> Option<String> {
    let s = state(gw, dp, id).await;
    s["cooling"]["source"].as_str().map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weights_split_traffic_and_rpm_does_without_weights() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(4).await;
    gw.deploy(api::Deployment {
        weight: 1,
        ..dep("light", "weighted", &ups[0])
    })
    .await;
    gw.deploy(api::Deployment {
        weight: 3,
        ..dep("heavy", "weighted", &ups[1])
    })
    .await;
    gw.deploy(api::Deployment {
        rpm: 10_000,
        ..dep("small", "by-rpm", &ups[2])
    })
    .await;
    gw.deploy(api::Deployment {
        rpm: 30_000,
        ..dep("large", "by-rpm", &ups[3])
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    let n = 4000;
    let by = served_by(&chats(&gw, &key, "weighted", n, 16).await);
    let (light, heavy) = (by["light"] as f64, by["heavy"] as f64);
    assert_eq!(light + heavy, n as f64);
    // Chi-square with one degree of freedom; 10.83 is p = 0.001.
    let chi2 = (light - 1000.0).powi(2) / 1000.0 + (heavy - 3000.0).powi(2) / 3000.0;
    assert!(chi2 < 10.83, "1:3 split: {by:?}, chi2 {chi2}");
    assert_eq!(ups[0].hits() + ups[1].hits(), n, "one upstream call each");

    let by = served_by(&chats(&gw, &key, "by-rpm", 800, 16).await);
    let (small, large) = (by["small"] as f64, by["large"] as f64);
    let chi2 = (small - 200.0).powi(2) / 200.0 + (large - 600.0).powi(2) / 600.0;
    assert!(chi2 < 10.83, "rpm-proportional: {by:?}, chi2 {chi2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_busy_avoids_a_slow_deployment() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(2).await;
    ups[0].set_latency(Duration::from_millis(300));
    gw.deploy(dep("slow", "g", &ups[0])).await;
    gw.deploy(dep("fast", "g", &ups[1])).await;
    gw.set_router(api::RouterSettings {
        routing_strategy: "least-busy".into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["g"]).await;
    gw.sync().await;

    let by = served_by(&chats(&gw, &key, "g", 80, 8).await);
    let slow = by.get("slow").copied().unwrap_or(0);
    assert!(slow <= 16, "the busy, slow one gets few: {by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latency_based_moves_off_a_slow_deployment_and_back() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(2).await;
    gw.deploy(dep("a", "g", &ups[0])).await;
    gw.deploy(dep("b", "g", &ups[1])).await;
    gw.set_router(api::RouterSettings {
        routing_strategy: "latency-based-routing".into(),
        lowest_latency_buffer: Some(1.0),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["g"]).await;
    gw.sync().await;
    served_by(&chats(&gw, &key, "g", 40, 1).await);

    ups[0].set_latency(Duration::from_millis(100));
    // A few slow answers teach it.
    served_by(&chats(&gw, &key, "g", 40, 1).await);
    let by = served_by(&chats(&gw, &key, "g", 100, 1).await);
    assert!(
        by.get("a").copied().unwrap_or(0) <= 15,
        "off the slow one: {by:?}"
    );

    ups[0].succeed();
    // Exploration measures it again; once its average is back within the
    // buffer it shares the traffic.
    let mut shared = false;
    for _ in 0..20 {
        let by = served_by(&chats(&gw, &key, "g", 100, 2).await);
        if by.get("a").copied().unwrap_or(0) >= 25 {
            shared = true;
            break;
        }
    }
    assert!(shared, "traffic came back to the recovered deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cost_based_picks_the_cheapest_and_order_is_respected() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(5).await;
    let priced = |id, cost, up| api::Deployment {
        input_cost_per_token: cost,
        output_cost_per_token: cost * 2.0,
        ..dep(id, "priced", up)
    };
    gw.deploy(priced("dear", 1e-5, &ups[0])).await;
    gw.deploy(priced("cheap", 1e-7, &ups[1])).await;
    // Order: the second only while the first cools.
    gw.deploy(ordered("primary", "ordered", &ups[2], 1)).await;
    gw.deploy(ordered("secondary", "ordered", &ups[3], 2)).await;
    gw.set_router(api::RouterSettings {
        routing_strategy: "cost-based-routing".into(),
        cooldown_time: Some(millis(3000)),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    let by = served_by(&chats(&gw, &key, "priced", 50, 4).await);
    assert_eq!(by.get("cheap"), Some(&50), "{by:?}");

    let by = served_by(&chats(&gw, &key, "ordered", 20, 4).await);
    assert_eq!(by.get("primary"), Some(&20), "{by:?}");
    ups[2].script([Fault::status(429, "rate_limit_exceeded")]);
    let answer = gw.chat(&key, "ordered").await;
    answer.assert_ok();
    assert_eq!(answer.header("x-sluice-deployment"), Some("secondary"));
    assert_eq!(answer.header("x-sluice-attempts"), Some("2"));
    let by = served_by(&chats(&gw, &key, "ordered", 10, 2).await);
    assert_eq!(
        by.get("secondary"),
        Some(&10),
        "passed over while cooling: {by:?}"
    );
    eventually("the primary's cooldown to end", || async {
        gw.chat(&key, "ordered").await.header("x-sluice-deployment") == Some("primary")
    })
    .await;
}

// ---------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_land_on_another_deployment() {
    let gw = Gateway::start(1).await;
    let good = MockUpstream::start().await.unwrap();
    let closed_port = sluice_tests::control_plane::free_port().unwrap();
    let faults: Vec<(&str, Fault)> = vec![
        ("e500", Fault::status(500, "server_error")),
        ("e502", Fault::status(502, "bad_gateway")),
        ("e503", Fault::status(503, "unavailable")),
        ("e429", Fault::status(429, "rate_limit_exceeded")),
        ("hang", Fault::Hang(Duration::from_secs(10))),
        ("closed", Fault::Close),
    ];
    let mut faulty = Vec::new();
    for (name, fault) in &faults {
        let up = MockUpstream::start().await.unwrap();
        up.script([fault.clone()]);
        gw.deploy(api::Deployment {
            order: 1,
            timeout: Some(millis(500)),
            ..dep(&format!("{name}-first"), name, &up)
        })
        .await;
        gw.deploy(ordered(&format!("{name}-second"), name, &good, 2))
            .await;
        faulty.push(up);
    }
    gw.deploy(api::Deployment {
        order: 1,
        api_base: format!("http://127.0.0.1:{closed_port}/v1"),
        ..dep("refused-first", "refused", &good)
    })
    .await;
    gw.deploy(ordered("refused-second", "refused", &good, 2))
        .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    for (name, _) in faults.iter().chain([&("refused", Fault::Succeed)]) {
        let answer = gw.chat(&key, name).await;
        answer.assert_ok();
        assert_eq!(
            answer.header("x-sluice-deployment"),
            Some(format!("{name}-second").as_str()),
            "{name}: the retry went to the other deployment"
        );
        assert_eq!(answer.header("x-sluice-attempts"), Some("2"), "{name}");
        assert_eq!(answer.header("x-sluice-model-group"), Some(*name));
        assert!(answer.header("x-sluice-fallback").is_none());
    }
    for up in &faulty {
        assert_eq!(up.hits(), 1, "each faulty upstream was called once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_request_is_not_retried_and_the_attempt_bound_is_exact() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(5).await;
    ups[0].fail_with(400, "invalid_value");
    gw.deploy(ordered("refuses", "bad", &ups[0], 1)).await;
    gw.deploy(ordered("never", "bad", &ups[1], 2)).await;
    // Two groups of failing deployments: g falls back to h.
    for (i, (id, group)) in [("g1", "g"), ("g2", "g"), ("h1", "h")].iter().enumerate() {
        ups[2 + i].fail_with(500, "server_error");
        gw.deploy(dep(id, group, &ups[2 + i])).await;
    }
    gw.set_router(api::RouterSettings {
        num_retries: Some(3),
        allowed_fails: Some(1000),
        fallbacks: vec![fallback("g", &["h"])],
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    let answer = gw.chat(&key, "bad").await;
    answer.assert_error(400, "invalid_value");
    assert_eq!(answer.header("x-sluice-attempts"), Some("1"));
    assert_eq!(
        (ups[0].hits(), ups[1].hits()),
        (1, 0),
        "a 400 is not retried"
    );

    let answer = gw.chat(&key, "g").await;
    assert_eq!(
        answer.status, 500,
        "the last upstream error: {}",
        answer.text
    );
    assert_eq!(answer.header("x-sluice-attempts"), Some("8"));
    assert_eq!(
        answer.header("x-sluice-model-group"),
        Some("g"),
        "the group asked for"
    );
    assert_eq!(
        answer.header("x-sluice-deployment"),
        Some("h1"),
        "the last one tried"
    );
    let hits = ups[2].hits() + ups[3].hits() + ups[4].hits();
    assert_eq!(
        hits, 8,
        "(1 + num_retries) per group, for g and its fallback h"
    );
    assert_eq!(ups[4].hits(), 4);
    let message = answer.json["error"]["message"].as_str().unwrap_or_default();
    for id in ["g1", "g2", "h1"] {
        assert!(message.contains(id), "the attempts are listed: {message}");
    }
    assert!(!message.contains("127.0.0.1"), "no upstream URL: {message}");

    // retry_policy: one retry for server errors, whatever num_retries says.
    gw.set_router(api::RouterSettings {
        retry_policy: Some(api::RetryPolicy {
            internal_server_error_retries: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    gw.sync().await;
    let before = ups[2].hits() + ups[3].hits() + ups[4].hits();
    let answer = gw.chat(&key, "g").await;
    assert_eq!(
        answer.header("x-sluice-attempts"),
        Some("4"),
        "{}",
        answer.text
    );
    assert_eq!(ups[2].hits() + ups[3].hits() + ups[4].hits() - before, 4);
}

// ---------------------------------------------------------------------------
// Cooldowns
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooldowns_skip_a_failing_deployment_and_bring_it_back() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(3).await;
    ups[0].fail_with(500, "server_error");
    gw.deploy(ordered("flaky", "g", &ups[0], 1)).await;
    gw.deploy(ordered("steady", "g", &ups[1], 2)).await;
    gw.deploy(dep("other", "h", &ups[2])).await;
    gw.set_router(api::RouterSettings {
        allowed_fails: Some(2),
        cooldown_time: Some(millis(3000)),
        fallbacks: vec![fallback("g", &["h"])],
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    // Three failures: more than allowed_fails (2) in the minute.
    for _ in 0..3 {
        let a = gw.chat(&key, "g").await;
        a.assert_ok();
        assert_eq!(a.header("x-sluice-deployment"), Some("steady"));
    }
    assert_eq!(ups[0].hits(), 3);
    assert_eq!(cooling(&gw, 0, "flaky").await.as_deref(), Some("own"));
    let by = served_by(&chats(&gw, &key, "g", 10, 2).await);
    assert_eq!(by.get("steady"), Some(&10));
    assert_eq!(ups[0].hits(), 3, "skipped while cooling");

    ups[0].succeed();
    eventually("the cooldown to end", || async {
        gw.chat(&key, "g").await.header("x-sluice-deployment") == Some("flaky")
    })
    .await;

    // A Retry-After longer than cooldown_time is honoured.
    ups[0].script([Fault::retry_after(429, 8)]);
    let started = Instant::now();
    gw.chat(&key, "g").await.assert_ok();
    let until = state(&gw, 0, "flaky").await["cooling"]["remaining_ms"]
        .as_u64()
        .expect("cooling");
    assert!(until > 6_000, "the upstream's 8 s, not 3 s: {until} ms");
    tokio::time::sleep(Duration::from_millis(4000).saturating_sub(started.elapsed())).await;
    assert_eq!(cooling(&gw, 0, "flaky").await.as_deref(), Some("own"));

    // Everything cooling: the fallback answers; with nothing left, 503.
    ups[1].script([Fault::status(429, "rate_limit_exceeded")]);
    let a = gw.chat(&key, "g").await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("h"));
    assert_eq!(a.header("x-sluice-deployment"), Some("other"));
    assert_eq!(a.header("x-sluice-model-group"), Some("h"));
    ups[2].script([Fault::status(429, "rate_limit_exceeded")]);
    let a = gw.chat(&key, "g").await;
    assert_eq!(a.status, 429, "attempts were made: the last upstream error");
    let a = gw.chat(&key, "g").await;
    a.assert_error(503, "no_healthy_deployment");
    let retry_after: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=5).contains(&retry_after), "{retry_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cooldown_spreads_to_every_data_plane_on_every_replica() {
    let etcd = sluice_tests::etcd::EtcdServer::start().await.unwrap();
    let cp1 = sluice_tests::control_plane::ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let cp2 = sluice_tests::control_plane::ControlPlane::start_etcd(&etcd.endpoint()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut planes = vec![
        sluice_tests::data_plane::DataPlane::start(&[cp1.url()], "dp-0", dir.path()).unwrap(),
        sluice_tests::data_plane::DataPlane::start(&[cp1.url()], "dp-1", dir.path()).unwrap(),
        sluice_tests::data_plane::DataPlane::start(&[cp2.url()], "dp-2", dir.path()).unwrap(),
    ];
    let admin = sluice_tests::admin_client::Admin::connect(&cp1.url())
        .await
        .unwrap();
    let ups = upstreams(2).await;
    let mut revision = 0;
    for d in [
        api::Deployment {
            order: 1,
            ..dep("limited", "g", &ups[0])
        },
        api::Deployment {
            order: 2,
            ..dep("spare", "g", &ups[1])
        },
    ] {
        revision = admin
            .models
            .clone()
            .create_deployment(api::CreateDeploymentRequest {
                deployment: Some(d),
            })
            .await
            .unwrap()
            .into_inner()
            .revision;
    }
    revision = admin
        .router
        .clone()
        .update_router_settings(api::UpdateRouterSettingsRequest {
            settings: Some(api::RouterSettings {
                cooldown_time: Some(millis(6000)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision
        .max(revision);
    let key = admin
        .keys
        .clone()
        .generate_key(api::GenerateKeyRequest {
            key: Some(api::Key {
                models: strings(&["g"]),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    revision = revision.max(key.revision);
    let key = key.key;
    for p in &planes {
        p.wait_for_revision(revision, WAIT).await.unwrap();
    }
    let http = reqwest::Client::new();
    let urls: Vec<String> = planes
        .iter()
        .map(|p| p.url("/v1/chat/completions"))
        .collect();
    let chat = |dp: usize| {
        let url = urls[dp].clone();
        let (http, key) = (http.clone(), key.clone());
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(chat_body("g").to_string())
                .send()
                .await
                .unwrap();
            Answer::read(r).await
        }
    };

    ups[0].fail_with(429, "rate_limit_exceeded");
    let a = chat(0).await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-deployment"), Some("spare"));
    assert_eq!(ups[0].hits(), 1);
    // The others hear of it without meeting a failure themselves. Both are
    // watched at once: on a loaded machine the relay through etcd can take
    // a good part of the cooldown, and one it outlives is never seen.
    let fleet_cooling = |dp: usize| {
        let plane = &planes[dp];
        async move {
            let r = plane.routing().await.unwrap_or_default();
            r["groups"][0]["deployments"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["id"] == "limited" && d["cooling"]["source"] == "fleet")
        }
    };
    let seen = [std::cell::Cell::new(false), std::cell::Cell::new(false)];
    eventually("the fleet cooldown on dp-1 and dp-2", || {
        let (c1, c2, seen) = (fleet_cooling(1), fleet_cooling(2), &seen);
        async move {
            let (now1, now2) = tokio::join!(c1, c2);
            seen[0].set(seen[0].get() || now1);
            seen[1].set(seen[1].get() || now2);
            seen[0].get() && seen[1].get()
        }
    })
    .await;
    for dp in [1, 2] {
        for _ in 0..5 {
            let a = chat(dp).await;
            a.assert_ok();
            assert_eq!(a.header("x-sluice-deployment"), Some("spare"));
        }
    }
    assert_eq!(ups[0].hits(), 1, "only the first data plane met the 429");

    // The reporter goes away; the cooldown ends by itself.
    planes[0].kill();
    ups[0].succeed();
    eventually("the cooldown to expire everywhere", || async {
        chat(2).await.header("x-sluice-deployment") == Some("limited")
            && chat(1).await.header("x-sluice-deployment") == Some("limited")
    })
    .await;
    drop(planes);
    drop((cp1, cp2));
}

// ---------------------------------------------------------------------------
// Fallbacks
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_fallback_kind_takes_its_own_list() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(6).await;
    let names = ["main", "generic", "big", "lenient", "secret", "mine"];
    for (up, name) in ups.iter().zip(names) {
        gw.deploy(dep(name, name, up)).await;
    }
    gw.set_router(api::RouterSettings {
        num_retries: Some(0),
        fallbacks: vec![fallback("main", &["secret", "generic"])],
        context_window_fallbacks: vec![fallback("main", &["big"])],
        content_policy_fallbacks: vec![fallback("main", &["lenient"])],
        default_fallbacks: strings(&["generic"]),
        ..Default::default()
    })
    .await;
    // The key may not use "secret".
    let key = gw
        .key(None, &["main", "generic", "big", "lenient", "mine"])
        .await;
    gw.sync().await;

    let too_long = json!({"error": {"message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}});
    ups[0].script([Fault::Body {
        status: 400,
        body: too_long,
    }]);
    let a = gw.chat(&key, "main").await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("big"));

    let refusal = json!({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", "type": null, "param": "prompt", "code": "content_filter", "status": 400}});
    ups[0].script([Fault::Body {
        status: 400,
        body: refusal.clone(),
    }]);
    let a = gw.chat(&key, "main").await;
    assert_eq!(a.header("x-sluice-fallback"), Some("lenient"));

    // Generic: "secret" is listed first but the key may not use it.
    ups[0].script([Fault::status(503, "unavailable")]);
    let a = gw.chat(&key, "main").await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("generic"));
    assert_eq!(
        ups[4].hits(),
        0,
        "a fallback the key may not use is never called"
    );

    // A refusal with no content_policy_fallbacks of its own never takes the
    // generic lists.
    ups[5].script([Fault::Body {
        status: 400,
        body: refusal,
    }]);
    let before = ups[1].hits();
    let a = gw.chat(&key, "mine").await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(ups[1].hits(), before, "default_fallbacks not taken");

    // The request's own fallbacks, and disable_fallbacks.
    ups[0].script([Fault::status(503, "unavailable")]);
    let mut body = chat_body("main");
    body["fallbacks"] = json!(["mine"]);
    let a = gw.post(&key, "/v1/chat/completions", &body).await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("mine"));
    let sent = ups[5].last_request().unwrap().json();
    assert!(
        sent.get("fallbacks").is_none() && sent["messages"].is_array(),
        "removed before it goes upstream: {sent}"
    );
    ups[0].script([Fault::status(503, "unavailable")]);
    let mut body = chat_body("main");
    body["disable_fallbacks"] = json!(true);
    let a = gw.post(&key, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert!(a.header("x-sluice-fallback").is_none());
    let sent = ups[0].last_request().unwrap().json();
    assert!(sent.get("disable_fallbacks").is_none(), "{sent}");
    // The request's list is subject to access too.
    ups[0].script([Fault::status(503, "unavailable")]);
    let mut body = chat_body("main");
    body["fallbacks"] = json!(["secret"]);
    let a = gw.post(&key, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 503);
    assert_eq!(ups[4].hits(), 0);
}

/// A `gemini/…` deployment at `upstream`, as a LiteLLM config names one,
/// reached through Google's OpenAI-compatible API (its path under the
/// mock: `/v1beta/openai`).
fn gemini(id: &str, group: &str, upstream: &MockUpstream) -> api::Deployment {
    api::Deployment {
        id: id.into(),
        model_name: group.into(),
        provider: "gemini".into(),
        model: "gemini-2.5-flash".into(),
        api_base: upstream.url("/v1beta/openai"),
        api_key: "gemini-api-key-7Qm2".into(),
        ..Default::default()
    }
}

/// Google's error envelope, as Gemini's OpenAI-compatible API answers.
fn google_error(code: u16, status: &str, message: &str, details: Value) -> Value {
    json!([{"error": {"code": code, "message": message, "status": status, "details": details}}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gemini_is_reached_and_its_errors_are_read_like_openais() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(3).await;
    gw.deploy(gemini("flash", "flash", &ups[0])).await;
    gw.deploy(dep("big", "big", &ups[1])).await;
    gw.deploy(dep("spare", "spare", &ups[2])).await;
    gw.set_router(api::RouterSettings {
        num_retries: Some(0),
        cooldown_time: Some(millis(1000)),
        context_window_fallbacks: vec![fallback("flash", &["big"])],
        fallbacks: vec![fallback("flash", &["spare"])],
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    // Google's path, the Gemini key as a bearer token, Gemini's model name.
    let a = gw.chat(&key, "flash").await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-deployment"), Some("flash"));
    let sent = ups[0].last_request().unwrap();
    assert_eq!(sent.path_only(), "/v1beta/openai/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer gemini-api-key-7Qm2")
    );
    assert_eq!(sent.json()["model"], "gemini-2.5-flash");

    // A prompt over Gemini's window, in Google's envelope: the context
    // window fallback, not the generic one.
    ups[0].script([Fault::Body {
        status: 400,
        body: google_error(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
            json!([]),
        ),
    }]);
    let a = gw.chat(&key, "flash").await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("big"));

    // Gemini's quota error says when to come back in its body: the
    // deployment cools that long (5 s), not cooldown_time (1 s).
    ups[0].script([Fault::Body {
        status: 429,
        body: google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota.",
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}]),
        ),
    }]);
    let a = gw.chat(&key, "flash").await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("spare"));
    let remaining = state(&gw, 0, "flash").await["cooling"]["remaining_ms"]
        .as_u64()
        .expect("cooling");
    assert!(remaining > 3_000, "Gemini's 5 s, not 1 s: {remaining} ms");
    eventually("the cooldown to end", || async {
        cooling(&gw, 0, "flash").await.is_none()
    })
    .await;

    // An error no fallback is for reaches an OpenAI client in OpenAI's
    // shape, and an Anthropic client in Anthropic's, with Gemini's words.
    let bad = google_error(
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload received. Unknown name \"web_search_options\": Cannot find field.",
        json!([]),
    );
    ups[0].script([Fault::Body {
        status: 400,
        body: bad.clone(),
    }]);
    let a = gw.chat(&key, "flash").await;
    let error = a.assert_error(400, "invalid_argument");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid JSON payload received.")),
        "{error}"
    );
    ups[0].script([Fault::Body {
        status: 400,
        body: bad,
    }]);
    let messages = json!({"model": "flash", "max_tokens": 64,
                          "messages": [{"role": "user", "content": "Say hello"}]});
    let a = gw.post(&key, "/v1/messages", &messages).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["type"], "error", "{}", a.text);
    assert_eq!(a.json["error"]["type"], "invalid_request_error");
    assert!(
        a.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("web_search_options")),
        "{}",
        a.text
    );

    // Gemini's compatible API has no legacy completions: refused before
    // sending (its 404 would cool the deployment for everyone).
    let hits = ups[0].hits();
    let a = gw
        .post(
            &key,
            "/v1/completions",
            &json!({"model": "flash", "prompt": "Say hello"}),
        )
        .await;
    let error = a.assert_error(400, "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not serve /completions")),
        "{error}"
    );
    assert_eq!(ups[0].hits(), hits, "nothing was sent");
    assert!(cooling(&gw, 0, "flash").await.is_none());
    gw.chat(&key, "flash").await.assert_ok();
}

/// A coding agent's tool, as Zod and MCP servers write its schema: what
/// Gemini refuses whole ("Unknown name \"$schema\"", "additionalProperties",
/// "exclusiveMinimum", a `required` name not among the properties, an
/// array without `items`).
fn agent_tool_schema() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "path": {"type": "string", "format": "uri", "description": "Where"},
            "limit": {"type": "integer", "exclusiveMinimum": 0},
            "mode": {"anyOf": [{"const": "read"}, {"const": "write"}]},
            "tags": {"type": "array"},
            "meta": {"$ref": "#/definitions/Meta"}
        },
        "definitions": {"Meta": {"type": "object", "properties": {"owner": {"type": ["string", "null"]}},
                                 "additionalProperties": false}},
        "required": ["path", "offset"],
        "additionalProperties": false
    })
}

/// [`agent_tool_schema`] as Gemini takes it.
fn agent_tool_schema_for_gemini() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Where"},
            "limit": {"type": "integer", "minimum": 1},
            "mode": {"type": "string", "enum": ["read", "write"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object", "properties": {"owner": {"type": "string", "nullable": true}}}
        },
        "required": ["path"]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_tool_schemas_reach_gemini_in_the_subset_it_takes() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(2).await;
    gw.deploy(gemini("flash", "flash", &ups[0])).await;
    gw.deploy(dep("gpt", "gpt", &ups[1])).await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;
    let tools = json!([{"type": "function", "function": {
        "name": "read_file", "description": "Read a file", "parameters": agent_tool_schema()}}]);

    // An OpenAI client's tools: Gemini is sent its subset, the rest of the
    // body as it was.
    let body = json!({"model": "flash", "messages": [{"role": "user", "content": "Read it"}],
                      "tools": tools, "tool_choice": "required", "temperature": 0.2});
    gw.post(&key, "/v1/chat/completions", &body)
        .await
        .assert_ok();
    let sent = ups[0].last_request().unwrap().json();
    assert_eq!(
        sent["tools"][0]["function"],
        json!({"name": "read_file", "description": "Read a file",
               "parameters": agent_tool_schema_for_gemini()})
    );
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(sent["messages"], body["messages"]);

    // A structured answer's schema too.
    let format = json!({"type": "json_schema", "json_schema": {"name": "file", "strict": true,
                        "schema": agent_tool_schema()}});
    let body = json!({"model": "flash", "messages": [{"role": "user", "content": "Describe it"}],
                      "response_format": format});
    gw.post(&key, "/v1/chat/completions", &body)
        .await
        .assert_ok();
    let sent = ups[0].last_request().unwrap().json();
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        agent_tool_schema_for_gemini()
    );
    assert_eq!(sent["response_format"]["json_schema"]["strict"], true);

    // Claude Code's tools, through the Messages translation.
    let messages = json!({"model": "flash", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Read it"}],
        "tools": [{"name": "read_file", "description": "Read a file",
                   "input_schema": agent_tool_schema()}]});
    let a = gw.post(&key, "/v1/messages", &messages).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let sent = ups[0].last_request().unwrap().json();
    assert_eq!(
        sent["tools"][0]["function"]["parameters"],
        agent_tool_schema_for_gemini()
    );

    // Every other provider is sent the client's schema byte for byte.
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "Read it"}],
                      "tools": tools});
    gw.post(&key, "/v1/chat/completions", &body)
        .await
        .assert_ok();
    let sent = ups[1].last_request().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sent.body),
        body.to_string()
            .replace(r#""model":"gpt""#, r#""model":"gpt-4o""#)
    );
}

/// A `vertex_ai/…` deployment whose endpoint is `upstream` (as an
/// `api_base`, since the real one is Google's) and whose credentials are
/// `api_key`: a key file's path, or empty for the metadata server.
fn vertex(id: &str, group: &str, upstream: &MockUpstream, api_key: &str) -> api::Deployment {
    api::Deployment {
        id: id.into(),
        model_name: group.into(),
        provider: "vertex_ai".into(),
        model: "gemini-2.5-flash".into(),
        api_base: upstream.url("/v1/projects/test-project/locations/us-central1"),
        api_key: api_key.into(),
        vertex_project: "test-project".into(),
        ..Default::default()
    }
}

/// The requests `upstream` answered as Google's token endpoints.
fn token_requests(upstream: &MockUpstream) -> Vec<sluice_tests::mock_upstream::Recorded> {
    upstream
        .requests()
        .into_iter()
        .filter(|r| r.path_only().ends_with("/token"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vertex_ai_is_reached_with_google_tokens_fetched_once_and_kept() {
    let google = MockUpstream::start().await.unwrap();
    let metadata_host = format!("127.0.0.1:{}", google.port());
    let gw = Gateway::start_with_env(1, &[], &[("GCE_METADATA_HOST", &metadata_host)]).await;
    let vertex_up = MockUpstream::start().await.unwrap();
    let key = sluice_tests::certs::ServiceAccountKey::generate(&google.url("/token")).unwrap();
    let key_file = key.key_file().to_string_lossy().into_owned();
    gw.deploy(vertex("sa", "gemini-sa", &vertex_up, &key_file))
        .await;
    gw.deploy(vertex("gke", "gemini-gke", &vertex_up, "")).await;
    let client = gw.key(None, &["*"]).await;
    gw.sync().await;

    // A service account's key: a JWT it signed, exchanged for a token,
    // which goes to Vertex's endpoint with Google's model name.
    let answers = chats(&gw, &client, "gemini-sa", 8, 4).await;
    assert_eq!(served_by(&answers).get("sa"), Some(&8));
    let grants = token_requests(&google);
    assert_eq!(
        grants.len(),
        1,
        "one token for every request while it lives"
    );
    let form = String::from_utf8(grants[0].body.to_vec()).unwrap();
    let assertion = form
        .strip_prefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=")
        .expect("OAuth's JWT bearer grant");
    let claims = key
        .verify(assertion)
        .expect("signed with the account's key");
    assert_eq!(claims["iss"], sluice_tests::certs::ServiceAccountKey::EMAIL);
    assert_eq!(claims["aud"], google.url("/token"));
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    let sent = vertex_up.last_request().unwrap();
    assert_eq!(
        sent.path_only(),
        "/v1/projects/test-project/locations/us-central1/endpoints/openapi/chat/completions"
    );
    assert_eq!(sent.header("authorization"), Some("Bearer ya29.mock-0"));
    assert_eq!(sent.json()["model"], "google/gemini-2.5-flash");

    // No credentials: the metadata server's token (GKE Workload Identity),
    // asked with its header.
    gw.chat(&client, "gemini-gke").await.assert_ok();
    let asked = token_requests(&google);
    assert_eq!(asked.len(), 2);
    assert_eq!(
        asked[1].path_only(),
        "/computeMetadata/v1/instance/service-accounts/default/token"
    );
    assert_eq!(asked[1].header("metadata-flavor"), Some("Google"));
    assert_eq!(
        vertex_up.last_request().unwrap().header("authorization"),
        Some("Bearer ya29.mock-1")
    );

    // A token with less than a minute to live is never sent: each request
    // fetches a new one. (A new deployment starts with no token.)
    google.set_token_life(30);
    gw.deploy(vertex("short", "gemini-short", &vertex_up, &key_file))
        .await;
    gw.sync().await;
    for _ in 0..2 {
        gw.chat(&client, "gemini-short").await.assert_ok();
    }
    assert_eq!(token_requests(&google).len(), 4);

    // A token with less than 5 minutes left is still sent, and a new one
    // fetched in the background for the requests after.
    google.set_token_life(200);
    gw.deploy(vertex("soon", "gemini-soon", &vertex_up, &key_file))
        .await;
    gw.sync().await;
    gw.chat(&client, "gemini-soon").await.assert_ok();
    let first = vertex_up
        .last_request()
        .unwrap()
        .header("authorization")
        .map(str::to_owned);
    gw.chat(&client, "gemini-soon").await.assert_ok();
    let second = vertex_up
        .last_request()
        .unwrap()
        .header("authorization")
        .map(str::to_owned);
    assert_eq!(first, second, "the stale token is used while it lasts");
    eventually("the background fetch", || async {
        token_requests(&google).len() == 6
    })
    .await;
    gw.chat(&client, "gemini-soon").await.assert_ok();
    let third = vertex_up
        .last_request()
        .unwrap()
        .header("authorization")
        .map(str::to_owned);
    assert_ne!(third, first, "then the fetched one");
    // Which is stale too: one more fetch, in the background again.
    eventually("the second background fetch", || async {
        token_requests(&google).len() == 7
    })
    .await;

    // A background fetch that fails leaves the stale token in use, and is
    // counted.
    gw.deploy(vertex("flaky", "gemini-flaky", &vertex_up, &key_file))
        .await;
    gw.sync().await;
    gw.chat(&client, "gemini-flaky").await.assert_ok();
    let fetched = token_requests(&google).len();
    google.fail_with_body(503, json!({"error": "backend_error"}));
    gw.chat(&client, "gemini-flaky").await.assert_ok();
    eventually("the failed background fetch counted", || async {
        gw.planes[0]
            .metrics()
            .await
            .unwrap()
            .contains("sluice_credential_refresh_failures_total 1")
    })
    .await;
    assert_eq!(token_requests(&google).len(), fetched + 1);
    google.succeed();

    // Credentials the token endpoint refuses: the client is told the
    // deployment's credentials need fixing, and nothing reaches Vertex.
    let refusing = MockUpstream::start().await.unwrap();
    refusing.fail_with_body(
        400,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    );
    let bad_key =
        sluice_tests::certs::ServiceAccountKey::generate(&refusing.url("/token")).unwrap();
    let bad_file = bad_key.key_file().to_string_lossy().into_owned();
    gw.deploy(vertex("refused", "gemini-refused", &vertex_up, &bad_file))
        .await;
    gw.sync().await;
    let hits = vertex_up.hits();
    let a = gw.chat(&client, "gemini-refused").await;
    let error = a.assert_error(502, "upstream_error");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains("Invalid JWT Signature"), "{message}");
    assert_eq!(vertex_up.hits(), hits);
    assert_eq!(cooling(&gw, 0, "refused").await.as_deref(), Some("own"));
    gw.assert_logs_hold_none_of(&["ya29.mock-0", "BEGIN PRIVATE KEY"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pre_call_checks_skip_a_small_context_deployment() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(3).await;
    gw.deploy(api::Deployment {
        max_input_tokens: Some(20),
        ..dep("small", "g", &ups[0])
    })
    .await;
    gw.deploy(dep("large", "g", &ups[1])).await;
    gw.deploy(api::Deployment {
        max_input_tokens: Some(20),
        ..dep("tiny", "only-small", &ups[0])
    })
    .await;
    gw.deploy(dep("huge", "big", &ups[2])).await;
    gw.set_router(api::RouterSettings {
        enable_pre_call_checks: true,
        context_window_fallbacks: vec![fallback("only-small", &["big"])],
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["*"]).await;
    gw.sync().await;

    let long = "word ".repeat(400);
    let body = json!({"model": "g", "messages": [{"role": "user", "content": long}]});
    for _ in 0..10 {
        let a = gw.post(&key, "/v1/chat/completions", &body).await;
        a.assert_ok();
        assert_eq!(a.header("x-sluice-deployment"), Some("large"));
    }
    let body = json!({"model": "only-small", "messages": [{"role": "user", "content": long}]});
    let a = gw.post(&key, "/v1/chat/completions", &body).await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("big"));
    assert_eq!(ups[0].hits(), 0, "the small deployment was never called");
    // A short prompt still fits.
    let a = gw.chat(&key, "only-small").await;
    assert_eq!(a.header("x-sluice-deployment"), Some("tiny"));
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

async fn stream_text(
    gw: &Gateway,
    key: &str,
    model: &str,
) -> (u16, HashMap<String, String>, String) {
    let mut body = chat_body(model);
    body["stream"] = json!(true);
    let r = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let text = r.text().await.expect("a clean end of stream");
    (status, headers, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_retry_before_the_first_byte_and_end_cleanly_after() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(2).await;
    gw.deploy(api::Deployment {
        order: 1,
        stream_timeout: Some(millis(400)),
        ..dep("first", "g", &ups[0])
    })
    .await;
    gw.deploy(ordered("second", "g", &ups[1], 2)).await;
    gw.set_router(api::RouterSettings {
        allowed_fails: Some(100),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["g"]).await;
    gw.sync().await;

    // Before the first byte: retried on the other deployment.
    ups[0].script([Fault::status(503, "unavailable")]);
    let (status, headers, text) = stream_text(&gw, &key, "g").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-sluice-deployment"], "second");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // After it: no retry; an error event in OpenAI's shape, then the end.
    let second_hits = ups[1].hits();
    ups[0].script([Fault::BreakStream { after: 1 }]);
    let (status, headers, text) = stream_text(&gw, &key, "g").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-sluice-deployment"], "first");
    assert!(text.contains("Hello"), "the first chunk arrived: {text}");
    let error = error_event(&text).expect("an error event");
    assert_eq!(error["error"]["code"], "stream_interrupted", "{text}");
    assert_eq!(ups[1].hits(), second_hits, "not retried");

    // Silent past stream_timeout: cut the same way.
    ups[0].script([Fault::StallStream { after: 1 }]);
    let started = Instant::now();
    let (_, _, text) = stream_text(&gw, &key, "g").await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let error = error_event(&text).expect("an error event");
    assert_eq!(error["error"]["code"], "stream_interrupted", "{text}");
    let metrics = gw.planes[0].metrics().await.unwrap();
    assert!(
        metrics.contains("code=\"stream_interrupted\""),
        "counted: {metrics}"
    );
}

/// The first SSE event that is an error object.
fn error_event(text: &str) -> Option<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("error").is_some())
}

// ---------------------------------------------------------------------------
// Config changes and the seeds
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_config_change_under_load_loses_nothing_and_keeps_cooldowns() {
    let gw = Gateway::start(1).await;
    let ups = upstreams(4).await;
    ups[0].fail_with(429, "rate_limit_exceeded");
    gw.deploy(dep("cooling", "g", &ups[0])).await;
    gw.deploy(dep("stays", "g", &ups[1])).await;
    gw.deploy(dep("goes", "g", &ups[2])).await;
    gw.set_router(api::RouterSettings {
        cooldown_time: Some(millis(60_000)),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["g"]).await;
    gw.sync().await;
    // Cool the first one.
    eventually("a cooldown", || async {
        gw.chat(&key, "g").await.assert_ok();
        ups[0].hits() > 0
    })
    .await;
    assert_eq!(cooling(&gw, 0, "cooling").await.as_deref(), Some("own"));

    let load = chats(&gw, &key, "g", 400, 8);
    let change = async {
        let r = gw
            .admin
            .models
            .clone()
            .update_deployment(api::UpdateDeploymentRequest {
                id: "stays".into(),
                update: Some(api::Deployment {
                    weight: 5,
                    ..Default::default()
                }),
                update_mask: Some(sluice_tests::gateway::mask("weight")),
                ..Default::default()
            })
            .await
            .expect("UpdateDeployment")
            .into_inner();
        gw.wrote(r.revision);
        let r = gw
            .admin
            .models
            .clone()
            .delete_deployment(api::DeleteDeploymentRequest {
                id: "goes".into(),
                ..Default::default()
            })
            .await
            .expect("DeleteDeployment")
            .into_inner();
        gw.wrote(r.revision);
        gw.deploy(api::Deployment {
            weight: 5,
            ..dep("arrives", "g", &ups[3])
        })
        .await;
        gw.sync().await;
    };
    let (answers, ()) = tokio::join!(load, change);
    served_by(&answers);
    assert_eq!(cooling(&gw, 0, "cooling").await.as_deref(), Some("own"));
    assert_eq!(ups[0].hits(), 1, "still skipped after the change");
    let by = served_by(&chats(&gw, &key, "g", 40, 4).await);
    assert!(
        by.contains_key("arrives") && !by.contains_key("goes"),
        "{by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seeds_fallback_example_works_as_it_says() {
    let gw = Gateway::start_with_env(1, &[], &[("OPENAI_API_KEY", "sk-seed-upstream")]).await;
    let ups = upstreams(2).await;
    // "How Model Access Works", Fallbacks, unchanged but for api_base.
    let yaml = format!(
        r#"
model_list:
  - model_name: my-custom-model
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/OPENAI_API_KEY
      api_base: {a}
  - model_name: my-other-model
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      api_base: {b}

litellm_settings:
  fallbacks: [{{"my-custom-model": ["my-other-model"]}}]
"#,
        a = ups[0].url("/v1"),
        b = ups[1].url("/v1"),
    );
    gw.import_litellm(yaml).await;
    let key = gw.key(None, &["my-custom-model", "my-other-model"]).await;
    gw.sync().await;

    ups[0].fail_with(429, "rate_limit_exceeded");
    let a = gw.chat(&key, "my-custom-model").await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("my-other-model"));
    assert_eq!(a.json["model"], "gpt-4o", "answered by the other group");
    assert!(ups[0].hits() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_quick_starts_fallback_from_o1_to_gpt_4o_works() {
    let gw = Gateway::start(1).await;
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/config.yaml"
    ))
    .unwrap();
    gw.import_litellm(yaml).await;
    let deployments = gw.deployments().await;
    let o1 = deployments
        .iter()
        .find(|d| d.model_name == "o1")
        .expect("o1 imported");
    // o1's provider is down: the mock's own failure knob.
    let r = gw
        .admin
        .models
        .clone()
        .update_deployment(api::UpdateDeploymentRequest {
            id: o1.id.clone(),
            update: Some(api::Deployment {
                api_base: "mock://?fail=503".into(),
                ..Default::default()
            }),
            update_mask: Some(sluice_tests::gateway::mask("api_base")),
            ..Default::default()
        })
        .await
        .expect("UpdateDeployment")
        .into_inner();
    gw.wrote(r.revision);
    let key = gw.key(None, &["o1", "gpt-4o"]).await;
    gw.sync().await;

    let a = gw.chat(&key, "o1").await;
    a.assert_ok();
    assert_eq!(a.header("x-sluice-fallback"), Some("gpt-4o"));
    assert_eq!(a.header("x-sluice-model-group"), Some("gpt-4o"));
    // num_retries: 2 in the example: three attempts on o1, then gpt-4o.
    assert_eq!(a.header("x-sluice-attempts"), Some("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seeds_model_group_and_load_balancing_examples_work_as_they_say() {
    let ups = upstreams(2).await;
    let azure_base = ups[1].url("");
    let gw = Gateway::start_with_env(
        1,
        &[],
        &[
            ("OPENAI_API_KEY", "sk-seed-openai"),
            ("AZURE_API_KEY", "seed-azure-key"),
            ("AZURE_API_BASE", &azure_base),
            ("AZURE_API_VERSION", "2024-10-21"),
        ],
    )
    .await;
    // "How Model Access Works", Loadbalancing, unchanged but for the OpenAI
    // deployment's api_base (the Azure one's comes from its environment).
    let yaml = format!(
        r#"
model_list:
  - model_name: my-custom-model
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      api_base: {a}
  - model_name: my-custom-model
    litellm_params:
      model: azure/gpt-4o
      api_key: os.environ/AZURE_API_KEY
      api_base: os.environ/AZURE_API_BASE
      api_version: os.environ/AZURE_API_VERSION
"#,
        a = ups[0].url("/v1"),
    );
    gw.import_litellm(yaml).await;
    let key = gw.key(None, &["my-custom-model"]).await;
    gw.sync().await;

    let by = served_by(&chats(&gw, &key, "my-custom-model", 200, 8).await);
    assert_eq!(by.len(), 2, "both deployments serve the group: {by:?}");
    assert!(by.values().all(|n| *n >= 60), "about evenly: {by:?}");
    assert!(ups[0].hits() >= 60 && ups[1].hits() >= 60);
    let azure = ups[1].last_request().unwrap();
    assert!(
        azure
            .path
            .starts_with("/openai/deployments/gpt-4o/chat/completions"),
        "{}",
        azure.path
    );
    assert_eq!(azure.header("api-key"), Some("seed-azure-key"));
}

/// Bedrock's open-weight models (`bedrock/openai.gpt-oss-120b-1:0`) through
/// its OpenAI-compatible API: `/openai/v1/chat/completions` under the
/// runtime's URL, the model id in the body, every request signed (SigV4,
/// checked here against the request as it arrived); chat only, Messages
/// clients translated to it, other endpoints refused before sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_open_weight_models_are_reached_through_its_openai_api_signed() {
    use sluice_data_plane::providers::sigv4;
    const SECRET: &str = "open/weight+secret/EXAMPLEKEY";
    let gw = Gateway::start(1).await;
    let up = MockUpstream::start().await.unwrap();
    gw.deploy(api::Deployment {
        id: "oss".into(),
        model_name: "gpt-oss".into(),
        provider: "bedrock".into(),
        model: "openai.gpt-oss-120b-1:0".into(),
        api_base: up.url(""),
        aws_region_name: "us-west-2".into(),
        aws_access_key_id: "AKIDOPENWEIGHT".into(),
        aws_secret_access_key: SECRET.into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["gpt-oss"]).await;
    gw.sync().await;
    let signed_as_sent = |seen: &sluice_tests::mock_upstream::Recorded| {
        let header = |name: &str| seen.header(name).unwrap_or_default().to_owned();
        let at = sluice_tests::mock_anthropic::amz_date(&header("x-amz-date")).unwrap();
        let uri: hyper::Uri = seen.path.parse().unwrap();
        let host = header("host");
        let signed = sigv4::sign(
            &sigv4::Credentials {
                access_key_id: "AKIDOPENWEIGHT",
                secret_access_key: SECRET,
                session_token: None,
            },
            "us-west-2",
            "bedrock",
            &sigv4::Request {
                method: &seen.method,
                uri: &uri,
                host: &host,
                content_type: &header("content-type"),
                body: &seen.body,
            },
            at,
        )
        .unwrap();
        assert_eq!(
            header("authorization"),
            signed.authorization.to_str().unwrap()
        );
    };

    let a = gw.chat(&key, "gpt-oss").await;
    a.assert_ok();
    let seen = up.last_request().unwrap();
    assert_eq!(seen.path_only(), "/openai/v1/chat/completions");
    assert_eq!(seen.json()["model"], "openai.gpt-oss-120b-1:0");
    assert!(
        seen.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDOPENWEIGHT/"),
    );
    signed_as_sent(&seen);

    // Streamed, and asked by an Anthropic client: translated to chat.
    let mut body = chat_body("gpt-oss");
    body["stream"] = json!(true);
    gw.post(&key, "/v1/chat/completions", &body)
        .await
        .assert_ok();
    signed_as_sent(&up.last_request().unwrap());
    let messages = gw
        .http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(json!({"model": "gpt-oss", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    let a = Answer::read(messages).await;
    a.assert_ok();
    assert_eq!(a.json["type"], "message", "{}", a.text);
    assert_eq!(
        up.last_request().unwrap().path_only(),
        "/openai/v1/chat/completions"
    );

    // Embeddings are not served there: refused, nothing sent.
    let hits = up.hits();
    let a = gw
        .post(
            &key,
            "/v1/embeddings",
            &json!({"model": "gpt-oss", "input": "hi"}),
        )
        .await;
    a.assert_error(400, "invalid_request_error");
    assert_eq!(up.hits(), hits);
    gw.assert_logs_hold_none_of(&[SECRET]);
}
