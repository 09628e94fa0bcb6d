//! Throughput and latency of the admin API's writes, each next to a baseline
//! measured the same way in the same run: the store's own transaction.
//!
//! ```sh
//! cargo build --release --bins
//! cargo bench -p sluice-tests --bench admin
//! ```
//!
//! For each store (a real etcd on loopback, then the embedded store) and
//! each concurrency (1, then 32 callers), after a short warm-up, a fixed
//! number of operations of:
//!
//! - **raw txn put**: `Txn::new().when_mod_revision(key, 0).put(key, value)`
//!   straight on the store (`EtcdStore` / `EmbeddedStore` in this process),
//!   with the bytes the control plane stores for a key. The baseline.
//! - **GenerateKey**: `KeyService/GenerateKey` of a key with no team
//!   (`models: ["*"]`) through the real `sluice-control-plane` binary over
//!   loopback gRPC. One store transaction per call is the floor.
//! - **raw get+CAS**: read one group object, add a member, write it back if
//!   unchanged, with the control plane's own back-off on conflict. The
//!   baseline of a read-modify-write of one object.
//! - **AddModels**: `AccessGroupService/AddModels` of one new wildcard member
//!   (`vendor-{i}/*`) to one group. At concurrency 32 every caller writes the
//!   same object, so calls conflict and retry: contended by design.
//!
//! On etcd, "etcd RPCs/op" is etcd's own `grpc_server_handled_total` over the
//! cell divided by its operations (the control plane's health probe adds a
//! few per second). Ratios are against the baseline at the same concurrency.
//! The bench process, etcd and the control plane share the machine's cores.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use sluice_control_plane::catalog::back_off;
use sluice_control_plane::resources::{decode, encode, key_of};
use sluice_control_plane::secrets;
use sluice_control_plane::store::embedded::EmbeddedStore;
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use sluice_control_plane::store::{Store, Txn};
use sluice_tests::admin_client::{Admin, api};
use sluice_tests::control_plane::{ControlPlane, binary};
use sluice_tests::etcd::EtcdServer;

/// Callers per cell.
const CONCURRENCY: [usize; 2] = [1, 32];

/// Operations per cell of the raw put and GenerateKey, by concurrency.
fn put_ops(concurrency: usize) -> usize {
    if concurrency == 1 { 500 } else { 2000 }
}

/// Operations per cell of the get+CAS and AddModels, by concurrency. Each
/// cell adds its warm-up and these members to a fresh group, which must stay
/// within the control plane's 1,000 members per list.
fn member_ops(concurrency: usize) -> usize {
    if concurrency == 1 { 300 } else { 600 }
}

/// Operations before each cell that are not measured: connections, caches.
fn warmup_ops(concurrency: usize) -> usize {
    (2 * concurrency).max(50)
}

/// Where the raw baselines write, away from the control plane's `/sluice/`.
const RAW_ROOT: &str = "/bench";

/// The store under test, as the control plane and the baselines reach it.
enum Backend {
    Etcd(EtcdServer),
    Embedded,
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Etcd(_) => "etcd",
            Backend::Embedded => "embedded",
        }
    }

    /// etcd's count of handled gRPC calls, when the store is etcd.
    async fn etcd_rpcs(&self) -> anyhow::Result<Option<f64>> {
        match self {
            Backend::Etcd(etcd) => Ok(Some(etcd.metric("grpc_server_handled_total").await?)),
            Backend::Embedded => Ok(None),
        }
    }
}

/// One measured cell.
struct Cell {
    store: &'static str,
    operation: &'static str,
    concurrency: usize,
    ops: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    etcd_rpcs_per_op: Option<f64>,
    /// The cell this one is compared with, by operation name.
    baseline: Option<&'static str>,
}

impl Cell {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// The value at quantile `q` of sorted samples (nearest rank).
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the workers of a cell bring back.
struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

/// Runs operations `first..first + ops` of `op` on `concurrency` callers,
/// each taking the next index until none is left.
async fn drive<F, Fut>(concurrency: usize, first: usize, ops: usize, op: Arc<F>) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(ops / concurrency + 1);
                let mut errors = 0;
                let mut first_error = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ops {
                        break;
                    }
                    let start = Instant::now();
                    let outcome = op(first + i).await;
                    latencies.push(start.elapsed());
                    if let Err(error) = outcome {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{error:#}"));
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut run = Run {
        latencies: Vec::with_capacity(ops),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        let (latencies, errors, first_error) = worker.await.expect("bench worker panicked");
        run.latencies.extend(latencies);
        run.errors += errors;
        if run.first_error.is_none() {
            run.first_error = first_error;
        }
    }
    run.elapsed = began.elapsed();
    run
}

/// Warms up, then measures one cell.
async fn measure<F, Fut>(
    backend: &Backend,
    operation: &'static str,
    baseline: Option<&'static str>,
    concurrency: usize,
    ops: usize,
    op: F,
) -> anyhow::Result<Cell>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let warmup = warmup_ops(concurrency);
    let warm = drive(concurrency, 0, warmup, op.clone()).await;
    if let Some(error) = warm.first_error {
        bail!("{operation} failed during warm-up: {error}");
    }
    let rpcs_before = backend.etcd_rpcs().await?;
    let mut run = drive(concurrency, warmup, ops, op).await;
    let rpcs_after = backend.etcd_rpcs().await?;
    run.latencies.sort_unstable();
    let cell = Cell {
        store: backend.name(),
        operation,
        concurrency,
        ops,
        errors: run.errors,
        first_error: run.first_error,
        elapsed: run.elapsed,
        p50: percentile(&run.latencies, 0.50),
        p99: percentile(&run.latencies, 0.99),
        etcd_rpcs_per_op: rpcs_before
            .zip(rpcs_after)
            .map(|(before, after)| (after - before) / ops as f64),
        baseline,
    };
    eprintln!(
        "  {:<8} {:<13} c={:<2} {:>8.0} ops/s",
        cell.store,
        cell.operation,
        cell.concurrency,
        cell.per_second()
    );
    Ok(cell)
}

const RAW_PUT: &str = "raw txn put";
const GENERATE_KEY: &str = "GenerateKey";
const RAW_CAS: &str = "raw get+CAS";
const ADD_MODELS: &str = "AddModels";

/// A key as GenerateKey stores it, for the raw put's value.
fn sample_key() -> api::Key {
    let plaintext = secrets::generate(secrets::KEY_PREFIX);
    let now = SystemTime::now();
    api::Key {
        key_id: secrets::sha256_hex(&plaintext),
        key_prefix: secrets::display_prefix(&plaintext),
        models: vec!["*".into()],
        created_at: Some(now.into()),
        updated_at: Some(now.into()),
        ..Default::default()
    }
}

fn raw_put(
    store: Arc<dyn Store>,
    tag: String,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
+ Send
+ Sync
+ 'static {
    let value = Arc::new(encode(&sample_key()));
    move |i| {
        let store = store.clone();
        let value = value.clone();
        // Same key length as the control plane's: a SHA-256 in hex.
        let id = secrets::sha256_hex(&format!("{tag}-{i}"));
        Box::pin(async move {
            let key = format!("{RAW_ROOT}{}", key_of::<api::Key>(&id));
            let outcome = store
                .txn(
                    Txn::new()
                        .when_mod_revision(key.clone(), 0)
                        .put(key, value.to_vec()),
                )
                .await?;
            if !outcome.succeeded {
                bail!("raw put: key {id} already exists");
            }
            Ok(())
        })
    }
}

fn raw_cas(
    store: Arc<dyn Store>,
    group: String,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
+ Send
+ Sync
+ 'static {
    let key = Arc::new(format!("{RAW_ROOT}{}", key_of::<api::AccessGroup>(&group)));
    move |i| {
        let store = store.clone();
        let key = key.clone();
        Box::pin(async move {
            let mut conflicts = 0;
            loop {
                let current = store
                    .get(&key)
                    .await?
                    .with_context(|| format!("{key} is missing"))?;
                let mut group = decode::<api::AccessGroup>(&current.value, current.mod_revision)?;
                group.models.push(format!("vendor-{i}/*"));
                let txn = Txn::new()
                    .when_mod_revision(key.as_str(), current.mod_revision)
                    .put(key.as_str(), encode(&group));
                if store.txn(txn).await?.succeeded {
                    return Ok(());
                }
                back_off(conflicts).await?;
                conflicts += 1;
            }
        })
    }
}

async fn create_raw_group(store: &dyn Store, name: &str) -> anyhow::Result<()> {
    let group = api::AccessGroup {
        name: name.into(),
        uid: secrets::random_id(8),
        created_at: Some(SystemTime::now().into()),
        ..Default::default()
    };
    let key = format!("{RAW_ROOT}{}", key_of::<api::AccessGroup>(name));
    let outcome = store
        .txn(
            Txn::new()
                .when_mod_revision(key.clone(), 0)
                .put(key, encode(&group)),
        )
        .await?;
    if !outcome.succeeded {
        bail!("raw group {name} already exists");
    }
    Ok(())
}

/// Every cell on one store: the control plane at `admin`, the baselines on `raw`.
async fn bench_store(
    backend: &Backend,
    raw: Arc<dyn Store>,
    admin: &Admin,
) -> anyhow::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for concurrency in CONCURRENCY {
        let ops = put_ops(concurrency);
        cells.push(
            measure(
                backend,
                RAW_PUT,
                None,
                concurrency,
                ops,
                raw_put(raw.clone(), format!("c{concurrency}")),
            )
            .await?,
        );

        let keys = admin.keys.clone();
        cells.push(
            measure(
                backend,
                GENERATE_KEY,
                Some(RAW_PUT),
                concurrency,
                ops,
                move |_| {
                    let mut keys = keys.clone();
                    async move {
                        keys.generate_key(api::GenerateKeyRequest {
                            key: Some(api::Key {
                                models: vec!["*".into()],
                                ..Default::default()
                            }),
                        })
                        .await?;
                        Ok(())
                    }
                },
            )
            .await?,
        );

        let ops = member_ops(concurrency);
        let group = format!("bench-c{concurrency}");
        create_raw_group(raw.as_ref(), &group).await?;
        cells.push(
            measure(
                backend,
                RAW_CAS,
                None,
                concurrency,
                ops,
                raw_cas(raw.clone(), group.clone()),
            )
            .await?,
        );

        admin
            .groups
            .clone()
            .create_access_group(api::CreateAccessGroupRequest {
                name: group.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating access group {group}"))?;
        let groups = admin.groups.clone();
        cells.push(
            measure(
                backend,
                ADD_MODELS,
                Some(RAW_CAS),
                concurrency,
                ops,
                move |i| {
                    let mut groups = groups.clone();
                    let name = group.clone();
                    async move {
                        groups
                            .add_models(api::AddModelsRequest {
                                name,
                                models: vec![format!("vendor-{i}/*")],
                            })
                            .await?;
                        Ok(())
                    }
                },
            )
            .await?,
        );
    }
    Ok(cells)
}

fn millis(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn print_report(cells: &[Cell]) {
    let find = |cell: &Cell, operation: &str| {
        cells.iter().find(|c| {
            c.store == cell.store && c.concurrency == cell.concurrency && c.operation == operation
        })
    };
    println!();
    println!(
        "| store | operation | c | ops | errors | ops/s | p50 ms | p99 ms | etcd RPCs/op | × baseline |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|---|");
    for cell in cells {
        let ratio = match cell.baseline.and_then(|b| find(cell, b)) {
            Some(base) => format!(
                "{:.2} × {}",
                cell.per_second() / base.per_second(),
                base.operation
            ),
            None => "(baseline)".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            cell.store,
            cell.operation,
            cell.concurrency,
            cell.ops,
            cell.errors,
            cell.per_second(),
            millis(cell.p50),
            millis(cell.p99),
            cell.etcd_rpcs_per_op
                .map_or_else(|| "-".into(), |r| format!("{r:.2}")),
            ratio,
        );
    }
    println!();
    for cell in cells {
        let Some(base) = cell.baseline.and_then(|b| find(cell, b)) else {
            continue;
        };
        let mut line = format!(
            "{} via API on {} at c={}: {:.0}/s = {:.2} × {} on {} at the same concurrency ({:.0}/s)",
            cell.operation,
            cell.store,
            cell.concurrency,
            cell.per_second(),
            cell.per_second() / base.per_second(),
            base.operation,
            cell.store,
            base.per_second(),
        );
        if let Some(put) = find(cell, RAW_PUT).filter(|put| put.operation != base.operation) {
            line.push_str(&format!(
                ", {:.2} × {}",
                cell.per_second() / put.per_second(),
                put.operation
            ));
        }
        println!("{line}");
    }
    for cell in cells.iter().filter(|c| c.errors > 0) {
        println!(
            "errors in {} {} c={}: {} of {}, first: {}",
            cell.store,
            cell.operation,
            cell.concurrency,
            cell.errors,
            cell.ops,
            cell.first_error.as_deref().unwrap_or("?")
        );
    }
}

async fn connect_admin(cp: &ControlPlane) -> anyhow::Result<Admin> {
    Admin::connect(&cp.url())
        .await
        .with_context(|| format!("connecting to the control plane; its log:\n{}", cp.log()))
}

async fn run() -> anyhow::Result<Vec<Cell>> {
    let cp_binary: PathBuf = binary("sluice-control-plane").context(
        "the bench runs the release binary: `cargo build --release --bins` first, \
         then `cargo bench -p sluice-tests --bench admin`",
    )?;
    eprintln!(
        "control plane: {}; {} cores",
        cp_binary.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut cells = Vec::new();

    let etcd = Backend::Etcd(EtcdServer::start().await?);
    if let Backend::Etcd(server) = &etcd {
        let raw: Arc<dyn Store> = Arc::new(
            EtcdStore::connect(EtcdOptions {
                endpoints: vec![server.endpoint()],
                ..EtcdOptions::default()
            })
            .await?,
        );
        let cp = ControlPlane::start_etcd(&server.endpoint())?;
        let admin = connect_admin(&cp).await?;
        cells.extend(bench_store(&etcd, raw, &admin).await?);
    }
    drop(etcd);

    let dir = tempfile::Builder::new().prefix("sluice-bench-").tempdir()?;
    let raw: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path())?);
    let cp = ControlPlane::start_embedded()?;
    let admin = connect_admin(&cp).await?;
    cells.extend(bench_store(&Backend::Embedded, raw, &admin).await?);
    Ok(cells)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let began = Instant::now();
    let cells = runtime.block_on(run())?;
    print_report(&cells);
    println!("(whole bench: {:.0} s)", began.elapsed().as_secs_f64());
    Ok(())
}
