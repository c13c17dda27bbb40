//! The series of one batch, merged by labels, written straight into
//! remote-write protobuf.
//!
//! Each series' labels are encoded once, when first seen, into one arena as
//! the `TimeSeries.labels` fields (`Label` messages with their tags), and
//! merged by a hash of those bytes; requests are then written by copying the
//! label bytes and appending the samples. This is hand-written protobuf (with
//! prost's varint helpers) on purpose: building prost `TimeSeries` with owned
//! or shared label buffers per series cost ~1.4 µs per sample, over three
//! times the budget of `benches/remote_write.rs`. The prost types in
//! [`super::wire`] decode the output in the tests.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Range;

use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;

use super::wire::{Sample, TimeSeries};

/// Series with their samples, labels encoded in one arena.
#[derive(Debug, Default)]
pub struct SeriesSet {
    /// `TimeSeries.labels` fields of every series, back to back.
    arena: Vec<u8>,
    series: Vec<Entry>,
    /// The first series of each label hash (foldhash, randomly seeded per process).
    index: HashMap<u64, usize, foldhash::fast::RandomState>,
    /// Further series whose label hash is taken (rare), scanned in turn.
    collisions: Vec<(u64, usize)>,
    hasher: foldhash::fast::RandomState,
}

#[derive(Debug)]
struct Entry {
    labels: Range<usize>,
    samples: Samples,
}

/// A series' samples: nearly always one per batch, kept without an allocation.
#[derive(Debug)]
enum Samples {
    One(Sample),
    Many(Vec<Sample>),
}

impl Samples {
    fn as_slice(&self) -> &[Sample] {
        match self {
            Samples::One(sample) => std::slice::from_ref(sample),
            Samples::Many(samples) => samples,
        }
    }

    fn push(&mut self, sample: Sample) {
        match self {
            Samples::One(first) => *self = Samples::Many(vec![*first, sample]),
            Samples::Many(samples) => samples.push(sample),
        }
    }
}

/// One request's worth of series: `WriteRequest` protobuf, not compressed.
#[derive(Debug)]
pub struct Chunk {
    pub body: Vec<u8>,
    pub samples: usize,
}

impl SeriesSet {
    /// Series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Samples in all series.
    pub fn samples(&self) -> usize {
        self.series.iter().map(|e| e.samples.as_slice().len()).sum()
    }

    /// Adds `sample` to the series with `labels`, given sorted by name.
    pub fn push<'a>(
        &mut self,
        labels: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        sample: Sample,
    ) {
        self.push_with(
            |out| {
                for (name, value) in labels {
                    put_label(out, name, value);
                }
            },
            sample,
        );
    }

    /// Adds `sample` to the series whose labels `write` encodes (sorted by name,
    /// each with [`put_label`]).
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>), sample: Sample) {
        let start = self.arena.len();
        write(&mut self.arena);
        let encoded = &self.arena[start..];
        let hash = self.hasher.hash_one(encoded);
        let same = |e: &Entry| self.arena[e.labels.clone()] == *encoded;
        let found = match self.index.get(&hash) {
            None => None,
            Some(&at) if same(&self.series[at]) => Some(at),
            Some(_) => self
                .collisions
                .iter()
                .find(|(h, at)| *h == hash && same(&self.series[*at]))
                .map(|(_, at)| *at),
        };
        if let Some(at) = found {
            self.arena.truncate(start);
            self.series[at].samples.push(sample);
            return;
        }
        let at = self.series.len();
        match self.index.entry(hash) {
            MapEntry::Vacant(slot) => {
                slot.insert(at);
            }
            MapEntry::Occupied(_) => self.collisions.push((hash, at)),
        }
        self.series.push(Entry {
            labels: start..self.arena.len(),
            samples: Samples::One(sample),
        });
    }

    /// Sorts each series' samples by time; of equal times the last one pushed
    /// wins (Prometheus refuses a second, different value at one time).
    pub fn sort_samples(&mut self) {
        for entry in &mut self.series {
            if let Samples::Many(samples) = &mut entry.samples {
                samples.sort_by_key(|x| x.timestamp);
                // dedup keeps the first of a run: reverse so it keeps the last.
                samples.reverse();
                samples.dedup_by_key(|x| x.timestamp);
                samples.reverse();
            }
        }
    }

    /// The series as prost messages (tests, tools).
    pub fn to_time_series(&self) -> Vec<TimeSeries> {
        self.series
            .iter()
            .map(|e| {
                // The arena holds exactly a TimeSeries' label fields.
                let mut series =
                    TimeSeries::decode(&self.arena[e.labels.clone()]).unwrap_or_default();
                series.samples = e.samples.as_slice().to_vec();
                series
            })
            .collect()
    }

    /// `WriteRequest` bodies of at most `max_samples` samples each, series in
    /// the order first seen; a series with more samples than fit is split,
    /// its samples staying in time order across consecutive bodies.
    pub fn into_chunks(self, max_samples: usize) -> Vec<Chunk> {
        let max_samples = max_samples.max(1);
        let mut chunks = Vec::new();
        let mut body = Vec::new();
        let mut room = max_samples;
        for entry in &self.series {
            let labels = &self.arena[entry.labels.clone()];
            let mut samples = entry.samples.as_slice();
            while !samples.is_empty() {
                let take = samples.len().min(room);
                put_series(&mut body, labels, &samples[..take]);
                samples = &samples[take..];
                room -= take;
                if room == 0 {
                    chunks.push(Chunk {
                        body: std::mem::take(&mut body),
                        samples: max_samples,
                    });
                    room = max_samples;
                }
            }
        }
        if room < max_samples {
            chunks.push(Chunk {
                body,
                samples: max_samples - room,
            });
        }
        chunks
    }
}

/// `TimeSeries.labels` field with one `Label { name = 1, value = 2 }`.
pub fn put_label(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let inner = 2
        + encoded_len_varint(name.len() as u64)
        + name.len()
        + encoded_len_varint(value.len() as u64)
        + value.len();
    out.reserve(inner + 6);
    out.push(0x0a); // field 1, length-delimited
    encode_varint(inner as u64, out);
    out.push(0x0a);
    encode_varint(name.len() as u64, out);
    out.extend_from_slice(name);
    out.push(0x12); // field 2, length-delimited
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// `Sample { value = 1 (double), timestamp = 2 (int64) }`'s length.
fn sample_len(sample: &Sample) -> usize {
    #[allow(clippy::cast_sign_loss)] // int64 is written as its two's complement varint
    let ts = sample.timestamp as u64;
    1 + 8 + 1 + encoded_len_varint(ts)
}

/// `WriteRequest.timeseries` field holding one `TimeSeries` (labels as encoded, then samples).
fn put_series(out: &mut Vec<u8>, labels: &[u8], samples: &[Sample]) {
    let samples_len: usize = samples
        .iter()
        .map(|s| {
            let inner = sample_len(s);
            1 + encoded_len_varint(inner as u64) + inner
        })
        .sum();
    let len = labels.len() + samples_len;
    out.reserve(len + 6);
    out.push(0x0a); // WriteRequest field 1, length-delimited
    encode_varint(len as u64, out);
    out.extend_from_slice(labels);
    for sample in samples {
        out.push(0x12); // TimeSeries field 2, length-delimited
        encode_varint(sample_len(sample) as u64, out);
        out.push(0x09); // Sample field 1, fixed64
        out.extend_from_slice(&sample.value.to_le_bytes());
        out.push(0x10); // Sample field 2, varint
        #[allow(clippy::cast_sign_loss)]
        encode_varint(sample.timestamp as u64, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{Label, WriteRequest};
    use super::*;

    fn sample(timestamp: i64, value: f64) -> Sample {
        Sample { value, timestamp }
    }

    #[test]
    fn encoding_matches_prost() {
        let mut set = SeriesSet::default();
        let long = "x".repeat(300);
        let a: [(&[u8], &[u8]); 2] = [(b"__name__", b"up"), (b"job", long.as_bytes())];
        set.push(a, sample(1_700_000_000_000, 1.5));
        set.push([(&b"__name__"[..], &b"down"[..])], sample(-5, 0.0));
        set.push(a, sample(1_700_000_000_001, f64::NAN));
        assert_eq!(set.len(), 2);
        let mine = WriteRequest::decode(set.into_chunks(10).remove(0).body.as_slice()).unwrap();
        let prost = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        Label {
                            name: "job".into(),
                            value: long.clone().into(),
                        },
                    ],
                    samples: vec![
                        sample(1_700_000_000_000, 1.5),
                        sample(1_700_000_000_001, f64::NAN),
                    ],
                    exemplars: vec![],
                },
                TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: "down".into(),
                    }],
                    samples: vec![sample(-5, 0.0)],
                    exemplars: vec![],
                },
            ],
            metadata: vec![],
        };
        assert_eq!(mine.timeseries.len(), 2);
        assert_eq!(mine.timeseries[0].labels, prost.timeseries[0].labels);
        assert_eq!(mine.timeseries[1], prost.timeseries[1]);
        assert_eq!(
            mine.timeseries[0].samples[0],
            prost.timeseries[0].samples[0]
        );
        assert!(mine.timeseries[0].samples[1].value.is_nan());
    }

    #[test]
    fn equal_labels_merge_and_samples_sort() {
        let mut set = SeriesSet::default();
        let labels: [(&[u8], &[u8]); 1] = [(b"__name__", b"g")];
        for (t, v) in [(3, 3.0), (1, 1.0), (2, 2.0), (1, 1.5)] {
            set.push(labels, sample(t, v));
        }
        set.sort_samples();
        let series = set.to_time_series();
        assert_eq!(series.len(), 1);
        assert_eq!(
            series[0].samples,
            [sample(1, 1.5), sample(2, 2.0), sample(3, 3.0)]
        );
    }
}
