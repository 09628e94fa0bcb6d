//! What every [`Store`] must do, as etcd does it. `tests/store.rs` runs
//! [`run_all`] on the embedded store and on a real etcd.
//!
//! Each check writes under its own prefix, so they can share one store; only
//! [`initial_revision`] needs a fresh one and [`compaction`] is best run last
//! (watches from before it become compacted). A failed check panics with what
//! it expected.

use std::time::Duration;

use futures::StreamExt;
use sluice_control_plane::store::{
    Event, EventKind, KeyValue, MAX_TXN_OPS, Store, StoreError, Txn, TxnOutcome, WatchMessage,
    WatchStream,
};

/// Deadline for one watch message; generous, since only a broken store waits it out.
const WATCH_DEADLINE: Duration = Duration::from_secs(10);

/// Every check, in an order that works on a fresh store.
pub async fn run_all(store: &dyn Store) {
    initial_revision(store).await;
    put_get_range(store).await;
    revisions_advance_per_write(store).await;
    key_bookkeeping(store).await;
    compare_on_mod_revision(store).await;
    deleting_absent_keys_writes_nothing(store).await;
    txn_size_limits(store).await;
    duplicate_keys_are_refused(store).await;
    watch_replays_history_then_follows(store).await;
    watch_from_future_revision(store).await;
    watch_sees_deletes(store).await;
    watch_prefix_isolation(store).await;
    keys_put_with_ttl_expire_by_themselves(store).await;
    range_over_many_pages(store).await;
    compaction(store).await;
}

/// An empty store is at revision 1 and the first write commits at 2, as in etcd.
pub async fn initial_revision(store: &dyn Store) {
    assert_eq!(store.revision().await.expect("revision"), 1);
    let everything = store.range("").await.expect("range");
    assert!(
        everything.kvs.is_empty(),
        "fresh store holds {everything:?}"
    );
    assert_eq!(everything.revision, 1);
    let first = store
        .txn(Txn::new().put("/conformance/initial", b"v".to_vec()))
        .await
        .expect("first write");
    assert_eq!(
        first,
        TxnOutcome {
            succeeded: true,
            revision: 2
        }
    );
    assert_eq!(store.revision().await.expect("revision"), 2);
}

/// Keys come back sorted, with their values, and only under the prefix asked for.
pub async fn put_get_range(store: &dyn Store) {
    let prefix = "/conformance/range/";
    for name in ["b", "a", "c/nested", "a0"] {
        put(store, &format!("{prefix}{name}"), name.as_bytes()).await;
    }
    // Neighbours that share bytes with the prefix but are not under it.
    for key in [
        "/conformance/range",
        "/conformance/range-sibling",
        "/conformance/range0",
        "/conformance/rangeX/a",
    ] {
        put(store, key, b"outside").await;
    }
    let range = store.range(prefix).await.expect("range");
    let keys: Vec<&str> = range.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/conformance/range/a",
            "/conformance/range/a0",
            "/conformance/range/b",
            "/conformance/range/c/nested"
        ]
    );
    for kv in &range.kvs {
        assert_eq!(kv.value, &kv.key.as_bytes()[prefix.len()..]);
    }
    assert_eq!(range.revision, store.revision().await.expect("revision"));

    let b = store
        .get("/conformance/range/b")
        .await
        .expect("get")
        .expect("b exists");
    assert_eq!(b.value, b"b");
    assert_eq!(store.get("/conformance/range/zz").await.expect("get"), None);
    let none = store.range("/conformance/range/zz").await.expect("range");
    assert!(none.kvs.is_empty());
}

/// Every write takes the next revision; all ops of one txn share it.
pub async fn revisions_advance_per_write(store: &dyn Store) {
    let prefix = "/conformance/revisions/";
    let mut last = store.revision().await.expect("revision");
    for i in 0..5 {
        let revision = put(store, &format!("{prefix}{i}"), b"v").await;
        assert_eq!(revision, last + 1, "write {i} after revision {last}");
        last = revision;
    }
    let outcome = store
        .txn(
            Txn::new()
                .put(format!("{prefix}x"), b"x".to_vec())
                .put(format!("{prefix}y"), b"y".to_vec())
                .delete(format!("{prefix}0")),
        )
        .await
        .expect("txn");
    assert_eq!(
        outcome,
        TxnOutcome {
            succeeded: true,
            revision: last + 1
        }
    );
    for key in ["x", "y"] {
        let kv = get(store, &format!("{prefix}{key}")).await;
        assert_eq!(kv.mod_revision, outcome.revision, "{key}");
    }
    assert_eq!(store.get(&format!("{prefix}0")).await.expect("get"), None);
    assert_eq!(store.revision().await.expect("revision"), outcome.revision);
}

/// create_revision, mod_revision and version behave as etcd's: version
/// counts writes since creation and starts over after a delete.
pub async fn key_bookkeeping(store: &dyn Store) {
    let key = "/conformance/bookkeeping/key";
    let created = put(store, key, b"1").await;
    assert_eq!(
        get(store, key).await,
        KeyValue {
            key: key.to_owned(),
            value: b"1".to_vec(),
            create_revision: created,
            mod_revision: created,
            version: 1
        }
    );
    let updated = put(store, key, b"2").await;
    assert_eq!(
        get(store, key).await,
        KeyValue {
            key: key.to_owned(),
            value: b"2".to_vec(),
            create_revision: created,
            mod_revision: updated,
            version: 2
        }
    );
    let deleted = delete(store, key).await;
    assert_eq!(deleted, updated + 1);
    assert_eq!(store.get(key).await.expect("get"), None);
    let recreated = put(store, key, b"3").await;
    assert_eq!(
        get(store, key).await,
        KeyValue {
            key: key.to_owned(),
            value: b"3".to_vec(),
            create_revision: recreated,
            mod_revision: recreated,
            version: 1
        }
    );
}

/// Compare-and-swap on mod_revision: 0 means absent, a stale revision fails,
/// and a failed txn writes nothing at all and reports the current revision.
pub async fn compare_on_mod_revision(store: &dyn Store) {
    let key = "/conformance/cas/key";
    let other = "/conformance/cas/other";

    let create = |value: &str| {
        Txn::new()
            .when_mod_revision(key, 0)
            .put(key, value.as_bytes().to_vec())
    };
    let created = store.txn(create("a")).await.expect("txn");
    assert!(created.succeeded, "create if absent");
    let again = store.txn(create("b")).await.expect("txn");
    assert_eq!(
        again,
        TxnOutcome {
            succeeded: false,
            revision: created.revision
        },
        "create if absent, when present"
    );
    assert_eq!(get(store, key).await.value, b"a");

    let swap = |seen: i64, value: &str| {
        Txn::new()
            .when_mod_revision(key, seen)
            .put(key, value.as_bytes().to_vec())
    };
    let swapped = store.txn(swap(created.revision, "c")).await.expect("txn");
    assert_eq!(
        swapped,
        TxnOutcome {
            succeeded: true,
            revision: created.revision + 1
        }
    );
    let stale = store.txn(swap(created.revision, "d")).await.expect("txn");
    assert_eq!(
        stale,
        TxnOutcome {
            succeeded: false,
            revision: swapped.revision
        }
    );
    assert_eq!(get(store, key).await.value, b"c");

    // One failing compare among several: nothing is written, anywhere.
    let mixed = Txn::new()
        .when_mod_revision(key, swapped.revision)
        .when_mod_revision(other, 5)
        .put(key, b"e".to_vec())
        .put(other, b"x".to_vec());
    let failed = store.txn(mixed).await.expect("txn");
    assert_eq!(
        failed,
        TxnOutcome {
            succeeded: false,
            revision: swapped.revision
        }
    );
    assert_eq!(get(store, key).await.value, b"c");
    assert_eq!(store.get(other).await.expect("get"), None);
    assert_eq!(store.revision().await.expect("revision"), swapped.revision);

    let both = Txn::new()
        .when_mod_revision(key, swapped.revision)
        .when_mod_revision(other, 0)
        .put(key, b"e".to_vec())
        .put(other, b"x".to_vec());
    let done = store.txn(both).await.expect("txn");
    assert_eq!(
        done,
        TxnOutcome {
            succeeded: true,
            revision: swapped.revision + 1
        }
    );
    assert_eq!(get(store, other).await.mod_revision, done.revision);
}

/// A txn that changes nothing (deletes of absent keys, no ops) takes no
/// revision, as in etcd.
pub async fn deleting_absent_keys_writes_nothing(store: &dyn Store) {
    let prefix = "/conformance/absent/";
    let before = store.revision().await.expect("revision");
    let unchanged = TxnOutcome {
        succeeded: true,
        revision: before,
    };
    let one = Txn::new().delete(format!("{prefix}missing"));
    assert_eq!(store.txn(one).await.expect("txn"), unchanged);
    let two = Txn::new()
        .delete(format!("{prefix}missing"))
        .delete(format!("{prefix}missing-too"));
    assert_eq!(store.txn(two).await.expect("txn"), unchanged);
    assert_eq!(store.txn(Txn::new()).await.expect("txn"), unchanged);
    assert_eq!(store.revision().await.expect("revision"), before);

    let written = put(store, &format!("{prefix}present"), b"v").await;
    assert_eq!(written, before + 1);
    let deleted = delete(store, &format!("{prefix}present")).await;
    assert_eq!(deleted, before + 2);
}

/// At most MAX_TXN_OPS compares and MAX_TXN_OPS ops; more is TooLarge and
/// writes nothing.
pub async fn txn_size_limits(store: &dyn Store) {
    let prefix = "/conformance/limits/";
    let largest = (0..MAX_TXN_OPS).fold(Txn::new(), |txn, i| {
        txn.when_mod_revision(format!("{prefix}ok/{i}"), 0)
            .put(format!("{prefix}ok/{i}"), b"v".to_vec())
    });
    assert!(store.txn(largest).await.expect("128 ops").succeeded);
    let before = store.revision().await.expect("revision");

    let too_many_ops = (0..=MAX_TXN_OPS).fold(Txn::new(), |txn, i| {
        txn.put(format!("{prefix}ops/{i}"), b"v".to_vec())
    });
    let refused = store.txn(too_many_ops).await;
    assert!(
        matches!(refused, Err(StoreError::TooLarge(_))),
        "129 ops: {refused:?}"
    );

    let too_many_compares = (0..=MAX_TXN_OPS)
        .fold(Txn::new(), |txn, i| {
            txn.when_mod_revision(format!("{prefix}compares/{i}"), 0)
        })
        .put(format!("{prefix}compares/written"), b"v".to_vec());
    let refused = store.txn(too_many_compares).await;
    assert!(
        matches!(refused, Err(StoreError::TooLarge(_))),
        "129 compares: {refused:?}"
    );

    assert!(
        store
            .range(&format!("{prefix}ops/"))
            .await
            .expect("range")
            .kvs
            .is_empty()
    );
    assert_eq!(
        store
            .get(&format!("{prefix}compares/written"))
            .await
            .expect("get"),
        None
    );
    assert_eq!(store.revision().await.expect("revision"), before);
}

/// Writing one key twice in a txn is refused (etcd: "duplicate key given in
/// txn request"); deleting one twice is not.
pub async fn duplicate_keys_are_refused(store: &dyn Store) {
    let key = "/conformance/duplicates/key";
    let before = store.revision().await.expect("revision");
    let twice = Txn::new().put(key, b"1".to_vec()).put(key, b"2".to_vec());
    let refused = store.txn(twice).await;
    assert!(
        matches!(refused, Err(StoreError::Other(_))),
        "put twice: {refused:?}"
    );
    let put_and_delete = Txn::new().put(key, b"1".to_vec()).delete(key);
    let refused = store.txn(put_and_delete).await;
    assert!(
        matches!(refused, Err(StoreError::Other(_))),
        "put and delete: {refused:?}"
    );
    assert_eq!(store.revision().await.expect("revision"), before);
    assert_eq!(store.get(key).await.expect("get"), None);

    put(store, key, b"v").await;
    let delete_twice = Txn::new().delete(key).delete(key);
    let outcome = store.txn(delete_twice).await.expect("delete twice");
    assert_eq!(outcome.revision, before + 2);
    assert_eq!(store.get(key).await.expect("get"), None);
}

/// A watch from an old revision replays every change since, one message per
/// revision with the txn's events in op order, then delivers new ones live.
pub async fn watch_replays_history_then_follows(store: &dyn Store) {
    let prefix = "/conformance/watch/replay/";
    let a = format!("{prefix}a");
    let b = format!("{prefix}b");
    let c = format!("{prefix}c");
    let start = store.revision().await.expect("revision") + 1;
    let first = put(store, &a, b"1").await;
    let pair = store
        .txn(Txn::new().put(&c, b"c".to_vec()).put(&b, b"b".to_vec()))
        .await
        .expect("txn")
        .revision;
    let second = put(store, &a, b"2").await;

    let mut watch = store.watch(prefix, start).await.expect("watch");
    expect_events(&mut watch, first, &[put_event(&a, b"1", first, first, 1)]).await;
    expect_events(
        &mut watch,
        pair,
        &[
            put_event(&c, b"c", pair, pair, 1),
            put_event(&b, b"b", pair, pair, 1),
        ],
    )
    .await;
    expect_events(&mut watch, second, &[put_event(&a, b"2", first, second, 2)]).await;

    let live = put(store, &b, b"live").await;
    expect_events(&mut watch, live, &[put_event(&b, b"live", pair, live, 2)]).await;
    let gone = delete(store, &c).await;
    expect_events(&mut watch, gone, &[delete_event(&c, gone)]).await;

    // Starting in the middle of history starts exactly there.
    let mut middle = store.watch(prefix, pair).await.expect("watch");
    assert_eq!(next_revision(&mut middle).await, pair);
    assert_eq!(next_revision(&mut middle).await, second);
}

/// A watch from a revision not reached yet waits for it and skips what comes before.
pub async fn watch_from_future_revision(store: &dyn Store) {
    let prefix = "/conformance/watch/future/";
    let current = store.revision().await.expect("revision");
    let mut watch = store.watch(prefix, current + 2).await.expect("watch");
    let skipped = put(store, &format!("{prefix}early"), b"v").await;
    assert_eq!(skipped, current + 1);
    let wanted = put(store, &format!("{prefix}wanted"), b"v").await;
    assert_eq!(next_revision(&mut watch).await, wanted);
}

/// Deletes reach watchers as etcd reports them: the key, no value, the
/// delete's revision, create_revision and version 0.
pub async fn watch_sees_deletes(store: &dyn Store) {
    let prefix = "/conformance/watch/deletes/";
    let doomed = format!("{prefix}doomed");
    let kept = format!("{prefix}kept");
    put(store, &doomed, b"v").await;
    put(store, &kept, b"v").await;
    let start = store.revision().await.expect("revision") + 1;
    let mut watch = store.watch(prefix, start).await.expect("watch");

    let deleted = delete(store, &doomed).await;
    expect_events(&mut watch, deleted, &[delete_event(&doomed, deleted)]).await;

    let mixed = store
        .txn(
            Txn::new()
                .delete(&kept)
                .put(&doomed, b"again".to_vec())
                .delete(format!("{prefix}never-existed")),
        )
        .await
        .expect("txn")
        .revision;
    expect_events(
        &mut watch,
        mixed,
        &[
            delete_event(&kept, mixed),
            put_event(&doomed, b"again", mixed, mixed, 1),
        ],
    )
    .await;
}

/// A key put with a TTL is deleted by the store itself once the TTL has run
/// out, and watches see the delete; a key written again before that (plainly,
/// or with a longer TTL) is not. The short-lived key is put last, so by the
/// time its delete arrives every earlier expiry has run out too.
pub async fn keys_put_with_ttl_expire_by_themselves(store: &dyn Store) {
    let prefix = "/conformance/ttl/";
    let short = Duration::from_millis(1500);
    let start = store.revision().await.expect("revision") + 1;
    let mut watch = store.watch(prefix, start).await.expect("watch");

    let replaced = format!("{prefix}replaced");
    let extended = format!("{prefix}extended");
    let doomed = format!("{prefix}doomed");
    store
        .put_with_ttl(&replaced, b"leased".to_vec(), short)
        .await
        .expect("put with ttl");
    put(store, &replaced, b"plain").await;
    store
        .put_with_ttl(&extended, b"short".to_vec(), short)
        .await
        .expect("put with ttl");
    store
        .put_with_ttl(&extended, b"long".to_vec(), Duration::from_secs(3600))
        .await
        .expect("put with ttl");
    let put_at = store
        .put_with_ttl(&doomed, b"v".to_vec(), short)
        .await
        .expect("put with ttl");
    assert_eq!(get(store, &doomed).await.mod_revision, put_at);

    // etcd rounds the TTL up to 2 s and revokes within about a second more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let deleted_at = 'wait: loop {
        let message = tokio::time::timeout_at(deadline, watch.next())
            .await
            .unwrap_or_else(|_| panic!("{doomed} not deleted by its TTL within 15 s"))
            .expect("watch open")
            .expect("watch message");
        let WatchMessage::Events { revision, events } = message else {
            panic!("unexpected {message:?}");
        };
        for event in events {
            if event.kind == EventKind::Delete {
                // Only the key nobody wrote again expires, and its delete
                // looks like any other.
                assert_eq!(event, delete_event(&doomed, revision));
                break 'wait revision;
            }
        }
    };
    assert!(store.get(&doomed).await.expect("get").is_none());
    assert!(deleted_at > put_at);
    assert_eq!(get(store, &replaced).await.value, b"plain");
    assert_eq!(get(store, &extended).await.value, b"long");
}

/// A watch sees its prefix only, also when one txn writes inside and outside it.
pub async fn watch_prefix_isolation(store: &dyn Store) {
    let base = "/conformance/isolation/";
    let prefix = format!("{base}a/");
    let start = store.revision().await.expect("revision") + 1;
    let mut watch = store.watch(&prefix, start).await.expect("watch");
    put(store, &format!("{base}ab"), b"v").await;
    put(store, &format!("{base}a"), b"v").await;
    put(store, &format!("{base}b/x"), b"v").await;
    let inside = format!("{prefix}1");
    let revision = store
        .txn(
            Txn::new()
                .put(format!("{base}b/y"), b"v".to_vec())
                .put(&inside, b"in".to_vec())
                .put(format!("{base}a0"), b"v".to_vec()),
        )
        .await
        .expect("txn")
        .revision;
    expect_events(
        &mut watch,
        revision,
        &[put_event(&inside, b"in", revision, revision, 1)],
    )
    .await;
}

/// A range larger than two etcd pages returns everything, in order.
pub async fn range_over_many_pages(store: &dyn Store) {
    const KEYS: usize = 2 * sluice_control_plane::store::etcd::RANGE_PAGE as usize + 500;
    const BATCH: usize = 125;
    let prefix = "/conformance/pages/";
    // Batches in reverse so that key order is not write order.
    let mut last = 0;
    for batch in (0..KEYS / BATCH).rev() {
        let txn = (batch * BATCH..(batch + 1) * BATCH).fold(Txn::new(), |txn, i| {
            txn.put(format!("{prefix}{i:05}"), i.to_string().into_bytes())
        });
        last = store.txn(txn).await.expect("batch").revision;
    }
    put(store, "/conformance/pages0", b"outside").await;
    let range = store.range(prefix).await.expect("range");
    assert_eq!(range.kvs.len(), KEYS);
    for (i, kv) in range.kvs.iter().enumerate() {
        assert_eq!(kv.key, format!("{prefix}{i:05}"));
        assert_eq!(kv.value, i.to_string().into_bytes());
    }
    assert_eq!(
        range.revision,
        last + 1,
        "all pages are read at the revision of the first"
    );
}

/// After compact(r), a watch from r or earlier gets exactly one Compacted and
/// ends; from r + 1 it replays. Compacting again, or past the current
/// revision, is an error. The keys themselves stay.
pub async fn compaction(store: &dyn Store) {
    let prefix = "/conformance/compaction/";
    let first = put(store, &format!("{prefix}a"), b"a").await;
    let second = put(store, &format!("{prefix}b"), b"b").await;
    let third = put(store, &format!("{prefix}c"), b"c").await;
    store.compact(second).await.expect("compact");

    for from in [second, first, 1] {
        let mut watch = store.watch(prefix, from).await.expect("watch");
        assert_eq!(
            next_message(&mut watch).await,
            WatchMessage::Compacted {
                compact_revision: second
            },
            "watch from {from}"
        );
        expect_end(&mut watch).await;
    }
    let mut after = store.watch(prefix, second + 1).await.expect("watch");
    assert_eq!(next_revision(&mut after).await, third);

    for requested in [second, first] {
        match store.compact(requested).await {
            Err(StoreError::Compacted {
                requested: reported,
                compact_revision,
            }) => {
                assert_eq!(reported, requested);
                assert_eq!(compact_revision, second);
            }
            other => panic!("compact({requested}) again: {other:?}"),
        }
    }
    let future = store.revision().await.expect("revision") + 100;
    let refused = store.compact(future).await;
    assert!(
        matches!(refused, Err(StoreError::Other(_))),
        "compact a future revision: {refused:?}"
    );

    let range = store.range(prefix).await.expect("range");
    assert_eq!(range.kvs.len(), 3, "compaction keeps the keys");
    assert_eq!(get(store, &format!("{prefix}a")).await.mod_revision, first);
}

/// Puts one key, unconditionally; returns the revision it committed at.
pub async fn put(store: &dyn Store, key: &str, value: &[u8]) -> i64 {
    let outcome = store
        .txn(Txn::new().put(key, value.to_vec()))
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    assert!(outcome.succeeded, "put {key}");
    outcome.revision
}

/// Deletes one key; returns the txn's revision.
pub async fn delete(store: &dyn Store, key: &str) -> i64 {
    store
        .txn(Txn::new().delete(key))
        .await
        .unwrap_or_else(|e| panic!("delete {key}: {e}"))
        .revision
}

async fn get(store: &dyn Store, key: &str) -> KeyValue {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .unwrap_or_else(|| panic!("{key} is missing"))
}

/// The next watch message, within [`WATCH_DEADLINE`].
pub async fn next_message(watch: &mut WatchStream) -> WatchMessage {
    match tokio::time::timeout(WATCH_DEADLINE, watch.next()).await {
        Ok(Some(Ok(message))) => message,
        Ok(Some(Err(error))) => panic!("watch failed: {error}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch message within {WATCH_DEADLINE:?}"),
    }
}

/// The revision of the next watch message, which must carry events.
pub async fn next_revision(watch: &mut WatchStream) -> i64 {
    match next_message(watch).await {
        WatchMessage::Events { revision, .. } => revision,
        other => panic!("expected events, got {other:?}"),
    }
}

async fn expect_events(watch: &mut WatchStream, revision: i64, events: &[Event]) {
    assert_eq!(
        next_message(watch).await,
        WatchMessage::Events {
            revision,
            events: events.to_vec()
        }
    );
}

/// The watch ends (after a Compacted message) within [`WATCH_DEADLINE`].
pub async fn expect_end(watch: &mut WatchStream) {
    match tokio::time::timeout(WATCH_DEADLINE, watch.next()).await {
        Ok(None) => {}
        Ok(Some(item)) => panic!("expected the watch to end, got {item:?}"),
        Err(_) => panic!("watch did not end within {WATCH_DEADLINE:?}"),
    }
}

fn put_event(
    key: &str,
    value: &[u8],
    create_revision: i64,
    mod_revision: i64,
    version: i64,
) -> Event {
    Event {
        kind: EventKind::Put,
        kv: KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision,
            mod_revision,
            version,
        },
    }
}

fn delete_event(key: &str, revision: i64) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: key.to_owned(),
            value: Vec::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
        },
    }
}
