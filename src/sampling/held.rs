//! [`HeldTrace`]: the spans of one undecided trace, stored compactly.
//!
//! A held span costs its encoded bytes plus 8: the spans of a trace sit back
//! to back in one buffer, each with its end offset and the index of its
//! envelope (resource and scope headers, kept once per distinct envelope and
//! shared with the request they came in). Copying the bytes out of the
//! request means a held span never keeps the rest of its request alive, and
//! one buffer per trace instead of one allocation per span keeps allocator
//! overhead off the per-span cost.
//!
//! Buffers grow exactly when a request brings several spans of the trace at
//! once (the sampler reserves a whole group before pushing it), and by at
//! least an eighth otherwise, so a trace arriving span by span stays linear
//! and wastes at most an eighth of its size.

use std::sync::Arc;

use bytes::Bytes;

use crate::model::regroup::{Envelope, SpanRef};
use crate::model::view::SpanView;

/// Where one held span ends in the buffer, and its envelope.
#[derive(Debug, Clone, Copy)]
struct HeldSpan {
    end: u32,
    envelope: u32,
}

/// The spans of one trace waiting for a decision, with the trace's time span.
#[derive(Debug, Default)]
pub struct HeldTrace {
    data: Vec<u8>,
    spans: Vec<HeldSpan>,
    envelopes: Vec<Arc<Envelope>>,
    min_start: u64,
    max_end: u64,
}

/// Makes room for `extra` more elements: exactly, or by at least an eighth
/// of what is there when that is more.
fn grow<T>(vec: &mut Vec<T>, extra: usize) {
    if vec.capacity() - vec.len() < extra {
        vec.reserve_exact(extra.max(vec.len() / 8));
    }
}

impl HeldTrace {
    pub fn new() -> Self {
        HeldTrace {
            min_start: u64::MAX,
            ..HeldTrace::default()
        }
    }

    /// A trace holding copies of `spans` (benchmarks and tests).
    pub fn from_spans(spans: &[SpanRef]) -> Self {
        let mut trace = HeldTrace::new();
        trace.reserve(spans.len(), spans.iter().map(|s| s.item().len()).sum());
        for span in spans {
            let view = span.span();
            trace.push(span, view.start_time_unix_nano(), view.end_time_unix_nano());
        }
        trace
    }

    /// Makes room for `spans` more spans of `bytes` bytes in all.
    pub fn reserve(&mut self, spans: usize, bytes: usize) {
        grow(&mut self.data, bytes);
        grow(&mut self.spans, spans);
    }

    /// Copies `span` (started at `start`, ended at `end`) in.
    ///
    /// The caller keeps a trace under 4 GiB (`max_trace_bytes` decides a
    /// trace long before); a span that would pass that is not held.
    pub fn push(&mut self, span: &SpanRef, start: u64, end: u64) {
        let Ok(span_end) = u32::try_from(self.data.len() + span.item().len()) else {
            return;
        };
        // Only the last few envelopes are searched (spans of one request
        // share a handful), so a trace spread over many requests stays linear.
        let recent = self.envelopes.len().saturating_sub(4);
        let envelope = match self.envelopes[recent..]
            .iter()
            .rposition(|e| Arc::ptr_eq(e, span.envelope()))
        {
            Some(at) => recent + at,
            None => {
                self.envelopes.push(Arc::clone(span.envelope()));
                self.envelopes.len() - 1
            }
        };
        self.data.extend_from_slice(span.item());
        self.spans.push(HeldSpan {
            end: span_end,
            envelope: envelope as u32,
        });
        self.min_start = self.min_start.min(start);
        self.max_end = self.max_end.max(end);
    }

    /// Spans held.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Encoded bytes of the spans held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The earliest span start, `u64::MAX` when empty.
    pub fn min_start(&self) -> u64 {
        self.min_start
    }

    /// The latest span end, 0 when empty.
    pub fn max_end(&self) -> u64 {
        self.max_end
    }

    /// A view of each held span, in the order pushed.
    pub fn views(&self) -> impl Iterator<Item = SpanView<'_>> + '_ {
        let mut start = 0usize;
        self.spans.iter().map(move |span| {
            let end = span.end as usize;
            let item = self.data.get(start..end).unwrap_or_default();
            start = end;
            let envelope = &self.envelopes[span.envelope as usize];
            envelope.span(item)
        })
    }

    /// The held spans, handed back as zero-copy slices of the buffer.
    pub fn into_spans(self) -> impl Iterator<Item = SpanRef> {
        let HeldTrace {
            data,
            spans,
            envelopes,
            ..
        } = self;
        let data = Bytes::from(data);
        let mut start = 0usize;
        spans.into_iter().map(move |span| {
            let end = span.end as usize;
            let item = data.slice(start..end);
            start = end;
            SpanRef::new(Arc::clone(&envelopes[span.envelope as usize]), item)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::regroup::split_by_trace;
    use crate::model::Signal;

    #[test]
    fn spans_come_back_byte_for_byte_with_their_envelopes_in_order() {
        let batch = crate::testkit::batch(Signal::Traces, 7, 64);
        let spans: Vec<SpanRef> = split_by_trace(&batch).map(|(_, s)| s).collect();
        let held = HeldTrace::from_spans(&spans);
        assert_eq!(held.len(), spans.len());
        assert_eq!(
            held.bytes(),
            spans.iter().map(|s| s.item().len()).sum::<usize>()
        );
        for (view, span) in held.views().zip(&spans) {
            assert_eq!(view.encoded(), span.item().as_ref());
            assert_eq!(view.resource().attributes().count(), {
                span.span().resource().attributes().count()
            });
        }
        let back: Vec<SpanRef> = held.into_spans().collect();
        assert_eq!(back.len(), spans.len());
        for (a, b) in back.iter().zip(&spans) {
            assert_eq!(a.item(), b.item());
            assert!(Arc::ptr_eq(a.envelope(), b.envelope()), "same envelope");
        }
    }

    #[test]
    fn a_group_reserved_at_once_takes_exactly_its_size() {
        let batch = crate::testkit::batch(Signal::Traces, 1, 16);
        let spans: Vec<SpanRef> = split_by_trace(&batch).map(|(_, s)| s).collect();
        let held = HeldTrace::from_spans(&spans);
        assert_eq!(held.data.capacity(), held.data.len());
        assert_eq!(held.spans.capacity(), held.spans.len());
        let (lo, hi) = spans
            .iter()
            .map(|s| {
                let v = s.span();
                (v.start_time_unix_nano(), v.end_time_unix_nano())
            })
            .fold((u64::MAX, 0), |(lo, hi), (s, e)| (lo.min(s), hi.max(e)));
        assert_eq!((held.min_start(), held.max_end()), (lo, hi));
    }

    #[test]
    fn spans_pushed_one_by_one_grow_by_at_most_an_eighth_more_than_needed() {
        let batch = crate::testkit::batch(Signal::Traces, 2, 512);
        let mut held = HeldTrace::new();
        for (_, span) in split_by_trace(&batch) {
            held.reserve(1, span.item().len());
            held.push(&span, 0, 0);
        }
        assert!(held.data.capacity() <= held.data.len() + held.data.len() / 8 + 1024);
    }
}
