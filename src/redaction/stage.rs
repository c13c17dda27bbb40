//! [`Redactor`]: the inline stage that applies the rules to every batch of
//! one signal, first in its pipeline.

use metrics::{counter, Counter};
use prost::Message as _;

use super::config::{RedactionConfig, Summary};
use super::pan;
use super::rules::{KeyClass, RedactionError, Rules, PAN_RULE};
use std::ops::Range;

use crate::model::rewrite::{self, KeyValueEdit, Rewriter, StrField};
use crate::model::schema::{self, Schema};
use crate::model::{Envelope, Signal};
use crate::stage::{StageError, Transform};
use crate::telemetry::metrics::{REDACTION_BATCH_ITEMS, REDACTION_VALUES};

/// The summary attribute added to changed items with `summary = "info"`.
pub const MASKED_COUNT_KEY: &str = "redaction.masked.count";

/// The redaction stage of one signal's pipeline.
pub struct Redactor {
    rules: Rules,
    summary: Summary,
    cache: KeyCache,
    /// Values changed in the current batch, by rule.
    counts: Vec<u64>,
    /// `REDACTION_VALUES` by rule, registered once.
    counters: Vec<Counter>,
    changed_items: Counter,
}

impl Redactor {
    /// The stage for `signal`.
    ///
    /// # Errors
    /// [`RedactionError`] when a pattern does not compile or the hash key is missing.
    pub fn new(config: &RedactionConfig, signal: Signal) -> Result<Self, RedactionError> {
        let rules = Rules::new(config)?;
        let counters = rules
            .names()
            .iter()
            .enumerate()
            .map(|(i, name)| {
                counter!(
                    REDACTION_VALUES,
                    "signal" => signal.as_str(),
                    "rule" => name.clone(),
                    "action" => rules.action(i as u16).as_str()
                )
            })
            .collect::<Vec<_>>();
        Ok(Redactor {
            counts: vec![0; counters.len()],
            counters,
            changed_items: counter!(REDACTION_BATCH_ITEMS, "signal" => signal.as_str()),
            summary: config.summary,
            cache: KeyCache::new(),
            rules,
        })
    }

    /// Applies the rules to `envelope`'s batch in place; true when it changed.
    pub fn redact(&mut self, envelope: &mut Envelope) -> bool {
        let mut walk = Walk {
            rules: &self.rules,
            cache: &mut self.cache,
            counts: &mut self.counts,
            summary: self.summary,
            clean_record: 0..0,
            clean_item: 0..0,
        };
        let changed = match rewrite::rewrite(&envelope.batch, &mut walk) {
            Some(batch) => {
                self.changed_items.increment(batch.items());
                envelope.batch = batch;
                true
            }
            None => false,
        };
        for (count, counter) in self.counts.iter_mut().zip(&self.counters) {
            if *count > 0 {
                counter.increment(std::mem::take(count));
            }
        }
        changed
    }
}

impl Transform for Redactor {
    type In = Envelope;
    type Out = Envelope;

    fn name(&self) -> &'static str {
        "redaction"
    }

    fn process(&mut self, mut input: Envelope, out: &mut Vec<Envelope>) -> Result<(), StageError> {
        self.redact(&mut input);
        out.push(input);
        Ok(())
    }
}

/// One batch's walk: the rules, the key cache and the counts.
struct Walk<'a> {
    rules: &'a Rules,
    cache: &'a mut KeyCache,
    counts: &'a mut [u64],
    summary: Summary,
    /// Addresses of the current record, when no string in it can hold a card number.
    clean_record: Range<usize>,
    /// Addresses of the current item (span, log record, data point), likewise.
    clean_item: Range<usize>,
}

fn addresses(bytes: &[u8]) -> Range<usize> {
    let start = bytes.as_ptr() as usize;
    start..start + bytes.len()
}

impl Walk<'_> {
    /// Whether `text` (a part of the batch) lies in a record or item that
    /// [`pan::may_hold_pan`] cleared, so scanning it would find nothing.
    #[inline]
    fn cleared(&self, text: &[u8]) -> bool {
        let at = text.as_ptr() as usize;
        self.clean_record.contains(&at) || self.clean_item.contains(&at)
    }
}

impl Rewriter for Walk<'_> {
    fn enter(&mut self, schema: &'static Schema, message: &[u8]) -> bool {
        if !self.rules.detect_pans {
            return true;
        }
        // A screen over the raw bytes spares most records and items the scan
        // of their strings; the walk itself goes on (for keys and ints).
        if std::ptr::eq(schema, &schema::RESOURCE_SPANS)
            || std::ptr::eq(schema, &schema::RESOURCE_LOGS)
            || std::ptr::eq(schema, &schema::RESOURCE_METRICS)
        {
            self.clean_item = 0..0;
            self.clean_record = if pan::may_hold_pan(message) {
                0..0
            } else {
                addresses(message)
            };
        } else if schema.item && self.clean_record.is_empty() && !pan::may_hold_pan(message) {
            self.clean_item = addresses(message);
        }
        true
    }

    fn key_value(&mut self, key: &[u8], value: &[u8], attribute: bool) -> KeyValueEdit {
        if !self.rules.has_key_rules() {
            return KeyValueEdit::Walk;
        }
        let class = self.cache.classify(key, attribute, |key| {
            // Keys of a validated batch are UTF-8; a non-UTF-8 key cannot match a rule.
            std::str::from_utf8(key)
                .map_or(KeyClass::Scan, |key| self.rules.classify(key, attribute))
        });
        match class {
            KeyClass::Scan => KeyValueEdit::Walk,
            KeyClass::Ignored => KeyValueEdit::Keep,
            KeyClass::Rule(rule) => {
                self.counts[usize::from(rule)] += 1;
                match self.rules.replace_value(self.rules.action(rule), value) {
                    Some(value) => KeyValueEdit::ReplaceValue(value),
                    None => KeyValueEdit::Remove,
                }
            }
        }
    }

    fn string(&mut self, _at: StrField, s: &[u8]) -> Option<String> {
        if !self.rules.detect_pans || self.cleared(s) {
            return None;
        }
        let (masked, found) = pan::mask(s, self.rules.pan_scope)?;
        self.counts[usize::from(PAN_RULE)] += found as u64;
        // Only ASCII digits and separators were replaced by ASCII: still UTF-8.
        String::from_utf8(masked).ok()
    }

    fn int_value(&mut self, value: i64) -> Option<String> {
        // A card number sent as a number: 13–19 digits (an i64 holds up to 19).
        if !self.rules.detect_pans || value < 1_000_000_000_000 {
            return None;
        }
        let (masked, found) = pan::mask(value.to_string().as_bytes(), self.rules.pan_scope)?;
        self.counts[usize::from(PAN_RULE)] += found as u64;
        String::from_utf8(masked).ok()
    }

    fn bytes_value(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        if !self.rules.detect_pans || self.cleared(bytes) || std::str::from_utf8(bytes).is_err() {
            return None;
        }
        let (masked, found) = pan::mask(bytes, self.rules.pan_scope)?;
        self.counts[usize::from(PAN_RULE)] += found as u64;
        Some(masked)
    }

    fn summary(&mut self, changes: u32) -> Option<Vec<u8>> {
        if self.summary != Summary::Info {
            return None;
        }
        Some(
            opentelemetry_proto::tonic::common::v1::KeyValue {
                key: MASKED_COUNT_KEY.into(),
                value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(
                            i64::from(changes),
                        ),
                    ),
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        )
    }
}

/// Remembers the class of recently seen attribute keys, so the regexes run
/// once per distinct key rather than once per attribute.
///
/// Hand-written rather than an LRU crate: a direct-mapped table (one slot per
/// hash, a colliding key overwrites) is bounded by construction, costs one
/// hash and one comparison per lookup, and needs no eviction bookkeeping.
/// Keys longer than [`KeyCache::MAX_KEY`] are classified every time, so a
/// client cannot make it hold more than `SLOTS × MAX_KEY` bytes.
struct KeyCache {
    slots: Vec<Option<CachedKey>>,
}

/// A key, whether it was an `attributes` entry, and its class.
#[derive(Clone)]
struct CachedKey {
    key: Box<[u8]>,
    attribute: bool,
    class: KeyClass,
}

impl KeyCache {
    const SLOTS: usize = 1024;
    const MAX_KEY: usize = 128;

    fn new() -> Self {
        KeyCache {
            slots: vec![None; Self::SLOTS],
        }
    }

    #[inline]
    fn classify(
        &mut self,
        key: &[u8],
        attribute: bool,
        compute: impl FnOnce(&[u8]) -> KeyClass,
    ) -> KeyClass {
        if key.len() > Self::MAX_KEY {
            return compute(key);
        }
        let slot = &mut self.slots[slot_hash(key, attribute) as usize % Self::SLOTS];
        if let Some(cached) = slot {
            if *cached.key == *key && cached.attribute == attribute {
                return cached.class;
            }
        }
        let class = compute(key);
        *slot = Some(CachedKey {
            key: key.into(),
            attribute,
            class,
        });
        class
    }
}

/// A cheap hash of a key for the cache slot: its length, its first and last
/// eight bytes and the `attribute` flag. Keys that collide only share a slot
/// (the full key is compared), so it need not be strong.
#[inline]
fn slot_hash(key: &[u8], attribute: bool) -> u64 {
    let word = |bytes: &[u8]| {
        let mut buf = [0u8; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(buf)
    };
    let (first, last) = if key.len() >= 8 {
        (word(&key[..8]), word(&key[key.len() - 8..]))
    } else {
        (word(key), 0)
    };
    let mixed = (first ^ last.rotate_left(29) ^ ((key.len() as u64) << 1) ^ u64::from(attribute))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mixed ^ (mixed >> 32)
}
