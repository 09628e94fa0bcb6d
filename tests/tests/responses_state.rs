//! The Responses API's state, honestly (README, "The Responses API"): a
//! response an upstream stored is reached again only through the account
//! that answered it. Real etcd, control plane and data plane; two mock
//! OpenAI upstreams standing for two accounts, each knowing only the
//! responses it stored.
//!
//! - `previous_response_id` goes back to the account that answered, every
//!   time, while the group has other accounts too.
//! - `GET /v1/responses/{id}` reaches it, for the key that created it only.
//! - An id this data plane never saw goes only to deployments that keep
//!   state, never to a translated one; a group with none refuses it.
//! - Budgets and rate limits refuse /v1/responses as they refuse chat.
//! - Azure: `/openai/responses?api-version=…`, the deployment as `model`;
//!   its v1 API at `/openai/v1/…`, as OpenAI's.

use serde_json::json;
use sluice_tests::admin_client::api;
use sluice_tests::gateway::{Gateway, openai_deployment, strings};
use sluice_tests::mock_upstream::MockUpstream;

const GROUP: &str = "gpt-stateful";

fn responses_calls(upstream: &MockUpstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.path_only().ends_with("/responses"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_response_is_continued_and_retrieved_through_the_account_that_answered() {
    let gw = Gateway::start(1).await;
    let other = MockUpstream::start().await.expect("a second upstream");
    gw.deploy(openai_deployment(&gw.upstream, GROUP, "gpt-4o"))
        .await;
    gw.deploy(openai_deployment(&other, GROUP, "gpt-4o")).await;
    let key = gw.key(None, &[GROUP]).await;
    let stranger = gw.key(None, &[GROUP]).await;
    gw.sync().await;

    let first = gw
        .post(
            &key,
            "/v1/responses",
            &json!({"model": GROUP, "input": "Remember 7"}),
        )
        .await;
    first.assert_ok();
    let id = first.json["id"].as_str().expect("an id").to_owned();
    let (home, away) = if gw.upstream.stored_response(&id).is_some() {
        (&gw.upstream, &other)
    } else {
        (&other, &gw.upstream)
    };
    assert!(home.stored_response(&id).is_some(), "stored upstream");
    let away_before = responses_calls(away);

    // Without affinity each of these would go to the other account half
    // the time, and get its 400 previous_response_not_found.
    for turn in 0..8 {
        let next = gw
            .post(
                &key,
                "/v1/responses",
                &json!({"model": GROUP, "input": "What number?", "previous_response_id": id}),
            )
            .await;
        assert_eq!(next.status, 200, "turn {turn}: {}", next.text);
    }
    assert_eq!(
        responses_calls(away),
        away_before,
        "nothing went to the other account"
    );

    let got = gw.get(&key, &format!("/v1/responses/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(Some(got.json.clone()), home.stored_response(&id));

    // Another key, allowed the same group, does not reach it through Sluice.
    let refused = gw.get(&stranger, &format!("/v1/responses/{id}")).await;
    refused.assert_error(404, "response_not_found");
    let unknown = gw.get(&key, "/v1/responses/resp_never_seen").await;
    let error = unknown.assert_error(404, "response_not_found");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("never stored"),
        "says why: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_previous_response_goes_only_where_state_is_kept() {
    let gw = Gateway::start(1).await;
    let chat_only = MockUpstream::start().await.expect("a second upstream");
    gw.deploy(openai_deployment(&gw.upstream, "gpt-mixed", "gpt-4o"))
        .await;
    gw.deploy(api::Deployment {
        supported_endpoints: strings(&["/v1/chat/completions"]),
        ..openai_deployment(&chat_only, "gpt-mixed", "gpt-4o-mini")
    })
    .await;
    gw.deploy(api::Deployment {
        supported_endpoints: strings(&["/v1/chat/completions"]),
        ..openai_deployment(&chat_only, "gpt-translated", "gpt-4o-mini")
    })
    .await;
    let key = gw.key(None, &["gpt-mixed", "gpt-translated"]).await;
    gw.sync().await;

    // Answered by another data plane, say: the stateful upstream is asked,
    // and says it does not know it; the translated deployment never is.
    for _ in 0..8 {
        let a = gw
            .post(
                &key,
                "/v1/responses",
                &json!({"model": "gpt-mixed", "input": "Go on", "previous_response_id": "resp_elsewhere"}),
            )
            .await;
        a.assert_error(400, "previous_response_not_found");
    }
    assert_eq!(
        chat_only.hits(),
        0,
        "the translated deployment was never called"
    );

    let a = gw
        .post(
            &key,
            "/v1/responses",
            &json!({"model": "gpt-translated", "input": "Go on", "previous_response_id": "resp_elsewhere"}),
        )
        .await;
    let error = a.assert_error(400, "invalid_request_error");
    assert_eq!(error["param"], "previous_response_id");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("stateless"),
        "{error}"
    );
    assert_eq!(chat_only.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_and_rate_limits_hold_on_responses_as_on_chat() {
    let gw = Gateway::start(1).await;
    gw.deploy(api::Deployment {
        input_cost_per_token: 1e-6,
        output_cost_per_token: 1e-6,
        ..openai_deployment(&gw.upstream, GROUP, "gpt-4o")
    })
    .await;
    let budget_key = gw
        .key_from(api::Key {
            models: vec![GROUP.into()],
            max_budget: Some(1),
            ..Default::default()
        })
        .await;
    let rpm_key = gw
        .key_from(api::Key {
            models: vec![GROUP.into()],
            rpm_limit: Some(1),
            ..Default::default()
        })
        .await;
    gw.sync().await;
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into > 50 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - into)).await;
    }
    let body = json!({"model": GROUP, "input": "Hello", "store": false});

    // A budget of one micro-dollar: spent by the first answer at the
    // latest, refused after, and the upstream not called for the refusal.
    let mut refused = None;
    for _ in 0..3 {
        let a = gw.post(&budget_key, "/v1/responses", &body).await;
        if a.status == 429 {
            refused = Some(a);
            break;
        }
        a.assert_ok();
    }
    let refused = refused.expect("the budget is enforced on /v1/responses");
    let calls = gw.upstream.hits();
    refused.assert_error(429, "insufficient_quota");
    let again = gw.post(&budget_key, "/v1/responses", &body).await;
    again.assert_error(429, "insufficient_quota");
    assert_eq!(gw.upstream.hits(), calls, "a refused request is not sent");

    // One request a minute.
    gw.post(&rpm_key, "/v1/responses", &body).await.assert_ok();
    let limited = gw.post(&rpm_key, "/v1/responses", &body).await;
    limited.assert_error(429, "rate_limit_exceeded");
    assert_eq!(
        limited
            .headers
            .get("x-ratelimit-limit-requests")
            .map(|v| v.to_str().unwrap()),
        Some("1"),
        "{:?}",
        limited.headers
    );
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_serves_responses_at_its_own_url_and_keeps_them() {
    let gw = Gateway::start(1).await;
    gw.deploy(api::Deployment {
        model_name: "azure-gpt".into(),
        provider: "azure".into(),
        model: "my-gpt4o-deployment".into(),
        api_base: gw.upstream.url(""),
        api_key: "azure-upstream-secret".into(),
        ..Default::default()
    })
    .await;
    let key = gw.key(None, &["azure-gpt"]).await;
    gw.sync().await;
    let a = gw
        .post(
            &key,
            "/v1/responses",
            &json!({"model": "azure-gpt", "input": "Hello"}),
        )
        .await;
    a.assert_ok();
    let seen = gw.upstream.last_request().unwrap();
    assert_eq!(seen.path_only(), "/openai/responses");
    assert_eq!(seen.query("api-version"), Some("2025-04-01-preview"));
    assert_eq!(seen.header("api-key"), Some("azure-upstream-secret"));
    assert_eq!(
        seen.json()["model"],
        "my-gpt4o-deployment",
        "the deployment is the body's model"
    );
    let id = a.json["id"].as_str().unwrap();
    let got = gw.get(&key, &format!("/v1/responses/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    let seen = gw.upstream.last_request().unwrap();
    assert_eq!(seen.path_only(), format!("/openai/responses/{id}"));
    assert_eq!(seen.query("api-version"), Some("2025-04-01-preview"));
    // A compaction, at Azure's compaction URL.
    let a = gw
        .post(
            &key,
            "/v1/responses/compact",
            &json!({"model": "azure-gpt", "input": [{"role": "user", "content": "Hello"}]}),
        )
        .await;
    a.assert_ok();
    assert_eq!(a.json["object"], "response.compaction", "{}", a.text);
    let seen = gw.upstream.last_request().unwrap();
    assert_eq!(seen.path_only(), "/openai/responses/compact");
    assert_eq!(seen.query("api-version"), Some("2025-04-01-preview"));
    assert_eq!(seen.json()["model"], "my-gpt4o-deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azures_v1_api_is_reached_as_openais_with_the_deployment_as_model() {
    let gw = Gateway::start(1).await;
    let azure = |name: &str, api_base: String, api_version: &str| api::Deployment {
        model_name: name.into(),
        provider: "azure".into(),
        model: format!("{name}-deployment"),
        api_base,
        api_key: "azure-v1-secret".into(),
        api_version: api_version.into(),
        ..Default::default()
    };
    // By version, as LiteLLM spells it; by a Foundry-style base; preview.
    gw.deploy(azure("by-version", gw.upstream.url(""), "v1"))
        .await;
    gw.deploy(azure("by-base", gw.upstream.url("/openai/v1/"), ""))
        .await;
    gw.deploy(azure("preview", gw.upstream.url(""), "preview"))
        .await;
    let key = gw.key(None, &["by-version", "by-base", "preview"]).await;
    gw.sync().await;

    for (group, query) in [
        ("by-version", None),
        ("by-base", None),
        ("preview", Some("preview")),
    ] {
        gw.chat(&key, group).await.assert_ok();
        let seen = gw.upstream.last_request().unwrap();
        assert_eq!(seen.path_only(), "/openai/v1/chat/completions", "{group}");
        assert_eq!(seen.query("api-version"), query, "{group}: {}", seen.path);
        assert_eq!(seen.header("api-key"), Some("azure-v1-secret"));
        assert_eq!(
            seen.json()["model"],
            format!("{group}-deployment"),
            "no deployments path: the deployment is the body's model"
        );
    }

    let embedded = gw
        .post(
            &key,
            "/v1/embeddings",
            &json!({"model": "by-version", "input": "one"}),
        )
        .await;
    embedded.assert_ok();
    let seen = gw.upstream.last_request().unwrap();
    assert_eq!(seen.path, "/openai/v1/embeddings");

    // The Responses API, and a stored response reached again there.
    let a = gw
        .post(
            &key,
            "/v1/responses",
            &json!({"model": "by-base", "input": "Hello"}),
        )
        .await;
    a.assert_ok();
    let seen = gw.upstream.last_request().unwrap();
    assert_eq!(seen.path, "/openai/v1/responses", "no dated version");
    assert_eq!(seen.json()["model"], "by-base-deployment");
    let id = a.json["id"].as_str().unwrap();
    let got = gw.get(&key, &format!("/v1/responses/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(
        gw.upstream.last_request().unwrap().path,
        format!("/openai/v1/responses/{id}")
    );
    gw.assert_logs_hold_none_of(&[&key, "azure-v1-secret"]);
}
