//! Applying config at scale, against plain-`HashMap` baselines.
//!
//! `cargo bench -p sluice-data-plane --bench apply` (release build). The
//! issue's goals at 1,000,000 keys: full load ≤ 2 s, RSS ≤ 300 MB, one-key
//! delta ≤ 1 ms. `SLUICE_BENCH_KEYS` changes the key count.
//!
//! Prints, for the same keys:
//! - full load: decoding the snapshot message (keys left encoded, as the
//!   stream client does) and building the `Config`, vs. the baseline: the
//!   message decoded into the generated types and its keys inserted into a
//!   `std::collections::HashMap`;
//! - memory: the config's live heap (counted by a wrapping allocator) vs. the
//!   baseline map's, and the process RSS after the load, message buffer
//!   still held (as in the data plane while it applies);
//! - the first large allocation after the baseline's millions of small
//!   allocations are freed (see `sluice_data_plane::serve::allocator`);
//! - one-key delta on the loaded config (mean and worst of many, each from
//!   the previous result), vs. a full rebuild and one `HashMap` insert;
//! - encoding the config back (what the cache writer and /debug/config do).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use sha2::{Digest, Sha256};
use sluice_data_plane::Config;
use sluice_data_plane::config::snapshot::{ApiKeys, KeyDigest};
use sluice_data_plane::config::wire::SnapshotWire;
use sluice_proto::admin::v1::{Deployment, Key, Team};
use sluice_proto::config::v1::{Delta, Snapshot};

/// Counts live heap bytes, so the config's own size can be told apart from
/// what the allocator keeps after the decoded message is freed (RSS).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1e6
}

fn key(n: usize) -> Key {
    let plaintext = format!("sk-bench-{n:012}");
    Key {
        key_id: hex::encode(Sha256::digest(plaintext.as_bytes())),
        key_alias: format!("key-{n}"),
        key_prefix: plaintext[..8].to_owned(),
        team_id: format!("team-{}", n % 1000),
        models: vec!["gpt-4o".into()],
        created_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000 + n as i64,
            nanos: 0,
        }),
        revision: n as i64,
        ..Default::default()
    }
}

/// The encoded snapshot message, written key by key so that the bench does
/// not hold a million `Key` structs (which would distort the memory figures).
fn encoded_snapshot(keys: usize) -> Vec<u8> {
    use prost::encoding::message;
    let rest = Snapshot {
        revision: 1,
        teams: (0..1000)
            .map(|t| Team {
                team_id: format!("team-{t}"),
                models: vec!["gpt-4o".into()],
                ..Default::default()
            })
            .collect(),
        deployments: (0..50)
            .map(|d| Deployment {
                id: format!("d{d}"),
                model_name: format!("model-{}", d % 10),
                provider: "openai".into(),
                model: "gpt-4o".into(),
                api_key: "os.environ/OPENAI_API_KEY".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut out = rest.encode_to_vec();
    for n in 0..keys {
        // Field 7 of Snapshot: keys.
        message::encode(7, &key(n), &mut out);
    }
    out
}

/// (current, peak) resident set size in MB, from /proc (Linux only).
fn rss_mb() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // As the binary does (see `sluice_data_plane::serve::allocator`); set
    // SLUICE_BENCH_DEFAULT_MALLOC to see the difference.
    if std::env::var_os("SLUICE_BENCH_DEFAULT_MALLOC").is_none() {
        sluice_data_plane::serve::allocator::tune();
    }
    let n: usize = std::env::var("SLUICE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let env: HashMap<String, String> =
        HashMap::from([("OPENAI_API_KEY".to_owned(), "sk-x".to_owned())]);
    println!("apply benchmark, {n} keys");
    let (rss_start, _) = rss_mb().unwrap_or_default();

    let encoded = encoded_snapshot(n);
    println!(
        "  snapshot message: {:.1} MB encoded",
        encoded.len() as f64 / 1e6
    );
    let live_start = live_mb();

    // As the stream client does: decode from one buffer, keys left encoded.
    let buffer = prost::bytes::Bytes::from(encoded.clone());
    let started = Instant::now();
    let decoded = SnapshotWire::decode(buffer).expect("decodes");
    let decode = started.elapsed();
    let started = Instant::now();
    let config = Config::load(decoded, &env).expect("valid");
    let build = started.elapsed();
    let full = decode + build;
    let live_config = live_mb() - live_start;
    let (rss_loaded, peak) = rss_mb().unwrap_or_default();

    // Baseline: the same message decoded into the generated types, its keys
    // put into a std HashMap by digest.
    let started = Instant::now();
    let decoded = Snapshot::decode(encoded.as_slice()).expect("decodes");
    let mut baseline: HashMap<KeyDigest, Key> = HashMap::with_capacity(decoded.keys.len());
    for k in decoded.keys {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&k.key_id, &mut digest).expect("hex");
        baseline.insert(digest, k);
    }
    let baseline_load = started.elapsed();
    let live_baseline = live_mb() - live_start - live_config;
    black_box(&baseline);
    drop(baseline);
    drop(encoded);

    println!(
        "  full load:        {:>9.1} ms (decode {:.1} + build {:.1}); baseline (decode to structs + HashMap insert) {:.1} ms; ratio {:.2}x",
        ms(full),
        ms(decode),
        ms(build),
        ms(baseline_load),
        full.as_secs_f64() / baseline_load.as_secs_f64()
    );
    println!(
        "  memory:           {:>9.1} MB live heap for the config (baseline HashMap of structs: {:.1} MB); \
         RSS {:.1} MB with the message buffer still held ({:.1} MB at start), peak {:.1} MB",
        live_config, live_baseline, rss_loaded, rss_start, peak
    );

    // One-key deltas, each applied to the previous result; the old value is
    // dropped each time, as in the data plane.
    {
        let started = Instant::now();
        // Large enough to make glibc coalesce what was freed (see allocator.rs).
        let probe: Vec<u8> = Vec::with_capacity(64 * 1024);
        black_box(&probe);
        drop(probe);
        println!(
            "  first 64 KiB malloc after the baseline is freed: {:.1} ms",
            ms(started.elapsed())
        );
    }
    let rounds = 2000;
    let mut current = config;
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for r in 0..rounds {
        let revision = current.revision();
        let delta = Delta {
            from_revision: revision,
            to_revision: revision + 1,
            upserts: Some(Snapshot {
                keys: vec![key(n + r)],
                ..Default::default()
            }),
            removals: vec![],
        };
        let started = Instant::now();
        let next = current.apply_delta(delta, &env).expect("applies");
        let took = started.elapsed();
        total += took;
        worst = worst.max(took);
        if took > Duration::from_millis(5) {
            println!("    slow delta #{r}: {:.1} ms", ms(took));
        }
        current = next;
    }
    let mean = total / rounds as u32;
    let mut plain: HashMap<KeyDigest, Key> = HashMap::new();
    let one = key(0);
    let started = Instant::now();
    plain.insert([0; 32], one);
    let plain_insert = started.elapsed();
    println!(
        "  one-key delta:    {:>9.3} ms mean, {:.3} ms worst of {rounds}; vs full rebuild {:.1} ms ({:.0}x faster); one HashMap insert {:.4} ms",
        ms(mean),
        ms(worst),
        ms(build),
        build.as_secs_f64() / mean.as_secs_f64(),
        ms(plain_insert)
    );

    let started = Instant::now();
    let mut out = Vec::new();
    current
        .encode_snapshot(ApiKeys::AsReceived, &mut out)
        .expect("in memory");
    println!(
        "  encode (cache):   {:>9.1} ms, {:.1} MB",
        ms(started.elapsed()),
        out.len() as f64 / 1e6
    );
    black_box(&current);
}
