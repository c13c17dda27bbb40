//! The `_bulk` wire format: NDJSON bodies cut to size, and the answer read
//! item by item.
//!
//! A body is action and source lines, each ending in `\n` (the last one too:
//! Elasticsearch refuses a body without the final newline). The answer to
//! an accepted body is HTTP 200 with `{"took", "errors", "items": [...]}`:
//! one item per action, in request order, `{"<op>": {"_index", "_id",
//! "status", "error": {"type", "reason"}}}`.

use std::io::Write as _;
use std::ops::Range;

use bytes::Bytes;
use flate2::write::GzEncoder;
use serde::Deserialize;

use super::config::OpType;

/// Every document of one batch: action and source lines, back to back.
#[derive(Debug, Default, Clone)]
pub struct Documents {
    /// NDJSON of every document.
    pub ndjson: Vec<u8>,
    /// Each document's two lines in `ndjson`.
    pub ranges: Vec<Range<usize>>,
}

impl Documents {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The two lines of document `i`.
    pub fn lines(&self, i: usize) -> &[u8] {
        &self.ndjson[self.ranges[i].clone()]
    }

    /// Appends the action line of a document; its source line follows, then [`Documents::end`].
    pub fn begin(&mut self, op: OpType, index: &str, id: &[u8]) -> usize {
        let start = self.ndjson.len();
        let out = &mut self.ndjson;
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(op.as_str().as_bytes());
        out.extend_from_slice(b"\":{\"_index\":");
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, index);
        out.extend_from_slice(b",\"_id\":\"");
        out.extend_from_slice(id);
        out.extend_from_slice(b"\"}}\n");
        start
    }

    /// Ends the document begun at `start` (after its source was written).
    pub fn end(&mut self, start: usize) {
        self.ndjson.push(b'\n');
        self.ranges.push(start..self.ndjson.len());
    }
}

/// One bulk request body over some of the pending documents.
#[derive(Debug, Clone)]
pub struct Body {
    /// What goes on the wire (compressed when configured).
    pub bytes: Bytes,
    /// The documents it carries: indexes into the pending list, `first..first + count`.
    pub first: usize,
    pub count: usize,
}

/// Limits of one body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_documents: usize,
    pub max_bytes: usize,
    pub gzip: bool,
}

/// Cuts the documents `pending` (indexes into `docs`, in order) into bodies of at most
/// `limits.max_documents` documents and `limits.max_bytes` uncompressed bytes (a larger
/// document goes alone).
///
/// # Errors
/// The compressor's error (writing into memory; not expected).
pub fn bodies(docs: &Documents, pending: &[u32], limits: Limits) -> std::io::Result<Vec<Body>> {
    let mut bodies = Vec::new();
    let mut first = 0;
    let mut bytes = 0;
    for (i, &doc) in pending.iter().enumerate() {
        let len = docs.ranges[doc as usize].len();
        let count = i - first;
        if count > 0 && (count >= limits.max_documents || bytes + len > limits.max_bytes) {
            bodies.push(body(docs, &pending[first..i], first, limits.gzip)?);
            first = i;
            bytes = 0;
        }
        bytes += len;
    }
    if first < pending.len() {
        bodies.push(body(docs, &pending[first..], first, limits.gzip)?);
    }
    Ok(bodies)
}

fn body(docs: &Documents, part: &[u32], first: usize, gzip: bool) -> std::io::Result<Body> {
    let size: usize = part.iter().map(|&d| docs.ranges[d as usize].len()).sum();
    let bytes = if gzip {
        // Level 1: on JSON it keeps most of the ratio of level 6 for a fraction of the time.
        let mut encoder = GzEncoder::new(Vec::with_capacity(size / 4), flate2::Compression::fast());
        for &d in part {
            encoder.write_all(docs.lines(d as usize))?;
        }
        encoder.finish()?
    } else {
        let mut raw = Vec::with_capacity(size);
        for &d in part {
            raw.extend_from_slice(docs.lines(d as usize));
        }
        raw
    };
    Ok(Body {
        bytes: Bytes::from(bytes),
        first,
        count: part.len(),
    })
}

/// The answer to an accepted bulk body (unknown fields ignored).
#[derive(Debug, Deserialize)]
pub struct BulkResponse {
    #[serde(default)]
    pub errors: bool,
    #[serde(default)]
    pub items: Vec<ItemEnvelope>,
}

/// `{"<op>": {...}}`: one item, keyed by its action.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemEnvelope {
    Create(Item),
    Index(Item),
    Update(Item),
    Delete(Item),
}

impl ItemEnvelope {
    pub fn item(&self) -> &Item {
        match self {
            ItemEnvelope::Create(item)
            | ItemEnvelope::Index(item)
            | ItemEnvelope::Update(item)
            | ItemEnvelope::Delete(item) => item,
        }
    }

    fn is_create(&self) -> bool {
        matches!(self, ItemEnvelope::Create(_))
    }
}

/// One item's outcome.
#[derive(Debug, Deserialize)]
pub struct Item {
    pub status: u16,
    #[serde(default)]
    pub error: Option<ItemError>,
}

#[derive(Debug, Deserialize)]
pub struct ItemError {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub reason: String,
}

/// What became of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Written, or (`create`, 409) already there from an earlier attempt.
    Delivered,
    /// 429 or 5xx: worth sending again.
    Retry,
    /// Any other 4xx (a mapping error…): sending it again gives the same answer.
    Rejected { kind: String, reason: String },
}

/// Classifies one item of a response.
pub fn item_outcome(envelope: &ItemEnvelope) -> ItemOutcome {
    let item = envelope.item();
    match item.status {
        200..=299 => ItemOutcome::Delivered,
        409 if envelope.is_create() => ItemOutcome::Delivered,
        429 | 500..=599 => ItemOutcome::Retry,
        status => {
            let (kind, reason) = match &item.error {
                Some(error) => (error.kind.clone(), error.reason.clone()),
                None => (String::new(), String::new()),
            };
            ItemOutcome::Rejected {
                kind: if kind.is_empty() {
                    format!("status_{status}")
                } else {
                    kind
                },
                reason,
            }
        }
    }
}

/// The `error.type` and `error.reason` of an Elasticsearch error body
/// (`{"error": {"type", "reason"}, "status"}`), when it is one.
pub fn error_summary(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorField,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Detailed(ItemError),
        Text(String),
    }
    match serde_json::from_slice::<ErrorBody>(body).ok()?.error {
        ErrorField::Detailed(error) => Some(format!("{}: {}", error.kind, error.reason)),
        ErrorField::Text(text) => Some(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn docs(n: usize, source_len: usize) -> Documents {
        let mut docs = Documents::default();
        for i in 0..n {
            let start = docs.begin(OpType::Create, "logs-a", format!("id{i}").as_bytes());
            docs.ndjson
                .extend_from_slice(format!("{{\"v\":\"{}\"}}", "x".repeat(source_len)).as_bytes());
            docs.end(start);
        }
        docs
    }

    #[test]
    fn documents_are_action_and_source_lines() {
        let docs = docs(2, 1);
        assert_eq!(
            std::str::from_utf8(&docs.ndjson).unwrap(),
            "{\"create\":{\"_index\":\"logs-a\",\"_id\":\"id0\"}}\n{\"v\":\"x\"}\n\
             {\"create\":{\"_index\":\"logs-a\",\"_id\":\"id1\"}}\n{\"v\":\"x\"}\n"
        );
        assert_eq!(docs.lines(1), &docs.ndjson[docs.ranges[1].clone()]);
    }

    #[test]
    fn bodies_respect_document_and_byte_limits() {
        let docs = docs(10, 100);
        let doc_len = docs.ranges[0].len();
        let pending: Vec<u32> = (0..10).collect();
        let limits = Limits {
            max_documents: 4,
            max_bytes: usize::MAX,
            gzip: false,
        };
        let cut = bodies(&docs, &pending, limits).unwrap();
        assert_eq!(cut.iter().map(|b| b.count).collect::<Vec<_>>(), [4, 4, 2]);
        assert_eq!(cut.iter().map(|b| b.first).collect::<Vec<_>>(), [0, 4, 8]);
        assert!(cut.iter().all(|b| b.bytes.ends_with(b"\n")));

        let limits = Limits {
            max_documents: 100,
            max_bytes: doc_len * 3 + 1,
            gzip: false,
        };
        let cut = bodies(&docs, &pending, limits).unwrap();
        assert_eq!(
            cut.iter().map(|b| b.count).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert!(cut.iter().all(|b| b.bytes.len() <= doc_len * 3 + 1));

        // A document larger than the bound goes alone.
        let limits = Limits {
            max_documents: 100,
            max_bytes: 10,
            gzip: false,
        };
        let cut = bodies(&docs, &[3, 7], limits).unwrap();
        assert_eq!(cut.len(), 2);
        assert_eq!(&cut[1].bytes[..], docs.lines(7));
    }

    #[test]
    fn gzip_bodies_hold_the_same_lines() {
        let docs = docs(5, 50);
        let cut = bodies(
            &docs,
            &[1, 3, 4],
            Limits {
                max_documents: 10,
                max_bytes: usize::MAX,
                gzip: true,
            },
        )
        .unwrap();
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&cut[0].bytes[..])
            .read_to_end(&mut text)
            .unwrap();
        let expected = [docs.lines(1), docs.lines(3), docs.lines(4)].concat();
        assert_eq!(text, expected);
    }

    #[test]
    fn items_are_classified_in_order() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"a","_id":"1","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},
            {"create":{"_index":"a","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[2]: version conflict, document already exists (current version [1])","index_uuid":"u","shard":"0","index":"a"}}},
            {"create":{"_index":"a","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
            {"index":{"_index":"a","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]"}}},
            {"index":{"_index":"a","_id":"5","status":409,"error":{"type":"version_conflict_engine_exception","reason":"x"}}},
            {"create":{"_index":"a","_id":"6","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
            {"index":{"_index":"a","_id":"7","status":404}}
        ]}"#;
        let response: BulkResponse = serde_json::from_slice(body).unwrap();
        assert!(response.errors);
        let outcomes: Vec<ItemOutcome> = response.items.iter().map(item_outcome).collect();
        let rejected = |kind: &str, reason: &str| ItemOutcome::Rejected {
            kind: kind.into(),
            reason: reason.into(),
        };
        assert_eq!(
            outcomes,
            [
                ItemOutcome::Delivered,
                ItemOutcome::Delivered,
                ItemOutcome::Retry,
                rejected("mapper_parsing_exception", "failed to parse field [n]"),
                rejected("version_conflict_engine_exception", "x"),
                ItemOutcome::Retry,
                rejected("status_404", ""),
            ]
        );
    }

    #[test]
    fn error_bodies_are_summarised() {
        let body = br#"{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"}],"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}"#;
        assert_eq!(
            error_summary(body).as_deref(),
            Some("illegal_argument_exception: The bulk request must be terminated by a newline [\\n]")
        );
        assert_eq!(
            error_summary(b"{\"error\":\"plain\"}").as_deref(),
            Some("plain")
        );
        assert_eq!(error_summary(b"<html>"), None);
    }
}
