//! [`Batch`]: the in-memory form of telemetry between the receiver and the exporters.
//!
//! A batch is the encoded body of an `Export{Trace,Metrics,Logs}ServiceRequest`
//! kept as received: one or more [`Bytes`] segments, each a run of complete
//! top-level `resource_*` records (field 1). Because a repeated field may be
//! split anywhere between records, the concatenation of any segments is itself
//! a valid request; merging batches is appending segments, and encoding an
//! export request is concatenating them. Nothing is decoded unless a stage
//! asks for it (see `docs/architecture.md` for the measurements behind this).

use bytes::Bytes;

use super::schema::{self, Census};
use super::wire::{self, Reader, Value, WireError};
use super::Signal;

/// Telemetry of one signal, encoded, with its item count.
#[derive(Debug, Clone)]
pub struct Batch {
    signal: Signal,
    segments: Vec<Bytes>,
    items: u64,
    encoded_len: usize,
}

/// A request that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {signal} request: {source}")]
pub struct DecodeError {
    pub signal: Signal,
    #[source]
    pub source: WireError,
}

/// A validated request: the batch of its valid items and what was rejected.
#[derive(Debug)]
pub struct Decoded {
    pub batch: Batch,
    /// Items refused because they are invalid (e.g. spans with an all-zero trace id).
    pub rejected: u64,
}

impl Batch {
    /// An empty batch of `signal`.
    pub fn empty(signal: Signal) -> Self {
        Batch {
            signal,
            segments: Vec::new(),
            items: 0,
            encoded_len: 0,
        }
    }

    /// Validates an encoded `Export*ServiceRequest` and wraps it without copying.
    ///
    /// Items that are well-formed protobuf but invalid by the OTLP spec (spans
    /// whose trace id is not 16 non-zero bytes or span id not 8 non-zero
    /// bytes) are removed and counted in [`Decoded::rejected`]; only then is
    /// the request re-encoded.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not a well-formed request.
    pub fn decode(signal: Signal, body: Bytes) -> Result<Decoded, DecodeError> {
        let census = schema::walk(schema::request_schema(signal), &body)
            .map_err(|source| DecodeError { signal, source })?;
        let Census {
            items,
            invalid_items,
        } = census;
        let batch = if invalid_items == 0 {
            Batch::from_validated(signal, body, items)
        } else {
            let kept =
                drop_invalid_spans(&body).map_err(|source| DecodeError { signal, source })?;
            Batch::from_validated(signal, kept, items - invalid_items)
        };
        Ok(Decoded {
            batch,
            rejected: invalid_items,
        })
    }

    /// Wraps bytes already known to be a well-formed request with `items` items.
    pub fn from_validated(signal: Signal, body: Bytes, items: u64) -> Self {
        let encoded_len = body.len();
        let segments = if body.is_empty() {
            Vec::new()
        } else {
            vec![body]
        };
        Batch {
            signal,
            segments,
            items,
            encoded_len,
        }
    }

    /// Wraps segments already known to be runs of complete top-level records
    /// (together `items` items). Empty segments are dropped.
    pub fn from_validated_segments(signal: Signal, segments: Vec<Bytes>, items: u64) -> Self {
        let segments: Vec<Bytes> = segments.into_iter().filter(|s| !s.is_empty()).collect();
        let encoded_len = segments.iter().map(Bytes::len).sum();
        Batch {
            signal,
            segments,
            items,
            encoded_len,
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Spans, data points or log records in the batch.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Size of the encoded request in bytes.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0 && self.encoded_len == 0
    }

    /// The encoded segments; their concatenation is the request body.
    pub fn segments(&self) -> &[Bytes] {
        &self.segments
    }

    /// Moves `other`'s records after this batch's. No bytes are copied.
    ///
    /// # Panics
    /// If the signals differ: that is a wiring bug, never an input error.
    pub fn append(&mut self, other: Batch) {
        assert_eq!(
            self.signal, other.signal,
            "appending batches of different signals"
        );
        self.items += other.items;
        self.encoded_len += other.encoded_len;
        self.segments.extend(other.segments);
    }

    /// The request body as one buffer (no copy when there is one segment).
    pub fn to_bytes(&self) -> Bytes {
        match self.segments.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = Vec::with_capacity(self.encoded_len);
                for segment in many {
                    out.extend_from_slice(segment);
                }
                Bytes::from(out)
            }
        }
    }

    /// Appends the request body to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len);
        for segment in &self.segments {
            out.extend_from_slice(segment);
        }
    }

    /// The top-level `resource_*` records (each the body of one
    /// `ResourceSpans`/`ResourceMetrics`/`ResourceLogs`), zero-copy.
    pub fn resources(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.segments.iter().flat_map(|segment| {
            let mut reader = Reader::new(segment);
            std::iter::from_fn(move || loop {
                // Segments were validated on the way in; a malformed one ends the walk.
                let field = reader.next_field()?.ok()?;
                if let (1, Value::Len(body)) = (field.number, field.value) {
                    return Some(segment.slice_ref(body));
                }
            })
        })
    }

    /// Splits off and returns the first records holding at most `max_items`
    /// items, leaving the rest in `self`.
    ///
    /// Traces and logs split at item granularity; metrics at `Metric`
    /// granularity, so one metric with more than `max_items` points travels
    /// whole. At least one unit is always taken from a non-empty batch.
    pub fn split_to(&mut self, max_items: u64) -> Batch {
        if self.items <= max_items {
            return std::mem::replace(self, Batch::empty(self.signal));
        }
        let mut head = Batch::empty(self.signal);
        let mut tail = Batch::empty(self.signal);
        let mut budget = max_items;
        for segment in std::mem::take(&mut self.segments) {
            let mut reader = Reader::new(&segment);
            while let Some(Ok(field)) = reader.next_field() {
                let (1, Value::Len(body)) = (field.number, field.value) else {
                    continue;
                };
                let weight = record_items(self.signal, body);
                // Whole records travel as zero-copy slices of the framed
                // field, so splitting a big batch into many parts does not
                // copy the remainder again each time.
                let framed = || segment.slice(field.start..field.end);
                if tail.is_empty()
                    && (weight <= budget || (head.items == 0 && weight > 0 && budget == 0))
                {
                    // fits whole
                    budget = budget.saturating_sub(weight);
                    head.push_slice(framed(), weight);
                } else if tail.is_empty() && budget > 0 {
                    let (first, rest, taken) =
                        split_record(self.signal, body, budget, head.items == 0);
                    budget = budget.saturating_sub(taken);
                    if let Some(first) = first {
                        head.push_encoded(first, taken);
                    }
                    if let Some(rest) = rest {
                        tail.push_encoded(rest, weight - taken);
                    }
                } else {
                    tail.push_slice(framed(), weight);
                }
            }
        }
        *self = tail;
        head
    }

    fn push_slice(&mut self, framed: Bytes, items: u64) {
        self.items += items;
        self.encoded_len += framed.len();
        self.segments.push(framed);
    }

    fn push_encoded(&mut self, framed: Vec<u8>, items: u64) {
        self.items += items;
        self.encoded_len += framed.len();
        self.segments.push(Bytes::from(framed));
    }
}

/// Items in one top-level record.
fn record_items(signal: Signal, record: &[u8]) -> u64 {
    let schema = match signal {
        // Spans and log records are the field-2 children of each field-2
        // scope record: count them without walking them (the batch was
        // validated on the way in; a full walk made `split_to` cost ~400 ns/span).
        Signal::Traces | Signal::Logs => return count_units(record),
        Signal::Metrics => &schema::RESOURCE_METRICS,
    };
    schema::walk(schema, record).map(|c| c.items).unwrap_or(0)
}

/// Number of field-2 children of the field-2 children of `record`.
fn count_units(record: &[u8]) -> u64 {
    let mut units = 0;
    let mut reader = Reader::new(record);
    while let Some(Ok(field)) = reader.next_field() {
        if let (2, Value::Len(scope)) = (field.number, field.value) {
            let mut scope_reader = Reader::new(scope);
            while let Some(Ok(inner)) = scope_reader.next_field() {
                if let (2, Value::Len(_)) = (inner.number, inner.value) {
                    units += 1;
                }
            }
        }
    }
    units
}

/// Weight of one level-2 unit (a span, a log record, or a metric's data points).
fn unit_items(signal: Signal, unit: &[u8]) -> u64 {
    match signal {
        Signal::Traces | Signal::Logs => 1,
        Signal::Metrics => schema::walk(&schema::METRIC, unit)
            .map(|c| c.items)
            .unwrap_or(0),
    }
}

/// Splits one top-level record so the first part holds at most `budget` items
/// (or one oversized unit when `must_take`). Returns the framed parts
/// (`field 1` header included) and the items in the first.
fn split_record(
    signal: Signal,
    record: &[u8],
    mut budget: u64,
    mut must_take: bool,
) -> (Option<Vec<u8>>, Option<Vec<u8>>, u64) {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let mut head_has_scope = false;
    let mut tail_has_scope = false;
    let mut taken = 0;
    let mut reader = Reader::new(record);
    while let Some(Ok(field)) = reader.next_field() {
        let raw = &record[field.start..field.end];
        let (2, Value::Len(scope)) = (field.number, field.value) else {
            head.extend_from_slice(raw);
            tail.extend_from_slice(raw);
            continue;
        };
        let mut scope_head = Vec::new();
        let mut scope_tail = Vec::new();
        let mut head_units = 0;
        let mut tail_units = 0;
        let mut scope_reader = Reader::new(scope);
        while let Some(Ok(inner)) = scope_reader.next_field() {
            let raw = &scope[inner.start..inner.end];
            let (2, Value::Len(unit)) = (inner.number, inner.value) else {
                scope_head.extend_from_slice(raw);
                scope_tail.extend_from_slice(raw);
                continue;
            };
            let weight = unit_items(signal, unit);
            if tail_units == 0 && (weight <= budget || must_take) {
                budget = budget.saturating_sub(weight);
                taken += weight;
                must_take = false;
                head_units += 1;
                scope_head.extend_from_slice(raw);
            } else {
                budget = 0;
                tail_units += 1;
                scope_tail.extend_from_slice(raw);
            }
        }
        if head_units > 0 {
            wire::put_len_field(&mut head, 2, &scope_head);
            head_has_scope = true;
        }
        if tail_units > 0 {
            wire::put_len_field(&mut tail, 2, &scope_tail);
            tail_has_scope = true;
        }
    }
    let frame = |body: Vec<u8>| {
        let mut framed = Vec::with_capacity(wire::len_field_size(1, body.len()));
        wire::put_len_field(&mut framed, 1, &body);
        framed
    };
    (
        head_has_scope.then(|| frame(head)),
        tail_has_scope.then(|| frame(tail)),
        taken,
    )
}

/// Rebuilds a trace request without the spans whose ids are invalid.
fn drop_invalid_spans(body: &[u8]) -> Result<Bytes, WireError> {
    let mut out = Vec::with_capacity(body.len());
    let mut reader = Reader::new(body);
    while let Some(field) = reader.next_field() {
        let field = field?;
        let (1, Value::Len(record)) = (field.number, field.value) else {
            continue;
        };
        let mut rebuilt = Vec::with_capacity(record.len());
        let mut records = Reader::new(record);
        while let Some(rf) = records.next_field() {
            let rf = rf?;
            let (2, Value::Len(scope)) = (rf.number, rf.value) else {
                rebuilt.extend_from_slice(&record[rf.start..rf.end]);
                continue;
            };
            let mut scope_out = Vec::with_capacity(scope.len());
            let mut scopes = Reader::new(scope);
            while let Some(sf) = scopes.next_field() {
                let sf = sf?;
                if let (2, Value::Len(span)) = (sf.number, sf.value) {
                    if !span_ids_valid(span)? {
                        continue;
                    }
                }
                scope_out.extend_from_slice(&scope[sf.start..sf.end]);
            }
            wire::put_len_field(&mut rebuilt, 2, &scope_out);
        }
        wire::put_len_field(&mut out, 1, &rebuilt);
    }
    Ok(Bytes::from(out))
}

fn span_ids_valid(span: &[u8]) -> Result<bool, WireError> {
    let mut ok = [false, false];
    let mut reader = Reader::new(span);
    while let Some(field) = reader.next_field() {
        match field? {
            wire::Field {
                number: 1,
                value: Value::Len(id),
                ..
            } => ok[0] = schema::valid_id(id, 16),
            wire::Field {
                number: 2,
                value: Value::Len(id),
                ..
            } => ok[1] = schema::valid_id(id, 8),
            _ => {}
        }
    }
    Ok(ok[0] && ok[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn span(n: u8) -> Span {
        Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            name: format!("span-{n}"),
            ..Default::default()
        }
    }

    fn resource(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                    key: "service.name".into(),
                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                service.into(),
                            ),
                        ),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: "s".into(),
            }],
            schema_url: "r".into(),
        }
    }

    fn batch(req: &ExportTraceServiceRequest) -> Batch {
        Batch::decode(Signal::Traces, Bytes::from(req.encode_to_vec()))
            .unwrap()
            .batch
    }

    fn decode(batch: &Batch) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(batch.to_bytes()).unwrap()
    }

    fn names(req: &ExportTraceServiceRequest) -> Vec<String> {
        req.resource_spans
            .iter()
            .flat_map(|r| {
                r.scope_spans
                    .iter()
                    .flat_map(|s| s.spans.iter().map(|s| s.name.clone()))
            })
            .collect()
    }

    #[test]
    fn appended_batches_concatenate_into_one_request() {
        let a = ExportTraceServiceRequest {
            resource_spans: vec![resource("a", vec![span(1)])],
        };
        let b = ExportTraceServiceRequest {
            resource_spans: vec![resource("b", vec![span(2), span(3)])],
        };
        let mut merged = batch(&a);
        merged.append(batch(&b));
        assert_eq!(merged.items(), 3);
        let decoded = decode(&merged);
        assert_eq!(
            decoded.resource_spans,
            [a.resource_spans, b.resource_spans].concat()
        );
        assert_eq!(merged.resources().count(), 2);
    }

    #[test]
    fn split_keeps_headers_and_every_span_once() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                resource("a", (1..=3).map(span).collect()),
                resource("b", (4..=7).map(span).collect()),
            ],
        };
        let mut rest = batch(&req);
        let mut parts = Vec::new();
        while !rest.is_empty() {
            parts.push(rest.split_to(3));
        }
        assert_eq!(
            parts.iter().map(Batch::items).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        let mut all = Vec::new();
        for part in &parts {
            let decoded = decode(part);
            assert_eq!(names(&decoded).len() as u64, part.items());
            for rs in &decoded.resource_spans {
                assert!(rs.resource.is_some(), "resource header kept");
                assert_eq!(rs.schema_url, "r");
                assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "lib");
                assert_eq!(rs.scope_spans[0].schema_url, "s");
            }
            all.extend(names(&decoded));
        }
        assert_eq!(all, names(&req));
    }

    #[test]
    fn split_moves_whole_records_without_copying() {
        let body = crate::testkit::encoded_traces(1, 512);
        let input = body.as_ptr_range();
        let mut rest = Batch::decode(Signal::Traces, body).unwrap().batch;
        let mut spans = 0;
        let mut shared = 0;
        while !rest.is_empty() {
            let part = rest.split_to(100);
            spans += decode(&part)
                .resource_spans
                .iter()
                .map(|r| r.scope_spans[0].spans.len())
                .sum::<usize>();
            shared += part
                .segments()
                .iter()
                .filter(|s| input.contains(&s.as_ptr()))
                .count();
            assert_eq!(
                rest.encoded_len(),
                rest.segments().iter().map(Bytes::len).sum::<usize>()
            );
        }
        assert_eq!(spans, 512);
        assert!(
            shared > 0,
            "whole records are slices of the received buffer"
        );
    }

    #[test]
    fn invalid_spans_are_removed_and_counted() {
        let mut zero = span(9);
        zero.trace_id = vec![0; 16];
        let req = ExportTraceServiceRequest {
            resource_spans: vec![resource("a", vec![span(1), zero, span(2)])],
        };
        let decoded = Batch::decode(Signal::Traces, Bytes::from(req.encode_to_vec())).unwrap();
        assert_eq!(decoded.rejected, 1);
        assert_eq!(decoded.batch.items(), 2);
        assert_eq!(names(&decode(&decoded.batch)), vec!["span-1", "span-2"]);
    }

    #[test]
    fn empty_request_is_an_empty_batch() {
        let decoded = Batch::decode(Signal::Logs, Bytes::new()).unwrap();
        assert!(decoded.batch.is_empty());
        assert_eq!(decoded.rejected, 0);
    }
}
