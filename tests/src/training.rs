//! The workload a profile-guided build of the data plane is trained on
//! (`scripts/build-release.sh`): an instrumented data plane serves it, and
//! the counts it records decide the release build's code layout and
//! inlining. So it is what a production data plane serves, in about the
//! proportions it serves it: mostly chat completions forwarded to an
//! OpenAI-compatible upstream, some streamed, embeddings, legacy
//! completions, Azure, the `mock` provider, model lists, and a few refused
//! requests; over HTTP/1.1 keep-alive connections and one HTTP/2 connection.
//!
//! Every answer is checked, so a workload that has drifted from the API
//! (a renamed route, a changed error) fails loudly instead of training the
//! build on 404s.
//!
//! ```ignore
//! let tally = training::train(Path::new("target/pgo/generate/release/sluice-data-plane"), 500).await?;
//! println!("{tally}");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;

use crate::admin_client::api;
use crate::gateway::{Gateway, Http2Sender, chat_body, openai_deployment};

/// One kind of request of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    /// A chat completion forwarded to the OpenAI-compatible upstream (two
    /// deployments of one model).
    Chat,
    /// The same with `stream: true`, read to the end.
    Stream,
    Embedding,
    /// `/v1/completions`.
    Completion,
    /// A chat completion through the `azure` provider.
    Azure,
    /// A chat completion the `mock` provider answers in the data plane.
    Local,
    /// `GET /v1/models`.
    Models,
    /// An unknown key: 401.
    Unauthenticated,
    /// A model outside the key's access groups: 403.
    Denied,
    /// A body that is not JSON: 400.
    Malformed,
}

/// One round of the workload: each call, as often as it comes in a round.
pub const ROUND: [(Call, usize); 10] = [
    (Call::Chat, 12),
    (Call::Stream, 3),
    (Call::Embedding, 2),
    (Call::Completion, 1),
    (Call::Azure, 1),
    (Call::Local, 1),
    (Call::Models, 1),
    (Call::Unauthenticated, 1),
    (Call::Denied, 1),
    (Call::Malformed, 1),
];

/// HTTP/1.1 clients sending rounds at once (each on its own keep-alive
/// connections), besides the one HTTP/2 connection.
const CONNECTIONS: usize = 8;

/// How many answers of each call came back as expected.
#[derive(Debug, Default)]
pub struct Tally(pub BTreeMap<Call, usize>);

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: usize = self.0.values().sum();
        write!(f, "{total} requests answered as expected:")?;
        for (call, n) in &self.0 {
            write!(f, " {call:?} {n}")?;
        }
        Ok(())
    }
}

/// Starts a control plane (embedded store) and the data plane `program` at
/// the production log level, configures them, sends `rounds` rounds of the
/// workload spread over the connections, and stops the data plane with
/// SIGTERM, as Kubernetes does: an instrumented build writes its profile as
/// it exits.
pub async fn train(program: &Path, rounds: usize) -> anyhow::Result<Tally> {
    let mut gw = Gateway::start_program(program, &[("SLUICE_LOG", "info")]).await?;
    let key = configure(&gw).await;
    let tally = run(&gw, &key, rounds).await;
    let exit = gw.planes[0].stop()?;
    let tally = tally?;
    if !exit.success() {
        bail!(
            "the data plane exited with {exit} on SIGTERM:\n{}",
            gw.planes[0].log()
        );
    }
    Ok(tally)
}

/// Deployments of every provider, two access groups, a team and its key.
async fn configure(gw: &Gateway) -> String {
    let priced = |mut d: api::Deployment| {
        d.input_cost_per_token = 0.0000025;
        d.output_cost_per_token = 0.00001;
        d
    };
    for upstream_model in ["gpt-4o-2024-08-06", "gpt-4o-2024-11-20"] {
        gw.deploy(priced(openai_deployment(
            &gw.upstream,
            "gpt-4o",
            upstream_model,
        )))
        .await;
    }
    for (model, upstream_model) in [
        ("text-embedding-3-small", "text-embedding-3-small"),
        ("gpt-3.5-turbo-instruct", "gpt-3.5-turbo-instruct"),
        ("o1", "o1"),
    ] {
        gw.deploy_openai(model, upstream_model).await;
    }
    gw.deploy(priced(api::Deployment {
        model_name: "azure-gpt".into(),
        provider: "azure".into(),
        model: "my-gpt4o-deployment".into(),
        api_base: gw.upstream.url(""),
        api_key: "azure-training-key".into(),
        api_version: "2024-10-21".into(),
        ..Default::default()
    }))
    .await;
    gw.deploy(api::Deployment {
        model_name: "local".into(),
        provider: "mock".into(),
        model: "local".into(),
        ..Default::default()
    })
    .await;
    gw.group(
        "standard",
        &[
            "gpt-4o",
            "text-embedding-3-small",
            "gpt-3.5-turbo-instruct",
            "azure-gpt",
            "local",
        ],
    )
    .await;
    gw.group("premium", &["o1"]).await;
    gw.team("training", &[], &["standard"]).await;
    let key = gw.key(Some("training"), &[]).await;
    gw.sync().await;
    key
}

/// What a call sends: method, path, body (POSTs) and the status it expects.
fn request(call: Call) -> (&'static str, &'static str, Option<String>, u16) {
    let chat = |model: &str| Some(chat_body(model).to_string());
    match call {
        Call::Chat => ("POST", "/v1/chat/completions", chat("gpt-4o"), 200),
        Call::Stream => {
            let mut body = chat_body("gpt-4o");
            body["stream"] = json!(true);
            ("POST", "/v1/chat/completions", Some(body.to_string()), 200)
        }
        Call::Embedding => {
            let body = json!({"model": "text-embedding-3-small", "input": ["one", "two"]});
            ("POST", "/v1/embeddings", Some(body.to_string()), 200)
        }
        Call::Completion => {
            let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello"});
            ("POST", "/v1/completions", Some(body.to_string()), 200)
        }
        Call::Azure => ("POST", "/v1/chat/completions", chat("azure-gpt"), 200),
        Call::Local => ("POST", "/chat/completions", chat("local"), 200),
        Call::Models => ("GET", "/v1/models", None, 200),
        Call::Unauthenticated => ("POST", "/v1/chat/completions", chat("gpt-4o"), 401),
        Call::Denied => ("POST", "/v1/chat/completions", chat("o1"), 403),
        Call::Malformed => (
            "POST",
            "/v1/chat/completions",
            Some(r#"{"model": "gpt-4o", "messages": ["#.into()),
            400,
        ),
    }
}

/// The calls of one round, interleaved rather than grouped by kind.
fn round() -> Vec<Call> {
    let mut left: Vec<(Call, usize)> = ROUND.to_vec();
    let mut calls = Vec::new();
    while left.iter().any(|(_, n)| *n > 0) {
        for (call, n) in &mut left {
            if *n > 0 {
                calls.push(*call);
                *n -= 1;
            }
        }
    }
    calls
}

async fn run(gw: &Gateway, key: &str, rounds: usize) -> anyhow::Result<Tally> {
    let h2 = gw.http2_connection().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..=CONNECTIONS {
        // Client CONNECTIONS is the HTTP/2 one; each takes every
        // (CONNECTIONS + 1)th round.
        let mine = (client..rounds).step_by(CONNECTIONS + 1).count();
        let sender = (client == CONNECTIONS).then(|| h2.clone());
        let http = crate::http_client();
        let base = gw.url("");
        let key = key.to_string();
        tasks.spawn(async move {
            let mut tally = BTreeMap::new();
            for _ in 0..mine {
                for call in round() {
                    let (method, path, body, expected) = request(call);
                    let key = if call == Call::Unauthenticated {
                        "sk-not-a-sluice-key"
                    } else {
                        key.as_str()
                    };
                    let url = format!("{base}{path}");
                    let (status, text) = match &sender {
                        Some(sender) => send_h2(sender.clone(), method, &url, key, body).await?,
                        None => send_h1(&http, &url, key, body).await?,
                    };
                    if status != expected {
                        bail!(
                            "{call:?}: {method} {path} answered {status}, not {expected}: {text}"
                        );
                    }
                    if call == Call::Stream && !text.trim_end().ends_with("data: [DONE]") {
                        bail!("a stream did not end with [DONE]: {text}");
                    }
                    *tally.entry(call).or_insert(0) += 1;
                }
            }
            anyhow::Ok(tally)
        });
    }
    let mut tally = Tally::default();
    while let Some(done) = tasks.join_next().await {
        for (call, n) in done.context("a training client panicked")?? {
            *tally.0.entry(call).or_insert(0) += n;
        }
    }
    Ok(tally)
}

/// A POST of `body`, or a GET without one.
async fn send_h1(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    let request = match body {
        Some(body) => http
            .post(url)
            .header("content-type", "application/json")
            .body(body),
        None => http.get(url),
    };
    let answer = request.bearer_auth(key).send().await?;
    let status = answer.status().as_u16();
    Ok((status, answer.text().await?))
}

async fn send_h2(
    mut sender: Http2Sender,
    method: &str,
    url: &str,
    key: &str,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {key}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let answer = sender.send_request(request).await?;
    let status = answer.status().as_u16();
    let body = answer.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
