//! Value types that config fields share: durations and byte sizes in human form.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as a humantime string (`"5s"`, `"200ms"`, `"1m 30s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|_| serde::de::Error::custom(format!("invalid duration \"{text}\"")))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes: an integer, or a string with a unit (`"8MiB"`, `"512 KiB"`, `"1GB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    /// As `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| ByteSize(b.as_u64()))
                .map_err(|_| serde::de::Error::custom(format!("invalid size \"{text}\""))),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        d: HumanDuration,
        s: ByteSize,
    }

    #[test]
    fn parses_human_forms() {
        let t: T = toml::from_str("d = \"1m 30s\"\ns = \"8MiB\"").unwrap();
        assert_eq!(t.d.get(), Duration::from_secs(90));
        assert_eq!(t.s.get(), 8 * 1024 * 1024);
        let t: T = toml::from_str("d = \"200ms\"\ns = 1024").unwrap();
        assert_eq!(t.d.get(), Duration::from_millis(200));
        assert_eq!(t.s.get(), 1024);
    }

    #[test]
    fn bad_duration_is_named() {
        let err = toml::from_str::<T>("d = \"five seconds\"\ns = 1")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("invalid duration \"five seconds\""),
            "{err}"
        );
    }
}
