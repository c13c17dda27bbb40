//! Line numbers for key paths, so semantic errors can point into the file.
//!
//! The text is parsed a second time with `toml_edit`, which keeps the byte span of every key.
//! Lookups are best effort: a key that is not in the file (its value is a default) resolves to
//! the line of its nearest ancestor that is, usually the `[table]` header.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// Maps byte offsets and dotted key paths of one TOML text to 1-based line numbers.
pub(crate) struct Locator {
    doc: Option<ImDocument<String>>,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl Locator {
    pub(crate) fn new(text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Locator {
            doc: ImDocument::parse(text.to_owned()).ok(),
            line_starts,
        }
    }

    /// 1-based line holding byte `offset`.
    pub(crate) fn line_of_offset(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// 1-based line of the key at `path` (`a.b[2].c`), or of its nearest ancestor in the file.
    pub(crate) fn line_of_path(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut node = Node::Item(doc.as_item());
        let mut best: Option<Range<usize>> = None;
        for segment in segments(path) {
            let next = match segment {
                Segment::Key(key) => node.key(key),
                Segment::Index(index) => node.index(index),
            };
            let Some((next, span)) = next else { break };
            if span.is_some() {
                best = span;
            }
            node = next;
        }
        best.map(|span| self.line_of_offset(span.start))
    }
}

/// A place in the parsed document: `toml_edit` keeps tables, items and values apart.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Value(value) => value.as_inline_table().map(|t| t as &dyn TableLike),
            Node::Table(table) => Some(table as &dyn TableLike),
        }
    }

    /// The child under `key`, with the span of the key itself (or of its value).
    fn key(self, key: &str) -> Option<(Node<'a>, Option<Range<usize>>)> {
        let (key, item) = self.table_like()?.get_key_value(key)?;
        Some((Node::Item(item), key.span().or_else(|| item.span())))
    }

    /// Array item `index`, with its span.
    fn index(self, index: usize) -> Option<(Node<'a>, Option<Range<usize>>)> {
        let value = match self {
            Node::Item(Item::ArrayOfTables(tables)) => {
                let table = tables.get(index)?;
                return Some((Node::Table(table), table.span()));
            }
            Node::Item(Item::Value(value)) | Node::Value(value) => value,
            _ => return None,
        };
        let item = value.as_array()?.get(index)?;
        Some((Node::Value(item), item.span()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` → `a`, `b`, `[2]`, `c`. Keys are split on `.`; a malformed index ends the path.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(body) = rest.strip_prefix('[') {
            let Some(end) = body.find(']') else {
                return out;
            };
            let Ok(index) = body[..end].parse() else {
                return out;
            };
            out.push(Segment::Index(index));
            rest = &body[end + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
[receivers.otlp.grpc]
endpoint = \"127.0.0.1:4317\"

[exporters.otlp.jaeger]
endpoint = \"http://x:1\"
headers = { \"x-api-key\" = \"k\" }

[pipelines.traces]
exporters = [
  \"debug/console\",
  \"otlp/jaeger\",
]
";

    #[test]
    fn finds_keys_tables_inline_tables_and_array_items() {
        let l = Locator::new(TEXT);
        assert_eq!(l.line_of_path("receivers.otlp.grpc.endpoint"), Some(2));
        assert_eq!(l.line_of_path("receivers.otlp.grpc"), Some(1));
        assert_eq!(l.line_of_path("exporters.otlp.jaeger"), Some(4));
        assert_eq!(
            l.line_of_path("exporters.otlp.jaeger.headers.x-api-key"),
            Some(6)
        );
        assert_eq!(l.line_of_path("pipelines.traces.exporters"), Some(9));
        assert_eq!(l.line_of_path("pipelines.traces.exporters[1]"), Some(11));
    }

    #[test]
    fn missing_keys_fall_back_to_the_nearest_ancestor() {
        let l = Locator::new(TEXT);
        assert_eq!(
            l.line_of_path("receivers.otlp.grpc.max_request_bytes"),
            Some(1)
        );
        assert_eq!(
            l.line_of_path("exporters.otlp.jaeger.sending_queue.queue_size"),
            Some(4)
        );
        assert_eq!(l.line_of_path("admin.endpoint"), None);
        assert_eq!(l.line_of_path("pipelines.traces.exporters[7]"), Some(9));
    }

    #[test]
    fn offsets_map_to_lines() {
        let l = Locator::new("a\nb\n\nc");
        assert_eq!(l.line_of_offset(0), 1);
        assert_eq!(l.line_of_offset(1), 1);
        assert_eq!(l.line_of_offset(2), 2);
        assert_eq!(l.line_of_offset(4), 3);
        assert_eq!(l.line_of_offset(5), 4);
    }
}
