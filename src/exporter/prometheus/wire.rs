//! The remote-write 1.0 wire form: `prometheus.WriteRequest` (prost types
//! compiled by `build.rs` from `proto/prometheus/`), snappy block compressed.
//! The exporter writes request bodies itself (`series.rs`); these types read
//! them back.

use bytes::Bytes;
use prost::Message;

/// The `prometheus` protobuf package.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod prompb {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

pub use prompb::{Label, Sample, TimeSeries, WriteRequest};

/// The value Prometheus reads as a staleness marker (a NaN with this bit pattern).
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// `series` as a snappy-compressed (block format) `WriteRequest` body, built
/// with prost (tests and tools; the exporter writes its bodies in `series.rs`).
///
/// # Errors
/// [`snap::Error`] when the body is too large for snappy (over ~4 GiB).
pub fn encode(series: Vec<TimeSeries>) -> Result<Bytes, snap::Error> {
    let request = WriteRequest {
        timeseries: series,
        metadata: Vec::new(),
    };
    let raw = request.encode_to_vec();
    let compressed = snap::raw::Encoder::new().compress_vec(&raw)?;
    Ok(Bytes::from(compressed))
}

/// The `WriteRequest` in a body made by [`encode`] (tests and tools).
///
/// # Errors
/// A message when the body is not snappy or not a `WriteRequest`.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| e.to_string())?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_snappy_and_protobuf() {
        let series = vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "up".into(),
                },
                Label {
                    name: "job".into(),
                    value: "checkout".into(),
                },
            ],
            samples: vec![
                Sample {
                    value: 1.5,
                    timestamp: 1_700_000_000_000,
                },
                Sample {
                    value: f64::from_bits(STALE_NAN),
                    timestamp: 1_700_000_001_000,
                },
            ],
            exemplars: Vec::new(),
        }];
        let body = encode(series.clone()).unwrap();
        // Snappy block format, not the framed stream format (no stream identifier chunk).
        assert_ne!(body.first(), Some(&0xff));
        let decoded = decode(&body).unwrap();
        assert_eq!(decoded.timeseries.len(), 1);
        assert_eq!(decoded.timeseries[0].labels, series[0].labels);
        assert_eq!(decoded.timeseries[0].samples[0], series[0].samples[0]);
        assert_eq!(decoded.timeseries[0].samples[1].value.to_bits(), STALE_NAN);
        // Field numbers as upstream: timeseries = 1, labels = 1, samples = 2, value = 1, timestamp = 2.
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(raw[0], (1 << 3) | 2);
        assert!(decode(b"not snappy").is_err());
    }
}
