//! Many writers at once, as a node with many receivers has them: every write goes through, on
//! SQLite (one writer at a time, the others wait) as on PostgreSQL. A deferred SQLite
//! transaction that reads and then writes cannot wait for the lock: it failed at once with
//! "database is locked" when another connection committed in between, and receivers went into
//! back-off under load (40 receivers collecting at once on one node).
use std::sync::Arc;

use oauthimap_store::{Backend, LedgerStatus, LedgerWrite, Store};
use oauthimap_testkit::TestDb;
use oauthimap_testkit::fixtures::{application_fields, receiver_fields};

const RECEIVERS: u32 = 24;
const BATCHES: u32 = 6;
const PER_BATCH: u32 = 20;

/// One receiver's collection: fenced ledger batches, as the collector records them.
async fn collect(store: Arc<Store>, receiver: oauthimap_types::ReceiverId) {
    let lease = format!("receiver:{}", receiver.0);
    let fence = store
        .take_lease(&lease, "node-a", 60_000)
        .await
        .unwrap()
        .expect("a free lease");
    for batch in 0..BATCHES {
        let keys: Vec<String> = (0..PER_BATCH)
            .map(|i| format!("r{}-1-{}", receiver.0, batch * PER_BATCH + i))
            .collect();
        let writes: Vec<LedgerWrite<'_>> = keys
            .iter()
            .zip(0..)
            .map(|(key, i)| LedgerWrite {
                receiver,
                uid_validity: 1,
                uid: batch * PER_BATCH + i + 1,
                idempotency_key: key,
                message_id: None,
                content_hash: None,
                size: 100,
                status: LedgerStatus::Delivered,
                reason: None,
                receipt: None,
            })
            .collect();
        let rows = store
            .record_ledger_batch(&writes, Some(&fence))
            .await
            .unwrap_or_else(|e| panic!("receiver {} batch {batch}: {e}", receiver.0));
        assert_eq!(rows.len(), writes.len());
        // The lease is renewed between batches, a write of its own.
        store.take_lease(&lease, "node-a", 60_000).await.unwrap();
    }
}

async fn many_fenced_ledger_batches_at_once(backend: Backend) {
    let t = TestDb::new(backend).await;
    let store = Arc::new(t.store().await);
    let app = store
        .insert_application(&application_fields("A"), None)
        .await
        .unwrap();
    let mut receivers = Vec::new();
    for n in 0..RECEIVERS {
        let r = store
            .insert_receiver(&receiver_fields(&format!("r{n}"), app.id, None), None)
            .await
            .unwrap();
        receivers.push(r.id);
    }
    let tasks: Vec<_> = receivers
        .iter()
        .map(|&r| tokio::spawn(collect(store.clone(), r)))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for &r in &receivers {
        let rows = store
            .ledger_range(r, 1, 1, BATCHES * PER_BATCH)
            .await
            .unwrap();
        assert_eq!(
            rows.len(),
            (BATCHES * PER_BATCH) as usize,
            "receiver {}",
            r.0
        );
    }
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_many_fenced_ledger_batches_at_once() {
    many_fenced_ledger_batches_at_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_many_fenced_ledger_batches_at_once() {
    many_fenced_ledger_batches_at_once(Backend::Postgres).await;
}
