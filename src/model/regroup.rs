//! Taking items (spans, log records, metrics) out of received batches and
//! assembling them into new export requests, without decoding them.
//!
//! [`split_items`] cuts a batch into [`ItemRef`]s: the encoded item as a
//! zero-copy [`Bytes`] slice of the received buffer, plus a shared
//! [`Envelope`] holding the *headers* it was sent under, i.e. the encoded
//! fields of its `Resource*` and `Scope*` records other than their children
//! (`resource` + `schema_url` + unknown fields; `scope` + `schema_url` + …).
//! [`split_by_trace`] does the same for spans and pairs each with its trace id,
//! for per-trace buffers (tail sampling, trace-id ownership).
//!
//! [`BatchBuilder`] puts items from any number of source batches back into
//! one request, grouping those whose resource header bytes are equal under
//! one `Resource*` record, and within it those whose scope header bytes are
//! equal under one `Scope*` record. Building copies each item once (the
//! request is one contiguous buffer) and never re-encodes it.
//!
//! # Memory
//! An `ItemRef` keeps its whole source buffer alive (it is a slice of it). A
//! stage that holds a few items of a request for a long time should copy
//! them out ([`ItemRef::compact`]).
//!
//! ```text
//! ResourceSpans { resource: R, scope_spans: [ScopeSpans { scope: S, spans: [a, b] }], schema_url: U }
//!   ──split──► ItemRef { envelope: { resource: R+U, scope: S }, item: a }, ItemRef { …same envelope…, item: b }
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;

use super::batch::Batch;
use super::schema;
use super::view::{Cursor, ResourceView, ScopeView, SpanView, TraceId};
use super::wire::{self, Value};
use super::Signal;

/// Encoded header fields of a `Resource*` or `Scope*` record, with their hash.
#[derive(Debug, Clone, Default)]
pub struct Header {
    bytes: Bytes,
    hash: u64,
}

impl Header {
    fn new(bytes: Bytes) -> Self {
        let hash = hash_bytes(&bytes);
        Header { bytes, hash }
    }

    /// The encoded fields (`resource`/`scope`, `schema_url`, unknown fields).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The header's hash (not the std `Hash`: computed once, for grouping).
    pub fn hash_value(&self) -> u64 {
        self.hash
    }

    /// The encoded `Resource` or `InstrumentationScope` message (field 1).
    fn message(&self) -> &[u8] {
        let mut reader = Cursor::new(&self.bytes);
        while let Some(field) = reader.next_field() {
            if let (1, Value::Len(bytes)) = (field.number, field.value) {
                return bytes;
            }
        }
        &[]
    }

    fn same_bytes_as(&self, other: &Header) -> bool {
        let a = self.bytes.as_ref();
        let b = other.bytes.as_ref();
        std::ptr::eq(a, b) || (self.hash == other.hash && a == b)
    }
}

impl PartialEq for Header {
    fn eq(&self, other: &Self) -> bool {
        self.same_bytes_as(other)
    }
}

impl Eq for Header {}

/// The resource and scope headers an item was sent under, shared by every
/// item of one `Scope*` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub resource: Header,
    pub scope: Header,
}

impl Envelope {
    /// A read view of the encoded span `item` sent under this envelope.
    pub fn span<'a>(&'a self, item: &'a [u8]) -> SpanView<'a> {
        SpanView::with_context(
            item,
            ResourceView::new(self.resource.message()),
            ScopeView::new(self.scope.message()),
        )
    }
}

/// One encoded item (a `Span`, `LogRecord` or `Metric`) and its envelope.
#[derive(Debug, Clone)]
pub struct ItemRef {
    envelope: Arc<Envelope>,
    item: Bytes,
}

/// A span taken out of a trace batch.
pub type SpanRef = ItemRef;

impl ItemRef {
    /// An item sent under `envelope` (a stage that stored items its own way
    /// hands them back with this).
    pub fn new(envelope: Arc<Envelope>, item: Bytes) -> Self {
        ItemRef { envelope, item }
    }

    /// The encoded item, without its field key and length.
    pub fn item(&self) -> &Bytes {
        &self.item
    }

    pub fn envelope(&self) -> &Arc<Envelope> {
        &self.envelope
    }

    /// A read view of the item as a span, with its resource and scope.
    pub fn span(&self) -> SpanView<'_> {
        self.envelope.span(&self.item)
    }

    /// Copies the item out of its source buffer so that buffer can be freed
    /// (the envelope, small and shared, is kept).
    pub fn compact(&mut self) {
        self.item = Bytes::copy_from_slice(&self.item);
    }

    /// The item with `fields` (complete encoded fields of its message)
    /// appended: protobuf readers take fields in any order and add repeated
    /// ones up, so this adds an attribute without re-encoding the item.
    pub fn append_fields(&mut self, fields: &[u8]) {
        let mut item = Vec::with_capacity(self.item.len() + fields.len());
        item.extend_from_slice(&self.item);
        item.extend_from_slice(fields);
        self.item = Bytes::from(item);
    }
}

/// Iterator over the items of a batch, from [`split_items`].
#[derive(Debug)]
pub struct Items<'a> {
    segments: std::slice::Iter<'a, Bytes>,
    segment: &'a Bytes,
    top: Cursor<'a>,
    resource_record: Cursor<'a>,
    scope_record: Cursor<'a>,
    resource_header: Header,
    envelope: Option<Arc<Envelope>>,
}

/// Every item of `batch`, in order, each with its envelope.
pub fn split_items(batch: &Batch) -> Items<'_> {
    Items::over(batch.segments())
}

impl<'a> Items<'a> {
    fn over(segments: &'a [Bytes]) -> Self {
        static EMPTY: Bytes = Bytes::from_static(&[]);
        Items {
            segments: segments.iter(),
            segment: &EMPTY,
            top: Cursor::new(&[]),
            resource_record: Cursor::new(&[]),
            scope_record: Cursor::new(&[]),
            resource_header: Header::default(),
            envelope: None,
        }
    }
}

impl Iterator for Items<'_> {
    type Item = ItemRef;

    fn next(&mut self) -> Option<ItemRef> {
        loop {
            if let Some(envelope) = &self.envelope {
                if let Some(item) = next_len(&mut self.scope_record, 2) {
                    return Some(ItemRef {
                        envelope: Arc::clone(envelope),
                        item: self.segment.slice_ref(item),
                    });
                }
            }
            if let Some(scope_record) = next_len(&mut self.resource_record, 2) {
                self.envelope = Some(Arc::new(Envelope {
                    resource: self.resource_header.clone(),
                    scope: header_of(self.segment, scope_record),
                }));
                self.scope_record = Cursor::new(scope_record);
                continue;
            }
            if let Some(resource_record) = next_len(&mut self.top, 1) {
                self.resource_header = header_of(self.segment, resource_record);
                self.resource_record = Cursor::new(resource_record);
                continue;
            }
            self.segment = self.segments.next()?;
            self.top = Cursor::new(self.segment);
        }
    }
}

/// The spans of a trace batch, each with its trace id (all-zero if it has
/// none, which a decoded batch never contains).
pub fn split_by_trace(batch: &Batch) -> impl Iterator<Item = (TraceId, SpanRef)> + '_ {
    let items = if batch.signal() == Signal::Traces {
        split_items(batch)
    } else {
        Items::over(&[])
    };
    items.map(|span| {
        (
            SpanView::new(&span.item).trace_id().unwrap_or_default(),
            span,
        )
    })
}

/// The spans of a trace batch grouped by trace, traces in order of first
/// appearance, spans in batch order.
pub fn group_by_trace(batch: &Batch) -> Vec<(TraceId, Vec<SpanRef>)> {
    let mut index: HashMap<TraceId, usize, BuildIdHasher> = HashMap::default();
    let mut groups: Vec<(TraceId, Vec<SpanRef>)> = Vec::new();
    for (trace_id, span) in split_by_trace(batch) {
        let at = *index.entry(trace_id).or_insert_with(|| {
            groups.push((trace_id, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(span);
    }
    groups
}

/// Splits a batch by a key of each item (e.g. `tenant.id`), keeping each
/// key's items in order; keys in order of first appearance.
pub fn partition<K: Eq + std::hash::Hash + Clone>(
    batch: &Batch,
    mut key: impl FnMut(&ItemRef) -> K,
) -> Vec<(K, Batch)> {
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut builders: Vec<(K, BatchBuilder)> = Vec::new();
    for item in split_items(batch) {
        let k = key(&item);
        let at = match index.get(&k) {
            Some(&at) => at,
            None => {
                index.insert(k.clone(), builders.len());
                builders.push((k, BatchBuilder::new(batch.signal())));
                builders.len() - 1
            }
        };
        builders[at].1.push(item);
    }
    builders.into_iter().map(|(k, b)| (k, b.build())).collect()
}

/// Splits a batch by a key of each top-level record's resource (e.g. its
/// `tenant.id`), keeping whole records zero-copy; keys in order of first
/// appearance. A batch whose records all have one key comes back as it is,
/// so the common case (one key per request) costs one read of each resource.
pub fn partition_resources<K: Eq + Clone>(
    batch: Batch,
    mut key: impl FnMut(ResourceView<'_>) -> K,
) -> Vec<(K, Batch)> {
    let signal = batch.signal();
    let record_schema: &'static schema::Schema = match signal {
        Signal::Traces => &schema::RESOURCE_SPANS,
        Signal::Metrics => &schema::RESOURCE_METRICS,
        Signal::Logs => &schema::RESOURCE_LOGS,
    };
    // (key, framed record) for every record.
    let mut records: Vec<(K, Bytes, &[u8])> = Vec::new();
    for segment in batch.segments() {
        let mut reader = Cursor::new(segment);
        while let Some(field) = reader.next_field() {
            if let (1, Value::Len(record)) = (field.number, field.value) {
                let resource = first_message(record, 1).unwrap_or_default();
                let k = key(ResourceView::new(resource));
                records.push((k, segment.slice(field.start..field.end), record));
            }
        }
    }
    let single = match records.split_first() {
        None => true,
        Some(((first, _, _), rest)) => rest.iter().all(|(k, _, _)| k == first),
    };
    if single {
        let Some((k, _, _)) = records.into_iter().next() else {
            return Vec::new();
        };
        return vec![(k, batch)];
    }
    let mut groups: Vec<(K, Vec<Bytes>, u64)> = Vec::new();
    for (k, framed, record) in records {
        let items = count_items(record_schema, record);
        match groups.iter_mut().find(|(g, _, _)| *g == k) {
            Some((_, segments, n)) => {
                segments.push(framed);
                *n += items;
            }
            None => groups.push((k, vec![framed], items)),
        }
    }
    groups
        .into_iter()
        .map(|(k, segments, items)| (k, Batch::from_validated_segments(signal, segments, items)))
        .collect()
}

/// Items in an encoded message of shape `schema` that was validated already:
/// a shallow walk down the path to the items (scopes, metrics and their
/// data), counting them without looking inside them or at anything beside
/// them (attributes, resources), so several times cheaper than [`schema::walk`].
fn count_items(schema: &'static schema::Schema, buf: &[u8]) -> u64 {
    let mut items = 0;
    let mut reader = Cursor::new(buf);
    while let Some(field) = reader.next_field() {
        let Value::Len(bytes) = field.value else {
            continue;
        };
        let Some(schema::Kind::Message(inner)) = schema.field_def(field.number).map(|d| d.kind)
        else {
            continue;
        };
        if inner.item {
            items += 1;
        } else if leads_to_items(inner) {
            items += count_items(inner, bytes);
        }
    }
    items
}

/// Whether items sit below messages of shape `schema` (not beside them).
fn leads_to_items(schema: &'static schema::Schema) -> bool {
    [
        &schema::SCOPE_SPANS,
        &schema::SCOPE_LOGS,
        &schema::SCOPE_METRICS,
        &schema::METRIC,
        &schema::GAUGE,
        &schema::SUM,
        &schema::HISTOGRAM,
        &schema::EXP_HISTOGRAM,
        &schema::SUMMARY,
    ]
    .into_iter()
    .any(|s| std::ptr::eq(s, schema))
}

/// The first field `number` of `buf` that is a length-delimited message.
fn first_message(buf: &[u8], number: u32) -> Option<&[u8]> {
    let mut reader = Cursor::new(buf);
    while let Some(field) = reader.next_field() {
        if let (true, Value::Len(bytes)) = (field.number == number, field.value) {
            return Some(bytes);
        }
    }
    None
}

/// Assembles items from any number of batches into one export request.
#[derive(Debug)]
pub struct BatchBuilder {
    signal: Signal,
    resources: Vec<ResourceGroup>,
    /// Resource header hash → indices into `resources`.
    by_hash: HashMap<u64, Vec<usize>, BuildIdHasher>,
    /// Envelopes already placed: pointer → (resource, scope) group. The
    /// envelopes are kept alive in `envelopes`, so a pointer is never reused.
    placed: HashMap<usize, (usize, usize), BuildIdHasher>,
    envelopes: Vec<Arc<Envelope>>,
    last: Option<(usize, usize, usize)>,
    items: u64,
}

#[derive(Debug)]
struct ResourceGroup {
    header: Header,
    scopes: Vec<ScopeGroup>,
}

#[derive(Debug)]
struct ScopeGroup {
    header: Header,
    items: Vec<Bytes>,
    /// Size of the encoded items with their field keys and lengths.
    items_len: usize,
}

impl BatchBuilder {
    pub fn new(signal: Signal) -> Self {
        BatchBuilder {
            signal,
            resources: Vec::new(),
            by_hash: HashMap::default(),
            placed: HashMap::default(),
            envelopes: Vec::new(),
            last: None,
            items: 0,
        }
    }

    /// Items (spans, data points, log records) pushed so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Adds one item under its resource and scope. The item must come from a
    /// batch of the builder's signal.
    pub fn push(&mut self, item: ItemRef) {
        let key = Arc::as_ptr(&item.envelope) as usize;
        let (r, s) = match self.last {
            Some((ptr, r, s)) if ptr == key => (r, s),
            _ => {
                let (r, s) = match self.placed.get(&key) {
                    Some(&at) => at,
                    None => {
                        let at = self.place(&item.envelope);
                        self.placed.insert(key, at);
                        self.envelopes.push(Arc::clone(&item.envelope));
                        at
                    }
                };
                self.last = Some((key, r, s));
                (r, s)
            }
        };
        self.items += match self.signal {
            Signal::Traces | Signal::Logs => 1,
            Signal::Metrics => schema::walk(&schema::METRIC, &item.item).map_or(0, |c| c.items),
        };
        let scope = &mut self.resources[r].scopes[s];
        scope.items_len += wire::len_field_size(2, item.item.len());
        scope.items.push(item.item);
    }

    /// The (resource, scope) group of an envelope not seen before.
    fn place(&mut self, envelope: &Envelope) -> (usize, usize) {
        let candidates = self.by_hash.entry(envelope.resource.hash).or_default();
        let r = match candidates
            .iter()
            .copied()
            .find(|&r| self.resources[r].header.same_bytes_as(&envelope.resource))
        {
            Some(r) => r,
            None => {
                candidates.push(self.resources.len());
                self.resources.push(ResourceGroup {
                    header: envelope.resource.clone(),
                    scopes: Vec::new(),
                });
                self.resources.len() - 1
            }
        };
        let scopes = &mut self.resources[r].scopes;
        let s = match scopes
            .iter()
            .position(|s| s.header.same_bytes_as(&envelope.scope))
        {
            Some(s) => s,
            None => {
                scopes.push(ScopeGroup {
                    header: envelope.scope.clone(),
                    items: Vec::new(),
                    items_len: 0,
                });
                scopes.len() - 1
            }
        };
        (r, s)
    }

    /// The request: one `Resource*` record per distinct resource header (in
    /// order of first push), one `Scope*` record per distinct scope header
    /// within it, items in push order.
    pub fn build(self) -> Batch {
        let bodies: Vec<usize> = self
            .resources
            .iter()
            .map(|r| {
                r.header.bytes.len()
                    + r.scopes
                        .iter()
                        .map(|s| wire::len_field_size(2, s.header.bytes.len() + s.items_len))
                        .sum::<usize>()
            })
            .collect();
        let total = bodies.iter().map(|&b| wire::len_field_size(1, b)).sum();
        let mut out = Vec::with_capacity(total);
        for (resource, body) in self.resources.iter().zip(bodies) {
            wire::put_len_header(&mut out, 1, body);
            out.extend_from_slice(&resource.header.bytes);
            for scope in &resource.scopes {
                wire::put_len_header(&mut out, 2, scope.header.bytes.len() + scope.items_len);
                out.extend_from_slice(&scope.header.bytes);
                for item in &scope.items {
                    wire::put_len_field(&mut out, 2, item);
                }
            }
        }
        debug_assert_eq!(out.len(), total);
        Batch::from_validated(self.signal, Bytes::from(out), self.items)
    }
}

impl Extend<ItemRef> for BatchBuilder {
    fn extend<I: IntoIterator<Item = ItemRef>>(&mut self, iter: I) {
        for item in iter {
            self.push(item);
        }
    }
}

/// The header fields of a `Resource*`/`Scope*` record (all but field 2, the
/// children): a slice of `segment` when they are contiguous, else a copy.
fn header_of(segment: &Bytes, record: &[u8]) -> Header {
    let mut run: Option<(usize, usize)> = None;
    let mut copy: Option<Vec<u8>> = None;
    let mut reader = Cursor::new(record);
    while let Some(field) = reader.next_field() {
        if field.number == 2 {
            // the children come in one run: skip it in a tight loop
            reader.skip_run((2 << 3) | 2);
            continue;
        }
        let raw = &record[field.start..field.end];
        match (&mut copy, &mut run) {
            (Some(out), _) => out.extend_from_slice(raw),
            (None, Some((_, end))) if *end == field.start => *end = field.end,
            (None, Some((start, end))) => {
                let mut out = Vec::with_capacity(*end - *start + raw.len() + 64);
                out.extend_from_slice(&record[*start..*end]);
                out.extend_from_slice(raw);
                copy = Some(out);
            }
            (None, None) => run = Some((field.start, field.end)),
        }
    }
    let bytes = match (copy, run) {
        (Some(out), _) => Bytes::from(out),
        (None, Some((start, end))) => segment.slice_ref(&record[start..end]),
        (None, None) => Bytes::new(),
    };
    Header::new(bytes)
}

#[inline]
fn next_len<'a>(reader: &mut Cursor<'a>, number: u32) -> Option<&'a [u8]> {
    loop {
        let field = reader.next_field()?;
        if let (true, Value::Len(bytes)) = (field.number == number, field.value) {
            return Some(bytes);
        }
    }
}

const SEED: u64 = 0x517c_c1b7_2722_0a95;

/// FxHash-style hash of bytes: fast, not DoS-resistant. Used for header
/// grouping, where equal hashes are confirmed by comparing the bytes.
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = IdHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

/// A fast, unkeyed hasher for pointers, header hashes and trace ids in maps
/// whose size is bounded by one batch. Trace ids are chosen by clients, so a
/// long-lived map keyed by them (a tail-sampling buffer) should use a keyed
/// hasher (`RandomState`) against collision floods.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

/// `BuildHasher` for [`IdHasher`].
pub type BuildIdHasher = BuildHasherDefault<IdHasher>;

impl IdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown takes its bucket from the low bits.
        self.0 ^ (self.0 >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
    use prost::Message;

    fn decode(batch: &Batch) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(batch.to_bytes()).unwrap()
    }

    fn batch_of(req: &ExportTraceServiceRequest) -> Batch {
        Batch::decode(Signal::Traces, Bytes::from(req.encode_to_vec()))
            .unwrap()
            .batch
    }

    /// Encoded resource, encoded scope, resource and scope schema URLs, span.
    type Flat = (Vec<u8>, Vec<u8>, String, String, Span);

    /// One [`Flat`] per span, for order-insensitive comparison.
    fn flatten(req: &ExportTraceServiceRequest) -> Vec<Flat> {
        req.resource_spans
            .iter()
            .flat_map(|r| {
                r.scope_spans.iter().flat_map(move |s| {
                    s.spans.iter().map(move |span| {
                        (
                            r.resource
                                .as_ref()
                                .map(|x| x.encode_to_vec())
                                .unwrap_or_default(),
                            s.scope
                                .as_ref()
                                .map(|x| x.encode_to_vec())
                                .unwrap_or_default(),
                            r.schema_url.clone(),
                            s.schema_url.clone(),
                            span.clone(),
                        )
                    })
                })
            })
            .collect()
    }

    #[test]
    fn split_then_rebuild_preserves_every_span_resource_and_scope() {
        let requests: Vec<_> = (0..4)
            .map(|seed| testkit::trace_request(seed, 512))
            .collect();
        let mut merged = Batch::empty(Signal::Traces);
        for req in &requests {
            merged.append(batch_of(req));
        }
        let mut traces: HashMap<TraceId, Vec<SpanRef>> = HashMap::new();
        let mut order = Vec::new();
        for (trace_id, span) in split_by_trace(&merged) {
            assert_eq!(span.span().trace_id(), Some(trace_id));
            traces
                .entry(trace_id)
                .or_insert_with(|| {
                    order.push(trace_id);
                    Vec::new()
                })
                .push(span);
        }
        assert_eq!(order.len(), 4 * 64);
        let mut builder = BatchBuilder::new(Signal::Traces);
        for trace_id in &order {
            builder.extend(traces.remove(trace_id).unwrap());
        }
        assert_eq!(builder.items(), 2048);
        let rebuilt = builder.build();
        assert_eq!(rebuilt.items(), 2048);
        let decoded = decode(&rebuilt);
        // Identical resources from the four requests merged: one ResourceSpans per service.
        assert_eq!(decoded.resource_spans.len(), 6);
        assert!(decoded
            .resource_spans
            .iter()
            .all(|r| r.scope_spans.len() == 1));

        let mut expected = requests.iter().flat_map(flatten).collect::<Vec<_>>();
        let mut got = flatten(&decoded);
        // Within one trace and one resource the span order is kept (across
        // resources, spans are grouped by resource).
        for trace_id in &order {
            let of = |v: &Vec<Flat>| {
                let mut by_resource: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
                for x in v.iter().filter(|x| x.4.trace_id == trace_id) {
                    by_resource
                        .entry(x.0.clone())
                        .or_default()
                        .push(x.4.span_id.clone());
                }
                by_resource
            };
            assert_eq!(of(&got), of(&expected));
        }
        let key = |x: &Flat| (x.4.trace_id.clone(), x.4.span_id.clone());
        expected.sort_by_key(key);
        got.sort_by_key(key);
        assert_eq!(got, expected);
    }

    #[test]
    fn order_within_a_resource_and_trace_is_kept() {
        let batch = testkit::batch(Signal::Traces, 3, 512);
        let groups = group_by_trace(&batch);
        assert_eq!(groups.len(), 64);
        let mut builder = BatchBuilder::new(Signal::Traces);
        for (_, spans) in groups {
            builder.extend(spans);
        }
        let rebuilt = builder.build();
        // Same grouping and same order as the input: identical bytes after re-decoding.
        assert_eq!(decode(&rebuilt), decode(&batch));
    }

    #[test]
    fn identical_resources_from_two_requests_merge() {
        let a = testkit::trace_request(1, 16);
        let b = testkit::trace_request(2, 16);
        let mut builder = BatchBuilder::new(Signal::Traces);
        builder.extend(split_items(&batch_of(&a)));
        builder.extend(split_items(&batch_of(&b)));
        let decoded = decode(&builder.build());
        assert_eq!(decoded.resource_spans.len(), a.resource_spans.len());
        for (rs, (ra, rb)) in decoded
            .resource_spans
            .iter()
            .zip(a.resource_spans.iter().zip(&b.resource_spans))
        {
            assert_eq!(rs.resource, ra.resource);
            assert_eq!(rs.schema_url, ra.schema_url);
            let spans: Vec<_> = ra.scope_spans[0]
                .spans
                .iter()
                .chain(&rb.scope_spans[0].spans)
                .cloned()
                .collect();
            assert_eq!(rs.scope_spans[0].spans, spans);
            assert_eq!(rs.scope_spans[0].scope, ra.scope_spans[0].scope);
        }
    }

    #[test]
    fn different_resources_and_scopes_stay_apart() {
        let mut req = testkit::trace_request(1, 8);
        let mut other: ResourceSpans = req.resource_spans[0].clone();
        other.schema_url = "other".into();
        req.resource_spans.push(other);
        let mut other_scope = req.resource_spans[0].clone();
        other_scope.scope_spans[0].scope.as_mut().unwrap().version = "9".into();
        req.resource_spans.push(other_scope);
        let mut builder = BatchBuilder::new(Signal::Traces);
        builder.extend(split_items(&batch_of(&req)));
        let decoded = decode(&builder.build());
        // The first and the last share resource bytes but not scope: one resource, two scopes.
        assert_eq!(decoded.resource_spans.len(), req.resource_spans.len() - 1);
        assert_eq!(decoded.resource_spans[0].scope_spans.len(), 2);
        assert_eq!(flatten(&decoded).len(), flatten(&req).len());
    }

    #[test]
    fn the_shallow_item_count_agrees_with_the_validating_walk() {
        for signal in Signal::ALL {
            let batch = crate::testkit::batch(signal, 11, 300);
            let record_schema: &'static schema::Schema = match signal {
                Signal::Traces => &schema::RESOURCE_SPANS,
                Signal::Metrics => &schema::RESOURCE_METRICS,
                Signal::Logs => &schema::RESOURCE_LOGS,
            };
            let mut total = 0;
            for record in batch.resources() {
                let census = schema::walk(record_schema, &record).unwrap();
                assert_eq!(
                    count_items(record_schema, &record),
                    census.items,
                    "{signal}"
                );
                total += census.items;
            }
            assert_eq!(total, batch.items(), "{signal}");
        }
    }

    #[test]
    fn partition_resources_keeps_one_key_whole_and_splits_records_by_key() {
        for signal in Signal::ALL {
            let batch = crate::testkit::batch(signal, 5, 400);
            let records = batch.resources().count();
            assert!(records > 2, "{signal}: {records} records");
            let same = partition_resources(batch.clone(), |_| 7);
            assert_eq!(same.len(), 1);
            assert!(std::ptr::eq(
                same[0].1.segments()[0].as_ptr(),
                batch.segments()[0].as_ptr()
            ));
            let mut n = 0;
            let parts = partition_resources(batch.clone(), |_| {
                n += 1;
                n % 2
            });
            assert_eq!(parts.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [1, 0]);
            let items: u64 = parts.iter().map(|(_, b)| b.items()).sum();
            assert_eq!(items, batch.items(), "{signal}");
            let bytes: usize = parts.iter().map(|(_, b)| b.encoded_len()).sum();
            assert_eq!(
                bytes,
                batch.encoded_len(),
                "{signal}: whole records, zero-copy"
            );
            for (_, part) in &parts {
                let census =
                    schema::walk(schema::request_schema(signal), &part.to_bytes()).unwrap();
                assert_eq!(census.items, part.items(), "{signal}");
            }
        }
    }

    #[test]
    fn partition_by_tenant_covers_every_span_once() {
        let batch = testkit::batch(Signal::Traces, 9, 512);
        let parts = partition(&batch, |span| {
            span.span()
                .attribute("tenant.id")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        });
        assert!(parts.len() > 1);
        let mut total = 0;
        for (tenant, part) in &parts {
            total += part.items();
            assert_eq!(part.spans().count() as u64, part.items());
            assert!(part.spans().all(
                |s| s.attribute("tenant.id").and_then(|v| v.as_str()) == Some(tenant.as_str())
            ));
            assert!(part
                .spans()
                .all(|s| s.resource().attribute("service.name").is_some()));
        }
        assert_eq!(total, 512);
    }

    #[test]
    fn logs_and_metrics_regroup_with_item_counts() {
        for signal in [Signal::Logs, Signal::Metrics] {
            let mut merged = testkit::batch(signal, 1, 100);
            merged.append(testkit::batch(signal, 2, 100));
            let mut builder = BatchBuilder::new(signal);
            builder.extend(split_items(&merged));
            let rebuilt = builder.build();
            assert_eq!(rebuilt.items(), 200, "{signal}");
            let again = Batch::decode(signal, rebuilt.to_bytes()).unwrap();
            assert_eq!(again.batch.items(), 200);
            assert!(again.batch.resources().count() <= 6);
        }
    }

    #[test]
    fn non_contiguous_headers_are_copied_once_and_shared() {
        let batch = testkit::batch(Signal::Traces, 1, 64);
        let items: Vec<_> = split_items(&batch).collect();
        assert_eq!(items.len(), 64);
        // resource (field 1) and schema_url (field 3) sit on both sides of the scope_spans.
        let first = &items[0].envelope().resource;
        assert!(first.bytes().len() > 100);
        let same = items
            .iter()
            .filter(|i| Arc::ptr_eq(i.envelope(), items[0].envelope()))
            .count();
        assert!(same > 1, "items of one scope share the envelope");
        let mut compacted = items[0].clone();
        compacted.compact();
        assert_eq!(compacted.item(), items[0].item());
        assert_ne!(compacted.item().as_ptr(), items[0].item().as_ptr());
    }
}
