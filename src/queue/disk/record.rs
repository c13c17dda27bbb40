//! One record of the disk queue: a batch with its context, framed and checksummed.
//!
//! ```text
//! u32 LE  body length (bytes after this 8-byte header)
//! u32 LE  CRC32C of the body
//! body:   u8 version (1) · u8 signal · u8 context flags · u8 0
//!         u64 LE sequence · u64 LE items
//!         [u16 LE length + bytes] tenant, principal, route (each only if its flag is set)
//!         the batch: an encoded Export{Trace,Metrics,Logs}ServiceRequest, as validated
//! ```
//!
//! Segments are pre-allocated and zeroed, so a body length of 0 marks the
//! end of the data. The CRC covers everything after it, so a torn write
//! (a crash mid-record) or a flipped bit is found on reading.

use std::sync::Arc;

use bytes::{BufMut, Bytes};

use crate::model::{Batch, Context, Signal};

/// Bytes before the body.
pub const HEADER: usize = 8;
const VERSION: u8 = 1;
const FIXED_BODY: usize = 4 + 8 + 8;
const HAS_TENANT: u8 = 1;
const HAS_PRINCIPAL: u8 = 2;
const HAS_ROUTE: u8 = 4;

/// A record read back from disk.
#[derive(Debug, Clone)]
pub struct Record {
    pub sequence: u64,
    pub context: Context,
    pub batch: Batch,
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record length {0} is impossible here")]
    Length(u32),
    #[error("checksum mismatch")]
    Checksum,
    #[error("record version {0} unknown")]
    Version(u8),
    #[error("record body malformed")]
    Malformed,
}

fn signal_code(signal: Signal) -> u8 {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

fn signal_of(code: u8) -> Option<Signal> {
    match code {
        0 => Some(Signal::Traces),
        1 => Some(Signal::Metrics),
        2 => Some(Signal::Logs),
        _ => None,
    }
}

/// Context strings longer than this are cut (they are ids and names).
const MAX_CONTEXT_STRING: usize = u16::MAX as usize;

fn put_str(out: &mut Vec<u8>, value: &str) {
    let mut end = value.len().min(MAX_CONTEXT_STRING);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16_le(end as u16);
    out.extend_from_slice(&value.as_bytes()[..end]);
}

/// The encoded size of a record of `batch` with `context`.
pub fn encoded_len(context: &Context, batch: &Batch) -> usize {
    let strings: usize = [&context.tenant, &context.principal, &context.route]
        .iter()
        .filter_map(|s| s.as_deref())
        .map(|s| 2 + s.len().min(MAX_CONTEXT_STRING))
        .sum();
    HEADER + FIXED_BODY + strings + batch.encoded_len()
}

/// Appends the record of `batch` to `out`.
pub fn encode(out: &mut Vec<u8>, sequence: u64, context: &Context, batch: &Batch) {
    encode_head(out, sequence, context, batch);
    for segment in batch.segments() {
        out.extend_from_slice(segment);
    }
}

/// Appends everything of the record of `batch` but the batch itself (which
/// follows it on disk, written from its own buffers: no copy), with the
/// length and checksum covering the batch too.
pub fn encode_head(out: &mut Vec<u8>, sequence: u64, context: &Context, batch: &Batch) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let mut flags = 0;
    for (value, flag) in [
        (&context.tenant, HAS_TENANT),
        (&context.principal, HAS_PRINCIPAL),
        (&context.route, HAS_ROUTE),
    ] {
        if value.is_some() {
            flags |= flag;
        }
    }
    out.extend_from_slice(&[VERSION, signal_code(batch.signal()), flags, 0]);
    out.put_u64_le(sequence);
    out.put_u64_le(batch.items());
    for value in [&context.tenant, &context.principal, &context.route]
        .into_iter()
        .flatten()
    {
        put_str(out, value);
    }
    let head = &out[start + HEADER..];
    let mut crc = crc32c::crc32c(head);
    let mut len = head.len();
    for segment in batch.segments() {
        crc = crc32c::crc32c_append(crc, segment);
        len += segment.len();
    }
    // Records are at most a request body (far below 4 GiB); `Log::append` refuses larger.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The body length in a record header; 0 is the end of the data.
pub fn body_len(header: &[u8; HEADER]) -> u32 {
    u32::from_le_bytes([header[0], header[1], header[2], header[3]])
}

/// Reads the record whose header is `header` and body is `body` (a slice of
/// a shared read buffer: the batch points into it, no copy).
pub fn decode(header: &[u8; HEADER], body: Bytes) -> Result<Record, RecordError> {
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if crc32c::crc32c(&body) != crc {
        return Err(RecordError::Checksum);
    }
    if body.len() < FIXED_BODY {
        return Err(RecordError::Malformed);
    }
    if body[0] != VERSION {
        return Err(RecordError::Version(body[0]));
    }
    let signal = signal_of(body[1]).ok_or(RecordError::Malformed)?;
    let flags = body[2];
    let word = |at: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let sequence = word(4);
    let items = word(12);
    let mut at = FIXED_BODY;
    let mut string = |present: bool| -> Result<Option<Arc<str>>, RecordError> {
        if !present {
            return Ok(None);
        }
        let len_bytes = body.get(at..at + 2).ok_or(RecordError::Malformed)?;
        let len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
        let raw = body
            .get(at + 2..at + 2 + len)
            .ok_or(RecordError::Malformed)?;
        let value = std::str::from_utf8(raw).map_err(|_| RecordError::Malformed)?;
        at += 2 + len;
        Ok(Some(Arc::from(value)))
    };
    let context = Context {
        tenant: string(flags & HAS_TENANT != 0)?,
        principal: string(flags & HAS_PRINCIPAL != 0)?,
        route: string(flags & HAS_ROUTE != 0)?,
    };
    let payload = body.slice(at..);
    Ok(Record {
        sequence,
        context,
        batch: Batch::from_validated(signal, payload, items),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch::decode(Signal::Traces, crate::model::test_payload::traces(3, 5))
            .unwrap()
            .batch
    }

    fn split(bytes: &[u8]) -> ([u8; HEADER], Bytes) {
        let mut header = [0; HEADER];
        header.copy_from_slice(&bytes[..HEADER]);
        (header, Bytes::copy_from_slice(&bytes[HEADER..]))
    }

    #[test]
    fn round_trip_with_and_without_context() {
        let batch = batch();
        for context in [
            Context::default(),
            Context::default()
                .with_tenant("acme")
                .with_principal("token:ci")
                .with_route("gold"),
            Context::default().with_route("r"),
        ] {
            let mut out = Vec::new();
            encode(&mut out, 42, &context, &batch);
            assert_eq!(out.len(), encoded_len(&context, &batch));
            let (header, body) = split(&out);
            assert_eq!(body_len(&header) as usize, body.len());
            let record = decode(&header, body).unwrap();
            assert_eq!(record.sequence, 42);
            assert_eq!(record.context, context);
            assert_eq!(record.batch.items(), 5);
            assert_eq!(record.batch.to_bytes(), batch.to_bytes());
            assert_eq!(record.batch.signal(), Signal::Traces);
        }
    }

    #[test]
    fn any_flipped_bit_is_found() {
        let mut out = Vec::new();
        encode(&mut out, 7, &Context::default().with_tenant("t"), &batch());
        for i in (4..out.len()).step_by(7) {
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            let (header, body) = split(&bad);
            assert!(decode(&header, body).is_err(), "flip at {i} went unnoticed");
        }
    }
}
