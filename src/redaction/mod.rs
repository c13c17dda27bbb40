//! PCI redaction: no card number leaves the gateway, and nothing else is damaged.
//!
//! [`Redactor`] is an inline stage that runs first in every signal's
//! pipeline, before the sampling buffer, any queue and any exporter, so no
//! unmasked value is buffered, persisted or sent. It walks every string of a
//! batch with [`crate::model::rewrite`] (protobuf and JSON requests alike:
//! both arrive as validated protobuf) and:
//!
//! * masks every card number ([`pan`]) in any text to `****` and its last four
//!   digits, in place inside longer strings, in attribute keys and values at
//!   any depth, names, status messages, log bodies and UTF-8 bytes values;
//! * replaces, hashes or removes the values of attributes whose keys match a
//!   rule ([`config`]), whatever they hold;
//! * counts what it changed per rule on `/metrics` and, with
//!   `summary = "info"`, says so on each changed item.
//!
//! Only the records that change are re-encoded; the rest stay zero-copy.
//! It never logs a value.

pub mod config;
pub mod pan;
pub mod rules;
pub mod stage;

pub use config::{Action, RedactionConfig, Summary};
pub use rules::{RedactionError, Rules};
pub use stage::{Redactor, MASKED_COUNT_KEY};

/// `text` with every Luhn-valid 13–19 digit run masked, whatever its first
/// digit: for client-facing error messages that quote a request.
pub fn mask_text(text: &str) -> std::borrow::Cow<'_, str> {
    match pan::mask(text.as_bytes(), pan::PanScope::AnyLuhn) {
        Some((masked, _)) => match String::from_utf8(masked) {
            Ok(masked) => std::borrow::Cow::Owned(masked),
            Err(_) => std::borrow::Cow::Borrowed("(message withheld)"),
        },
        None => std::borrow::Cow::Borrowed(text),
    }
}
