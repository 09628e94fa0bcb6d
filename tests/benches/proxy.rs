//! Request-path benchmark (not a test): what the data plane adds to a chat
//! completion, measured against a fast local upstream and a bare proxy in
//! the same run.
//!
//! Targets, all answering `POST /v1/chat/completions` with the same small
//! JSON body and `Authorization: Bearer <key>`:
//!
//! - (a) the upstream directly: a minimal hyper server answering a fixed
//!   chat completion at once;
//! - (b) a bare pass-through proxy in front of it: hyper server + hyper-util's
//!   pooled client, forwarding method, path, headers and body and streaming
//!   the answer back, nothing else (the physical reference for "a proxy");
//! - (c) the real data plane (release binary) with a real key, team, access
//!   group and `openai` deployment created through the admin API on a real
//!   control plane and etcd; and (c') a second data plane whose config also
//!   holds 1,000,000 more keys;
//! - (d) the data plane of (c), asked for a model group of 10 deployments
//!   (all at the same fast upstream, under 10 deployment ids) with
//!   `num_retries: 2`, and (e) the same for a group of 10 of which one
//!   answers every call with a 500 (from a second local upstream): each
//!   request that meets it is retried on another deployment, and the
//!   deployment cools down for the default 5 s after more than
//!   `allowed_fails` (3) failures in a minute, then is tried again. (c)'s
//!   group has one deployment, so (d) and (e) are ratios to it: what
//!   routing over a group of 10 costs, and what one dead deployment in it
//!   costs. Every answer of (e) must be a 200 (oha's status codes).
//!
//! The data plane measured as (c) and (c') is the release build as shipped:
//! the profile-guided one `scripts/build-release.sh` leaves in
//! `target/dist/` when there is one (or the build [`DATA_PLANE_BUILD`] names),
//! and then the plain `cargo build --release` one is measured next to it as
//! (c°), for what the profile-guided build changes.
//!
//! Both proxies are separate processes (the bare proxy is this executable
//! re-run with [`BARE_PROXY`] set), on tokio's default runtime. Load comes
//! from `oha` (`cargo install oha --locked`): at a fixed 1,000 req/s with
//! latency correction (latency counted from when a request was due, so a
//! stall is not hidden), and at full load with 50 connections. Each run is
//! repeated in rounds with the targets interleaved; the figures are medians
//! over the rounds.
//!
//! The fixed-rate runs are made twice: with the machine's default idle
//! (an idle CPU halts, and on a VM waking a halted vCPU is a trip through
//! the hypervisor, paid at every hop between processes), and with idle CPUs
//! polling instead of halting, as latency-tuned hosts run (a PM QoS request
//! of 0 µs through `/dev/cpu_dma_latency`, held for those runs only, which
//! is what tuned's `latency-performance` profile does; it needs root, and is
//! skipped without). The second isolates what the software adds from what
//! the hypervisor charges for each wake-up. The same way, the time (b) and
//! (c) spend on a request themselves is read from their syscalls with
//! `perf` ([`Legs`]; root and `perf` needed, skipped without).
//!
//! - (f) the data plane of (c), called with a second key of the same team
//!   that has a budget (`max_budget`, `budget_duration: 1d`) and
//!   `rpm_limit`/`tpm_limit` too high to be reached: what admission against
//!   budgets and limits adds to metering, which every request of (c) pays
//!   as well (the answer's usage read, the request journaled and reported).
//!   Measured with `SLUICE_PROXY_BENCH_ONLY=usage`: (b), (c), (f) at full
//!   load and, with perf and root, traced; the control plane stays up, and
//!   the usage batches it applies (etcd transactions) per second are
//!   printed beside the request rate.
//!
//! Run: `cargo build --release --bins && scripts/build-release.sh && cargo
//! bench -p sluice-tests --bench proxy` (~17 minutes; ~13 without a
//! profile-guided build to measure beside the plain one). With
//! `SLUICE_PROXY_BENCH_ONLY=routing` it measures only what routing changes:
//! (b), (c), (d) and (e) at full load, no 1,000,000-key data plane and no
//! fixed-rate runs (~4 minutes with 5 rounds). `SLUICE_PROXY_BENCH_KEYS`
//! overrides the key count of (c'), `SLUICE_PROXY_BENCH_SECS` the seconds per
//! run (10), and `SLUICE_PROXY_BENCH_ROUNDS` the rounds (3; 5 with
//! `SLUICE_PROXY_BENCH_ONLY=routing`). With `SLUICE_PROXY_BENCH_SERVE`
//! set it sets everything up, prints the targets, their pids and the key, and
//! waits an hour instead of measuring: for `perf` and `oha` by hand.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use sluice_control_plane::resources::{encode, key_of};
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use sluice_proto::admin::v1::{Key, Team};
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::{ControlPlane, binary};
use sluice_tests::data_plane::DataPlane;
use sluice_tests::etcd::{EtcdServer, put_all};
use tokio::net::TcpListener;

/// Set (to the upstream's address) when this executable runs as the bare proxy.
const BARE_PROXY: &str = "SLUICE_PROXY_BENCH_BARE_PROXY";
/// The data-plane executable of (c) and (c'), when not `target/dist/`'s.
const DATA_PLANE_BUILD: &str = "SLUICE_PROXY_BENCH_DATA_PLANE";
/// Set to `routing` to measure only (b), (c), (d) and (e) at full load;
/// to `usage`, only (b), (c) and (f).
const ONLY: &str = "SLUICE_PROXY_BENCH_ONLY";
/// (c)'s model group: one deployment.
const MODEL: &str = "bench-model";
/// (d)'s model group: [`GROUP_SIZE`] deployments at the fast upstream. The
/// group names are as long as [`MODEL`], so every target's body has the
/// same length.
const MULTI: &str = "bench-multi";
/// (e)'s model group: [`GROUP_SIZE`] deployments, the last one failing.
const FLAKY: &str = "bench-flaky";
const GROUP_SIZE: usize = 10;
/// The data planes log at the binary's default level, as deployed: the test
/// harness's `sluice_data_plane=debug` would add the auth, access and
/// upstream spans to every request.
const PRODUCTION_LOG: &[(&str, &str)] = &[("SLUICE_LOG", "info")];
const BODY: &str = r#"{"model":"bench-model","messages":[{"role":"user","content":"Say hello"}]}"#;
/// The fast upstream's answer to every request: a small, complete chat completion.
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench upstream."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;
const RATE: u32 = 1_000;
const RATE_CONNECTIONS: u32 = 10;
const FULL_CONNECTIONS: u32 = 50;
const TEAMS: usize = 1_000;
/// What the failing deployment of (e) answers, with a 500.
const FAILURE: &str = r#"{"error":{"message":"bench upstream failure","type":"server_error","param":null,"code":"server_error"}}"#;

const GOAL_ADDED_P50_US: f64 = 100.0;
const GOAL_ADDED_P99_US: f64 = 500.0;
const GOAL_THROUGHPUT: f64 = 0.8;
const GOAL_LARGE: f64 = 0.10;
/// (d) / (c) throughput.
const GOAL_MULTI: f64 = 0.95;
/// (e) / (c) throughput, every answer a 200.
const GOAL_FLAKY: f64 = 0.8;
/// (f) / (c) throughput.
const GOAL_METERED: f64 = 0.95;
/// (f) - (c), in-process µs per request.
const GOAL_METERED_ADDED_US: f64 = 5.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    if let Ok(upstream) = std::env::var(BARE_PROXY) {
        return runtime.block_on(bare_proxy(upstream.parse()?));
    }
    runtime.block_on(bench())
}

// ---------------------------------------------------------------------------
// The fast upstream and the bare proxy.
// ---------------------------------------------------------------------------

/// Serves `answer` with `status` to every request (after reading its body)
/// on a free port; counts the requests in the counter it returns. The fast
/// upstream is `upstream(StatusCode::OK, ANSWER)`.
async fn upstream(
    status: StatusCode,
    answer: &'static str,
) -> anyhow::Result<(SocketAddr, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let hits = Arc::clone(&counted);
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| {
                    let hits = Arc::clone(&hits);
                    async move {
                        hits.fetch_add(1, Ordering::Relaxed);
                        let _ = req.into_body().collect().await;
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(answer.as_bytes())));
                        *resp.status_mut() = status;
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, hits))
}

/// The failing deployment's upstream: a 500 with an OpenAI error body to
/// every request; the counter counts them.
async fn upstream_failing() -> anyhow::Result<(SocketAddr, Arc<AtomicU64>)> {
    upstream(StatusCode::INTERNAL_SERVER_ERROR, FAILURE).await
}

/// The bare proxy: prints its port on stdout, then forwards every request to
/// `upstream` as received and streams the answer back.
async fn bare_proxy(upstream: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    parts.uri = format!("http://{upstream}{path}")
                        .parse()
                        .expect("valid uri");
                    let resp = match client.request(Request::from_parts(parts, body)).await {
                        Ok(resp) => resp.map(|b| b.boxed()),
                        Err(e) => {
                            let mut resp = Response::new(
                                Full::new(Bytes::from(e.to_string()))
                                    .map_err(|never| match never {})
                                    .boxed(),
                            );
                            *resp.status_mut() = StatusCode::BAD_GATEWAY;
                            resp
                        }
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The bare proxy's process; killed on drop.
struct BareProxy {
    child: Child,
    port: u16,
}

impl BareProxy {
    fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(BARE_PROXY, upstream.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the bare proxy")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("bare proxy stdout")?).read_line(&mut line)?;
        let port = line.trim().parse().context("bare proxy port")?;
        Ok(Self { child, port })
    }
}

impl Drop for BareProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Load generation.
// ---------------------------------------------------------------------------

/// One oha run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    p50_us: f64,
    p99_us: f64,
    rps: f64,
    requests: u64,
    /// Answers other than 200, and requests oha saw fail without one.
    not_ok: u64,
}

/// What is measured: a name, where to send requests and what, and the
/// process serving them there (whose CPU time is read around full-load
/// runs).
struct Target {
    /// `a`, `b`, `c`, `c'`, `c°`, `d`, `e`.
    tag: &'static str,
    name: String,
    url: String,
    /// The request body: [`BODY`] for the model group measured.
    body: String,
    pid: u32,
    /// Whether an answer other than 200 is a figure to report (the failing
    /// group's) rather than a broken setup that stops the bench.
    counts_failures: bool,
    /// The key to call with, when not the bench's one key.
    key: Option<String>,
}

impl Target {
    fn new(tag: &'static str, name: impl Into<String>, url: String, pid: u32) -> Target {
        Target {
            tag,
            name: name.into(),
            url,
            body: BODY.into(),
            pid,
            counts_failures: false,
            key: None,
        }
    }

    /// The same target called with `key`.
    fn with_key(&self, tag: &'static str, name: &str, key: String) -> Target {
        Target {
            tag,
            name: name.into(),
            url: self.url.clone(),
            body: self.body.clone(),
            pid: self.pid,
            counts_failures: false,
            key: Some(key),
        }
    }

    /// The same target asked for model group `model`.
    fn for_model(&self, tag: &'static str, name: &str, model: &str) -> Target {
        Target {
            tag,
            name: name.into(),
            url: self.url.clone(),
            body: BODY.replace(MODEL, model),
            pid: self.pid,
            counts_failures: model == FLAKY,
            key: None,
        }
    }
}

/// User + system CPU time of process `pid` so far, in seconds (Linux
/// `/proc/PID/stat`, in clock ticks of 1/100 s, the kernel's USER_HZ).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("/proc/PID/stat field")?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Keeps idle CPUs polling rather than halting while it is held: a PM QoS
/// request for 0 µs of wake-up latency (`/dev/cpu_dma_latency`, the
/// kernel's interface; the request lasts while the file is open). `None`
/// without the permission.
fn idle_cpus_poll() -> Option<std::fs::File> {
    let mut qos = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .ok()?;
    qos.write_all(&0i32.to_ne_bytes()).ok()?;
    Some(qos)
}

fn oha_path() -> anyhow::Result<String> {
    if Command::new("oha").arg("--version").output().is_ok() {
        return Ok("oha".into());
    }
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))?;
    let path = format!("{home}/bin/oha");
    if std::path::Path::new(&path).exists() {
        return Ok(path);
    }
    bail!("oha is not installed: `cargo install oha --locked`")
}

/// Runs oha against `target` for `secs`: at [`RATE`] when `fixed`, else
/// flat out. Stops the bench when an answer is not a 200, unless the target
/// [counts failures](Target::counts_failures).
async fn oha(oha: &str, target: &Target, key: &str, secs: u64, fixed: bool) -> anyhow::Result<Run> {
    let key = target.key.as_deref().unwrap_or(key);
    let mut cmd = tokio::process::Command::new(oha);
    cmd.args(["--no-tui", "--output-format", "json", "-w", "-z"])
        .arg(format!("{secs}s"))
        .args(["-m", "POST", "-T", "application/json", "-H"])
        .arg(format!("authorization: Bearer {key}"))
        .args(["-d", &target.body]);
    if fixed {
        cmd.args(["-q", &RATE.to_string(), "--latency-correction", "-c"])
            .arg(RATE_CONNECTIONS.to_string());
    } else {
        cmd.arg("-c").arg(FULL_CONNECTIONS.to_string());
    }
    let url = &target.url;
    let out = cmd.arg(url).output().await.context("running oha")?;
    if !out.status.success() {
        bail!(
            "oha failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("oha output: {}", String::from_utf8_lossy(&out.stdout)))?;
    let codes = &report["statusCodeDistribution"];
    let ok = codes["200"].as_u64().unwrap_or(0);
    let all: u64 = codes
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let errors = &report["errorDistribution"];
    let failed: u64 = errors
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let not_ok = all - ok + failed;
    if ok == 0 || (not_ok > 0 && !target.counts_failures) {
        bail!("{url}: not every answer was 200: {codes} {errors}");
    }
    if not_ok > 0 {
        eprintln!(
            "{}: {not_ok} answers not 200: {codes} {errors}",
            target.name
        );
    }
    let secs_of = |v: &Value| v.as_f64().unwrap_or(f64::NAN) * 1e6;
    Ok(Run {
        p50_us: secs_of(&report["latencyPercentiles"]["p50"]),
        p99_us: secs_of(&report["latencyPercentiles"]["p99"]),
        rps: report["summary"]["requestsPerSec"]
            .as_f64()
            .unwrap_or(f64::NAN),
        requests: all,
        not_ok,
    })
}

/// The time a proxy spends on one request, on each leg, from its own
/// syscalls: the request leg from its last read of the client's socket to
/// its write to the upstream, the answer leg from its last read of the
/// upstream's socket to its write to the client. Unlike latency seen by
/// the client, this leaves out the wake-ups between processes, which on a
/// VM cost more than the proxy's work.
#[derive(Debug, Clone, Copy)]
struct Legs {
    request_us: f64,
    answer_us: f64,
}

/// [`Legs`] of `target`'s process (medians over a run of `secs` at
/// [`RATE`]), traced with `perf` (`syscalls:sys_enter_*` tracepoints, which
/// need root or `perf_event_paranoid` <= -1). `None` without `perf`.
async fn legs(
    target: &Target,
    oha_bin: &str,
    key: &str,
    secs: u64,
) -> anyhow::Result<Option<Legs>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("perf.data");
    let Ok(mut perf) = tokio::process::Command::new("perf")
        .args(["record", "-q", "-e"])
        .arg("syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev")
        .arg("-p")
        .arg(target.pid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep"])
        .arg((secs + 1).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return Ok(None);
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    oha(oha_bin, target, key, secs, true).await?;
    if !perf.wait().await?.success() {
        return Ok(None);
    }
    let script = tokio::process::Command::new("perf")
        .args(["script", "-F", "time,event,trace", "-i"])
        .arg(&data)
        .output()
        .await?;
    if !script.status.success() {
        return Ok(None);
    }
    Ok(legs_of(&String::from_utf8_lossy(&script.stdout)))
}

/// [`Legs`] from `perf script` lines (`TIME: syscalls:sys_enter_NAME: fd:
/// 0x.., ...`). A socket whose first traced call is a read is a client's,
/// one whose first is a write an upstream's (the proxy speaks first there).
fn legs_of(script: &str) -> Option<Legs> {
    let mut upstream_side = std::collections::HashMap::new();
    let (mut request, mut answer) = (Vec::new(), Vec::new());
    let (mut client_read, mut upstream_read) = (None, None);
    for line in script.lines() {
        let mut words = line.split_whitespace();
        let (Some(time), Some(event), Some("fd:"), Some(fd)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Ok(time) = time.trim_end_matches(':').parse::<f64>() else {
            continue;
        };
        let write = event.contains("writev");
        let upstream = *upstream_side.entry(fd.to_owned()).or_insert(write);
        match (upstream, write) {
            (false, false) => client_read = Some(time),
            (true, true) => {
                if let Some(read) = client_read.take() {
                    request.push((time - read) * 1e6);
                }
            }
            (true, false) => upstream_read = Some(time),
            (false, true) => {
                if let Some(read) = upstream_read.take() {
                    answer.push((time - read) * 1e6);
                }
            }
        }
    }
    if request.is_empty() || answer.is_empty() {
        return None;
    }
    Some(Legs {
        request_us: median(request),
        answer_us: median(answer),
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Latency at the fixed rate: medians over rounds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50_us: f64,
    p99_us: f64,
}

fn latency(fixed: &[Run]) -> Latency {
    Latency {
        p50_us: median(fixed.iter().map(|r| r.p50_us).collect()),
        p99_us: median(fixed.iter().map(|r| r.p99_us).collect()),
    }
}

/// The medians over rounds of one target's runs.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// With the machine's default idle; `None` when not measured (only
    /// routing's full-load runs).
    halting: Option<Latency>,
    /// With idle CPUs polling; `None` when that could not be asked for.
    polling: Option<Latency>,
    rps: f64,
    /// CPU time of the serving process per request at full load.
    cpu_us: f64,
    /// Answers other than 200 over all its runs, and requests over them.
    not_ok: u64,
    requests: u64,
}

fn figures(halting: &[Run], polling: &[Run], full: &[(Run, f64)]) -> Figures {
    let all = || {
        halting
            .iter()
            .chain(polling)
            .chain(full.iter().map(|(r, _)| r))
    };
    Figures {
        halting: (!halting.is_empty()).then(|| latency(halting)),
        polling: (!polling.is_empty()).then(|| latency(polling)),
        rps: median(full.iter().map(|(r, _)| r.rps).collect()),
        cpu_us: median(full.iter().map(|(_, cpu)| *cpu).collect()),
        not_ok: all().map(|r| r.not_ok).sum(),
        requests: all().map(|r| r.requests).sum(),
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

// ---------------------------------------------------------------------------
// The gateway's configuration.
// ---------------------------------------------------------------------------

/// Writes `keys` keys in [`TEAMS`] teams straight into etcd (as
/// `benches/scale.rs` does), for a control plane started afterwards to list.
async fn populate(etcd: &EtcdServer, keys: usize) -> anyhow::Result<()> {
    let store = EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        request_timeout: Duration::from_secs(60),
        ..Default::default()
    })
    .await?;
    let teams = (0..TEAMS)
        .map(|t| {
            let team = Team {
                team_id: format!("bulk-team-{t}"),
                ..Default::default()
            };
            (key_of::<Team>(&team.team_id), encode(&team))
        })
        .collect();
    put_all(&store, teams).await?;
    for chunk_start in (0..keys).step_by(100_000) {
        let mut items = Vec::with_capacity(100_000);
        for k in chunk_start..(chunk_start + 100_000).min(keys) {
            let plaintext = format!("sk-bulk-{k}");
            let key = Key {
                key_id: sluice_control_plane::secrets::sha256_hex(&plaintext),
                key_prefix: "sk-bulk-".into(),
                team_id: format!("bulk-team-{}", k % TEAMS),
                ..Default::default()
            };
            items.push((key_of::<Key>(&key.key_id), encode(&key)));
        }
        put_all(&store, items).await?;
    }
    Ok(())
}

/// A deployment of [`MODEL`] at `upstream`; [`GROUP_SIZE`] deployments of
/// [`MULTI`] there, and of [`FLAKY`] the same but its last at `failing`;
/// `num_retries: 2`; an access group with the three groups, a team in that
/// group and a key of that team; returns the key once every connected data
/// plane has applied all of it.
async fn configure(
    admin: &Admin,
    upstream: SocketAddr,
    failing: SocketAddr,
) -> anyhow::Result<String> {
    let deployment = |model: &str, id: String, at: SocketAddr| api::Deployment {
        id,
        model_name: model.into(),
        provider: "openai".into(),
        model: "gpt-bench".into(),
        api_base: format!("http://{at}/v1"),
        api_key: "sk-upstream-bench".into(),
        ..Default::default()
    };
    let mut deployments = vec![deployment(MODEL, String::new(), upstream)];
    for i in 0..GROUP_SIZE {
        deployments.push(deployment(MULTI, format!("multi-{i}"), upstream));
        let at = if i + 1 == GROUP_SIZE {
            failing
        } else {
            upstream
        };
        deployments.push(deployment(FLAKY, format!("flaky-{i}"), at));
    }
    let mut revision = 0;
    for d in deployments {
        revision = revision.max(admin.deploy(d).await?);
    }
    let settings = api::RouterSettings {
        num_retries: Some(2),
        ..Default::default()
    };
    revision = revision.max(admin.set_router(settings).await?);
    revision = revision.max(
        admin
            .groups
            .clone()
            .create_access_group(api::CreateAccessGroupRequest {
                name: "bench-group".into(),
                description: String::new(),
                models: vec![MODEL.into(), MULTI.into(), FLAKY.into()],
            })
            .await?
            .into_inner()
            .revision,
    );
    let team = api::Team {
        team_id: "bench-team".into(),
        access_groups: vec!["bench-group".into()],
        ..Default::default()
    };
    revision = revision.max(admin.create_team(team).await?);
    let generated = admin
        .keys
        .clone()
        .generate_key(api::GenerateKeyRequest {
            key: Some(api::Key {
                team_id: "bench-team".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    revision = revision.max(generated.revision);
    admin
        .wait_for_revision(revision, Duration::from_secs(30))
        .await?;
    Ok(generated.key)
}

/// A second key of (c)'s team with a budget and limits it will not reach.
async fn metered_key(admin: &Admin) -> anyhow::Result<String> {
    let generated = admin
        .keys
        .clone()
        .generate_key(api::GenerateKeyRequest {
            key: Some(api::Key {
                team_id: "bench-team".into(),
                max_budget: Some(1_000_000_000_000),
                budget_duration: "1d".into(),
                rpm_limit: Some(1_000_000_000),
                tpm_limit: Some(1_000_000_000_000),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    admin
        .wait_for_revision(generated.revision, Duration::from_secs(30))
        .await?;
    Ok(generated.key)
}

/// Usage batches the control plane has applied (each one etcd transaction).
async fn batches_applied(cp: Option<&ControlPlane>) -> f64 {
    match cp {
        Some(cp) => cp
            .metric("sluice_usage_batches_applied_total")
            .await
            .unwrap_or(0.0),
        None => 0.0,
    }
}

/// One request to `target`: it must answer 200 with the upstream's answer.
/// Returns the deployment that served it (`x-sluice-deployment`).
async fn check(http: &reqwest::Client, target: &Target, key: &str) -> anyhow::Result<String> {
    let r = http
        .post(&target.url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(target.body.clone())
        .send()
        .await?;
    let status = r.status();
    let deployment = r
        .headers()
        .get("x-sluice-deployment")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.text().await?;
    if status != reqwest::StatusCode::OK || !body.contains("Hello from the bench upstream.") {
        bail!("{} answered {status}: {body}", target.url);
    }
    Ok(deployment)
}

// ---------------------------------------------------------------------------
// The benchmark.
// ---------------------------------------------------------------------------

async fn bench() -> anyhow::Result<()> {
    let (routing_only, usage_only) = match std::env::var(ONLY) {
        Ok(only) if only == "routing" => (true, false),
        Ok(only) if only == "usage" => (true, true),
        Ok(other) => bail!("{ONLY}={other}: only `routing` and `usage` are known"),
        Err(_) => (false, false),
    };
    let keys: usize = env_or("SLUICE_PROXY_BENCH_KEYS", 1_000_000);
    let secs: u64 = env_or("SLUICE_PROXY_BENCH_SECS", 10);
    let rounds: usize = env_or(
        "SLUICE_PROXY_BENCH_ROUNDS",
        if routing_only { 5 } else { 3 },
    );
    let oha_bin = oha_path()?;
    let http = sluice_tests::http_client();

    let (upstream, _) = upstream(StatusCode::OK, ANSWER).await?;
    let (failing, failures) = upstream_failing().await?;
    let proxy = BareProxy::start(upstream)?;
    let plain_build = binary("sluice-data-plane")?;
    let shipped = shipped_build(&plain_build)?;
    match &shipped {
        Some(path) => eprintln!("(c) to (e): {}", path.display()),
        None => eprintln!(
            "(c) to (e): {} (no profile-guided build: scripts/build-release.sh makes one)",
            plain_build.display()
        ),
    }
    let start = |node_id: &str, cp: &ControlPlane, dir: &std::path::Path| match &shipped {
        Some(program) => {
            DataPlane::start_program(program, &[cp.url()], node_id, dir, PRODUCTION_LOG)
        }
        None => DataPlane::start_with_env(&[cp.url()], node_id, dir, &[], PRODUCTION_LOG),
    };

    // The small gateway: one key. Its control plane is then stopped, so the
    // data plane keeps serving that config while etcd fills up.
    let etcd = EtcdServer::start().await?;
    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start_etcd(&etcd.endpoint())?;
    let admin = Admin::connect(&cp.url()).await?;
    let small = start("bench-small", &cp, dir.path())?;
    small.wait_ready(Duration::from_secs(30)).await?;
    // The plain release build, beside a profile-guided one.
    let plain = match (&shipped, routing_only) {
        (Some(_), false) => {
            let dp = DataPlane::start_with_env(
                &[cp.url()],
                "bench-plain",
                dir.path(),
                &[],
                PRODUCTION_LOG,
            )?;
            dp.wait_ready(Duration::from_secs(30)).await?;
            Some(dp)
        }
        _ => None,
    };
    let key = configure(&admin, upstream, failing).await?;
    let metered = if usage_only {
        Some(metered_key(&admin).await?)
    } else {
        None
    };
    drop(admin);
    // Kept for (f): usage is reported to it and counted in etcd.
    let kept_cp = if usage_only {
        Some(cp)
    } else {
        drop(cp);
        None
    };

    // The large gateway: the same config plus `keys` keys, on a control
    // plane started after they were written.
    let large = if routing_only {
        None
    } else {
        let started = Instant::now();
        populate(&etcd, keys).await?;
        eprintln!(
            "wrote {keys} keys into etcd in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let cp = ControlPlane::start_etcd(&etcd.endpoint())?;
        let started = Instant::now();
        let large = start("bench-large", &cp, dir.path())?;
        large.wait_ready(Duration::from_secs(600)).await?;
        eprintln!(
            "large data plane ready in {:.1} s (RSS {} MiB)",
            started.elapsed().as_secs_f64(),
            large.rss().map_or(0, |(rss, _)| rss >> 20)
        );
        // Let the control plane and etcd settle after the load.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Some((large, cp))
    };

    let path = "/v1/chat/completions";
    let mut targets = Vec::new();
    if !routing_only {
        targets.push(Target::new(
            "a",
            "(a) upstream direct",
            format!("http://{upstream}{path}"),
            std::process::id(),
        ));
    }
    targets.push(Target::new(
        "b",
        "(b) bare hyper proxy",
        format!("http://127.0.0.1:{}{path}", proxy.port),
        proxy.child.id(),
    ));
    let single = Target::new(
        "c",
        "(c) data plane, 1 key",
        small.url(path),
        small.pid().context("small data plane pid")?,
    );
    if let Some(metered) = &metered {
        let limited = single.with_key("f", "(f) (c) + budget, rpm, tpm", metered.clone());
        targets.push(single);
        targets.push(limited);
    } else {
        targets.push(single.for_model("d", &format!("(d) group of {GROUP_SIZE}, retries"), MULTI));
        targets.push(single.for_model(
            "e",
            &format!("(e) group of {GROUP_SIZE}, 1 failing"),
            FLAKY,
        ));
        targets.insert(targets.len() - 2, single);
    }
    if let Some((large, _)) = &large {
        targets.push(Target::new(
            "c'",
            format!("(c') data plane, {} keys", keys + 1),
            large.url(path),
            large.pid().context("large data plane pid")?,
        ));
    }
    if let Some(plain) = &plain {
        targets.push(Target::new(
            "c°",
            "(c°) plain release build, 1 key",
            plain.url(path),
            plain.pid().context("plain data plane pid")?,
        ));
    }
    let at = |tag: &str| targets.iter().position(|t| t.tag == tag);
    // Traced for the time inside the process: the proxies with one key.
    let proxies: Vec<usize> = if usage_only {
        ["b", "c", "f"].into_iter().filter_map(at).collect()
    } else if routing_only {
        Vec::new()
    } else {
        ["b", "c", "c°"].into_iter().filter_map(at).collect()
    };
    for t in &targets {
        check(&http, t, t.key.as_deref().unwrap_or(&key)).await?;
    }
    // Every deployment of (d)'s group serves.
    if let Some(multi) = at("d").map(|i| &targets[i]) {
        let mut served = std::collections::BTreeSet::new();
        for _ in 0..20 * GROUP_SIZE {
            served.insert(check(&http, multi, &key).await?);
        }
        if served.len() != GROUP_SIZE {
            bail!("{MULTI} served from {served:?}, not {GROUP_SIZE} deployments");
        }
    }
    // A bulk key is known to the large data plane (whatever it may use).
    if let Some((large, _)) = &large {
        let r = http
            .post(large.url(path))
            .bearer_auth("sk-bulk-0")
            .header("content-type", "application/json")
            .body(BODY)
            .send()
            .await?;
        if keys > 0 && r.status() == reqwest::StatusCode::UNAUTHORIZED {
            bail!("the large data plane does not know the bulk keys");
        }
    }

    if std::env::var_os("SLUICE_PROXY_BENCH_SERVE").is_some() {
        // For profiling by hand: keep everything up and say where it is.
        eprintln!("key: {key}");
        for t in &targets {
            let key = t.key.as_deref().unwrap_or(&key);
            eprintln!(
                "{}: {} (pid {}) key {key} body {}",
                t.name, t.url, t.pid, t.body
            );
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    eprintln!("warming up");
    for t in &targets {
        oha(&oha_bin, t, &key, 2, false).await?;
    }
    let failures_before = failures.load(Ordering::Relaxed);
    let can_poll = !routing_only && idle_cpus_poll().is_some();
    if !can_poll && !routing_only {
        eprintln!("no write access to /dev/cpu_dma_latency: measuring with halting idle only");
    }
    let mut halting: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    let mut polling: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    let mut full: Vec<Vec<(Run, f64)>> = vec![Vec::new(); targets.len()];
    let mut traced: Vec<Vec<Legs>> = vec![Vec::new(); targets.len()];
    let mut etcd_txns: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        // Rotate the order, so no target always runs first or last.
        let order: Vec<usize> = (0..targets.len())
            .map(|i| (i + round) % targets.len())
            .collect();
        for &i in order.iter().filter(|_| !routing_only) {
            let run = oha(&oha_bin, &targets[i], &key, secs, true).await?;
            eprintln!(
                "round {round} {:<32} {RATE} req/s, halting idle: p50 {:>5.0} µs p99 {:>6.0} µs",
                targets[i].name, run.p50_us, run.p99_us
            );
            halting[i].push(run);
        }
        if can_poll {
            let _held = idle_cpus_poll();
            for &i in &order {
                let run = oha(&oha_bin, &targets[i], &key, secs, true).await?;
                eprintln!(
                    "round {round} {:<32} {RATE} req/s, polling idle: p50 {:>5.0} µs p99 {:>6.0} µs",
                    targets[i].name, run.p50_us, run.p99_us
                );
                polling[i].push(run);
            }
        }
        for &i in &proxies {
            if let Some(l) = legs(&targets[i], &oha_bin, &key, 3).await? {
                eprintln!(
                    "round {round} {:<32} {RATE} req/s, traced: request leg {:>4.0} µs, answer leg {:>4.0} µs",
                    targets[i].name, l.request_us, l.answer_us
                );
                traced[i].push(l);
            }
        }
        for &i in &order {
            let before = cpu_seconds(targets[i].pid)?;
            let batches_before = batches_applied(kept_cp.as_ref()).await;
            let started = Instant::now();
            let run = oha(&oha_bin, &targets[i], &key, secs, false).await?;
            let cpu_us = (cpu_seconds(targets[i].pid)? - before) * 1e6 / run.requests as f64;
            let txns = (batches_applied(kept_cp.as_ref()).await - batches_before)
                / started.elapsed().as_secs_f64();
            eprintln!(
                "round {round} {:<32} full load: {:>6.0} req/s, {cpu_us:>4.0} µs CPU/request{}",
                targets[i].name,
                run.rps,
                if kept_cp.is_some() {
                    format!(", {txns:.1} usage transactions/s in etcd")
                } else {
                    String::new()
                }
            );
            if kept_cp.is_some() {
                etcd_txns[i].push(txns);
            }
            full[i].push((run, cpu_us));
        }
    }
    let failing_calls = failures.load(Ordering::Relaxed) - failures_before;

    let f: Vec<Figures> = (0..targets.len())
        .map(|i| figures(&halting[i], &polling[i], &full[i]))
        .collect();
    let fig = |tag: &str| at(tag).map(|i| f[i]);
    let (b, c) = (fig("b").context("(b)")?, fig("c").context("(c)")?);
    println!();
    if routing_only {
        println!(
            "proxy ({ONLY}=routing): {} cores; oha at full load ({FULL_CONNECTIONS} connections); medians of {rounds} rounds of {secs} s",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    } else {
        println!(
            "proxy: {} cores; oha at {RATE} req/s (latency-corrected, {RATE_CONNECTIONS} connections) and at full load ({FULL_CONNECTIONS} connections); medians of {rounds} rounds of {secs} s",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    let report = |idle: &str, of: &dyn Fn(&Figures) -> Option<Latency>| {
        let Some(base) = fig("a").as_ref().and_then(of) else {
            return;
        };
        println!("at {RATE} req/s, {idle}:");
        println!(
            "  {:<34} {:>7} {:>7} {:>11} {:>11}",
            "target", "p50 µs", "p99 µs", "+p50 vs (a)", "+p99 vs (a)"
        );
        for (t, fig) in targets.iter().zip(&f) {
            let Some(lat) = of(fig) else { continue };
            let added = |x: f64, base: f64| {
                if t.tag == "a" {
                    "-".to_string()
                } else {
                    format!("{:+.0}", x - base)
                }
            };
            println!(
                "  {:<34} {:>7.0} {:>7.0} {:>11} {:>11}",
                t.name,
                lat.p50_us,
                lat.p99_us,
                added(lat.p50_us, base.p50_us),
                added(lat.p99_us, base.p99_us),
            );
        }
    };
    report("halting idle (the machine's default)", &|f| f.halting);
    report("polling idle (PM QoS 0 µs)", &|f| f.polling);
    let leg = |i: usize| {
        let l = &traced[i];
        (!l.is_empty()).then(|| {
            (
                median(l.iter().map(|l| l.request_us).collect()),
                median(l.iter().map(|l| l.answer_us).collect()),
            )
        })
    };
    let legs_of_tag = |tag: &str| at(tag).and_then(leg);
    match (legs_of_tag("b"), legs_of_tag("c")) {
        (Some((b_req, b_ans)), Some((c_req, c_ans))) => {
            println!("inside the proxy per request at {RATE} req/s, between its syscalls (perf):");
            println!(
                "  {:<34} {:>12} {:>11} {:>8}",
                "target", "request leg", "answer leg", "total"
            );
            for &i in &proxies {
                let Some((req, ans)) = leg(i) else { continue };
                println!(
                    "  {:<34} {:>9.0} µs {:>8.0} µs {:>5.0} µs",
                    targets[i].name,
                    req,
                    ans,
                    req + ans
                );
            }
            println!(
                "  (c) spends {:+.0} µs per request more than (b)",
                c_req + c_ans - b_req - b_ans
            );
        }
        _ if routing_only => {}
        _ => println!("inside the proxy: not measured (needs perf and root)"),
    }
    println!("at full load:");
    println!(
        "  {:<34} {:>10} {:>12} {:>10}",
        "target", "req/s", "CPU µs/req", "not 200"
    );
    for (t, fig) in targets.iter().zip(&f) {
        println!(
            "  {:<34} {:>10.0} {:>12.1} {:>10}",
            t.name, fig.rps, fig.cpu_us, fig.not_ok
        );
    }
    println!(
        "(CPU µs/req: of the process serving the target, at full load; for (a) the upstream's. not 200: over all its runs)"
    );
    println!();
    let goals = |idle: &str, of: &dyn Fn(&Figures) -> Option<Latency>| {
        let (Some(a), Some(b), Some(c)) = (fig("a").as_ref().and_then(of), of(&b), of(&c)) else {
            return;
        };
        let added_p50 = c.p50_us - a.p50_us;
        let added_p99 = c.p99_us - a.p99_us;
        println!(
            "{idle}: added p50 of (c) over (a): {added_p50:>5.0} µs   goal <= {GOAL_ADDED_P50_US:.0} µs: {}",
            verdict(added_p50 <= GOAL_ADDED_P50_US)
        );
        println!(
            "{idle}: added p99 of (c) over (a): {added_p99:>5.0} µs   goal <= {GOAL_ADDED_P99_US:.0} µs: {}",
            verdict(added_p99 <= GOAL_ADDED_P99_US)
        );
        println!(
            "{idle}: for reference, (b) adds {:+.0} µs p50, {:+.0} µs p99 over (a); (c) adds {:+.0} µs p50 over (b)",
            b.p50_us - a.p50_us,
            b.p99_us - a.p99_us,
            c.p50_us - b.p50_us,
        );
    };
    goals("halting idle", &|f| f.halting);
    goals("polling idle", &|f| f.polling);
    let throughput = c.rps / b.rps;
    println!(
        "throughput (c) / (b):      {throughput:>6.2}      goal >= {GOAL_THROUGHPUT}: {}",
        verdict(throughput >= GOAL_THROUGHPUT)
    );
    if usage_only {
        let f_fig = fig("f").context("(f)")?;
        let ratio = f_fig.rps / c.rps;
        println!(
            "throughput (f) / (c), budget + rpm + tpm on the key: {ratio:>5.2}   goal >= {GOAL_METERED}: {}",
            verdict(ratio >= GOAL_METERED)
        );
        match (legs_of_tag("c"), legs_of_tag("f")) {
            (Some((c_req, c_ans)), Some((f_req, f_ans))) => {
                let added = f_req + f_ans - c_req - c_ans;
                println!(
                    "in-process time (f) - (c): {added:+.1} µs per request   goal <= {GOAL_METERED_ADDED_US} µs: {}",
                    verdict(added <= GOAL_METERED_ADDED_US)
                );
            }
            _ => println!("in-process time of (f): not measured (needs perf and root)"),
        }
        for tag in ["c", "f"] {
            let i = at(tag).context("a usage target")?;
            println!(
                "({tag}) at full load: {:.0} req/s with {:.1} usage transactions/s in etcd (median of rounds)",
                f[i].rps,
                median(etcd_txns[i].clone())
            );
        }
        println!(
            "(every request of (b)'s peers (c) and (f) is metered and journaled; (c) / (b) above is what metering costs over a bare proxy)"
        );
        return Ok(());
    }
    // Routing: each round's ratio too, (c), (d) and (e) having run next to
    // each other in it.
    let per_round = |tag: &str| {
        let i = at(tag).expect("a routing target");
        let c = at("c").expect("(c)");
        full[i]
            .iter()
            .zip(&full[c])
            .map(|((x, _), (c, _))| format!("{:.2}", x.rps / c.rps))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (d, e) = (fig("d").context("(d)")?, fig("e").context("(e)")?);
    let multi = d.rps / c.rps;
    println!(
        "throughput (d) / (c), {GROUP_SIZE} deployments, num_retries 2: {multi:>5.2}   goal >= {GOAL_MULTI}: {}   (by round: {})",
        verdict(multi >= GOAL_MULTI),
        per_round("d"),
    );
    let flaky = e.rps / c.rps;
    println!(
        "throughput (e) / (c), one of {GROUP_SIZE} failing:  {flaky:>5.2}   goal >= {GOAL_FLAKY}: {}   (by round: {})",
        verdict(flaky >= GOAL_FLAKY),
        per_round("e"),
    );
    println!(
        "(e) client success: {} of {} answers not 200   goal 0: {}   (the failing deployment was called {failing_calls} times)",
        e.not_ok,
        e.requests,
        verdict(e.not_ok == 0)
    );
    if let Some(l) = fig("c'") {
        let (Some(lh), Some(ch)) = (l.halting, c.halting) else {
            bail!("(c') and (c) were measured at the fixed rate");
        };
        // Within 10%: no more than 10% slower (faster is fine).
        let large_ok = lh.p50_us <= ch.p50_us * (1.0 + GOAL_LARGE)
            && lh.p99_us <= ch.p99_us * (1.0 + GOAL_LARGE)
            && l.rps >= c.rps * (1.0 - GOAL_LARGE);
        println!(
            "(c') / (c), halting idle: p50 {:.2}, p99 {:.2}, req/s {:.2}   goal within 10%: {}",
            lh.p50_us / ch.p50_us,
            lh.p99_us / ch.p99_us,
            l.rps / c.rps,
            verdict(large_ok)
        );
        println!("for reference: (c') / (b) req/s {:.2}", l.rps / b.rps);
    }
    if let Some(plain) = fig("c°") {
        let ratio = |of: &dyn Fn(&Figures) -> Option<Latency>| match (of(&c), of(&plain)) {
            (Some(c), Some(plain)) => format!("{:.2}", c.p50_us / plain.p50_us),
            _ => "-".into(),
        };
        println!(
            "profile-guided (c) / plain (c°): halting idle p50 {}, polling idle p50 {}, req/s {:.2}, CPU/req {:.2}",
            ratio(&|f| f.halting),
            ratio(&|f| f.polling),
            c.rps / plain.rps,
            c.cpu_us / plain.cpu_us,
        );
    }
    Ok(())
}

/// The profile-guided data plane to measure as (c): [`DATA_PLANE_BUILD`],
/// else `scripts/build-release.sh`'s `target/dist/sluice-data-plane` when
/// it is there; `None` for the plain release build `plain`.
fn shipped_build(plain: &std::path::Path) -> anyhow::Result<Option<std::path::PathBuf>> {
    if let Ok(path) = std::env::var(DATA_PLANE_BUILD) {
        let path = std::path::PathBuf::from(path);
        if !path.exists() {
            bail!("{DATA_PLANE_BUILD}={} does not exist", path.display());
        }
        return Ok(Some(path));
    }
    // target/release/sluice-data-plane -> target/dist/sluice-data-plane
    let dist = plain
        .parent()
        .and_then(|release| release.parent())
        .map(|target| target.join("dist").join("sluice-data-plane"));
    let dist = dist.filter(|d| d.exists());
    if let Some(dist) = &dist {
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if modified(dist) < modified(plain) {
            eprintln!(
                "warning: {} is older than {}: scripts/build-release.sh rebuilds it",
                dist.display(),
                plain.display()
            );
        }
    }
    Ok(dist)
}
