//! Both stores pass the conformance suite; the embedded one survives a
//! reopen and slow watchers; the etcd one reports etcd's outages as
//! `Unavailable` within its deadline and works again once etcd is back.

use std::time::Duration;

use futures::StreamExt;
use sluice_control_plane::store::embedded::{EmbeddedOptions, EmbeddedStore};
use sluice_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use sluice_control_plane::store::{Store, StoreError, Txn, WatchMessage, WatchStream};
use sluice_tests::etcd::EtcdServer;
use sluice_tests::store_conformance::{self, delete, next_message, next_revision, put};
use tokio::time::Instant;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// What an `Unavailable` may take beyond the request deadline.
const MARGIN: Duration = Duration::from_secs(2);

async fn connect(etcd: &EtcdServer) -> anyhow::Result<EtcdStore> {
    Ok(EtcdStore::connect(EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout: Duration::from_secs(5),
        ..EtcdOptions::default()
    })
    .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_store_conforms() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(dir.path())?;
    store_conformance::run_all(&store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_store_conforms() -> anyhow::Result<()> {
    let etcd = EtcdServer::start().await?;
    let store = connect(&etcd).await?;
    store_conformance::run_all(&store).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_store_survives_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let prefix = "/reopen/";
    let (revision, compacted, range, history) = {
        let store = EmbeddedStore::open(&dir.path().join("nested"))?;
        put(&store, "/reopen/a", b"1").await;
        let compacted = put(&store, "/reopen/b", b"1").await;
        put(&store, "/reopen/a", b"2").await;
        delete(&store, "/reopen/b").await;
        store.compact(compacted).await?;
        let revision = put(&store, "/reopen/c", b"1").await;
        let range = store.range(prefix).await?;
        let history = collect_until(&mut store.watch(prefix, compacted + 1).await?, revision).await;
        (revision, compacted, range, history)
    };

    let store = EmbeddedStore::open(&dir.path().join("nested"))?;
    assert_eq!(store.revision().await?, revision);
    assert_eq!(store.range(prefix).await?, range);
    assert_eq!(store.get("/reopen/b").await?, None);
    let mut watch = store.watch(prefix, compacted + 1).await?;
    assert_eq!(collect_until(&mut watch, revision).await, history);
    let mut old = store.watch(prefix, compacted).await?;
    assert_eq!(
        next_message(&mut old).await,
        WatchMessage::Compacted {
            compact_revision: compacted
        }
    );
    assert!(matches!(
        store.compact(compacted).await,
        Err(StoreError::Compacted {
            compact_revision, ..
        }) if compact_revision == compacted
    ));
    // The watch opened after the reopen also follows new writes.
    let next = put(&store, "/reopen/d", b"1").await;
    assert_eq!(next, revision + 1);
    assert_eq!(next_revision(&mut watch).await, next);
    Ok(())
}

/// A watcher that does not read while more commits happen than the live
/// buffer holds still gets every one, in order, once it reads.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_watch_recovers_from_lag() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(dir.path())?;
    let start = store.revision().await? + 1;
    let mut watch = store.watch("/lag/", start).await?;
    // Read history, then go live, before falling behind.
    let first = put(&store, "/lag/first", b"v").await;
    assert_eq!(next_revision(&mut watch).await, first);
    let mut last = first;
    for i in 0..1_100 {
        last = put(&store, &format!("/lag/{}", i % 7), b"v").await;
    }
    let mut expected = first + 1;
    while expected <= last {
        assert_eq!(next_revision(&mut watch).await, expected);
        expected += 1;
    }
    Ok(())
}

/// History beyond `history_revisions` is compacted on commit; a watcher that
/// far behind learns it from a Compacted message, as from etcd.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_history_is_compacted_automatically() -> anyhow::Result<()> {
    const KEPT: i64 = 50;
    let dir = tempfile::tempdir()?;
    let options = EmbeddedOptions {
        history_revisions: KEPT,
    };
    let store = EmbeddedStore::open_with(dir.path(), options.clone())?;
    let mut behind = store.watch("/auto/", 2).await?;
    let mut last = 0;
    for i in 0..60 {
        last = put(&store, &format!("/auto/{}", i % 3), b"v").await;
    }
    let horizon = last - KEPT;
    assert_eq!(
        next_message(&mut behind).await,
        WatchMessage::Compacted {
            compact_revision: horizon
        }
    );
    let mut kept = store.watch("/auto/", horizon + 1).await?;
    for revision in horizon + 1..=last {
        assert_eq!(next_revision(&mut kept).await, revision);
    }
    // The horizon is persisted like an explicit compaction.
    drop((behind, kept, store));
    let store = EmbeddedStore::open_with(dir.path(), options)?;
    assert!(matches!(
        store.compact(horizon).await,
        Err(StoreError::Compacted { compact_revision, .. }) if compact_revision == horizon
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_store_unavailable_then_recovers() -> anyhow::Result<()> {
    let mut etcd = EtcdServer::start().await?;
    let store = connect(&etcd).await?;
    let before = put(&store, "/outage/kept", b"v").await;
    let mut watch = store.watch("/outage/", before + 1).await?;

    // A frozen etcd: nothing answers, so only the deadline ends each call.
    etcd.pause()?;
    assert_all_unavailable(&store).await;
    etcd.resume()?;
    wait_until_available(&store).await;

    // A dead etcd: calls fail fast, and so does the open watch.
    etcd.stop();
    assert_all_unavailable(&store).await;
    match tokio::time::timeout(REQUEST_TIMEOUT + MARGIN, watch.next()).await {
        Ok(Some(Err(StoreError::Unavailable(_))) | None) => {}
        other => panic!("watch on a stopped etcd: {other:?}"),
    }

    etcd.restart().await?;
    wait_until_available(&store).await;
    assert_eq!(
        store.get("/outage/kept").await?.map(|kv| kv.mod_revision),
        Some(before)
    );
    let after = put(&store, "/outage/after", b"v").await;
    let mut watch = store.watch("/outage/", before + 1).await?;
    assert_eq!(next_revision(&mut watch).await, after);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_connect_gives_up_after_connect_timeout() -> anyhow::Result<()> {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = EtcdStore::connect(EtcdOptions {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout,
        ..EtcdOptions::default()
    })
    .await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(took <= connect_timeout + MARGIN, "took {took:?}");
    Ok(())
}

/// Dropping a watch stream cancels the watch in etcd.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_watch_is_cancelled_when_dropped() -> anyhow::Result<()> {
    const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";
    let etcd = EtcdServer::start().await?;
    let store = connect(&etcd).await?;
    let baseline = etcd.metric(WATCHERS).await?;
    let watch = store.watch("/dropped/", 1).await?;
    wait_for_metric(&etcd, WATCHERS, baseline + 1.0).await?;
    drop(watch);
    wait_for_metric(&etcd, WATCHERS, baseline).await?;
    Ok(())
}

/// Every kind of call returns `Unavailable` within the deadline plus a margin.
async fn assert_all_unavailable(store: &EtcdStore) {
    async fn check<T: std::fmt::Debug>(
        what: &str,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) {
        let started = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT + MARGIN, call).await {
            Ok(Err(StoreError::Unavailable(_))) => {}
            Ok(other) => panic!("{what} while etcd is down: {other:?}"),
            Err(_) => panic!("{what} hung for {:?} while etcd is down", started.elapsed()),
        }
    }
    // Concurrently: each may take the whole deadline.
    tokio::join!(
        check("revision", store.revision()),
        check("get", store.get("/outage/kept")),
        check("range", store.range("/outage/")),
        check("txn", store.txn(Txn::new().put("/lost", b"v".to_vec()))),
        check("watch", async {
            store.watch("/outage/", 1).await.map(|_: WatchStream| ())
        }),
        check("compact", store.compact(1)),
    );
}

/// Polls until the store answers again (the channel reconnects on a call).
async fn wait_until_available(store: &EtcdStore) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.revision().await {
            Ok(_) => return,
            Err(error) if Instant::now() >= deadline => {
                panic!("etcd store did not recover: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn wait_for_metric(etcd: &EtcdServer, name: &str, wanted: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = etcd.metric(name).await?;
        if value == wanted {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{name} is {value}, expected {wanted}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Watch messages up to and including `revision`.
async fn collect_until(watch: &mut WatchStream, revision: i64) -> Vec<WatchMessage> {
    let mut messages = Vec::new();
    loop {
        let message = next_message(watch).await;
        let done = matches!(message, WatchMessage::Events { revision: r, .. } if r >= revision);
        messages.push(message);
        if done {
            return messages;
        }
    }
}

/// A key put with a TTL still expires when the store was closed and opened
/// again in between: the expiry is stored with the key.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_ttl_survives_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = "/reopen-ttl/k";
    {
        let store = EmbeddedStore::open(dir.path())?;
        store
            .put_with_ttl(key, b"v".to_vec(), Duration::from_millis(500))
            .await?;
    }
    // The dropped store's reaper task may still hold the file for the scan
    // the put woke it for: open again once it lets go.
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        match EmbeddedStore::open(dir.path()) {
            Ok(store) => break store,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Poll with a deadline: the TTL has to run out.
    while store.get(key).await?.is_some() {
        assert!(Instant::now() < deadline, "{key} still there after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
