//! Error answers in the shape OTLP asks for: a `google.rpc.Status` (as an
//! HTTP body, protobuf or JSON) and the gRPC status trailers.

use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;
use percent_encoding::{AsciiSet, CONTROLS};
use prost::Message;
use tonic::Code;
use tonic_types::pb::{RetryInfo, Status};

/// `type_url` of a `google.rpc.RetryInfo` detail.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// What the gRPC spec percent-encodes in `grpc-message`: everything outside
/// printable ASCII (non-ASCII bytes are always encoded), and `%` itself.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// The `google.rpc.Status` for `code` and `message`, with a `RetryInfo`
/// detail when the client should retry after `retry_after`.
pub fn status(code: Code, message: &str, retry_after: Option<Duration>) -> Status {
    Status {
        code: code as i32,
        message: message.to_owned(),
        details: retry_after.map(retry_info).into_iter().collect(),
    }
}

fn retry_info(delay: Duration) -> prost_types::Any {
    let info = RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            // Below 10^9, so it always fits.
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    prost_types::Any {
        type_url: RETRY_INFO_TYPE_URL.to_owned(),
        value: info.encode_to_vec(),
    }
}

/// The status as a protobuf body.
pub fn status_protobuf(status: &Status) -> Vec<u8> {
    status.encode_to_vec()
}

/// The status as a JSON body, in the proto3 JSON mapping
/// (`{"code":14,"message":"…","details":[{"@type":"…RetryInfo","retryDelay":"1s"}]}`).
pub fn status_json(code: Code, message: &str, retry_after: Option<Duration>) -> Vec<u8> {
    let mut body = serde_json::json!({ "code": code as i32, "message": message });
    if let Some(delay) = retry_after {
        body["details"] = serde_json::json!([{
            "@type": RETRY_INFO_TYPE_URL,
            "retryDelay": json_duration(delay),
        }]);
    }
    body.to_string().into_bytes()
}

/// A `google.protobuf.Duration` in its JSON form: `"1s"`, `"0.250s"`.
fn json_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        let frac = format!("{:09}", d.subsec_nanos());
        format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
    }
}

/// The `grpc-message` header: the message, percent-encoded per the gRPC spec.
pub fn grpc_message(message: &str) -> HeaderValue {
    let encoded = percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE).to_string();
    // Percent-encoding leaves only printable ASCII, which is always a valid header value.
    HeaderValue::try_from(encoded).unwrap_or_else(|_| HeaderValue::from_static("invalid message"))
}

/// The `grpc-status-details-bin` header: the encoded status, base64 without padding.
pub fn grpc_status_details(status: &Status) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
    // Base64 is printable ASCII.
    HeaderValue::try_from(encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Retry-After` seconds for `delay`: rounded up, at least 1.
pub fn retry_after_secs(delay: Duration) -> u64 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_encodes_percent_and_non_ascii() {
        assert_eq!(grpc_message("a b%c\u{e9}\n"), "a b%25c%C3%A9%0A");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(0)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn json_status_carries_retry_delay() {
        let body = status_json(Code::Unavailable, "busy", Some(Duration::from_millis(1500)));
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["code"], 14);
        assert_eq!(value["details"][0]["retryDelay"], "1.5s");
    }

    #[test]
    fn status_details_decode_to_retry_info() {
        let header = grpc_status_details(&status(
            Code::Unavailable,
            "busy",
            Some(Duration::from_secs(2)),
        ));
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(header.as_bytes())
            .unwrap();
        let status = Status::decode(bytes.as_slice()).unwrap();
        assert_eq!(status.details[0].type_url, RETRY_INFO_TYPE_URL);
        let info = RetryInfo::decode(status.details[0].value.as_slice()).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, 2);
    }
}
