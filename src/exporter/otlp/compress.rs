//! Request compression for both transports, at the fastest levels.
//!
//! Measured on 8192-item requests from `testkit` (release build, one core):
//!
//! | signal | gzip 1 | gzip 6 | zstd 1 | zstd 3 |
//! |---|---|---|---|---|
//! | traces (3.4 MB) | 268 MB/s, 5.0× | 29 MB/s, 6.0× | 419 MB/s, 5.7× | 303 MB/s, 9.2× |
//! | metrics (1.7 MB) | 179 MB/s, 5.8× | 29 MB/s, 7.5× | 290 MB/s, 7.0× | 283 MB/s, 7.0× |
//! | logs (2.1 MB) | 126 MB/s, 3.3× | 19 MB/s, 4.1× | 289 MB/s, 3.9× | 168 MB/s, 4.0× |
//!
//! At ~400 bytes a span, 1M spans/s is ~400 MB/s of protobuf: gzip 6 (the
//! level tonic hard-codes) would need over ten cores for compression alone,
//! gzip 1 about one and a half, zstd 1 about one. Hence level 1 for both.

use std::io::{self, Read, Write};

use crate::model::Batch;

use super::config::Compression;

/// gzip level: the fastest (see the table above).
pub(super) const GZIP_LEVEL: u32 = 1;
/// zstd level: the fastest regular level.
pub(super) const ZSTD_LEVEL: i32 = 1;

/// Appends the batch's request body to `out`, compressed as asked: one pass
/// over the segments, no intermediate buffer.
///
/// # Errors
/// Only what the compressor reports; writing into a `Vec` cannot fail.
pub(super) fn write_body(
    batch: &Batch,
    compression: Compression,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    match compression {
        Compression::None => {
            batch.write_to(out);
            Ok(())
        }
        Compression::Gzip => {
            out.reserve(batch.encoded_len() / 4);
            let mut encoder =
                flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            for segment in batch.segments() {
                encoder.write_all(segment)?;
            }
            encoder.finish().map(|_| ())
        }
        Compression::Zstd => {
            out.reserve(batch.encoded_len() / 4);
            let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
            // Lets zstd size its window (and memory) to the input and record the length.
            encoder.set_pledged_src_size(Some(batch.encoded_len() as u64))?;
            encoder.include_contentsize(true)?;
            for segment in batch.segments() {
                encoder.write_all(segment)?;
            }
            encoder.finish().map(|_| ())
        }
    }
}

/// Decompresses a (small) response message, reading at most `limit` bytes of output.
///
/// # Errors
/// An unknown encoding, a corrupt stream, or output past `limit`.
pub(super) fn decompress_capped(encoding: &str, data: &[u8], limit: usize) -> io::Result<Vec<u8>> {
    let cap = limit as u64 + 1;
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out)?,
        "zstd" => zstd::stream::read::Decoder::new(data)?
            .take(cap)
            .read_to_end(&mut out)?,
        "identity" => data.take(cap).read_to_end(&mut out)?,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unsupported encoding {other}"),
            ))
        }
    };
    if out.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "response too large",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::model::Signal;

    fn two_segments() -> Batch {
        let mut batch = Batch::from_validated(Signal::Logs, Bytes::from(vec![0x0a, 0x00]), 0);
        batch.append(Batch::from_validated(
            Signal::Logs,
            Bytes::from(vec![0x0a, 0x00]),
            0,
        ));
        batch
    }

    #[test]
    fn bodies_decompress_to_the_batch() {
        let batch = two_segments();
        let plain = [0x0a, 0x00, 0x0a, 0x00];
        for (compression, name) in [
            (Compression::None, "identity"),
            (Compression::Gzip, "gzip"),
            (Compression::Zstd, "zstd"),
        ] {
            let mut out = b"prefix".to_vec();
            write_body(&batch, compression, &mut out).unwrap();
            assert_eq!(&out[..6], b"prefix");
            assert_eq!(
                decompress_capped(name, &out[6..], 100).unwrap(),
                plain,
                "{name}"
            );
        }
    }

    #[test]
    fn decompression_is_capped() {
        let mut out = Vec::new();
        let big = Batch::from_validated(Signal::Logs, Bytes::from(vec![0u8; 10_000]), 0);
        write_body(&big, Compression::Gzip, &mut out).unwrap();
        assert!(decompress_capped("gzip", &out, 9_999).is_err());
        assert_eq!(
            decompress_capped("gzip", &out, 10_000).unwrap().len(),
            10_000
        );
        assert!(decompress_capped("br", &out, 10_000).is_err());
    }
}
