//! The registry index's checksums, from the summaries cargo caches per package
//! (`sources/registry/index/cache.rs`, `SummariesCache::parse`), the same for git and
//! sparse indexes:
//!
//! ```text
//! u8      cache version (3)
//! u32 LE  index schema version (2)
//! bytes   the index version (an ETag, a git blob id), NUL
//! then per version: the version, NUL, the index's JSON line for it, NUL
//! ```
//!
//! The JSON line's `cksum` is the SHA-256 of the `.crate` in hex: what cargo checked
//! when it downloaded the file and never checks again (`download.rs`): a `.crate`
//! damaged later fails only when cargo must extract it again.

/// The cache versions this reader knows (`CURRENT_CACHE_VERSION`; 1 and 2 had the same
/// entry layout, 2 adding the schema field).
const CACHE_VERSIONS: [u8; 2] = [2, 3];

/// The `cksum` the index gives for `version`, from the bytes of a summaries file.
/// `Ok(None)`: the file does not list the version or gives no checksum. `Err`: the
/// file is not in a format this reader knows (cargo then ignores and rewrites it).
pub fn checksum_of(summaries: &[u8], version: &str) -> Result<Option<String>, String> {
    let (&cache_version, rest) = summaries.split_first().ok_or("empty file")?;
    if !CACHE_VERSIONS.contains(&cache_version) {
        return Err(format!("cache version {cache_version}"));
    }
    // The schema version, then the index version, NUL-terminated.
    let rest = rest.get(4..).ok_or("truncated header")?;
    let mut fields = rest.split(|&b| b == 0);
    fields.next().ok_or("truncated header")?;
    while let Some(vers) = fields.next() {
        let Some(json) = fields.next() else { break };
        if vers != version.as_bytes() {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Line {
            cksum: Option<String>,
        }
        let line: Line = serde_json::from_slice(json)
            .map_err(|e| format!("the index line of {version} is not JSON: {e}"))?;
        return Ok(line.cksum.map(|c| c.to_ascii_lowercase()));
    }
    Ok(None)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn summaries(versions: &[(&str, &str)]) -> Vec<u8> {
        let mut out = vec![3u8];
        out.extend(2u32.to_le_bytes());
        out.extend(b"etag: \"abc\"\0");
        for (vers, cksum) in versions {
            out.extend(vers.as_bytes());
            out.push(0);
            out.extend(
                format!(r#"{{"name":"x","vers":"{vers}","deps":[],"cksum":"{cksum}","features":{{}},"yanked":false}}"#)
                    .as_bytes(),
            );
            out.push(0);
        }
        out
    }

    #[test]
    fn finds_the_checksum_of_a_version() {
        let file = summaries(&[("1.0.0", "aa"), ("1.0.1", "BB"), ("2.0.0-rc.1+x", "cc")]);
        assert_eq!(checksum_of(&file, "1.0.1"), Ok(Some("bb".into())));
        assert_eq!(checksum_of(&file, "2.0.0-rc.1+x"), Ok(Some("cc".into())));
        assert_eq!(checksum_of(&file, "3.0.0"), Ok(None));
    }

    #[test]
    fn refuses_what_it_does_not_know_and_never_panics() {
        assert!(checksum_of(b"", "1.0.0").is_err());
        assert!(checksum_of(&[9, 2, 0, 0, 0], "1.0.0").is_err());
        assert!(checksum_of(&[3, 2], "1.0.0").is_err());
        let mut bad = summaries(&[("1.0.0", "aa")]);
        let at = bad.len() - 5;
        bad[at] = b'{';
        assert!(checksum_of(&bad, "1.0.0").is_err());
        proptest::proptest!(|(bytes: Vec<u8>, vers: String)| {
            let _ = checksum_of(&bytes, &vers);
        });
    }
}
