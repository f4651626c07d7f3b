//! The value syntaxes users write in the config file: sizes (`"20 GiB"`, `"15%"`,
//! plain integers as bytes), durations (`"30d"`, `"2h 30m"`) and crontab lines.
//!
//! Each parser returns a message that says what was expected, so the config loader can
//! put it next to the file, line and key.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A size limit: an absolute number of bytes or a share of the cache's filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeLimit {
    Bytes(u64),
    /// Percent of the filesystem's total size, 0–100.
    Percent(f64),
}

impl SizeLimit {
    /// The limit in bytes for a filesystem of `fs_total` bytes.
    pub fn resolve(self, fs_total: u64) -> u64 {
        match self {
            SizeLimit::Bytes(b) => b,
            SizeLimit::Percent(p) => (fs_total as f64 * p / 100.0) as u64,
        }
    }
}

impl fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeLimit::Bytes(b) => write!(f, "{}", format_bytes(*b)),
            SizeLimit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for SizeLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let expected = || {
            format!(
                "invalid size {s:?}: expected bytes with a unit like \"20 GiB\" or \"500 MB\", or a percentage of the filesystem like \"15%\""
            )
        };
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| expected())?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!(
                    "invalid size {s:?}: a percentage must be between 0% and 100%"
                ));
            }
            return Ok(SizeLimit::Percent(p));
        }
        // bytesize accepts "20 GiB", "20GiB", "1.5 GB", "100" (bytes).
        if !t.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(expected());
        }
        // "10G" is 10 GiB to `du -h` and 10 GB to bytesize: refused, not guessed
        // (issue #30: it silently meant 9.3 GiB).
        let unit = t
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim();
        if unit.len() == 1 && "kKmMgGtTpP".contains(unit) {
            let number = t.trim_end_matches(unit).trim();
            let upper = unit.to_ascii_uppercase();
            return Err(format!(
                "ambiguous size {s:?}: say \"{number} {upper}iB\" (powers of 1024, as du -h means) or \"{number} {upper}B\" (powers of 1000)"
            ));
        }
        t.parse::<bytesize::ByteSize>()
            .map(|b| SizeLimit::Bytes(b.as_u64()))
            .map_err(|_| expected())
    }
}

impl<'de> Deserialize<'de> for SizeLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a size like \"20 GiB\", a percentage like \"15%\", or a number of bytes",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeLimit, E> {
                u64::try_from(v)
                    .map(SizeLimit::Bytes)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeLimit, E> {
                Ok(SizeLimit::Bytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeLimit, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Bytes as people read them: binary units, one decimal ("1.5 GiB").
pub fn format_bytes(b: u64) -> String {
    bytesize::ByteSize::b(b).display().iec().to_string()
}

/// A duration written as humantime text: `"30d"`, `"2h"`, `"1h 5m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration {s:?} ({e}): expected a number with a unit like \"30d\", \"12h\" or \"90m\"")
    })
}

/// A Unix time as local wall-clock time, `2026-12-03 08:31:10` (the number itself if
/// the time zone cannot place it).
pub fn local_time(t: i64) -> String {
    use chrono::TimeZone;
    chrono::Local.timestamp_opt(t, 0).single().map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// A duration as config files write it (`"30d"`, `"1h 5m"`), whole seconds; it parses
/// back to the same value.
pub fn format_duration(d: Duration) -> String {
    let mut left = d.as_secs();
    if left == 0 {
        return "0s".to_string();
    }
    let mut parts = Vec::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if left >= secs {
            parts.push(format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    parts.join(" ")
}

/// Serde adapter for durations written as humantime text.
pub mod duration_text {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Some).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_config_files_write_them() {
        for (secs, text) in [
            (30 * 86_400, "30d"),
            (2 * 3_600, "2h"),
            (3_900, "1h 5m"),
            (90, "1m 30s"),
            (0, "0s"),
            (86_400 + 1, "1d 1s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text} parses back");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "20 GiB".parse::<SizeLimit>(),
            Ok(SizeLimit::Bytes(20 << 30))
        );
        assert_eq!("20GiB".parse::<SizeLimit>(), Ok(SizeLimit::Bytes(20 << 30)));
        assert_eq!(
            "500 MB".parse::<SizeLimit>(),
            Ok(SizeLimit::Bytes(500_000_000))
        );
        assert_eq!("4096".parse::<SizeLimit>(), Ok(SizeLimit::Bytes(4096)));
        assert_eq!("15%".parse::<SizeLimit>(), Ok(SizeLimit::Percent(15.0)));
        assert!("20 XB".parse::<SizeLimit>().is_err());
        for ambiguous in ["10G", "10 g", "1.5T", "512k"] {
            let e = ambiguous.parse::<SizeLimit>().unwrap_err();
            assert!(e.contains("ambiguous") && e.contains("iB"), "{e}");
        }
        assert_eq!(
            "10 GB".parse::<SizeLimit>(),
            Ok(SizeLimit::Bytes(10_000_000_000))
        );
        assert!("lots".parse::<SizeLimit>().is_err());
        assert!("150%".parse::<SizeLimit>().is_err());
        assert_eq!(SizeLimit::Percent(10.0).resolve(1000), 100);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("1h 5m").unwrap(), Duration::from_secs(3900));
        assert!(parse_duration("soon").is_err());
    }
}
