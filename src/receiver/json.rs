//! OTLP/JSON: a JSON request turned into the protobuf bytes of the same
//! `Export*ServiceRequest` in one streaming pass ([`transcode`]: no JSON
//! tree, no prost message, every output byte reserved in the receivers'
//! in-flight budget), and responses written as JSON.

mod transcode;

use bytes::Bytes;

use super::error::RequestError;
use crate::budget::{ItemBudget, Reservation};
use crate::model::Signal;

use transcode::Stop;

/// Decodes an OTLP/JSON request of `signal` into its protobuf encoding,
/// with no memory bound (tests, fuzzing).
///
/// # Errors
/// [`RequestError::Json`] naming the offending field when the JSON is
/// malformed or does not follow the OTLP/JSON mapping (e.g. an invalid hex id).
pub fn to_protobuf(signal: Signal, body: &[u8]) -> Result<Bytes, RequestError> {
    to_protobuf_within(signal, body, &ItemBudget::new(u64::MAX), usize::MAX).map(|(b, _)| b)
}

/// Decodes an OTLP/JSON request of `signal` into its protobuf encoding,
/// reserving every output byte in `budget` before it is written; the output
/// may not pass `limit` bytes. The reservation holds the output's bytes.
///
/// # Errors
/// [`RequestError::Json`] for malformed JSON or values outside the mapping,
/// [`RequestError::DecompressedTooLarge`] past `limit`,
/// [`RequestError::MemoryLimit`] when the budget has no room (retryable).
pub fn to_protobuf_within(
    signal: Signal,
    body: &[u8],
    budget: &ItemBudget,
    limit: usize,
) -> Result<(Bytes, Reservation), RequestError> {
    let request = match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    };
    transcode::transcode(request, body, budget, limit).map_err(|stop| match stop {
        Stop::TooLarge { limit } => RequestError::DecompressedTooLarge { limit },
        Stop::MemoryLimit { limit } => RequestError::MemoryLimit { limit },
        // The message may quote a value of the request: no card number in it.
        Stop::Invalid(message) => RequestError::Json {
            signal,
            message: crate::redaction::mask_text(&message).into_owned(),
        },
    })
}

#[cfg(test)]
mod tests;
