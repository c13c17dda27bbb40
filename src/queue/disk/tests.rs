//! The log against a model (a `VecDeque` of acknowledged records) with
//! crashes, torn writes, failed syncs, a full disk and corruption injected
//! through [`MemFs`], plus the async queue end to end on the real filesystem.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::fs::Fs;
use super::log::{Log, LogError, LogSettings, ReadBatch};
use super::memfs::MemFs;
use crate::budget::ItemBudget;
use crate::model::{Batch, Context, Signal};

const SEGMENT: u64 = 4096;

fn dir() -> PathBuf {
    PathBuf::from("/q")
}

fn open(fs: &MemFs, max_bytes: u64) -> Log {
    Log::open(
        Arc::new(fs.clone()),
        &dir(),
        LogSettings {
            segment_bytes: SEGMENT,
        },
        ItemBudget::new(max_bytes),
    )
    .expect("the log opens")
    .0
}

/// A one-span batch whose bytes name `id`.
fn batch(id: u64) -> Batch {
    Batch::decode(Signal::Traces, crate::model::test_payload::traces(id, 1))
        .unwrap()
        .batch
}

fn context(tenant: u8) -> Context {
    Context::default().with_tenant(format!("t{tenant}"))
}

/// Which records (by id) a read batch holds, in order.
fn ids(read: &ReadBatch, by_bytes: &HashMap<Bytes, u64>) -> Vec<u64> {
    read.batch
        .segments()
        .iter()
        .map(|segment| by_bytes[segment])
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    /// Append records (tenants) and commit them as one group.
    Append(Vec<u8>),
    Read(u64),
    /// Acknowledge the in-flight delivery at this index (modulo).
    Ack(usize),
    Persist,
    /// Power loss; the torn share (of 256) of unsynced bytes that survives.
    Crash(u8),
    FailSyncs(u32),
    Space(Option<u64>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(0u8..3, 1..6).prop_map(Op::Append),
        4 => (1u64..8).prop_map(Op::Read),
        4 => any::<usize>().prop_map(Op::Ack),
        2 => Just(Op::Persist),
        1 => any::<u8>().prop_map(Op::Crash),
        1 => (1u32..4).prop_map(Op::FailSyncs),
        1 => prop_oneof![Just(None), (0u64..20_000).prop_map(Some)].prop_map(Op::Space),
    ]
}

/// Runs `ops`, then drains the log; checks that every acknowledged record
/// is delivered, that nothing unknown appears, and that duplicates come
/// only from deliveries in flight at a crash or appends that were refused.
fn check(ops: Vec<Op>) {
    let fs = MemFs::new();
    let mut log = open(&fs, 64 * SEGMENT);
    let mut by_bytes: HashMap<Bytes, u64> = HashMap::new();
    let mut next_id = 0u64;
    // Acknowledged to the client and not yet delivered-and-acked.
    let mut model: VecDeque<u64> = VecDeque::new();
    // Appends that failed: they may or may not show up.
    let mut refused: HashSet<u64> = HashSet::new();
    let mut in_flight: Vec<(ReadBatch, Vec<u64>)> = Vec::new();
    let mut delivered: Vec<u64> = Vec::new();
    // Records that may come twice: in flight at a crash.
    let mut may_repeat: HashSet<u64> = HashSet::new();

    let take = |ids: &[u64], model: &mut VecDeque<u64>, delivered: &mut Vec<u64>| {
        for id in ids {
            delivered.push(*id);
            model.retain(|m| m != id);
        }
    };

    for op in ops {
        match op {
            Op::Append(tenants) => {
                let mut group = Vec::new();
                let mut ok = true;
                for tenant in tenants {
                    let id = next_id;
                    next_id += 1;
                    let b = batch(id);
                    by_bytes.insert(b.to_bytes(), id);
                    match log.append(&context(tenant), &b, false) {
                        Ok(_) => group.push(id),
                        Err(_) => {
                            refused.insert(id);
                            ok = false;
                        }
                    }
                }
                match log.commit(true) {
                    Ok(()) if ok => model.extend(group),
                    _ => refused.extend(group),
                }
            }
            Op::Read(max) => {
                if let Ok(Some(read)) = log.read(max) {
                    let got = ids(&read, &by_bytes);
                    assert!(!got.is_empty());
                    in_flight.push((read, got));
                }
            }
            Op::Ack(i) => {
                if !in_flight.is_empty() {
                    let (read, got) = in_flight.remove(i % in_flight.len());
                    log.ack(read.first_seq, read.last_seq);
                    take(&got, &mut model, &mut delivered);
                }
            }
            Op::Persist => {
                let _ = log.persist();
            }
            Op::Crash(torn) => {
                for (_, got) in in_flight.drain(..) {
                    may_repeat.extend(got);
                }
                // Everything acknowledged but not yet persisted may come again too.
                may_repeat.extend(delivered.iter().copied());
                drop(log);
                fs.crash(|extra| extra * usize::from(torn) / 256);
                fs.set_space_left(None);
                fs.fail_next_syncs(0);
                log = open(&fs, 64 * SEGMENT);
            }
            Op::FailSyncs(n) => fs.fail_next_syncs(n),
            Op::Space(space) => fs.set_space_left(space),
        }
    }
    // Drain: healthy disk, everything still queued comes out.
    fs.set_space_left(None);
    fs.fail_next_syncs(0);
    for (read, got) in in_flight.drain(..) {
        log.ack(read.first_seq, read.last_seq);
        take(&got, &mut model, &mut delivered);
    }
    if log.is_unhealthy() {
        log.probe_health().expect("healthy again");
    }
    let mut last_seq = None;
    while let Some(read) = log.read(1_000).expect("reads") {
        assert!(last_seq < Some(read.first_seq), "handed out in order, once");
        last_seq = Some(read.last_seq);
        let got = ids(&read, &by_bytes);
        log.ack(read.first_seq, read.last_seq);
        take(&got, &mut model, &mut delivered);
    }
    assert!(
        model.is_empty(),
        "acknowledged records never delivered: {model:?}"
    );
    let mut seen = HashSet::new();
    for id in &delivered {
        assert!(*id < next_id, "unknown record {id}");
        if !seen.insert(*id) {
            assert!(
                may_repeat.contains(id) || refused.contains(id),
                "record {id} delivered twice without a crash in between"
            );
        }
    }
    // After the drain everything is acknowledged: the files shrink to the segment being written.
    log.persist().expect("cursor written");
    assert_eq!(log.pending_records(), 0);
    let segments = fs
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .count();
    assert_eq!(segments, 1, "delivered segments deleted");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_a_queue_through_crashes_and_faults(ops in prop::collection::vec(op(), 1..80)) {
        check(ops);
    }
}

#[test]
fn records_of_one_context_are_merged_up_to_the_item_limit() {
    let fs = MemFs::new();
    let log = open(&fs, 1 << 20);
    for id in 0..5 {
        log.append(&context(1), &batch(id), false).unwrap();
    }
    log.append(&context(2), &batch(5), false).unwrap();
    log.commit(true).unwrap();
    let read = log.read(3).unwrap().unwrap();
    assert_eq!(read.batch.items(), 3);
    assert_eq!((read.first_seq, read.last_seq), (0, 2));
    let read = log.read(10).unwrap().unwrap();
    assert_eq!(read.batch.items(), 2, "stops before the other tenant");
    assert_eq!(read.context.tenant(), Some("t1"));
    let read = log.read(10).unwrap().unwrap();
    assert_eq!(read.context.tenant(), Some("t2"));
    assert!(log.read(10).unwrap().is_none());
}

#[test]
fn uncommitted_records_are_not_read() {
    let fs = MemFs::new();
    let log = open(&fs, 1 << 20);
    log.append(&context(0), &batch(1), false).unwrap();
    assert!(log.read(10).unwrap().is_none());
    log.commit(true).unwrap();
    assert!(log.read(10).unwrap().is_some());
}

fn segments(fs: &MemFs) -> Vec<PathBuf> {
    let mut found: Vec<_> = fs
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

/// Appends `n` records (ids 0..n) in groups of 3 and commits.
fn fill(log: &Log, n: u64) {
    for id in 0..n {
        log.append(&context(0), &batch(id), false).unwrap();
        if id % 3 == 2 {
            log.commit(true).unwrap();
        }
    }
    log.commit(true).unwrap();
}

fn drain(log: &Log) -> Vec<u64> {
    let mut by_bytes = HashMap::new();
    for id in 0..1000 {
        by_bytes.insert(batch(id).to_bytes(), id);
    }
    let mut out = Vec::new();
    while let Some(read) = log.read(1).unwrap() {
        out.extend(ids(&read, &by_bytes));
        log.ack(read.first_seq, read.last_seq);
    }
    out
}

#[test]
fn a_tail_torn_at_any_offset_keeps_every_intact_record() {
    let fs = MemFs::new();
    {
        let log = open(&fs, 1 << 20);
        fill(&log, 40);
    }
    let files = segments(&fs);
    let tail = files.last().unwrap().clone();
    // The segment files are pre-allocated; find where the data ends.
    let data_end = {
        let file = fs.open(&tail).unwrap();
        let mut buf = vec![0; SEGMENT as usize];
        let n = file.read_at(&mut buf, 0).unwrap();
        buf.truncate(n);
        buf.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)
    };
    let before: Vec<PathBuf> = files.clone();
    for cut in (0..data_end).step_by(37) {
        let copy = MemFs::new();
        for path in &before {
            let len = fs.len_of(path);
            let file = fs.open(path).unwrap();
            let mut buf = vec![0; len];
            file.read_at(&mut buf, 0).unwrap();
            let target = copy.create(path, 0).unwrap();
            target.write_at(&buf, 0).unwrap();
            target.sync_data().unwrap();
        }
        // Torn: the bytes after `cut` of the tail segment never reached the disk.
        let file = copy.open(&tail).unwrap();
        let zeros = vec![0; data_end - cut];
        file.write_at(&zeros, cut as u64).unwrap();
        file.sync_data().unwrap();
        let log = open(&copy, 1 << 20);
        let got = drain(&log);
        // Every record that lay wholly before the cut is there, in order, once.
        let expected = got.len() as u64;
        assert_eq!(got, (0..expected).collect::<Vec<_>>(), "cut at {cut}");
        assert!(expected < 40 || cut >= data_end);
        // And the log takes new records after the torn tail.
        log.append(&context(0), &batch(999), false).unwrap();
        log.commit(true).unwrap();
        assert_eq!(drain(&log), vec![999]);
    }
}

#[test]
fn a_corrupt_record_is_skipped_and_counted_and_the_rest_delivered() {
    let fs = MemFs::new();
    {
        let log = open(&fs, 1 << 20);
        fill(&log, 10);
    }
    let tail = segments(&fs).last().unwrap().clone();
    // Flip a byte in the middle of the third record's body.
    let record = super::record::encoded_len(&context(0), &batch(0));
    fs.corrupt(&tail, 2 * record + record / 2);
    let log = open(&fs, 1 << 20);
    let got = drain(&log);
    assert_eq!(got, vec![0, 1, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(
        log.counters
            .corrupt_records
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_failed_sync_refuses_the_group_and_nothing_acknowledged_is_lost() {
    let fs = MemFs::new();
    let log = open(&fs, 1 << 20);
    log.append(&context(0), &batch(0), false).unwrap();
    log.commit(true).unwrap();
    fs.fail_next_syncs(1);
    log.append(&context(0), &batch(1), false).unwrap();
    assert!(log.commit(true).is_err(), "the group is refused");
    log.append(&context(0), &batch(2), false).unwrap();
    log.commit(true).unwrap();
    assert!(!log.is_unhealthy());
    drop(log);
    fs.crash(|_| 0);
    let log = open(&fs, 1 << 20);
    let got = drain(&log);
    assert!(got.contains(&0) && got.contains(&2), "{got:?}");
}

#[test]
fn repeated_sync_failures_make_the_storage_unhealthy_until_a_probe_works() {
    let fs = MemFs::new();
    let log = open(&fs, 1 << 20);
    fs.fail_next_syncs(3);
    for id in 0..3 {
        log.append(&context(0), &batch(id), false).unwrap();
        assert!(log.commit(true).is_err());
    }
    assert!(log.is_unhealthy());
    assert!(matches!(
        log.append(&context(0), &batch(9), false),
        Err(LogError::Unhealthy(_))
    ));
    log.probe_health().unwrap();
    log.append(&context(0), &batch(4), false).unwrap();
    log.commit(true).unwrap();
    assert_eq!(drain(&log), vec![4]);
}

#[test]
fn a_full_queue_refuses_until_delivered_segments_are_deleted() {
    let fs = MemFs::new();
    let log = open(&fs, 3 * SEGMENT);
    let mut written = 0;
    let full = loop {
        match log.append(&context(0), &batch(written), false) {
            Ok(_) => {
                written += 1;
                log.commit(true).unwrap();
            }
            Err(error) => break error,
        }
    };
    assert!(matches!(full, LogError::Full(_)));
    assert!(log.disk_bytes() <= 3 * SEGMENT);
    // Forced (data acknowledged upstream) goes past the budget.
    log.append(&context(0), &batch(written), true).unwrap();
    log.commit(true).unwrap();
    let got = drain(&log);
    assert_eq!(got.len() as u64, written + 1);
    log.persist().unwrap();
    log.append(&context(0), &batch(500), false).unwrap();
    log.commit(true).unwrap();
}

#[test]
fn drop_oldest_frees_a_segment_and_counts_its_items_per_tenant() {
    let fs = MemFs::new();
    let log = open(&fs, 3 * SEGMENT);
    let mut id = 0;
    while log
        .append(&context((id % 2) as u8), &batch(id), false)
        .is_ok()
    {
        log.commit(true).unwrap();
        id += 1;
    }
    let lost = log.drop_oldest().unwrap().unwrap();
    let total: u64 = lost.iter().map(|(_, n)| n).sum();
    assert!(total > 0);
    assert_eq!(lost.len(), 2, "both tenants lost some: {lost:?}");
    log.append(&context(0), &batch(id), false).unwrap();
    log.commit(true).unwrap();
    let got = drain(&log);
    assert_eq!(got.len() as u64, id + 1 - total);
    assert_eq!(got.first().copied(), Some(total), "the oldest went");
}

#[test]
fn an_unreadable_cursor_redelivers_rather_than_loses() {
    let fs = MemFs::new();
    {
        let log = open(&fs, 1 << 20);
        fill(&log, 5);
        let read = log.read(2).unwrap().unwrap();
        log.ack(read.first_seq, read.last_seq);
        log.persist().unwrap();
    }
    fs.corrupt(Path::new("/q/cursor"), 0);
    let (log, recovery) = Log::open(
        Arc::new(fs.clone()),
        &dir(),
        LogSettings {
            segment_bytes: SEGMENT,
        },
        ItemBudget::new(1 << 20),
    )
    .unwrap();
    assert!(recovery.cursor_lost);
    assert_eq!(drain(&log), vec![0, 1, 2, 3, 4]);
}

#[test]
fn acknowledged_records_do_not_come_back_after_a_restart() {
    let fs = MemFs::new();
    {
        let log = open(&fs, 1 << 20);
        fill(&log, 6);
        let first = log.read(2).unwrap().unwrap();
        let second = log.read(2).unwrap().unwrap();
        // Out of order: the second batch first.
        log.ack(second.first_seq, second.last_seq);
        log.persist().unwrap();
        log.ack(first.first_seq, first.last_seq);
        log.persist().unwrap();
    }
    fs.crash(|_| 0);
    let log = open(&fs, 1 << 20);
    assert_eq!(drain(&log), vec![4, 5]);
}

/// The async queue on the real filesystem: a batch's client is answered
/// after the write, a restart delivers what was not acknowledged, and the
/// shutdown leaves undelivered batches on disk.
#[tokio::test]
async fn the_async_queue_survives_a_restart() {
    use crate::budget::Reservation;
    use crate::queue::{Queue, QueuedBatch};
    use tokio_util::sync::CancellationToken;

    let temp = tempfile::tempdir().unwrap();
    let open_queue = |abort: CancellationToken| {
        super::DiskQueue::open(
            Arc::new(super::StdFs),
            temp.path(),
            LogSettings {
                segment_bytes: 64 * 1024,
            },
            ItemBudget::new(1 << 24),
            ("otlp/test", Signal::Traces),
            1_000,
            abort,
        )
        .unwrap()
        .0
    };
    let abort = CancellationToken::new();
    let queue = open_queue(abort.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut writers = tokio::task::JoinSet::new();
    let mut others = tokio::task::JoinSet::new();
    queue.spawn(
        rx,
        super::WriterSettings {
            durability: crate::settings::delivery::Durability::Fsync,
            sync_interval: std::time::Duration::from_secs(1),
            on_full: crate::settings::delivery::OnFull::Backpressure,
        },
        &mut writers,
        &mut others,
    );
    for id in 0..4 {
        let (reply, durable) = tokio::sync::oneshot::channel();
        let mut item = QueuedBatch::new(
            crate::model::Envelope::with_context(context(0), batch(id)),
            Reservation::detached(1),
        );
        item.durable = Some(reply);
        tx.send(item).await.unwrap();
        durable.await.unwrap().unwrap();
    }
    let one = queue.pop().await.unwrap();
    assert_eq!(one.batch().items(), 4, "merged into one delivery");
    drop(one); // not acknowledged: stays on disk
    drop(tx);
    while writers.join_next().await.is_some() {}
    abort.cancel();
    assert!(queue.pop().await.is_none(), "stops at the drain deadline");
    drop(queue);
    while others.join_next().await.is_some() {}

    let queue = open_queue(CancellationToken::new());
    let again = queue.pop().await.unwrap();
    assert_eq!(again.batch().items(), 4, "delivered after the restart");
    assert_eq!(again.context().tenant(), Some("t0"));
    again.ack();
    assert_eq!(queue.len(), 0);
}
