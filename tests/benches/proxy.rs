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
//!   holds 1,000,000 more keys.
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
//! Run: `cargo build --release --bins && scripts/build-release.sh && cargo
//! bench -p sluice-tests --bench proxy` (~13 minutes; ~10 without a
//! profile-guided build to measure beside the plain one). `SLUICE_PROXY_BENCH_KEYS` overrides the key count of (c'),
//! `SLUICE_PROXY_BENCH_SECS` the seconds per run (10), and
//! `SLUICE_PROXY_BENCH_ROUNDS` the rounds (3). With `SLUICE_PROXY_BENCH_SERVE`
//! set it sets everything up, prints the targets, their pids and the key, and
//! waits an hour instead of measuring: for `perf` and `oha` by hand.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
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
const MODEL: &str = "bench-model";
/// The data planes log at the binary's default level, as deployed: the test
/// harness's `sluice_data_plane=debug` would add the auth, access and
/// upstream spans to every request.
const PRODUCTION_LOG: &[(&str, &str)] = &[("SLUICE_LOG", "info")];
const BODY: &str = r#"{"model":"bench-model","messages":[{"role":"user","content":"Say hello"}]}"#;
/// The upstream's answer to every request: a small, complete chat completion.
const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench upstream."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;
const RATE: u32 = 1_000;
const RATE_CONNECTIONS: u32 = 10;
const FULL_CONNECTIONS: u32 = 50;
const TEAMS: usize = 1_000;

const GOAL_ADDED_P50_US: f64 = 100.0;
const GOAL_ADDED_P99_US: f64 = 500.0;
const GOAL_THROUGHPUT: f64 = 0.8;
const GOAL_LARGE: f64 = 0.10;

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

/// Serves [`ANSWER`] to every request (after reading its body) on a free port.
async fn fast_upstream() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut resp = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
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
}

/// What is measured: a name, where to send requests, and the process
/// serving them there (whose CPU time is read around full-load runs).
struct Target {
    name: String,
    url: String,
    pid: u32,
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

/// Runs oha against `url` for `secs`: at [`RATE`] when `fixed`, else flat out.
async fn oha(oha: &str, url: &str, key: &str, secs: u64, fixed: bool) -> anyhow::Result<Run> {
    let mut cmd = tokio::process::Command::new(oha);
    cmd.args(["--no-tui", "--output-format", "json", "-w", "-z"])
        .arg(format!("{secs}s"))
        .args(["-m", "POST", "-T", "application/json", "-H"])
        .arg(format!("authorization: Bearer {key}"))
        .args(["-d", BODY]);
    if fixed {
        cmd.args(["-q", &RATE.to_string(), "--latency-correction", "-c"])
            .arg(RATE_CONNECTIONS.to_string());
    } else {
        cmd.arg("-c").arg(FULL_CONNECTIONS.to_string());
    }
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
    if ok == 0 || ok != all || errors.as_object().is_some_and(|e| !e.is_empty()) {
        bail!("{url}: not every answer was 200: {codes} {errors}");
    }
    let secs_of = |v: &Value| v.as_f64().unwrap_or(f64::NAN) * 1e6;
    Ok(Run {
        p50_us: secs_of(&report["latencyPercentiles"]["p50"]),
        p99_us: secs_of(&report["latencyPercentiles"]["p99"]),
        rps: report["summary"]["requestsPerSec"]
            .as_f64()
            .unwrap_or(f64::NAN),
        requests: all,
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

/// [`Legs`] of process `pid` (medians over a run of `secs` at [`RATE`]),
/// traced with `perf` (`syscalls:sys_enter_*` tracepoints, which need root
/// or `perf_event_paranoid` <= -1). `None` without `perf`.
async fn legs(
    pid: u32,
    oha_bin: &str,
    url: &str,
    key: &str,
    secs: u64,
) -> anyhow::Result<Option<Legs>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("perf.data");
    let Ok(mut perf) = tokio::process::Command::new("perf")
        .args(["record", "-q", "-e"])
        .arg("syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev")
        .arg("-p")
        .arg(pid.to_string())
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
    oha(oha_bin, url, key, secs, true).await?;
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
    /// With the machine's default idle.
    halting: Latency,
    /// With idle CPUs polling; `None` when that could not be asked for.
    polling: Option<Latency>,
    rps: f64,
    /// CPU time of the serving process per request at full load.
    cpu_us: f64,
}

fn figures(halting: &[Run], polling: &[Run], full: &[(Run, f64)]) -> Figures {
    Figures {
        halting: latency(halting),
        polling: (!polling.is_empty()).then(|| latency(polling)),
        rps: median(full.iter().map(|(r, _)| r.rps).collect()),
        cpu_us: median(full.iter().map(|(_, cpu)| *cpu).collect()),
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

/// A deployment of [`MODEL`] at `upstream`, an access group with it, a team
/// in that group and a key of that team; returns the key once every
/// connected data plane has applied all of it.
async fn configure(admin: &Admin, upstream: SocketAddr) -> anyhow::Result<String> {
    let mut revision = admin
        .models
        .clone()
        .create_deployment(api::CreateDeploymentRequest {
            deployment: Some(api::Deployment {
                model_name: MODEL.into(),
                provider: "openai".into(),
                model: "gpt-bench".into(),
                api_base: format!("http://{upstream}/v1"),
                api_key: "sk-upstream-bench".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .revision;
    revision = revision.max(
        admin
            .groups
            .clone()
            .create_access_group(api::CreateAccessGroupRequest {
                name: "bench-group".into(),
                description: String::new(),
                models: vec![MODEL.into()],
            })
            .await?
            .into_inner()
            .revision,
    );
    revision = revision.max(
        admin
            .teams
            .clone()
            .create_team(api::CreateTeamRequest {
                team: Some(api::Team {
                    team_id: "bench-team".into(),
                    access_groups: vec!["bench-group".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner()
            .revision,
    );
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

/// One request through `url`: it must answer 200 with the upstream's answer.
async fn check(http: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<()> {
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    if status != reqwest::StatusCode::OK || !body.contains("Hello from the bench upstream.") {
        bail!("{url} answered {status}: {body}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The benchmark.
// ---------------------------------------------------------------------------

async fn bench() -> anyhow::Result<()> {
    let keys: usize = env_or("SLUICE_PROXY_BENCH_KEYS", 1_000_000);
    let secs: u64 = env_or("SLUICE_PROXY_BENCH_SECS", 10);
    let rounds: usize = env_or("SLUICE_PROXY_BENCH_ROUNDS", 3);
    let oha_bin = oha_path()?;
    let http = sluice_tests::http_client();

    let upstream = fast_upstream().await?;
    let proxy = BareProxy::start(upstream)?;
    let plain_build = binary("sluice-data-plane")?;
    let shipped = shipped_build(&plain_build)?;
    match &shipped {
        Some(path) => eprintln!("(c) and (c'): {}", path.display()),
        None => eprintln!(
            "(c) and (c'): {} (no profile-guided build: scripts/build-release.sh makes one)",
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
    let plain = match shipped {
        Some(_) => {
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
        None => None,
    };
    let key = configure(&admin, upstream).await?;
    drop(admin);
    drop(cp);

    // The large gateway: the same config plus `keys` keys, on a control
    // plane started after they were written.
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

    let path = "/v1/chat/completions";
    let mut targets = vec![
        Target {
            name: "(a) upstream direct".into(),
            url: format!("http://{upstream}{path}"),
            pid: std::process::id(),
        },
        Target {
            name: "(b) bare hyper proxy".into(),
            url: format!("http://127.0.0.1:{}{path}", proxy.port),
            pid: proxy.child.id(),
        },
        Target {
            name: "(c) data plane, 1 key".into(),
            url: small.url(path),
            pid: small.pid().context("small data plane pid")?,
        },
        Target {
            name: format!("(c') data plane, {} keys", keys + 1),
            url: large.url(path),
            pid: large.pid().context("large data plane pid")?,
        },
    ];
    if let Some(plain) = &plain {
        targets.push(Target {
            name: "(c°) plain release build, 1 key".into(),
            url: plain.url(path),
            pid: plain.pid().context("plain data plane pid")?,
        });
    }
    // Traced for the time inside the process: the proxies with one key.
    let proxies: Vec<usize> = [1, 2, 4]
        .into_iter()
        .filter(|&i| i < targets.len())
        .collect();
    for t in &targets {
        check(&http, &t.url, &key).await?;
    }
    // A bulk key is known to the large data plane (whatever it may use).
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

    if std::env::var_os("SLUICE_PROXY_BENCH_SERVE").is_some() {
        // For profiling by hand: keep everything up and say where it is.
        eprintln!("key: {key}");
        for t in &targets {
            eprintln!("{}: {} (pid {})", t.name, t.url, t.pid);
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    eprintln!("warming up");
    for t in &targets {
        oha(&oha_bin, &t.url, &key, 2, false).await?;
    }
    let can_poll = idle_cpus_poll().is_some();
    if !can_poll {
        eprintln!("no write access to /dev/cpu_dma_latency: measuring with halting idle only");
    }
    let mut halting: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    let mut polling: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    let mut full: Vec<Vec<(Run, f64)>> = vec![Vec::new(); targets.len()];
    let mut traced: Vec<Vec<Legs>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        // Rotate the order, so no target always runs first or last.
        let order: Vec<usize> = (0..targets.len())
            .map(|i| (i + round) % targets.len())
            .collect();
        for &i in &order {
            let run = oha(&oha_bin, &targets[i].url, &key, secs, true).await?;
            eprintln!(
                "round {round} {:<32} {RATE} req/s, halting idle: p50 {:>5.0} µs p99 {:>6.0} µs",
                targets[i].name, run.p50_us, run.p99_us
            );
            halting[i].push(run);
        }
        if can_poll {
            let _held = idle_cpus_poll();
            for &i in &order {
                let run = oha(&oha_bin, &targets[i].url, &key, secs, true).await?;
                eprintln!(
                    "round {round} {:<32} {RATE} req/s, polling idle: p50 {:>5.0} µs p99 {:>6.0} µs",
                    targets[i].name, run.p50_us, run.p99_us
                );
                polling[i].push(run);
            }
        }
        for &i in &proxies {
            if let Some(l) = legs(targets[i].pid, &oha_bin, &targets[i].url, &key, 3).await? {
                eprintln!(
                    "round {round} {:<32} {RATE} req/s, traced: request leg {:>4.0} µs, answer leg {:>4.0} µs",
                    targets[i].name, l.request_us, l.answer_us
                );
                traced[i].push(l);
            }
        }
        for &i in &order {
            let before = cpu_seconds(targets[i].pid)?;
            let run = oha(&oha_bin, &targets[i].url, &key, secs, false).await?;
            let cpu_us = (cpu_seconds(targets[i].pid)? - before) * 1e6 / run.requests as f64;
            eprintln!(
                "round {round} {:<32} full load: {:>6.0} req/s, {cpu_us:>4.0} µs CPU/request",
                targets[i].name, run.rps
            );
            full[i].push((run, cpu_us));
        }
    }

    let f: Vec<Figures> = (0..targets.len())
        .map(|i| figures(&halting[i], &polling[i], &full[i]))
        .collect();
    let (a, b, c, l) = (f[0], f[1], f[2], f[3]);
    println!();
    println!(
        "proxy: {} cores; oha at {RATE} req/s (latency-corrected, {RATE_CONNECTIONS} connections) and at full load ({FULL_CONNECTIONS} connections); medians of {rounds} rounds of {secs} s",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let report = |idle: &str, of: &dyn Fn(&Figures) -> Option<Latency>| {
        let Some(base) = of(&a) else {
            println!("{idle}: not measured");
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
                if t.pid == std::process::id() {
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
    report("halting idle (the machine's default)", &|f| Some(f.halting));
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
    match (leg(1), leg(2)) {
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
        _ => println!("inside the proxy: not measured (needs perf and root)"),
    }
    println!("at full load:");
    println!("  {:<34} {:>10} {:>12}", "target", "req/s", "CPU µs/req");
    for (t, fig) in targets.iter().zip(&f) {
        println!("  {:<34} {:>10.0} {:>12.1}", t.name, fig.rps, fig.cpu_us);
    }
    println!(
        "(CPU µs/req: of the process serving the target, at full load; for (a) the upstream's)"
    );
    println!();
    let goals = |idle: &str, of: &dyn Fn(&Figures) -> Option<Latency>| {
        let (Some(a), Some(b), Some(c)) = (of(&a), of(&b), of(&c)) else {
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
    goals("halting idle", &|f| Some(f.halting));
    goals("polling idle", &|f| f.polling);
    let throughput = c.rps / b.rps;
    println!(
        "throughput (c) / (b):      {throughput:>6.2}      goal >= {GOAL_THROUGHPUT}: {}",
        verdict(throughput >= GOAL_THROUGHPUT)
    );
    // Within 10%: no more than 10% slower (faster is fine).
    let large_ok = l.halting.p50_us <= c.halting.p50_us * (1.0 + GOAL_LARGE)
        && l.halting.p99_us <= c.halting.p99_us * (1.0 + GOAL_LARGE)
        && l.rps >= c.rps * (1.0 - GOAL_LARGE);
    println!(
        "(c') / (c), halting idle: p50 {:.2}, p99 {:.2}, req/s {:.2}   goal within 10%: {}",
        l.halting.p50_us / c.halting.p50_us,
        l.halting.p99_us / c.halting.p99_us,
        l.rps / c.rps,
        verdict(large_ok)
    );
    println!("for reference: (c') / (b) req/s {:.2}", l.rps / b.rps);
    if let Some(plain) = f.get(4) {
        let polling = match (c.polling, plain.polling) {
            (Some(c), Some(plain)) => format!(", polling idle p50 {:.2}", c.p50_us / plain.p50_us),
            _ => String::new(),
        };
        println!(
            "profile-guided (c) / plain (c°): halting idle p50 {:.2}{polling}, req/s {:.2}, CPU/req {:.2}",
            c.halting.p50_us / plain.halting.p50_us,
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
