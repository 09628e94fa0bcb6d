//! What translating between OpenAI's and Anthropic's APIs adds to a
//! request, against a pass-through of the same body measured in the same
//! run (DESIGN §4: a translation is pure functions over the bodies).
//!
//! `cargo bench -p sluice-data-plane --bench translate` (release build).
//! `SLUICE_BENCH_ROUNDS` changes the number of rounds timed per case.
//!
//! Per request, for a small prompt and a 32 KB one, in both directions:
//! - pass-through: the body checked and `model` rewritten in place, the
//!   answer's usage read (what the request path does with the bodies when
//!   client and upstream speak the same API);
//! - translated: the same check, the request translated, the answer
//!   translated back and its usage read.
//!
//! The same for OpenAI's Responses API: a Responses request to a
//! chat-only deployment and to an Anthropic one (through chat), against a
//! pass-through to a deployment that serves `/v1/responses`.
//!
//! Per streamed event: the pass-through's work on a stream (its usage
//! scanned, the usage chunk stripped) against the translation's (each
//! upstream event turned into the client's, and the same scan of what
//! comes out).

use std::hint::black_box;
use std::time::Instant;

use hyper::body::Bytes;
use serde_json::json;
use sluice_data_plane::formats::Format;
use sluice_data_plane::formats::anthropic::{from_chat, from_messages, to_chat, to_messages};
use sluice_data_plane::formats::responses::echo::Echo;
use sluice_data_plane::formats::responses::{from_responses, to_responses};
use sluice_data_plane::formats::usage::{self, Dialect, StreamUsage};
use sluice_data_plane::request::parse;

fn rounds() -> u32 {
    std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Nanoseconds per call of `f`, best of three runs of `n`.
fn time(n: u32, mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..n {
                f();
            }
            started.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

fn prompt(bytes: usize) -> String {
    "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(bytes)
        .collect()
}

fn chat_request(text: &str) -> Bytes {
    Bytes::from(
        json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": text},
            ],
            "max_tokens": 256,
            "temperature": 0.2,
            "stop": ["\n\n"],
        })
        .to_string(),
    )
}

fn responses_request(text: &str) -> Bytes {
    Bytes::from(
        json!({
            "model": "gpt",
            "instructions": "You are terse.",
            "input": [{"role": "user", "content": text}],
            "max_output_tokens": 256,
            "temperature": 0.2,
            "store": false,
        })
        .to_string(),
    )
}

fn messages_request(text: &str) -> Bytes {
    Bytes::from(
        json!({
            "model": "gpt",
            "system": "You are terse.",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 256,
            "temperature": 0.2,
            "stop_sequences": ["\n\n"],
        })
        .to_string(),
    )
}

const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":9}}"#;

const CHAT_ANSWER: &str = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}"#;

const RESPONSES_ANSWER: &str = r#"{"id":"resp_67ccd2bed1ec8190b14f964abc054267","object":"response","created_at":1741476542,"status":"completed","error":null,"incomplete_details":null,"instructions":"You are terse.","max_output_tokens":256,"model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_67ccd2bf17f0819081ff3bb2cf6508e6","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello! How can I help you today?","annotations":[]}]}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":false,"temperature":0.2,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{"input_tokens":19,"input_tokens_details":{"cached_tokens":0},"output_tokens":10,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":29},"user":null,"metadata":{}}"#;

/// An Anthropic stream of `deltas` text events, one event per chunk.
fn anthropic_stream(deltas: usize) -> Vec<Bytes> {
    let mut events = vec![
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

"#
        .to_owned(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_owned(),
    ];
    for i in 0..deltas {
        events.push(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \"}}}}\n\n"
        ));
    }
    events.push(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_owned(),
    );
    events.push("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n".to_owned());
    events.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned());
    events.into_iter().map(Bytes::from).collect()
}

/// An OpenAI chat stream of `deltas` content chunks, with its usage chunk.
fn chat_stream(deltas: usize) -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\"model\":\"gpt-4.1\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
        )
    };
    let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for i in 0..deltas {
        events.push(chunk(&format!("{{\"content\":\"word{i} \"}}"), "null"));
    }
    events.push(chunk("{}", "\"stop\""));
    events.push("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\"model\":\"gpt-4.1\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29}}\n\n".to_owned());
    events.push("data: [DONE]\n\n".to_owned());
    events.into_iter().map(Bytes::from).collect()
}

fn main() {
    let n = rounds();
    println!(
        "translation cost: {n} rounds per case, best of 3; µs per request (added over the pass-through)"
    );
    println!(
        "{:<40} {:>14} {:>14} {:>10}",
        "case", "pass-through", "translated", "added"
    );
    for (size, bytes) in [("small", 40), ("32 KB", 32 * 1024)] {
        let text = prompt(bytes);

        let chat = chat_request(&text);
        let pass = time(n, || {
            let parsed = parse::parse(Format::ChatCompletions, chat.clone()).expect("valid");
            black_box(parsed.upstream_body("claude-sonnet-4-5", false));
            black_box(usage::from_answer(Dialect::OpenAi, CHAT_ANSWER.as_bytes()));
        });
        let translated = time(n, || {
            let parsed = parse::parse(Format::ChatCompletions, chat.clone()).expect("valid");
            black_box(from_chat::request(parsed.body(), "claude-sonnet-4-5").expect("translates"));
            let answer = to_chat::answer(ANTHROPIC_ANSWER.as_bytes()).expect("translates");
            black_box(usage::from_answer(Dialect::OpenAi, &answer));
        });
        report(
            &format!("chat → Anthropic, {size} prompt"),
            pass,
            translated,
        );

        let messages = messages_request(&text);
        let pass = time(n, || {
            let parsed = parse::parse(Format::Messages, messages.clone()).expect("valid");
            black_box(parsed.upstream_body("gpt-4.1", false));
            black_box(usage::from_answer(
                Dialect::Anthropic,
                ANTHROPIC_ANSWER.as_bytes(),
            ));
        });
        let translated = time(n, || {
            let parsed = parse::parse(Format::Messages, messages.clone()).expect("valid");
            black_box(from_messages::request(parsed.body(), "gpt-4.1").expect("translates"));
            let answer = to_messages::answer(CHAT_ANSWER.as_bytes()).expect("translates");
            black_box(usage::from_answer(Dialect::Anthropic, &answer));
        });
        report(
            &format!("messages → OpenAI, {size} prompt"),
            pass,
            translated,
        );

        let responses = responses_request(&text);
        let pass = time(n, || {
            let parsed = parse::parse(Format::Responses, responses.clone()).expect("valid");
            black_box(parsed.upstream_body("gpt-4.1", false));
            black_box(usage::from_answer(
                Dialect::Responses,
                RESPONSES_ANSWER.as_bytes(),
            ));
        });
        let translated = time(n, || {
            let parsed = parse::parse(Format::Responses, responses.clone()).expect("valid");
            black_box(
                from_responses::request(parsed.body(), "gpt-4.1", from_responses::Target::Chat)
                    .expect("translates"),
            );
            let echo = Echo::from_request(parsed.body());
            let answer =
                to_responses::answer(CHAT_ANSWER.as_bytes(), &echo, "0123").expect("translates");
            black_box(usage::from_answer(Dialect::Responses, &answer));
        });
        report(
            &format!("responses → chat, {size} prompt"),
            pass,
            translated,
        );
        let translated = time(n, || {
            let parsed = parse::parse(Format::Responses, responses.clone()).expect("valid");
            let chat =
                from_responses::request(parsed.body(), "claude", from_responses::Target::Messages)
                    .expect("translates");
            black_box(from_chat::request(&chat, "claude-sonnet-4-5").expect("translates"));
            let echo = Echo::from_request(parsed.body());
            let chat = to_chat::answer(ANTHROPIC_ANSWER.as_bytes()).expect("translates");
            let answer = to_responses::answer(&chat, &echo, "0123").expect("translates");
            black_box(usage::from_answer(Dialect::Responses, &answer));
        });
        report(
            &format!("responses → Anthropic, {size} prompt"),
            pass,
            translated,
        );
    }

    println!();
    println!("per streamed event, ns (added over the pass-through's usage scan)");
    let deltas = 200;
    let stream_rounds = (n / 20).max(100);
    let openai = chat_stream(deltas);
    let anthropic = anthropic_stream(deltas);
    let per_event = |events: usize, ns: f64| ns / events as f64;

    let pass = time(stream_rounds, || {
        let mut scan = StreamUsage::new(true);
        for event in &openai {
            black_box(scan.feed(event.clone()));
        }
        black_box(scan.finish());
    });
    let translated = time(stream_rounds, || {
        let mut stream = to_chat::ChatStream::new();
        let mut scan = StreamUsage::new(true);
        for event in &anthropic {
            let out = stream.feed(event);
            black_box(scan.feed(Bytes::from(out)));
        }
        black_box(scan.finish());
        black_box(stream.finish());
    });
    report_events(
        "Anthropic stream → chat chunks",
        per_event(openai.len(), pass),
        per_event(anthropic.len(), translated),
    );

    let pass = time(stream_rounds, || {
        let mut scan = StreamUsage::anthropic();
        for event in &anthropic {
            black_box(scan.feed(event.clone()));
        }
        black_box(scan.finish());
    });
    let translated = time(stream_rounds, || {
        let mut stream = to_messages::MessagesStream::new();
        let mut scan = StreamUsage::anthropic();
        for event in &openai {
            let out = stream.feed(event);
            black_box(scan.feed(Bytes::from(out)));
        }
        black_box(scan.finish());
        black_box(stream.finish());
    });
    report_events(
        "chat chunks → Anthropic events",
        per_event(anthropic.len(), pass),
        per_event(openai.len(), translated),
    );

    // A pass-through Responses stream: the events the translation writes
    // for the same answer, as an upstream serving them would send them.
    let echo = Echo::from_request(&responses_request("Hi"));
    let responses_events: Vec<Bytes> = {
        let mut stream = to_responses::ResponsesStream::new(echo.clone(), "0123".into());
        let mut events: Vec<Bytes> = openai
            .iter()
            .map(|e| Bytes::from(stream.feed(e)))
            .filter(|e| !e.is_empty())
            .collect();
        events.push(Bytes::from(stream.finish()));
        events
    };
    let pass = time(stream_rounds, || {
        let mut scan = StreamUsage::responses();
        for event in &responses_events {
            black_box(scan.feed(event.clone()));
        }
        black_box(scan.finish());
    });
    let translated = time(stream_rounds, || {
        let mut stream = to_responses::ResponsesStream::new(echo.clone(), "0123".into());
        let mut scan = StreamUsage::responses();
        for event in &openai {
            let out = stream.feed(event);
            black_box(scan.feed(Bytes::from(out)));
        }
        black_box(scan.feed(Bytes::from(stream.finish())));
        black_box(scan.finish());
    });
    report_events(
        "chat chunks → Responses events",
        per_event(responses_events.len(), pass),
        per_event(openai.len(), translated),
    );
}

fn report(case: &str, pass_ns: f64, translated_ns: f64) {
    println!(
        "{case:<40} {:>12.2}µs {:>12.2}µs {:>+8.2}µs",
        pass_ns / 1000.0,
        translated_ns / 1000.0,
        (translated_ns - pass_ns) / 1000.0
    );
}

fn report_events(case: &str, pass_ns: f64, translated_ns: f64) {
    println!(
        "{case:<40} {:>12.0}ns {:>12.0}ns {:>+8.0}ns",
        pass_ns,
        translated_ns,
        translated_ns - pass_ns
    );
}
