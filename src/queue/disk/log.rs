//! The segmented append-only log behind one disk queue, synchronous (the
//! async [`DiskQueue`](super::DiskQueue) runs it on the blocking pool).
//!
//! # Files
//! `<first sequence, 20 digits>.seg` segments, pre-allocated, records back
//! to back ([`super::record`]); `cursor`, the lowest sequence not yet
//! acknowledged, replaced atomically; `*.quarantined`, segments that could
//! not be read, left for an operator.
//!
//! # Invariants
//! - Sequences grow by one per appended record; a record's segment is the
//!   last one whose first sequence is not above it.
//! - Readers see a record only once it is committed ([`Log::commit`]).
//! - The cursor is made durable before any segment below it is deleted, so
//!   a crash never loses a record that was not acknowledged.
//! - Start-up scans only the last segment: a torn tail is cut off, a record
//!   with a bad checksum but an intact length is skipped and counted, and
//!   the next record is appended to a new segment.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::fs::{Fs, FsFile};
use super::record::{self, Record, HEADER};
use crate::budget::{ItemBudget, Reservation};
use crate::model::{Batch, Context};

/// Bytes read from a segment at once (more when one record is larger).
const READ_CHUNK: u64 = 1 << 20;
/// Bytes of just-committed records kept in memory per queue, so that a
/// reader that keeps up takes them from there instead of reading them back
/// from the page cache (a copy, a zeroed buffer and a second CRC per record).
const HOT_TAIL_BYTES: u64 = 32 << 20;
/// Consecutive failed syncs after which the storage is unhealthy.
const UNHEALTHY_AFTER: u32 = 3;
const CURSOR_FILE: &str = "cursor";
const SEGMENT_SUFFIX: &str = "seg";

/// Why the log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("disk queue in {dir}: cannot {op}: {source}")]
    Io {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("disk queue in {0} is full")]
    Full(PathBuf),
    #[error("disk queue storage in {0} is unhealthy (repeated write or sync failures)")]
    Unhealthy(PathBuf),
}

impl LogError {
    /// A failure of the storage (as opposed to a full queue).
    pub fn is_storage(&self) -> bool {
        !matches!(self, LogError::Full(_))
    }
}

/// What start-up found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Records not yet acknowledged (to deliver), counting gaps.
    pub pending_records: u64,
    /// Segments kept from before.
    pub segments: usize,
    /// Bytes cut off the end of the last segment (a write torn by a crash).
    pub torn_bytes: u64,
    /// Records skipped for a bad checksum.
    pub corrupt_records: u64,
    /// Whether the cursor file was unreadable (everything kept is redelivered).
    pub cursor_lost: bool,
}

/// Items deleted unsent, per tenant.
pub type LostItems = Vec<(Option<Arc<str>>, u64)>;

/// Counters a running log adds to.
#[derive(Debug, Default)]
pub struct LogCounters {
    pub corrupt_records: AtomicU64,
    pub quarantined_segments: AtomicU64,
    pub sync_failures: AtomicU64,
}

/// Sizes of one log.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    /// Bytes of one segment file (a larger record gets a segment of its own size).
    pub segment_bytes: u64,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    file: Arc<dyn FsFile>,
    /// Bytes of committed records (readers stop here). Segments found at
    /// start-up end at their file length; their data ends at a zero length.
    end: u64,
    sealed: bool,
    /// Its bytes in the queue's (and the global) disk budget.
    _space: Reservation,
}

struct State {
    /// Oldest first; the last is the one being written.
    segments: Vec<Segment>,
    cursor: u64,
    persisted_cursor: u64,
    /// Acknowledged ranges above the cursor, `first → last` inclusive.
    acked: BTreeMap<u64, u64>,
    /// Sequence of the next record to append (published at commit).
    committed_seq: u64,
}

impl State {
    /// Marks `first..=last` done and moves the cursor over everything settled below it.
    fn settle(&mut self, first: u64, last: u64) {
        let first = first.max(self.cursor);
        if last < first {
            return;
        }
        let end = self.acked.entry(first).or_insert(last);
        *end = (*end).max(last);
        while let Some((&start, &end)) = self.acked.first_key_value() {
            if start > self.cursor {
                break;
            }
            self.acked.remove(&start);
            self.cursor = self.cursor.max(end + 1);
        }
    }
}

struct Writer {
    file: Arc<dyn FsFile>,
    offset: u64,
    capacity: u64,
    next_seq: u64,
    /// Appended since the last commit.
    uncommitted: u64,
    failures: u32,
    /// A write or sync failed since the last commit: the commit must fail
    /// too, so that every record of the group is refused.
    poisoned: bool,
    buf: Vec<u8>,
    /// First sequence of the segment being written.
    segment: u64,
    /// Records appended since the last commit, for the hot tail.
    appended: Vec<Cached>,
}

/// A committed record still in memory, at its place in the log.
struct Cached {
    segment: u64,
    offset: u64,
    len: u64,
    record: Record,
}

/// The most recently committed records (at most [`HOT_TAIL_BYTES`]), in log order.
#[derive(Default)]
struct HotTail {
    entries: std::collections::VecDeque<Cached>,
    bytes: u64,
}

struct Reader {
    /// First sequence of the segment being read.
    segment: u64,
    offset: u64,
    /// The first sequence the next handed-out range starts at.
    next_seq: u64,
}

/// Records read together: consecutive, one context, one signal.
#[derive(Debug)]
pub struct ReadBatch {
    pub context: Context,
    pub batch: Batch,
    /// Sequences this batch settles when acknowledged, gaps (skipped records) included.
    pub first_seq: u64,
    pub last_seq: u64,
}

/// A segmented log in one directory.
pub struct Log {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    settings: LogSettings,
    budget: ItemBudget,
    state: Mutex<State>,
    writer: Mutex<Writer>,
    reader: Mutex<Reader>,
    hot: Mutex<HotTail>,
    unhealthy: AtomicBool,
    pub counters: LogCounters,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain data behind; carry on with it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{SEGMENT_SUFFIX}"))
}

fn segment_seq(path: &Path) -> Option<u64> {
    if path.extension()? != SEGMENT_SUFFIX {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

fn encode_cursor(cursor: u64) -> [u8; 12] {
    let mut out = [0; 12];
    out[..8].copy_from_slice(&cursor.to_le_bytes());
    let crc = crc32c::crc32c(&out[..8]);
    out[8..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode_cursor(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; 12] = bytes.try_into().ok()?;
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    (crc32c::crc32c(&bytes[..8]) == crc).then(|| {
        let mut b = [0; 8];
        b.copy_from_slice(&bytes[..8]);
        u64::from_le_bytes(b)
    })
}

/// Reads the header at `offset`; `None` past the end of the file.
fn read_header(file: &dyn FsFile, offset: u64) -> io::Result<Option<[u8; HEADER]>> {
    let mut header = [0; HEADER];
    Ok((file.read_at(&mut header, offset)? == HEADER).then_some(header))
}

/// Reads the record at `offset` of a file of `len` bytes.
enum Probe {
    End,
    Record(Box<Record>, u64),
    /// Bad checksum or body, with a length that stays inside the file.
    Corrupt(u64),
    /// A length that does not fit: nothing after `offset` can be trusted.
    Broken,
}

fn probe(file: &dyn FsFile, offset: u64, len: u64) -> io::Result<Probe> {
    let Some(header) = read_header(file, offset)? else {
        return Ok(Probe::End);
    };
    let body_len = u64::from(record::body_len(&header));
    if body_len == 0 {
        return Ok(Probe::End);
    }
    let next = offset + HEADER as u64 + body_len;
    if next > len {
        return Ok(Probe::Broken);
    }
    let mut body = vec![0; body_len as usize];
    if file.read_at(&mut body, offset + HEADER as u64)? != body.len() {
        return Ok(Probe::Broken);
    }
    Ok(match record::decode(&header, Bytes::from(body)) {
        Ok(record) => Probe::Record(Box::new(record), next),
        Err(_) => Probe::Corrupt(next),
    })
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering what a previous run
    /// left. Segments are reserved in `budget` (bytes), past its capacity if
    /// that much is on disk already.
    ///
    /// # Errors
    /// [`LogError::Io`] when the directory cannot be created or read, or a
    /// new segment cannot be made.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        settings: LogSettings,
        budget: ItemBudget,
    ) -> Result<(Log, Recovery), LogError> {
        let io = |op: &'static str| {
            let dir = dir.to_path_buf();
            move |source| LogError::Io { dir, op, source }
        };
        fs.create_dir_all(dir).map_err(io("create the directory"))?;
        let mut recovery = Recovery::default();
        let cursor_path = dir.join(CURSOR_FILE);
        let cursor = match fs.read_small(&cursor_path) {
            Ok(bytes) => decode_cursor(&bytes).unwrap_or_else(|| {
                recovery.cursor_lost = true;
                0
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(_) => {
                recovery.cursor_lost = true;
                0
            }
        };
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for path in fs.list(dir).map_err(io("list the directory"))? {
            if let Some(seq) = segment_seq(&path) {
                found.push((seq, path));
            } else if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs.remove(&path);
            }
        }
        found.sort();
        // Segments wholly below the cursor were delivered; the crash came before their removal.
        let mut keep = Vec::new();
        for (i, (seq, path)) in found.iter().enumerate() {
            let next_first = found.get(i + 1).map(|(s, _)| *s);
            if next_first.is_some_and(|n| n <= cursor) {
                let _ = fs.remove(path);
            } else {
                keep.push((*seq, path.clone()));
            }
        }
        let mut segments = Vec::with_capacity(keep.len() + 1);
        let mut next_seq = cursor;
        let last = keep.len().checked_sub(1);
        for (i, (first_seq, path)) in keep.into_iter().enumerate() {
            let file = match fs.open(&path) {
                Ok(file) => file,
                Err(_) => {
                    Self::quarantine_path(fs.as_ref(), &path);
                    continue;
                }
            };
            let len = file.size().map_err(io("read a segment's length"))?;
            let mut end = len;
            next_seq = next_seq.max(first_seq);
            if Some(i) == last {
                let (valid_end, last_seq, corrupt) = Self::scan_tail(file.as_ref(), len, cursor)
                    .map_err(io("read the last segment"))?;
                recovery.corrupt_records += corrupt;
                if valid_end < len {
                    let torn = Self::zero_from(file.as_ref(), valid_end, len)
                        .map_err(io("cut a torn record"))?;
                    recovery.torn_bytes += torn;
                }
                if let Some(seq) = last_seq {
                    next_seq = next_seq.max(seq + 1);
                }
                end = valid_end;
                if valid_end == 0 {
                    // Nothing in it: do not pile up empty segments across restarts.
                    drop(file);
                    let _ = fs.remove(&path);
                    continue;
                }
            }
            let space = budget.force_reserve(len);
            segments.push(Segment {
                first_seq,
                path,
                file,
                end,
                sealed: true,
                _space: space,
            });
        }
        recovery.segments = segments.len();
        recovery.pending_records = next_seq.saturating_sub(cursor);
        let reader_start = segments.first().map_or(next_seq, |s| s.first_seq);
        let log = Log {
            fs,
            dir: dir.to_path_buf(),
            settings,
            budget,
            state: Mutex::new(State {
                segments,
                cursor,
                persisted_cursor: cursor,
                acked: BTreeMap::new(),
                committed_seq: next_seq,
            }),
            writer: Mutex::new(Writer {
                file: Arc::new(NoFile),
                offset: 0,
                capacity: 0,
                next_seq,
                uncommitted: 0,
                failures: 0,
                poisoned: false,
                buf: Vec::new(),
                segment: next_seq,
                appended: Vec::new(),
            }),
            hot: Mutex::new(HotTail::default()),
            reader: Mutex::new(Reader {
                segment: reader_start,
                offset: 0,
                next_seq: cursor,
            }),
            unhealthy: AtomicBool::new(false),
            counters: LogCounters::default(),
        };
        {
            let mut writer = lock(&log.writer);
            log.start_segment(&mut writer, 0, true)?;
        }
        Ok((log, recovery))
    }

    /// Walks the last segment: where its valid data ends, its last
    /// sequence, and how many corrupt records (with sound lengths) it skipped.
    fn scan_tail(file: &dyn FsFile, len: u64, cursor: u64) -> io::Result<(u64, Option<u64>, u64)> {
        let mut offset = 0;
        let mut last_seq = None;
        let mut corrupt = 0;
        loop {
            match probe(file, offset, len)? {
                Probe::End | Probe::Broken => return Ok((offset, last_seq, corrupt)),
                Probe::Record(record, next) => {
                    last_seq = Some(record.sequence.max(cursor.saturating_sub(1)));
                    offset = next;
                }
                Probe::Corrupt(next) => {
                    // Skip it only if what follows reads as a record: otherwise it is a torn tail.
                    match probe(file, next, len)? {
                        Probe::Record(..) | Probe::Corrupt(_) => {
                            corrupt += 1;
                            offset = next;
                        }
                        Probe::End | Probe::Broken => return Ok((offset, last_seq, corrupt)),
                    }
                }
            }
        }
    }

    /// Zeroes `from..len` (a torn tail) so that no later scan reads it as data.
    fn zero_from(file: &dyn FsFile, from: u64, len: u64) -> io::Result<u64> {
        let zeros = vec![0; 64 * 1024];
        let mut at = from;
        while at < len {
            let n = (len - at).min(zeros.len() as u64);
            file.write_at(&zeros[..n as usize], at)?;
            at += n;
        }
        file.sync_data()?;
        Ok(len - from)
    }

    fn quarantine_path(fs: &dyn Fs, path: &Path) {
        let mut to = path.as_os_str().to_owned();
        to.push(".quarantined");
        if let Err(error) = fs.rename(path, Path::new(&to)) {
            tracing::error!(path = %path.display(), %error, "Cannot quarantine an unreadable queue segment.");
        } else {
            tracing::error!(path = %path.display(), "Unreadable queue segment quarantined; its records are lost.");
        }
    }

    /// Starts a new segment for the writer at its next sequence, big enough for `need` bytes.
    /// `force`: past the byte budget (for data acknowledged upstream already).
    fn start_segment(&self, writer: &mut Writer, need: u64, force: bool) -> Result<(), LogError> {
        let size = self.settings.segment_bytes.max(need);
        let space = match self.budget.try_reserve(size) {
            Some(space) => space,
            None if force => self.budget.force_reserve(size),
            None => return Err(LogError::Full(self.dir.clone())),
        };
        let path = segment_path(&self.dir, writer.next_seq);
        let io = |op| self.io_error(op);
        let file = self
            .fs
            .create(&path, size)
            .map_err(io("create a segment"))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(io("sync the directory"))?;
        writer.file = file.clone();
        writer.offset = 0;
        writer.capacity = size;
        writer.segment = writer.next_seq;
        let mut state = lock(&self.state);
        if state
            .segments
            .last()
            .is_some_and(|last| last.first_seq == writer.next_seq)
        {
            // The segment being replaced holds no record (same first sequence,
            // same file, made anew above): it goes.
            state.segments.pop();
        }
        if let Some(last) = state.segments.last_mut() {
            last.sealed = true;
        }
        state.segments.push(Segment {
            first_seq: writer.next_seq,
            path,
            file,
            end: 0,
            sealed: false,
            _space: space,
        });
        Ok(())
    }

    /// Turns an I/O error of operation `op` into a [`LogError`] naming this log's directory.
    fn io_error(&self, op: &'static str) -> impl Fn(io::Error) -> LogError + '_ {
        move |source| LogError::Io {
            dir: self.dir.clone(),
            op,
            source,
        }
    }

    /// Whether repeated failures made the storage unusable.
    pub fn is_unhealthy(&self) -> bool {
        self.unhealthy.load(Ordering::Acquire)
    }

    /// Bytes of segments on disk (allocated).
    pub fn disk_bytes(&self) -> u64 {
        self.budget.used()
    }

    /// Records appended and not yet acknowledged.
    pub fn pending_records(&self) -> u64 {
        let state = lock(&self.state);
        state.committed_seq.saturating_sub(state.cursor)
    }

    /// Appends one record (not yet visible to readers: [`Log::commit`]).
    /// `force`: past the byte budget (data acknowledged upstream already).
    ///
    /// # Errors
    /// [`LogError::Full`] at the byte budget, [`LogError::Unhealthy`] after
    /// repeated storage failures, [`LogError::Io`] when the write failed.
    pub fn append(&self, context: &Context, batch: &Batch, force: bool) -> Result<u64, LogError> {
        if self.is_unhealthy() {
            return Err(LogError::Unhealthy(self.dir.clone()));
        }
        let mut writer = lock(&self.writer);
        let need = record::encoded_len(context, batch) as u64;
        if need > u64::from(u32::MAX) {
            return Err(LogError::Io {
                dir: self.dir.clone(),
                op: "write a record",
                source: io::Error::new(io::ErrorKind::InvalidInput, "batch over 4 GiB"),
            });
        }
        if writer.offset + need > writer.capacity {
            // Seal the full segment: what it holds is made durable first.
            if writer.uncommitted > 0 {
                self.commit_locked(&mut writer, true)?;
            }
            self.start_segment(&mut writer, need, force)?;
        }
        let seq = writer.next_seq;
        let Writer { buf, .. } = &mut *writer;
        buf.clear();
        record::encode_head(buf, seq, context, batch);
        let (file, offset) = (writer.file.clone(), writer.offset);
        // The head, then the batch from its own buffers (no copy into one record buffer).
        let mut parts = Vec::with_capacity(1 + batch.segments().len());
        parts.push(&writer.buf[..]);
        parts.extend(batch.segments().iter().map(|s| &s[..]));
        if let Err(source) = file.write_all_vectored_at(&parts, offset) {
            self.storage_failed(&mut writer);
            return Err(LogError::Io {
                dir: self.dir.clone(),
                op: "write a record",
                source,
            });
        }
        let cached = Cached {
            segment: writer.segment,
            offset: writer.offset,
            len: need,
            record: Record {
                sequence: seq,
                context: context.clone(),
                batch: batch.clone(),
            },
        };
        writer.appended.push(cached);
        writer.offset += need;
        writer.next_seq += 1;
        writer.uncommitted += 1;
        Ok(seq)
    }

    /// Makes what was appended since the last commit visible to readers,
    /// after `fdatasync` when `sync`.
    ///
    /// # Errors
    /// [`LogError::Io`] when the sync failed: those records must be refused
    /// to their senders. The segment is sealed before them and the next
    /// record goes to a new segment; after repeated failures the storage is
    /// marked unhealthy.
    pub fn commit(&self, sync: bool) -> Result<(), LogError> {
        let mut writer = lock(&self.writer);
        let result = self.commit_locked(&mut writer, sync);
        // The group is refused as a whole; the next one starts clean.
        writer.poisoned = false;
        result
    }

    fn commit_locked(&self, writer: &mut Writer, sync: bool) -> Result<(), LogError> {
        if sync {
            if let Err(source) = writer.file.sync_data() {
                self.storage_failed(writer);
                return Err(LogError::Io {
                    dir: self.dir.clone(),
                    op: "sync a segment",
                    source,
                });
            }
        }
        writer.uncommitted = 0;
        {
            let mut state = lock(&self.state);
            state.committed_seq = writer.next_seq;
            if let Some(last) = state.segments.last_mut() {
                last.end = writer.offset;
            }
        }
        if !writer.appended.is_empty() {
            let mut hot = lock(&self.hot);
            for cached in writer.appended.drain(..) {
                hot.bytes += cached.len;
                hot.entries.push_back(cached);
            }
            while hot.bytes > HOT_TAIL_BYTES {
                match hot.entries.pop_front() {
                    Some(old) => hot.bytes -= old.len,
                    None => break,
                }
            }
        }
        if std::mem::take(&mut writer.poisoned) {
            return Err(LogError::Io {
                dir: self.dir.clone(),
                op: "write or sync part of this group",
                source: io::Error::other("an earlier write or sync of the group failed"),
            });
        }
        writer.failures = 0;
        Ok(())
    }

    /// Makes the segment being written durable (the `interval` policy's tick).
    ///
    /// # Errors
    /// [`LogError::Io`] when the sync failed.
    pub fn sync(&self) -> Result<(), LogError> {
        let writer = lock(&self.writer);
        writer.file.sync_data().map_err(|source| {
            self.counters.sync_failures.fetch_add(1, Ordering::Relaxed);
            LogError::Io {
                dir: self.dir.clone(),
                op: "sync a segment",
                source,
            }
        })
    }

    /// A write or sync failed: what was appended since the last commit is
    /// abandoned (the segment ends before it) and writing moves to a new
    /// segment; repeated failures mark the storage unhealthy.
    fn storage_failed(&self, writer: &mut Writer) {
        self.counters.sync_failures.fetch_add(1, Ordering::Relaxed);
        writer.failures += 1;
        writer.uncommitted = 0;
        writer.poisoned = true;
        writer.appended.clear();
        {
            // The abandoned records were refused: nobody waits for them, and
            // the cursor must not wait for them either.
            let mut state = lock(&self.state);
            let from = state.committed_seq;
            if writer.next_seq > from {
                state.settle(from, writer.next_seq - 1);
                state.committed_seq = writer.next_seq;
            }
        }
        if writer.failures >= UNHEALTHY_AFTER {
            self.unhealthy.store(true, Ordering::Release);
        }
        // The abandoned records' sequences stay unused: readers skip the gap.
        if self.start_segment(writer, 0, true).is_err() {
            self.unhealthy.store(true, Ordering::Release);
        }
    }

    /// Tries the storage again after it was marked unhealthy: a new segment
    /// made and synced brings it back.
    ///
    /// # Errors
    /// Why the storage is still unusable.
    pub fn probe_health(&self) -> Result<(), LogError> {
        let mut writer = lock(&self.writer);
        self.start_segment(&mut writer, 0, true)?;
        writer.file.sync_data().map_err(|source| LogError::Io {
            dir: self.dir.clone(),
            op: "sync a segment",
            source,
        })?;
        writer.failures = 0;
        self.unhealthy.store(false, Ordering::Release);
        Ok(())
    }

    /// The next committed records for one delivery: consecutive records of
    /// one context and signal, at most `max_items` items (at least one record).
    /// `None` when every committed record was handed out.
    ///
    /// # Errors
    /// [`LogError::Io`] when a segment cannot be read (it is quarantined and
    /// the next call goes on after it).
    pub fn read(&self, max_items: u64) -> Result<Option<ReadBatch>, LogError> {
        let mut reader = lock(&self.reader);
        let mut out: Vec<Record> = Vec::new();
        let mut items = 0;
        loop {
            let (file, end, sealed, cursor, next_segment) = {
                let state = lock(&self.state);
                let Some(index) = state
                    .segments
                    .iter()
                    .position(|s| s.first_seq >= reader.segment)
                else {
                    break;
                };
                let segment = &state.segments[index];
                if segment.first_seq != reader.segment {
                    // Ours was dropped (drop_oldest) or quarantined: go on with the next.
                    reader.segment = segment.first_seq;
                    reader.offset = 0;
                }
                (
                    segment.file.clone(),
                    segment.end,
                    segment.sealed,
                    state.cursor,
                    state.segments.get(index + 1).map(|s| s.first_seq),
                )
            };
            // Moves to the next segment. Sequences below it that were never
            // handed out are missing (abandoned or lost records): with nothing
            // read yet they are settled at once, else the range handed out next covers them.
            let next_segment = |reader: &mut Reader, nothing_read: bool| match next_segment {
                Some(first) => {
                    reader.segment = first;
                    reader.offset = 0;
                    if nothing_read && reader.next_seq < first {
                        lock(&self.state).settle(reader.next_seq, first - 1);
                        reader.next_seq = first;
                    }
                    true
                }
                None => false,
            };
            match self.take_hot(&mut reader, cursor, &mut out, &mut items, max_items) {
                Hot::Full => break,
                Hot::Taken => continue,
                Hot::Missed => {}
            }
            if reader.offset + HEADER as u64 > end {
                if sealed && next_segment(&mut reader, out.is_empty()) {
                    continue;
                }
                break;
            }
            let want = (end - reader.offset).min(READ_CHUNK);
            let chunk = match self.read_chunk(file.as_ref(), reader.offset, want) {
                Ok(chunk) => chunk,
                Err(error) => {
                    self.quarantine_segment(reader.segment);
                    next_segment(&mut reader, out.is_empty());
                    return Err(error);
                }
            };
            let mut pos = 0usize;
            let mut segment_done = false;
            let mut full = false;
            while pos + HEADER <= chunk.len() {
                let mut header = [0; HEADER];
                header.copy_from_slice(&chunk[pos..pos + HEADER]);
                let body_len = record::body_len(&header) as usize;
                if body_len == 0 {
                    segment_done = true;
                    break;
                }
                let record_end = reader.offset + (pos + HEADER + body_len) as u64;
                if record_end > end {
                    // A length past the data: the rest of the segment cannot be trusted.
                    self.counters
                        .corrupt_records
                        .fetch_add(1, Ordering::Relaxed);
                    segment_done = true;
                    break;
                }
                if pos + HEADER + body_len > chunk.len() {
                    if pos == 0 {
                        // One record larger than a chunk: read it whole.
                        let whole = self.read_chunk(
                            file.as_ref(),
                            reader.offset,
                            (HEADER + body_len) as u64,
                        )?;
                        return self.finish_large(&mut reader, whole, cursor, out);
                    }
                    break;
                }
                let body = chunk.slice(pos + HEADER..pos + HEADER + body_len);
                match record::decode(&header, body) {
                    Ok(record) if record.sequence < cursor => {}
                    Ok(record) => {
                        if let Some(first) = out.first() {
                            if first.context != record.context
                                || first.batch.signal() != record.batch.signal()
                                || items + record.batch.items() > max_items
                            {
                                full = true;
                                break;
                            }
                        }
                        items += record.batch.items();
                        out.push(record);
                    }
                    Err(_) => {
                        self.counters
                            .corrupt_records
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                pos += HEADER + body_len;
            }
            reader.offset += pos as u64;
            if full || items >= max_items {
                break;
            }
            if segment_done || (reader.offset + HEADER as u64 > end && sealed) {
                if next_segment(&mut reader, out.is_empty()) {
                    continue;
                }
                // The segment being written: wait for more.
                break;
            }
            if pos == 0 {
                break;
            }
        }
        Ok(Self::batch_of(&mut reader, out))
    }

    /// Takes the records at the reader's position from the hot tail, as far
    /// as they are contiguous there and fit the delivery.
    fn take_hot(
        &self,
        reader: &mut Reader,
        cursor: u64,
        out: &mut Vec<Record>,
        items: &mut u64,
        max_items: u64,
    ) -> Hot {
        let mut hot = lock(&self.hot);
        // What lies before the reader was read from disk (or skipped) already.
        while let Some(front) = hot.entries.front() {
            if (front.segment, front.offset) >= (reader.segment, reader.offset) {
                break;
            }
            let len = front.len;
            hot.entries.pop_front();
            hot.bytes -= len;
        }
        let mut taken = false;
        while let Some(front) = hot.entries.front() {
            if front.segment != reader.segment || front.offset != reader.offset {
                break;
            }
            let record = &front.record;
            if let Some(first) = out.first() {
                if first.context != record.context
                    || first.batch.signal() != record.batch.signal()
                    || *items + record.batch.items() > max_items
                {
                    return Hot::Full;
                }
            }
            let Some(cached) = hot.entries.pop_front() else {
                break;
            };
            hot.bytes -= cached.len;
            reader.offset += cached.len;
            taken = true;
            if cached.record.sequence >= cursor {
                *items += cached.record.batch.items();
                out.push(cached.record);
            }
            if *items >= max_items {
                return Hot::Full;
            }
        }
        if taken {
            Hot::Taken
        } else {
            Hot::Missed
        }
    }

    fn finish_large(
        &self,
        reader: &mut Reader,
        whole: Bytes,
        cursor: u64,
        mut out: Vec<Record>,
    ) -> Result<Option<ReadBatch>, LogError> {
        let mut header = [0; HEADER];
        header.copy_from_slice(&whole[..HEADER]);
        let len = whole.len() as u64;
        match record::decode(&header, whole.slice(HEADER..)) {
            Ok(record) if record.sequence < cursor => {}
            Ok(record) => out.push(record),
            Err(_) => {
                self.counters
                    .corrupt_records
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        reader.offset += len;
        Ok(Self::batch_of(reader, out))
    }

    fn batch_of(reader: &mut Reader, out: Vec<Record>) -> Option<ReadBatch> {
        let last = out.last()?;
        let mut last_seq = last.sequence;
        let first_seq = reader.next_seq.min(out[0].sequence);
        if reader.offset == 0 && reader.segment > last_seq + 1 {
            // At the start of a segment: everything below it not in `out` is missing.
            last_seq = reader.segment - 1;
        }
        reader.next_seq = last_seq + 1;
        let context = out[0].context.clone();
        let signal = out[0].batch.signal();
        let items = out.iter().map(|r| r.batch.items()).sum();
        let segments = out
            .into_iter()
            .flat_map(|r| r.batch.segments().to_vec())
            .collect();
        Some(ReadBatch {
            context,
            batch: Batch::from_validated_segments(signal, segments, items),
            first_seq,
            last_seq,
        })
    }

    fn read_chunk(&self, file: &dyn FsFile, offset: u64, len: u64) -> Result<Bytes, LogError> {
        let mut buf = vec![0; len as usize];
        let n = file
            .read_at(&mut buf, offset)
            .map_err(|source| LogError::Io {
                dir: self.dir.clone(),
                op: "read a segment",
                source,
            })?;
        buf.truncate(n);
        Ok(Bytes::from(buf))
    }

    fn quarantine_segment(&self, first_seq: u64) {
        let mut state = lock(&self.state);
        let last = state.segments.len().saturating_sub(1);
        if let Some(index) = state.segments.iter().position(|s| s.first_seq == first_seq) {
            if index == last {
                return; // the writer's segment stays
            }
            let segment = state.segments.remove(index);
            drop(state);
            self.counters
                .quarantined_segments
                .fetch_add(1, Ordering::Relaxed);
            Self::quarantine_path(self.fs.as_ref(), &segment.path);
        }
    }

    /// Acknowledges `first..=last` (delivered or given up). Out of order is
    /// fine: the cursor moves once everything below is acknowledged.
    pub fn ack(&self, first: u64, last: u64) {
        let mut state = lock(&self.state);
        if last < state.cursor {
            return;
        }
        state.settle(first, last);
    }

    /// Whether the cursor moved since it was last made durable.
    pub fn cursor_dirty(&self) -> bool {
        let state = lock(&self.state);
        state.cursor != state.persisted_cursor
    }

    /// Makes the cursor durable, then deletes the segments wholly below it.
    ///
    /// # Errors
    /// [`LogError::Io`] when the cursor cannot be written (no segment is deleted then).
    pub fn persist(&self) -> Result<(), LogError> {
        let cursor = lock(&self.state).cursor;
        let io = |op| self.io_error(op);
        if cursor != lock(&self.state).persisted_cursor {
            self.fs
                .write_atomic(&self.dir.join(CURSOR_FILE), &encode_cursor(cursor))
                .map_err(io("write the cursor"))?;
            lock(&self.state).persisted_cursor = cursor;
        }
        let done: Vec<Segment> = {
            let mut state = lock(&self.state);
            let persisted = state.persisted_cursor;
            let mut count = 0;
            while count + 1 < state.segments.len()
                && state.segments[count + 1].first_seq <= persisted
            {
                count += 1;
            }
            state.segments.drain(..count).collect()
        };
        if !done.is_empty() {
            for segment in &done {
                self.fs
                    .remove(&segment.path)
                    .map_err(io("delete a segment"))?;
            }
            self.fs
                .sync_dir(&self.dir)
                .map_err(io("sync the directory"))?;
        }
        Ok(())
    }

    /// Deletes the oldest segment that is not being written, for room
    /// (`on_full = "drop_oldest"`): the cursor moves past it first. Returns
    /// the items it held that were not yet acknowledged, per tenant; `None`
    /// when there is no such segment.
    ///
    /// # Errors
    /// [`LogError::Io`] when the cursor cannot be written.
    pub fn drop_oldest(&self) -> Result<Option<LostItems>, LogError> {
        let (segment, cursor, next_first) = {
            let state = lock(&self.state);
            if state.segments.len() < 2 {
                return Ok(None);
            }
            let s = &state.segments[0];
            (
                (s.file.clone(), s.end),
                state.cursor,
                state.segments[1].first_seq,
            )
        };
        // Count what is lost, per tenant.
        let mut lost: LostItems = Vec::new();
        let (file, end) = segment;
        let mut offset = 0;
        while let Ok(Probe::Record(record, next)) = probe(file.as_ref(), offset, end) {
            if record.sequence >= cursor {
                let tenant = record.context.tenant.clone();
                match lost.iter_mut().find(|(t, _)| *t == tenant) {
                    Some((_, n)) => *n += record.batch.items(),
                    None => lost.push((tenant, record.batch.items())),
                }
            }
            offset = next;
        }
        {
            let mut state = lock(&self.state);
            if state.cursor < next_first {
                state.cursor = next_first;
            }
            let cursor = state.cursor;
            state.acked.retain(|_, last| *last >= cursor);
        }
        self.persist()?;
        Ok(Some(lost))
    }
}

/// What the hot tail gave a read.
enum Hot {
    /// The delivery is full (items or another context next).
    Full,
    /// Some records; go on from the new position.
    Taken,
    /// Nothing at the reader's position.
    Missed,
}

/// The writer's file before its first segment.
#[derive(Debug)]
struct NoFile;

impl FsFile for NoFile {
    fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::Error::other("no segment"))
    }
    fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
        Ok(0)
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(0)
    }
}
