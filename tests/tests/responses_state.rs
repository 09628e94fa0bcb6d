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
