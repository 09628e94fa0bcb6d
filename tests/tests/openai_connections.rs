//! The data plane's connections and per-request accounting, end to end (real
//! etcd, control plane, data-plane binary, mock upstream):
//!
//! - a client that goes away cancels its upstream request, streamed or not;
//! - an upstream stream that stalls past the deployment's timeout is cut;
//! - slow and idle clients are cut by the header, body and idle timeouts,
//!   while a request waiting on a slow upstream is not;
//! - every request is counted in the metrics and logged once, with its key's
//!   alias but never the key;
//! - an HTTP/2 client (cleartext, prior knowledge) gets many answers at once
//!   on one connection, streamed ones included;
//! - an idle data plane sleeps: no timer wakes it to flush an empty log
//!   buffer.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sluice_tests::admin_client::api;
use sluice_tests::gateway::{Gateway, UPSTREAM_KEY, chat_body, openai_deployment};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The timeouts the data planes here run with: short, so tests see them act.
const HEADER_READ_TIMEOUT_MS: u64 = 1_000;
const BODY_READ_TIMEOUT_MS: u64 = 1_000;
const IDLE_TIMEOUT_MS: u64 = 1_500;

async fn gateway_with_short_timeouts() -> Gateway {
    let header = HEADER_READ_TIMEOUT_MS.to_string();
    let body = BODY_READ_TIMEOUT_MS.to_string();
    let idle = IDLE_TIMEOUT_MS.to_string();
    let gw = Gateway::start_with_args(
        1,
        &[
            "--header-read-timeout-ms",
            &header,
            "--body-read-timeout-ms",
            &body,
            "--idle-timeout-ms",
            &idle,
            "--log-format",
            "json",
        ],
    )
    .await;
    gw.deploy_openai("gpt-4o", "gpt-4o-2024-08-06").await;
    gw
}

/// Waits up to `within` for `condition`.
async fn eventually(within: Duration, what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a stream's first chunk, which must come within 10 s and be an SSE
/// event.
async fn first_event<S, E>(stream: &mut S)
where
    S: futures::Stream<Item = Result<hyper::body::Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the first chunk arrives")
        .expect("a chunk")
        .expect("no error");
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
}

/// Waits until the mock upstream has seen `n` requests abandoned by their
/// caller (the data plane).
async fn upstream_abandoned(gw: &Gateway, n: usize) {
    let what = format!("the upstream to see {n} requests abandoned");
    eventually(Duration::from_secs(10), &what, || {
        gw.upstream.abandoned() == n
    })
    .await;
}

// ---------------------------------------------------------------------------
// A client that leaves cancels the upstream request.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_leaves_cancels_its_upstream_request() {
    let gw = gateway_with_short_timeouts().await;
    let key = gw.key(None, &["gpt-4o"]).await;
    gw.sync().await;

    // Not streamed: the upstream takes 30 s; the client gives up after 0.5 s.
    gw.upstream.set_latency(Duration::from_secs(30));
    let gave_up = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(chat_body("gpt-4o").to_string())
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client was to time out");
    assert_eq!(gw.upstream.requests().len(), 1, "the request went upstream");
    upstream_abandoned(&gw, 1).await;

    // Streamed: the client reads the first chunk, then leaves while the
    // upstream holds the rest back.
    gw.upstream.succeed();
    let _gate = gw.upstream.hold_streams();
    let r = gw.start_stream(&key, "gpt-4o").await;
    let mut stream = r.bytes_stream();
    first_event(&mut stream).await;
    drop(stream);
    upstream_abandoned(&gw, 2).await;

    // Both count as the client's doing, not as successes, and nothing is
    // left in flight.
    let metrics = gw.planes[0].metrics_once_idle().await.unwrap();
    assert_eq!(
        requests(&metrics, "499", "client_closed_request"),
        1,
        "{metrics}"
    );
    assert_eq!(
        requests(&metrics, "200", "client_closed_request"),
        1,
        "{metrics}"
    );
    assert_eq!(requests(&metrics, "200", ""), 0, "{metrics}");
    assert_eq!(
        gw.planes[0]
            .metric("sluice_requests_in_flight")
            .await
            .unwrap(),
        0.0
    );
}

// ---------------------------------------------------------------------------
// Slow and idle clients.
// ---------------------------------------------------------------------------

/// Reads until the server closes the connection; what it sent, and how long
/// that took. Fails if it stays open for 10 s.
async fn read_until_closed(
    what: &str,
    stream: &mut (impl AsyncRead + Unpin),
) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: the data plane kept the connection open; it sent {:?}",
        String::from_utf8_lossy(&received)
    );
    (received, started.elapsed())
}

async fn connect_to(gw: &Gateway) -> TcpStream {
    TcpStream::connect(("127.0.0.1", gw.planes[0].port()))
        .await
        .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_idle_clients_are_cut_and_slow_upstreams_are_not() {
    let gw = gateway_with_short_timeouts().await;
    let key = gw.key(None, &["gpt-4o"]).await;
    gw.sync().await;
    let idle = Duration::from_millis(IDLE_TIMEOUT_MS);
    let header_timeout = Duration::from_millis(HEADER_READ_TIMEOUT_MS);

    // Connects and sends nothing: closed after the idle timeout.
    let mut silent = connect_to(&gw).await;
    let (_, after) = read_until_closed("a silent client", &mut silent).await;
    assert!(
        after >= idle - Duration::from_millis(100),
        "closed after {after:?}"
    );

    // Slow-loris: a header line every 300 ms, never finishing.
    let (mut loris, mut writer) = connect_to(&gw).await.into_split();
    writer
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let dripping = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let line = format!("x-drip-{i}: 1\r\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let (_, after) = read_until_closed("slow-loris", &mut loris).await;
    dripping.abort();
    assert!(
        after < header_timeout + Duration::from_secs(3),
        "headers dripped for {after:?}"
    );

    // Headers in, body stalled: 408 in OpenAI's shape after the body timeout.
    let mut stalled = connect_to(&gw).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\": \"gpt-4o\""
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed("a stalled body", &mut stalled).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..])
        .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(body["error"]["code"], "request_timeout", "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(BODY_READ_TIMEOUT_MS - 100));

    // A keep-alive connection after its request: closed once idle.
    let mut kept = connect_to(&gw).await;
    kept.write_all(b"GET /health/liveness HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed("an idle keep-alive connection", &mut kept).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "answered before it was closed"
    );

    // HTTP/2 (prior knowledge): preface and settings, then nothing but
    // answering pings, as a real client would: told GOAWAY and closed once
    // idle.
    let started = Instant::now();
    let frames = idle_http2_client(connect_to(&gw).await).await;
    let after = started.elapsed();
    assert!(
        after >= idle - Duration::from_millis(100),
        "closed after {after:?}"
    );
    assert!(
        frames.contains(&GOAWAY),
        "no GOAWAY before the close: {frames:?}"
    );

    // A request waiting on a slow upstream longer than every timeout above
    // is not cut.
    gw.upstream.set_latency(idle * 2);
    gw.chat(&key, "gpt-4o").await.assert_ok();
    gw.upstream.succeed();

    // And the data plane still serves.
    gw.chat(&key, "gpt-4o").await.assert_ok();
    gw.assert_logs_hold_none_of(&[&key, UPSTREAM_KEY]);
}

const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const ACK: u8 = 1;

/// An HTTP/2 client that sends its preface and then only acknowledges
/// SETTINGS and PINGs, until the server closes the connection. The types of
/// the frames it received, in order. Fails if the connection stays open 10 s.
async fn idle_http2_client(mut stream: TcpStream) -> Vec<u8> {
    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&frame(SETTINGS, 0, &[])).await.unwrap();
    let mut types = Vec::new();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            while buf.len() >= 9 {
                let len =
                    usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (buf[3], buf[4]);
                let payload = buf[9..9 + len].to_vec();
                buf.drain(..9 + len);
                types.push(kind);
                let reply = match (kind, flags & ACK) {
                    (SETTINGS, 0) => frame(SETTINGS, ACK, &[]),
                    (PING, 0) => frame(PING, ACK, &payload),
                    _ => continue,
                };
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle HTTP/2 connection stayed open: frames {types:?}"
    );
    types
}

/// The deployment's timeout covers the whole exchange: a stream whose
/// upstream stops sending is cut when it runs out, the client sees a
/// truncated answer (not a clean end), and the upstream request is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_stalling_past_the_deployment_timeout_is_cut() {
    let gw = gateway_with_short_timeouts().await;
    gw.deploy(api::Deployment {
        timeout: Some(sluice_proto::prost_types::Duration {
            seconds: 2,
            nanos: 0,
        }),
        ..openai_deployment(&gw.upstream, "stalling", "gpt-4o")
    })
    .await;
    let key = gw.key(None, &["stalling"]).await;
    gw.sync().await;

    let _gate = gw.upstream.hold_streams();
    let started = Instant::now();
    let mut stream = gw.start_stream(&key, "stalling").await.bytes_stream();
    first_event(&mut stream).await;
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => rest.extend_from_slice(&chunk),
                Err(_) => return Err(rest),
            }
        }
        Ok(rest)
    })
    .await
    .expect("the stream is cut, not left hanging");
    let cut_after = started.elapsed();
    // After its first event a stream is not retried: it ends with an error
    // event in OpenAI's shape and a clean end (DESIGN §5).
    let rest = rest.expect("a clean end of the stream");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains(r#""code":"stream_interrupted""#) && !text.contains("[DONE]"),
        "an error event ends it: {text}"
    );
    assert!(
        cut_after >= Duration::from_secs(2) && cut_after < Duration::from_secs(15),
        "cut after {cut_after:?}, the timeout being 2 s"
    );
    upstream_abandoned(&gw, 1).await;
    let metrics = gw.planes[0].metrics_once_idle().await.unwrap();
    assert_eq!(
        requests(&metrics, "200", "stream_interrupted"),
        1,
        "{metrics}"
    );
    assert_eq!(
        sluice_tests::data_plane::sample(&metrics, "sluice_requests_in_flight"),
        Some(0.0)
    );
}

// ---------------------------------------------------------------------------
// Every request counted and logged once.
// ---------------------------------------------------------------------------

/// `sluice_requests_total` for this status and code, summed over the rest.
fn requests(metrics: &str, status: &str, code: &str) -> u64 {
    let want = [format!("status=\"{status}\""), format!("code=\"{code}\"")];
    metrics
        .lines()
        .filter(|l| l.starts_with("sluice_requests_total{"))
        .filter(|l| want.iter().all(|w| l.contains(w.as_str())))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The `_count` of a histogram family, summed over its labels.
fn histogram_count(metrics: &str, name: &str) -> u64 {
    let prefix = format!("{name}_count");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_is_counted_and_logged_once_without_its_key() {
    let gw = gateway_with_short_timeouts().await;
    gw.team("ml", &["gpt-4o"], &[]).await;
    let key = gw
        .key_from(api::Key {
            team_id: "ml".into(),
            key_alias: "ml-notebook".into(),
            ..Default::default()
        })
        .await;
    gw.sync().await;

    let send = |id: &'static str, bearer: String, body: Value| {
        let request = gw
            .http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(bearer)
            .header("x-request-id", id)
            .header("content-type", "application/json")
            .body(body.to_string());
        async move {
            let r = request.send().await.expect("answered");
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }
    };
    let mut streamed = chat_body("gpt-4o");
    streamed["stream"] = json!(true);
    let sent = [
        ("req-ok", key.clone(), chat_body("gpt-4o"), 200),
        ("req-stream", key.clone(), streamed, 200),
        (
            "req-unknown-key",
            "sk-not-a-key".into(),
            chat_body("gpt-4o"),
            401,
        ),
        ("req-denied", key.clone(), chat_body("gpt-4o-mini"), 403),
        ("req-no-model", key.clone(), json!({"messages": []}), 400),
        (
            "req-bad-messages",
            key.clone(),
            json!({"model": "gpt-4o", "messages": "hi"}),
            400,
        ),
    ];
    for (id, bearer, body, status) in sent.clone() {
        assert_eq!(send(id, bearer, body).await, status, "{id}");
    }

    let metrics = gw.planes[0].metrics_once_idle().await.unwrap();
    assert_eq!(requests(&metrics, "200", ""), 2, "{metrics}");
    assert_eq!(requests(&metrics, "401", "invalid_api_key"), 1, "{metrics}");
    assert_eq!(
        requests(&metrics, "403", "model_access_denied"),
        1,
        "{metrics}"
    );
    assert_eq!(
        requests(&metrics, "400", "invalid_request_error"),
        2,
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_requests_total{")
                && l.contains("model_group=\"gpt-4o\"")
                && l.contains("deployment=\"")
                && l.contains("status=\"200\"")),
        "successes are labelled with their model group: {metrics}"
    );
    assert_eq!(
        histogram_count(&metrics, "sluice_request_duration_seconds"),
        6,
        "{metrics}"
    );
    assert_eq!(
        histogram_count(&metrics, "sluice_upstream_duration_seconds"),
        2,
        "{metrics}"
    );
    assert_eq!(
        histogram_count(&metrics, "sluice_upstream_first_byte_seconds"),
        2,
        "{metrics}"
    );
    assert_eq!(
        gw.planes[0]
            .metric("sluice_requests_in_flight")
            .await
            .unwrap(),
        0.0
    );

    // One JSON log line per request, with what an operator needs to find it
    // (written by a background thread: wait for the last one).
    eventually(Duration::from_secs(10), "the request log lines", || {
        let log = gw.planes[0].log();
        sent.iter().all(|(id, ..)| log.contains(id))
    })
    .await;
    let log = gw.planes[0].log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    for (id, _, _, status) in &sent {
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|l| l["fields"]["request_id"] == *id)
            .collect();
        assert_eq!(mine.len(), 1, "one log line for {id}: {log}");
        let fields = &mine[0]["fields"];
        assert_eq!(fields["status"], *status, "{fields}");
        assert!(fields["latency_ms"].is_u64(), "{fields}");
        if *status != 401 {
            assert_eq!(fields["key"], "ml-notebook", "{fields}");
            assert_eq!(fields["team"], "ml", "{fields}");
        }
    }
    let ok = &lines
        .iter()
        .find(|l| l["fields"]["request_id"] == "req-ok")
        .unwrap()["fields"];
    assert_eq!(ok["model"], "gpt-4o");
    assert_eq!(ok["model_group"], "gpt-4o");
    assert!(
        ok["deployment"].as_str().is_some_and(|d| !d.is_empty()),
        "{ok}"
    );
    assert_eq!(
        lines
            .iter()
            .find(|l| l["fields"]["request_id"] == "req-stream")
            .unwrap()["fields"]["stream"],
        true
    );
    // Refused for its messages, not its model: the line names the model.
    assert_eq!(
        lines
            .iter()
            .find(|l| l["fields"]["request_id"] == "req-bad-messages")
            .unwrap()["fields"]["model"],
        "gpt-4o"
    );
    gw.assert_logs_hold_none_of(&[&key, UPSTREAM_KEY]);
}

// ---------------------------------------------------------------------------
// HTTP/2 without TLS.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http2_client_gets_many_answers_at_once_on_one_connection() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    let (gw, key) = Gateway::serving("gpt-4o", "gpt-4o-2024-08-06").await;
    // One TCP connection, HTTP/2 from its first byte (prior knowledge).
    let sender = gw.http2_connection().await.expect("h2c handshake");
    let url = gw.url("/v1/chat/completions");
    let post = |body: Value| {
        let mut sender = sender.clone();
        let request = hyper::Request::post(&url)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        async move {
            let answer = sender.send_request(request).await.expect("answered");
            let (parts, body) = answer.into_parts();
            let body = body.collect().await.expect("the whole body").to_bytes();
            (parts, String::from_utf8(body.to_vec()).expect("UTF-8"))
        }
    };

    let mut streamed = chat_body("gpt-4o");
    streamed["stream"] = json!(true);
    let (stream, whole) = tokio::join!(
        post(streamed),
        futures::future::join_all((0..20).map(|_| post(chat_body("gpt-4o"))))
    );
    for (parts, body) in whole {
        assert_eq!(parts.version, hyper::Version::HTTP_2);
        assert_eq!(parts.status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert!(
            body["choices"][0]["message"]["content"].is_string(),
            "{body}"
        );
    }
    let (parts, events) = stream;
    assert_eq!(parts.status, 200, "{events}");
    assert_eq!(
        parts.headers["content-type"], "text/event-stream",
        "relayed as Server-Sent Events"
    );
    assert!(
        events.matches("data: ").count() > 2 && events.contains("data: [DONE]"),
        "{events}"
    );

    assert_eq!(
        gw.upstream.requests().len(),
        21,
        "each reached the upstream once"
    );
    // Counted when each answer's body is let go, after it is written: on a
    // loaded machine that can trail the client's read by a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = gw.planes[0].metrics_once_idle().await.unwrap();
        if requests(&metrics, "200", "") >= 21 || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        requests(&metrics, "200", ""),
        21,
        "each counted once: {metrics}"
    );
}

// ---------------------------------------------------------------------------
// Idle.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_data_plane_sleeps() {
    let (gw, key) = Gateway::serving("gpt-4o", "gpt-4o-2024-08-06").await;
    // A request leaves a log line to flush and a keep-alive connection open.
    let answer = gw.chat(&key, "gpt-4o").await;
    assert_eq!(answer.status, 200);
    let id = answer.headers["x-request-id"].to_str().expect("ASCII");
    let dp = &gw.planes[0];
    eventually(Duration::from_secs(5), "the request's log line", || {
        dp.log().contains(id)
    })
    .await;

    let before = dp.context_switches().expect("running");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Threads that ended meanwhile (an idle blocking-pool thread) are left
    // out; new ones count whole.
    let woken: u64 = dp
        .context_switches()
        .expect("running")
        .iter()
        .map(|(tid, n)| n - before.get(tid).unwrap_or(&0))
        .sum();
    // A log flush every 100 ms alone was 20 or more. What may rightly fall
    // in the window: a keep-alive ping on the config stream, a far timer
    // moving down the timer wheel.
    assert!(woken <= 8, "woken {woken} times in 2 s of idleness");
}
