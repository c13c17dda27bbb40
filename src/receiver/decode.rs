//! Reading a request body within `max_request_bytes`, and decompressing it
//! (gzip, zstd) within `max_decompressed_bytes`.
//!
//! Both limits are enforced while reading, never after: the body is read
//! through [`http_body_util::Limited`], and a decompressor through
//! [`Read::take`] into a buffer grown to at most the cap, so neither a large
//! upload nor a gzip/zstd bomb can take more memory than the configured limit.

use std::io::{self, Read};

use bytes::Bytes;
use http::HeaderValue;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::RequestError;
use crate::budget::{ItemBudget, Reservation};

/// A content coding of the request body (`Content-Encoding`) or of a gRPC
/// message (`grpc-encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Identity,
    Gzip,
    Zstd,
}

impl Compression {
    /// The codings we accept, for `grpc-accept-encoding` / `Accept-Encoding`.
    pub const ACCEPTED: &'static str = "gzip,zstd,identity";

    /// Reads the coding from the value of `header`; absent or empty means identity.
    ///
    /// # Errors
    /// [`RequestError::UnsupportedEncoding`] for any other coding.
    pub fn from_header(
        header: &'static str,
        value: Option<&HeaderValue>,
    ) -> Result<Compression, RequestError> {
        let Some(value) = value else {
            return Ok(Compression::Identity);
        };
        let unsupported = || RequestError::UnsupportedEncoding {
            header,
            encoding: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        };
        let text = value.to_str().map_err(|_| unsupported())?.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("identity") {
            Ok(Compression::Identity)
        } else if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
            Ok(Compression::Gzip)
        } else if text.eq_ignore_ascii_case("zstd") {
            Ok(Compression::Zstd)
        } else {
            Err(unsupported())
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Identity => "identity",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Collects `body` into one buffer, refusing it once it passes `limit` bytes.
///
/// A body that arrives as one frame is returned without a copy; several
/// frames are concatenated once.
///
/// # Errors
/// [`RequestError::BodyTooLarge`] past `limit` (`reported` is the limit named
/// in the message), [`RequestError::Body`] when the body cannot be read.
pub async fn read_body<B>(
    body: B,
    limit: usize,
    reported: usize,
    inflight: &ItemBudget,
    deadline: ReadDeadline,
) -> Result<(Bytes, Reservation), RequestError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut held = Reservation::detached(0);
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        let Ok(frame) = tokio::time::timeout_at(deadline.at, body.frame()).await else {
            return Err(RequestError::Timeout {
                what: "request body",
                after: deadline.after,
            });
        };
        let Some(frame) = frame else {
            break;
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) if error.is::<LengthLimitError>() => {
                return Err(RequestError::BodyTooLarge { limit: reported })
            }
            Err(error) => return Err(RequestError::Body(error.to_string())),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no payload
        };
        held.merge(reserve(inflight, data.len())?);
        chunks.push(data);
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut joined = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in &chunks {
                joined.extend_from_slice(chunk);
            }
            Bytes::from(joined)
        }
    };
    Ok((bytes, held))
}

/// Inputs at least this large are decompressed and decoded on the blocking
/// pool, so one large request does not stall the other connections served
/// by the same runtime thread.
pub const OFFLOAD_BYTES: usize = 64 * 1024;

/// Runs `work` (decompression, JSON decoding of `input_len` bytes) inline
/// when the input is small, else on the blocking pool.
///
/// # Errors
/// What `work` returns; [`RequestError::Body`] if the blocking task failed.
pub async fn off_runtime<T, F>(input_len: usize, work: F) -> Result<T, RequestError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, RequestError> + Send + 'static,
{
    if input_len < OFFLOAD_BYTES {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| Err(RequestError::Body(format!("decoding failed: {error}"))))
}

/// When a request body must be complete: `after` its head (`read_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct ReadDeadline {
    pub at: tokio::time::Instant,
    pub after: std::time::Duration,
}

impl ReadDeadline {
    /// `after` from now.
    pub fn after(after: std::time::Duration) -> Self {
        ReadDeadline {
            at: tokio::time::Instant::now() + after,
            after,
        }
    }
}

/// Reserves `bytes` of the receivers' in-flight budget.
///
/// # Errors
/// [`RequestError::MemoryLimit`] when the budget is spent (retryable).
pub fn reserve(inflight: &ItemBudget, bytes: usize) -> Result<Reservation, RequestError> {
    inflight
        .try_reserve(bytes as u64)
        .ok_or(RequestError::MemoryLimit {
            limit: inflight.capacity(),
        })
}

/// Decompresses `body` to at most `cap` bytes, reserving the output in
/// `inflight` before each allocation; the reservation holds the output.
/// Identity returns `body` itself (counted when it was read).
///
/// # Errors
/// [`RequestError::DecompressedTooLarge`] when the output would pass `cap`,
/// [`RequestError::Decompress`] when the data is corrupt,
/// [`RequestError::MemoryLimit`] when the budget has no room (retryable).
pub fn decompress(
    compression: Compression,
    body: Bytes,
    cap: usize,
    inflight: &ItemBudget,
) -> Result<(Bytes, Reservation), RequestError> {
    match compression {
        Compression::Identity if body.len() > cap => {
            Err(RequestError::DecompressedTooLarge { limit: cap })
        }
        Compression::Identity => Ok((body, Reservation::detached(0))),
        Compression::Gzip => read_capped(
            flate2::read::MultiGzDecoder::new(&body[..]),
            body.len(),
            cap,
            "gzip",
            inflight,
        ),
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(&body[..]).map_err(|source| {
                    RequestError::Decompress {
                        encoding: "zstd",
                        source,
                    }
                })?;
            read_capped(decoder, body.len(), cap, "zstd", inflight)
        }
    }
}

/// First guess of the decompressed size, as a multiple of the compressed size.
const EXPANSION_GUESS: usize = 4;
/// Smallest step the output buffer grows by.
const MIN_GROWTH: usize = 16 * 1024;

/// Reads `reader` to its end into a buffer that never grows past `cap + 1`
/// bytes: reading through `take(cap + 1)` tells "exactly `cap`" from "more".
/// Every growth is reserved in `inflight` before it is allocated.
fn read_capped(
    reader: impl Read,
    compressed_len: usize,
    cap: usize,
    encoding: &'static str,
    inflight: &ItemBudget,
) -> Result<(Bytes, Reservation), RequestError> {
    let limit = cap.saturating_add(1);
    let mut reader = reader.take(limit as u64);
    let mut held = Reservation::detached(0);
    let mut out: Vec<u8> = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= limit {
                break;
            }
            let want = if out.is_empty() {
                compressed_len.saturating_mul(EXPANSION_GUESS)
            } else {
                out.len()
            };
            let grow = want.max(MIN_GROWTH).min(limit - out.len());
            held.merge(reserve(inflight, grow)?);
            // Exact, so the allocation stays within the cap (and the reservation).
            out.reserve_exact(grow);
            out.resize(out.len() + grow, 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(RequestError::Decompress { encoding, source }),
        }
    }
    if filled > cap {
        return Err(RequestError::DecompressedTooLarge { limit: cap });
    }
    out.truncate(filled);
    Ok((Bytes::from(out), held))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    fn decompress(
        compression: Compression,
        body: Bytes,
        cap: usize,
    ) -> Result<Bytes, RequestError> {
        super::decompress(compression, body, cap, &ItemBudget::new(u64::MAX)).map(|(b, _)| b)
    }

    #[test]
    fn the_output_is_reserved_before_it_is_allocated() {
        let data = vec![7u8; 100_000];
        let budget = ItemBudget::new(50_000);
        let err = super::decompress(Compression::Gzip, gzip(&data), 1 << 20, &budget).unwrap_err();
        assert!(matches!(err, RequestError::MemoryLimit { .. }), "{err}");
        assert_eq!(budget.used(), 0, "nothing held after the refusal");
        let budget = ItemBudget::new(1 << 20);
        let (out, held) =
            super::decompress(Compression::Gzip, gzip(&data), 1 << 20, &budget).unwrap();
        assert_eq!(out.len(), 100_000);
        assert!(
            held.items() >= 100_000,
            "the output is held: {}",
            held.items()
        );
        assert_eq!(budget.used(), held.items());
    }

    #[test]
    fn round_trips_gzip_and_zstd() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(
            decompress(Compression::Gzip, gzip(&data), 1 << 20).unwrap(),
            data
        );
        let zstd = Bytes::from(zstd::encode_all(&data[..], 3).unwrap());
        assert_eq!(decompress(Compression::Zstd, zstd, 1 << 20).unwrap(), data);
    }

    #[test]
    fn output_exactly_at_cap_is_accepted_one_more_byte_is_not() {
        let data = vec![7u8; 1000];
        assert_eq!(
            decompress(Compression::Gzip, gzip(&data), 1000)
                .unwrap()
                .len(),
            1000
        );
        let err = decompress(Compression::Gzip, gzip(&data), 999).unwrap_err();
        assert!(
            matches!(err, RequestError::DecompressedTooLarge { limit: 999 }),
            "{err}"
        );
    }

    #[test]
    fn bomb_stops_at_the_cap() {
        let bomb = Bytes::from(zstd::encode_all(io::repeat(0).take(64 << 20), 3).unwrap());
        let err = decompress(Compression::Zstd, bomb, 1 << 20).unwrap_err();
        assert!(matches!(err, RequestError::DecompressedTooLarge { .. }));
    }

    #[test]
    fn endless_output_stops_one_byte_past_the_cap() {
        // A reader that never ends stands in for any decompressor: reading
        // stops at cap + 1 bytes whatever the input claims.
        let err =
            read_capped(io::repeat(1), 10, 5000, "gzip", &ItemBudget::new(u64::MAX)).unwrap_err();
        assert!(matches!(
            err,
            RequestError::DecompressedTooLarge { limit: 5000 }
        ));
    }

    #[test]
    fn corrupt_gzip_is_named() {
        let err = decompress(Compression::Gzip, Bytes::from_static(b"not gzip"), 1024).unwrap_err();
        assert!(err.to_string().starts_with("invalid gzip body: "), "{err}");
    }

    #[test]
    fn encodings_are_parsed_case_insensitively() {
        let parse = |v: &'static str| {
            Compression::from_header("Content-Encoding", Some(&HeaderValue::from_static(v)))
        };
        assert_eq!(parse("GZIP").unwrap(), Compression::Gzip);
        assert_eq!(parse("zstd").unwrap(), Compression::Zstd);
        assert_eq!(parse("identity").unwrap(), Compression::Identity);
        assert_eq!(
            parse("br").unwrap_err().to_string(),
            "unsupported Content-Encoding \"br\", supported: gzip, zstd, identity"
        );
    }
}
