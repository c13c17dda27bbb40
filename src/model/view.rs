//! Zero-copy read views over the encoded records of a [`Batch`].
//!
//! A view is a borrowed slice of the received bytes. Each accessor walks the
//! top-level fields of its message until it finds the one it wants, so a read
//! costs a few field hops and never allocates: `trace_id` is usually the first
//! field of a span; `status_code` sits near the end (field 15) and skips the
//! attributes by their length prefix. A stage that needs several scalar fields
//! of every span should call [`SpanView::fields`] once instead (one pass).
//!
//! Views assume a batch validated by [`Batch::decode`]: bytes that are not a
//! well-formed message read as absent fields (`None`, `""` or `0`), never as
//! a panic. A singular field that appears twice in the encoding (legal
//! protobuf, which no SDK produces) is read at its first occurrence, where a
//! full decoder keeps the last.
//!
//! The same three-level layout (`resource_* = 1` → `scope_* = 2` → item `= 2`)
//! holds for all signals, so one walker ([`Records`]) serves spans, log
//! records and metrics.

use bytes::Bytes;

use super::batch::Batch;

use super::wire::{self, Field, Value};
use super::Signal;

/// A 16-byte trace id.
pub type TraceId = [u8; 16];
/// An 8-byte span id.
pub type SpanId = [u8; 8];

/// A borrowed `AnyValue`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnyValueRef<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An array, a key-value list, a string-table index, or no value at all.
    Other,
}

impl<'a> AnyValueRef<'a> {
    /// Decodes an encoded `AnyValue` (the last value field wins, as for a `oneof`).
    pub fn parse(buf: &'a [u8]) -> Self {
        let mut value = AnyValueRef::Other;
        let mut reader = Cursor::new(buf);
        while let Some(field) = reader.next_field() {
            value = match (field.number, field.value) {
                (1, Value::Len(s)) => AnyValueRef::Str(std::str::from_utf8(s).unwrap_or_default()),
                (2, Value::Varint(v)) => AnyValueRef::Bool(v != 0),
                (3, Value::Varint(v)) => AnyValueRef::Int(v as i64),
                (4, Value::Fixed64(v)) => AnyValueRef::Double(f64::from_bits(v)),
                (7, Value::Len(b)) => AnyValueRef::Bytes(b),
                (5 | 6 | 8, _) => AnyValueRef::Other,
                _ => continue,
            };
        }
        value
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            AnyValueRef::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            AnyValueRef::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            AnyValueRef::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The value as a number: a double, or an int converted to `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            AnyValueRef::Double(d) => Some(d),
            AnyValueRef::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// field helpers

/// Reads the fields of one encoded message, like [`wire::Reader`], but with
/// one-byte keys and lengths (nearly every OTLP field) decoded inline, and
/// without errors: the bytes were validated on the way in, so malformed bytes
/// simply end the walk.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    #[inline(always)]
    pub(crate) fn next_field(&mut self) -> Option<Field<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let field = self.read_field();
        if field.is_none() {
            self.pos = self.buf.len();
        }
        field
    }

    #[inline(always)]
    fn read_field(&mut self) -> Option<Field<'a>> {
        let start = self.pos;
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take()?)),
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                let end = self.pos.checked_add(len)?;
                let bytes = self.buf.get(self.pos..end)?;
                self.pos = end;
                Value::Len(bytes)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take()?)),
            _ => return None,
        };
        Some(Field {
            number: u32::try_from(key >> 3).ok()?,
            value,
            start,
            end: self.pos,
        })
    }

    /// Skips consecutive length-delimited fields whose one-byte key is
    /// `key` (e.g. the run of attributes in a span) in a tight loop.
    #[inline(always)]
    pub(crate) fn skip_run(&mut self, key: u8) {
        while self.buf.get(self.pos) == Some(&key) {
            self.pos += 1;
            let Some(len) = self.varint().and_then(|len| usize::try_from(len).ok()) else {
                self.pos = self.buf.len();
                return;
            };
            self.pos = self.pos.saturating_add(len);
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        let byte = *self.buf.get(self.pos)?;
        if byte < 0x80 {
            self.pos += 1;
            return Some(u64::from(byte));
        }
        let (value, used) = wire::read_varint(&self.buf[self.pos..]).ok()?;
        self.pos += used;
        Some(value)
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(N)?)?;
        self.pos += N;
        bytes.try_into().ok()
    }
}

/// The first field numbered `number`.
#[inline]
fn first_field(buf: &[u8], number: u32) -> Option<Value<'_>> {
    let mut reader = Cursor::new(buf);
    while let Some(field) = reader.next_field() {
        if field.number == number {
            return Some(field.value);
        }
    }
    None
}

#[inline]
fn first_len(buf: &[u8], number: u32) -> Option<&[u8]> {
    match first_field(buf, number)? {
        Value::Len(bytes) => Some(bytes),
        _ => None,
    }
}

#[inline]
fn first_str(buf: &[u8], number: u32) -> &str {
    first_len(buf, number)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
}

#[inline]
pub(crate) fn first_varint(buf: &[u8], number: u32) -> u64 {
    match first_field(buf, number) {
        Some(Value::Varint(v)) => v,
        _ => 0,
    }
}

#[inline]
fn first_fixed64(buf: &[u8], number: u32) -> u64 {
    match first_field(buf, number) {
        Some(Value::Fixed64(v)) => v,
        _ => 0,
    }
}

#[inline]
fn first_fixed32(buf: &[u8], number: u32) -> u32 {
    match first_field(buf, number) {
        Some(Value::Fixed32(v)) => v,
        _ => 0,
    }
}

/// The next length-delimited field numbered `number`; `None` at the end.
#[inline]
fn next_len<'a>(reader: &mut Cursor<'a>, number: u32) -> Option<&'a [u8]> {
    loop {
        let field = reader.next_field()?;
        if let (true, Value::Len(bytes)) = (field.number == number, field.value) {
            return Some(bytes);
        }
    }
}

#[inline]
fn id<const N: usize>(bytes: Option<&[u8]>) -> Option<[u8; N]> {
    bytes?.try_into().ok()
}

/// Key and value of an encoded `KeyValue`.
#[inline]
fn key_value(kv: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut key: &[u8] = &[];
    let mut value = None;
    let mut reader = Cursor::new(kv);
    while let Some(field) = reader.next_field() {
        match (field.number, field.value) {
            (1, Value::Len(k)) => key = k,
            (2, Value::Len(v)) => value = Some(v),
            _ => {}
        }
    }
    (key, value)
}

/// The key of an encoded `KeyValue` and a reader of its encoded value (run
/// only when the key is the one wanted). Reads the key without a Cursor
/// when it comes first, as every encoder writes it.
#[inline]
pub(crate) fn split_key_value(kv: &[u8]) -> (&[u8], KeyValueRest<'_>) {
    if let [0x0a, len, rest @ ..] = kv {
        let len = usize::from(*len);
        if len < 0x80 && len <= rest.len() {
            let (key, tail) = rest.split_at(len);
            return (key, KeyValueRest(tail));
        }
    }
    (key_value(kv).0, KeyValueRest(kv))
}

/// What follows a `KeyValue`'s key (or the whole `KeyValue`), from [`split_key_value`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyValueRest<'a>(&'a [u8]);

impl<'a> KeyValueRest<'a> {
    /// The value (`Other` when absent).
    pub(crate) fn value(self) -> AnyValueRef<'a> {
        first_len(self.0, 2).map_or(AnyValueRef::Other, AnyValueRef::parse)
    }
}

/// The value of `kv` when its key is `key`.
#[inline]
fn match_key<'a>(kv: &'a [u8], key: &[u8]) -> Option<AnyValueRef<'a>> {
    // Fast path: every encoder writes the key first; keys are shorter than
    // 128 bytes, so it starts with `0x0a <len>`. Compare without a Cursor.
    if let [0x0a, len, rest @ ..] = kv {
        let len = usize::from(*len);
        if len < 0x80 {
            if len != key.len() || rest.get(..len)? != key {
                return None;
            }
            let value = first_len(&rest[len..], 2).map_or(AnyValueRef::Other, AnyValueRef::parse);
            return Some(value);
        }
    }
    let (k, value) = key_value(kv);
    (k == key).then(|| value.map_or(AnyValueRef::Other, AnyValueRef::parse))
}

/// The value of attribute `key` among the repeated `KeyValue` field `number` of `msg`.
#[inline]
fn find_attribute<'a>(msg: &'a [u8], number: u32, key: &str) -> Option<AnyValueRef<'a>> {
    let key = key.as_bytes();
    let mut reader = Cursor::new(msg);
    while let Some(field) = reader.next_field() {
        if let (true, Value::Len(kv)) = (field.number == number, field.value) {
            if let Some(value) = match_key(kv, key) {
                return Some(value);
            }
        }
    }
    None
}

/// Iterates the attributes (repeated `KeyValue` field) of one message.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    reader: Cursor<'a>,
    number: u32,
}

impl<'a> Attributes<'a> {
    fn new(msg: &'a [u8], number: u32) -> Self {
        Attributes {
            reader: Cursor::new(msg),
            number,
        }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (&'a str, AnyValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let kv = next_len(&mut self.reader, self.number)?;
        let (key, value) = key_value(kv);
        Some((
            std::str::from_utf8(key).unwrap_or_default(),
            value.map_or(AnyValueRef::Other, AnyValueRef::parse),
        ))
    }
}

// ---------------------------------------------------------------------------
// resource and scope

/// A borrowed `Resource` (empty when the record has none).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceView<'a> {
    resource: &'a [u8],
}

impl<'a> ResourceView<'a> {
    /// A view of an encoded `Resource` message.
    pub fn new(resource: &'a [u8]) -> Self {
        ResourceView { resource }
    }

    /// The encoded `Resource`.
    pub fn encoded(&self) -> &'a [u8] {
        self.resource
    }

    pub fn attribute(&self, key: &str) -> Option<AnyValueRef<'a>> {
        find_attribute(self.resource, 1, key)
    }

    pub fn attributes(&self) -> Attributes<'a> {
        Attributes::new(self.resource, 1)
    }

    /// Each attribute's key bytes and encoded value, undecoded.
    pub(crate) fn raw_attributes(&self) -> impl Iterator<Item = (&'a [u8], KeyValueRest<'a>)> {
        let mut reader = Cursor::new(self.resource);
        std::iter::from_fn(move || next_len(&mut reader, 1).map(split_key_value))
    }

    /// Whether both views point at the same bytes: spans of one record share
    /// their resource, so a stage can cache what it read from it.
    pub fn same_as(&self, other: &ResourceView<'_>) -> bool {
        std::ptr::eq(self.resource, other.resource)
    }
}

/// A borrowed `InstrumentationScope` (empty when the record has none).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScopeView<'a> {
    scope: &'a [u8],
}

impl<'a> ScopeView<'a> {
    /// A view of an encoded `InstrumentationScope` message.
    pub fn new(scope: &'a [u8]) -> Self {
        ScopeView { scope }
    }

    pub fn encoded(&self) -> &'a [u8] {
        self.scope
    }

    pub fn name(&self) -> &'a str {
        first_str(self.scope, 1)
    }

    pub fn version(&self) -> &'a str {
        first_str(self.scope, 2)
    }

    pub fn attribute(&self, key: &str) -> Option<AnyValueRef<'a>> {
        find_attribute(self.scope, 3, key)
    }
}

// ---------------------------------------------------------------------------
// spans

/// A borrowed `Span` with the resource and scope it was sent under.
#[derive(Debug, Clone, Copy)]
pub struct SpanView<'a> {
    span: &'a [u8],
    resource: ResourceView<'a>,
    scope: ScopeView<'a>,
}

/// Key byte of `Span.attributes` (field 9, length-delimited).
const ATTRIBUTES_KEY: u8 = (9 << 3) | 2;

/// The scalar fields of a span, read in one pass by [`SpanView::fields`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanFields<'a> {
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub parent_span_id: Option<SpanId>,
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub status_code: i32,
    pub status_message: &'a str,
    pub flags: u32,
}

impl SpanFields<'_> {
    /// End minus start, 0 when the end is before the start.
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
}

impl<'a> SpanView<'a> {
    /// A view of an encoded `Span`, with no resource or scope.
    pub fn new(span: &'a [u8]) -> Self {
        Self::with_context(span, ResourceView::default(), ScopeView::default())
    }

    pub fn with_context(span: &'a [u8], resource: ResourceView<'a>, scope: ScopeView<'a>) -> Self {
        SpanView {
            span,
            resource,
            scope,
        }
    }

    /// The encoded `Span` (without its field key and length).
    pub fn encoded(&self) -> &'a [u8] {
        self.span
    }

    pub fn resource(&self) -> ResourceView<'a> {
        self.resource
    }

    pub fn scope(&self) -> ScopeView<'a> {
        self.scope
    }

    /// `None` when absent or not 16 bytes (never for a decoded batch).
    pub fn trace_id(&self) -> Option<TraceId> {
        id(first_len(self.span, 1))
    }

    pub fn span_id(&self) -> Option<SpanId> {
        id(first_len(self.span, 2))
    }

    /// `None` for a root span.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        id(first_len(self.span, 4))
    }

    pub fn trace_state(&self) -> &'a str {
        first_str(self.span, 3)
    }

    pub fn name(&self) -> &'a str {
        first_str(self.span, 5)
    }

    /// `SpanKind` as its number (0 unspecified … 5 consumer).
    pub fn kind(&self) -> i32 {
        first_varint(self.span, 6) as i32
    }

    pub fn start_time_unix_nano(&self) -> u64 {
        first_fixed64(self.span, 7)
    }

    pub fn end_time_unix_nano(&self) -> u64 {
        first_fixed64(self.span, 8)
    }

    fn status(&self) -> &'a [u8] {
        first_len(self.span, 15).unwrap_or_default()
    }

    /// `Status.code` (0 unset, 1 ok, 2 error).
    pub fn status_code(&self) -> i32 {
        first_varint(self.status(), 3) as i32
    }

    pub fn status_message(&self) -> &'a str {
        first_str(self.status(), 2)
    }

    pub fn flags(&self) -> u32 {
        first_fixed32(self.span, 16)
    }

    /// The span attribute `key` (not the resource's: see [`SpanView::resource`]).
    pub fn attribute(&self, key: &str) -> Option<AnyValueRef<'a>> {
        find_attribute(self.span, 9, key)
    }

    pub fn attributes(&self) -> Attributes<'a> {
        Attributes::new(self.span, 9)
    }

    pub fn events(&self) -> impl Iterator<Item = EventView<'a>> + 'a {
        let mut reader = Cursor::new(self.span);
        std::iter::from_fn(move || next_len(&mut reader, 11).map(|event| EventView { event }))
    }

    pub fn links(&self) -> impl Iterator<Item = LinkView<'a>> + 'a {
        let mut reader = Cursor::new(self.span);
        std::iter::from_fn(move || next_len(&mut reader, 13).map(|link| LinkView { link }))
    }

    /// Every scalar field in one pass over the span.
    pub fn fields(&self) -> SpanFields<'a> {
        let mut out = SpanFields::default();
        let mut seen = 0u32;
        let mut reader = Cursor::new(self.span);
        loop {
            reader.skip_run(ATTRIBUTES_KEY);
            let Some(field) = reader.next_field() else {
                break;
            };
            out.take(&mut seen, field);
        }
        out
    }

    /// [`SpanView::fields`] and, in the same pass, the value of the first
    /// attribute named `keys[i]` into `values[i]` (`None` when absent): for
    /// a stage that reads a few attributes of every span (span metrics'
    /// dimensions). `values` must be as long as `keys`.
    pub fn fields_and_attributes(
        &self,
        keys: &[&str],
        values: &mut [Option<AnyValueRef<'a>>],
    ) -> SpanFields<'a> {
        values.fill(None);
        if keys.is_empty() {
            return self.fields();
        }
        let mut out = SpanFields::default();
        let mut seen = 0u32;
        let mut reader = Cursor::new(self.span);
        while let Some(field) = reader.next_field() {
            match (field.number, field.value) {
                (9, Value::Len(kv)) => {
                    let (key, rest) = split_key_value(kv);
                    for (wanted, value) in keys.iter().zip(values.iter_mut()) {
                        if value.is_none() && key == wanted.as_bytes() {
                            *value = Some(rest.value());
                        }
                    }
                }
                _ => out.take(&mut seen, field),
            }
        }
        out
    }
}

impl<'a> SpanFields<'a> {
    /// Takes `field` if it is a scalar field not `seen` yet (the first occurrence wins).
    #[inline(always)]
    fn take(&mut self, seen: &mut u32, field: Field<'a>) {
        let bit = 1u32 << (field.number & 31);
        if *seen & bit != 0 {
            return;
        }
        match (field.number, field.value) {
            (1, Value::Len(b)) => self.trace_id = id(Some(b)),
            (2, Value::Len(b)) => self.span_id = id(Some(b)),
            (4, Value::Len(b)) => self.parent_span_id = id(Some(b)),
            (5, Value::Len(b)) => self.name = std::str::from_utf8(b).unwrap_or_default(),
            (6, Value::Varint(v)) => self.kind = v as i32,
            (7, Value::Fixed64(v)) => self.start_time_unix_nano = v,
            (8, Value::Fixed64(v)) => self.end_time_unix_nano = v,
            (15, Value::Len(status)) => {
                self.status_code = first_varint(status, 3) as i32;
                self.status_message = first_str(status, 2);
            }
            (16, Value::Fixed32(v)) => self.flags = v,
            _ => return,
        }
        *seen |= bit;
    }
}

/// A borrowed `Span.Event`.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    event: &'a [u8],
}

impl<'a> EventView<'a> {
    pub fn time_unix_nano(&self) -> u64 {
        first_fixed64(self.event, 1)
    }

    pub fn name(&self) -> &'a str {
        first_str(self.event, 2)
    }

    pub fn attribute(&self, key: &str) -> Option<AnyValueRef<'a>> {
        find_attribute(self.event, 3, key)
    }
}

/// A borrowed `Span.Link`.
#[derive(Debug, Clone, Copy)]
pub struct LinkView<'a> {
    link: &'a [u8],
}

impl<'a> LinkView<'a> {
    pub fn trace_id(&self) -> Option<TraceId> {
        id(first_len(self.link, 1))
    }

    pub fn span_id(&self) -> Option<SpanId> {
        id(first_len(self.link, 2))
    }

    pub fn attribute(&self, key: &str) -> Option<AnyValueRef<'a>> {
        find_attribute(self.link, 4, key)
    }
}

// ---------------------------------------------------------------------------
// logs and metrics

/// A borrowed `LogRecord` with its resource and scope.
#[derive(Debug, Clone, Copy)]
pub struct LogRecordView<'a> {
    record: &'a [u8],
    resource: ResourceView<'a>,
    scope: ScopeView<'a>,
}

impl<'a> LogRecordView<'a> {
    pub fn new(record: &'a [u8]) -> Self {
        LogRecordView {
            record,
            resource: ResourceView::default(),
            scope: ScopeView::default(),
        }
    }

    pub fn encoded(&self) -> &'a [u8] {
        self.record
    }

    pub fn resource(&self) -> ResourceView<'a> {
        self.resource
    }

    pub fn scope(&self) -> ScopeView<'a> {
        self.scope
    }

    pub fn time_unix_nano(&self) -> u64 {
        first_fixed64(self.record, 1)
    }

    pub fn observed_time_unix_nano(&self) -> u64 {
        first_fixed64(self.record, 11)
    }

    /// `SeverityNumber` (0 unspecified, 9 INFO, 13 WARN, 17 ERROR …).
    pub fn severity_number(&self) -> i32 {
        first_varint(self.record, 2) as i32
    }

    pub fn severity_text(&self) -> &'a str {
        first_str(self.record, 3)
    }

    pub fn body(&self) -> Option<AnyValueRef<'a>> {
        first_len(self.record, 5).map(AnyValueRef::parse)
    }

    pub fn attribute(&self, key: &str) -> Option<AnyValueRef<'a>> {
        find_attribute(self.record, 6, key)
    }

    pub fn attributes(&self) -> Attributes<'a> {
        Attributes::new(self.record, 6)
    }

    pub fn trace_id(&self) -> Option<TraceId> {
        id(first_len(self.record, 9))
    }

    pub fn span_id(&self) -> Option<SpanId> {
        id(first_len(self.record, 10))
    }

    pub fn event_name(&self) -> &'a str {
        first_str(self.record, 12)
    }
}

/// Which data field a metric carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
    /// No data field.
    Empty,
}

/// A borrowed `Metric` with its resource and scope.
#[derive(Debug, Clone, Copy)]
pub struct MetricView<'a> {
    metric: &'a [u8],
    resource: ResourceView<'a>,
    scope: ScopeView<'a>,
}

impl<'a> MetricView<'a> {
    pub fn new(metric: &'a [u8]) -> Self {
        MetricView {
            metric,
            resource: ResourceView::default(),
            scope: ScopeView::default(),
        }
    }

    pub fn encoded(&self) -> &'a [u8] {
        self.metric
    }

    pub fn resource(&self) -> ResourceView<'a> {
        self.resource
    }

    pub fn scope(&self) -> ScopeView<'a> {
        self.scope
    }

    pub fn name(&self) -> &'a str {
        first_str(self.metric, 1)
    }

    pub fn description(&self) -> &'a str {
        first_str(self.metric, 2)
    }

    pub fn unit(&self) -> &'a str {
        first_str(self.metric, 3)
    }

    fn data(&self) -> (MetricKind, &'a [u8]) {
        let mut reader = Cursor::new(self.metric);
        while let Some(field) = reader.next_field() {
            let kind = match field.number {
                5 => MetricKind::Gauge,
                7 => MetricKind::Sum,
                9 => MetricKind::Histogram,
                10 => MetricKind::ExponentialHistogram,
                11 => MetricKind::Summary,
                _ => continue,
            };
            if let Value::Len(data) = field.value {
                return (kind, data);
            }
        }
        (MetricKind::Empty, &[])
    }

    pub fn kind(&self) -> MetricKind {
        self.data().0
    }

    /// Number of data points (field 1 of the data message, for every kind).
    pub fn data_point_count(&self) -> usize {
        let mut reader = Cursor::new(self.data().1);
        std::iter::from_fn(|| next_len(&mut reader, 1)).count()
    }
}

// ---------------------------------------------------------------------------
// iteration over a batch

/// Iterates the items of a batch as `(resource, scope, item)` encoded slices:
/// `Resource`, `InstrumentationScope` (empty when absent) and the item
/// (`Span`, `LogRecord` or `Metric`).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    segments: std::slice::Iter<'a, Bytes>,
    top: Cursor<'a>,
    resource_record: Cursor<'a>,
    scope_record: Cursor<'a>,
    resource: &'a [u8],
    scope: &'a [u8],
}

impl<'a> Records<'a> {
    /// Every item of `batch`.
    pub fn new(batch: &'a Batch) -> Self {
        Self::over(batch.segments())
    }

    fn over(segments: &'a [Bytes]) -> Self {
        Records {
            segments: segments.iter(),
            top: Cursor::new(&[]),
            resource_record: Cursor::new(&[]),
            scope_record: Cursor::new(&[]),
            resource: &[],
            scope: &[],
        }
    }

    fn of_signal(batch: &'a Batch, signal: Signal) -> Self {
        if batch.signal() == signal {
            Self::new(batch)
        } else {
            Self::over(&[])
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (&'a [u8], &'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = next_len(&mut self.scope_record, 2) {
                return Some((self.resource, self.scope, item));
            }
            if let Some(scope_record) = next_len(&mut self.resource_record, 2) {
                self.scope = first_len(scope_record, 1).unwrap_or_default();
                self.scope_record = Cursor::new(scope_record);
                continue;
            }
            if let Some(resource_record) = next_len(&mut self.top, 1) {
                self.resource = first_len(resource_record, 1).unwrap_or_default();
                self.resource_record = Cursor::new(resource_record);
                continue;
            }
            self.top = Cursor::new(self.segments.next()?);
        }
    }
}

/// Iterator over the spans of a trace batch, from [`Batch::spans`].
#[derive(Debug, Clone)]
pub struct Spans<'a>(Records<'a>);

impl<'a> Iterator for Spans<'a> {
    type Item = SpanView<'a>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (resource, scope, span) = self.0.next()?;
        Some(SpanView::with_context(
            span,
            ResourceView::new(resource),
            ScopeView::new(scope),
        ))
    }
}

impl Batch {
    /// The spans of a trace batch, in order (nothing for other signals).
    pub fn spans(&self) -> Spans<'_> {
        Spans(Records::of_signal(self, Signal::Traces))
    }

    /// Calls `f` with every span of a trace batch and its resource and scope.
    pub fn for_each_span<'a>(
        &'a self,
        mut f: impl FnMut(ResourceView<'a>, ScopeView<'a>, SpanView<'a>),
    ) {
        for span in self.spans() {
            f(span.resource, span.scope, span);
        }
    }

    /// The log records of a logs batch (nothing for other signals).
    pub fn log_records(&self) -> impl Iterator<Item = LogRecordView<'_>> + '_ {
        Records::of_signal(self, Signal::Logs).map(|(resource, scope, record)| LogRecordView {
            record,
            resource: ResourceView::new(resource),
            scope: ScopeView::new(scope),
        })
    }

    /// The metrics of a metrics batch (nothing for other signals).
    pub fn metrics(&self) -> impl Iterator<Item = MetricView<'_>> + '_ {
        Records::of_signal(self, Signal::Metrics).map(|(resource, scope, metric)| MetricView {
            metric,
            resource: ResourceView::new(resource),
            scope: ScopeView::new(scope),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    fn prost_spans(req: &ExportTraceServiceRequest) -> Vec<(&Span, &str)> {
        req.resource_spans
            .iter()
            .flat_map(|r| {
                let service = r
                    .resource
                    .as_ref()
                    .and_then(|res| res.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .unwrap_or_default();
                r.scope_spans
                    .iter()
                    .flat_map(move |s| s.spans.iter().map(move |sp| (sp, service)))
            })
            .collect()
    }

    fn traces_batch(req: &ExportTraceServiceRequest) -> Batch {
        Batch::decode(Signal::Traces, Bytes::from(req.encode_to_vec()))
            .unwrap()
            .batch
    }

    fn prost_attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()
    }

    #[test]
    fn span_views_match_prost() {
        let req = testkit::trace_request(5, 512);
        let batch = traces_batch(&req);
        let expected = prost_spans(&req);
        let views: Vec<_> = batch.spans().collect();
        assert_eq!(views.len(), expected.len());
        for (view, (span, service)) in views.iter().zip(&expected) {
            assert_eq!(
                view.trace_id().unwrap().as_slice(),
                span.trace_id.as_slice()
            );
            assert_eq!(view.span_id().unwrap().as_slice(), span.span_id.as_slice());
            assert_eq!(
                view.parent_span_id()
                    .map(|p| p.to_vec())
                    .unwrap_or_default(),
                span.parent_span_id
            );
            assert_eq!(view.name(), span.name);
            assert_eq!(view.kind(), span.kind);
            assert_eq!(view.start_time_unix_nano(), span.start_time_unix_nano);
            assert_eq!(view.end_time_unix_nano(), span.end_time_unix_nano);
            let status = span.status.clone().unwrap_or_default();
            assert_eq!(view.status_code(), status.code);
            assert_eq!(view.status_message(), status.message);
            assert_eq!(view.flags(), span.flags);
            let fields = view.fields();
            assert_eq!(fields.trace_id, view.trace_id());
            assert_eq!(fields.span_id, view.span_id());
            assert_eq!(fields.parent_span_id, view.parent_span_id());
            assert_eq!(fields.name, view.name());
            assert_eq!(fields.kind, view.kind());
            assert_eq!(fields.start_time_unix_nano, view.start_time_unix_nano());
            assert_eq!(fields.end_time_unix_nano, view.end_time_unix_nano());
            assert_eq!(fields.status_code, view.status_code());
            assert_eq!(fields.status_message, view.status_message());
            assert_eq!(fields.flags, view.flags());
            let keys = [
                "http.response.status_code",
                "tenant.id",
                "no.such.key",
                "db.system",
            ];
            let mut values = [Some(AnyValueRef::Bool(true)); 4];
            assert_eq!(view.fields_and_attributes(&keys, &mut values), fields);
            for (key, value) in keys.iter().zip(values) {
                assert_eq!(value, view.attribute(key), "{key}");
            }

            assert_eq!(
                view.resource()
                    .attribute("service.name")
                    .and_then(|v| v.as_str()),
                Some(*service)
            );
            assert!(view.scope().name().starts_with("io.opentelemetry."));
            assert_eq!(view.scope().version(), "2.10.0");
            for (key, value) in view.attributes() {
                let expected = match prost_attr(span, key).unwrap() {
                    any_value::Value::StringValue(s) => AnyValueRef::Str(s),
                    any_value::Value::BoolValue(b) => AnyValueRef::Bool(*b),
                    any_value::Value::IntValue(i) => AnyValueRef::Int(*i),
                    any_value::Value::DoubleValue(d) => AnyValueRef::Double(*d),
                    other => panic!("unexpected {other:?}"),
                };
                assert_eq!(value, expected, "{key}");
                assert_eq!(view.attribute(key), Some(expected));
            }
            assert_eq!(view.attributes().count(), span.attributes.len());
            assert_eq!(view.attribute("no.such.key"), None);
            let events: Vec<_> = view.events().collect();
            assert_eq!(events.len(), span.events.len());
            for (event, expected) in events.iter().zip(&span.events) {
                assert_eq!(event.name(), expected.name);
                assert_eq!(event.time_unix_nano(), expected.time_unix_nano);
                assert!(event.attribute("exception.type").is_some());
            }
        }
    }

    #[test]
    fn typed_attribute_values_are_read() {
        let batch = testkit::batch(Signal::Traces, 1, 16);
        let span = batch.spans().next().unwrap();
        assert!(span.attribute("order.amount").unwrap().as_f64().unwrap() > 0.0);
        assert!(span.attribute("user.vip").unwrap().as_bool().is_some());
        assert_eq!(
            span.attribute("http.response.status_code")
                .unwrap()
                .as_i64(),
            Some(200)
        );
        assert!(testkit::TENANTS.contains(&span.attribute("tenant.id").unwrap().as_str().unwrap()));
    }

    #[test]
    fn spans_cross_segments_and_other_signals_yield_nothing() {
        let mut batch = testkit::batch(Signal::Traces, 1, 100);
        batch.append(testkit::batch(Signal::Traces, 2, 60));
        assert_eq!(batch.spans().count(), 160);
        let mut n = 0;
        batch.for_each_span(|resource, _, span| {
            assert!(resource.attribute("service.name").is_some());
            assert!(span.trace_id().is_some());
            n += 1;
        });
        assert_eq!(n, 160);
        let logs = testkit::batch(Signal::Logs, 1, 10);
        assert_eq!(logs.spans().count(), 0);
        assert_eq!(batch.log_records().count(), 0);
    }

    #[test]
    fn log_and_metric_views_match_prost() {
        let req = testkit::logs_request(3, 200);
        let batch = Batch::decode(Signal::Logs, Bytes::from(req.encode_to_vec()))
            .unwrap()
            .batch;
        let expected: Vec<_> = req
            .resource_logs
            .iter()
            .flat_map(|r| r.scope_logs.iter().flat_map(|s| s.log_records.iter()))
            .collect();
        let views: Vec<_> = batch.log_records().collect();
        assert_eq!(views.len(), expected.len());
        for (view, record) in views.iter().zip(expected) {
            assert_eq!(view.time_unix_nano(), record.time_unix_nano);
            assert_eq!(
                view.observed_time_unix_nano(),
                record.observed_time_unix_nano
            );
            assert_eq!(view.severity_number(), record.severity_number);
            assert_eq!(view.severity_text(), record.severity_text);
            let Some(any_value::Value::StringValue(body)) =
                record.body.as_ref().and_then(|b| b.value.as_ref())
            else {
                panic!("string body")
            };
            assert_eq!(view.body(), Some(AnyValueRef::Str(body)));
            assert_eq!(
                view.trace_id().unwrap().as_slice(),
                record.trace_id.as_slice()
            );
            assert!(view.attribute("tenant.id").is_some());
            assert!(view.resource().attribute("service.name").is_some());
        }

        let req = testkit::metrics_request(3, 300);
        let batch = Batch::decode(Signal::Metrics, Bytes::from(req.encode_to_vec()))
            .unwrap()
            .batch;
        let expected: Vec<_> = req
            .resource_metrics
            .iter()
            .flat_map(|r| r.scope_metrics.iter().flat_map(|s| s.metrics.iter()))
            .collect();
        let views: Vec<_> = batch.metrics().collect();
        assert_eq!(views.len(), expected.len());
        let mut points = 0;
        for (view, metric) in views.iter().zip(expected) {
            assert_eq!(view.name(), metric.name);
            assert_eq!(view.unit(), metric.unit);
            use opentelemetry_proto::tonic::metrics::v1::metric::Data;
            let (kind, n) = match metric.data.as_ref().unwrap() {
                Data::Gauge(g) => (MetricKind::Gauge, g.data_points.len()),
                Data::Sum(s) => (MetricKind::Sum, s.data_points.len()),
                Data::Histogram(h) => (MetricKind::Histogram, h.data_points.len()),
                _ => unreachable!(),
            };
            assert_eq!(view.kind(), kind);
            assert_eq!(view.data_point_count(), n);
            points += n;
        }
        assert_eq!(points, 300);
    }
}
