//! `golang.org/x/mod/sumdb/dirhash`: the `h1:` hashes go.sum records for module zips,
//! trees and `go.mod` files.
use std::collections::HashMap;
use std::io::{self, Read};

use base64::Engine as _;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// dirhash (golang.org/x/mod sumdb/dirhash/hash.go).

/// `Hash1` over (name, SHA-256 of content) pairs; names must not contain a newline.
pub fn hash1(mut files: Vec<(Vec<u8>, [u8; 32])>) -> Result<String, String> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = Sha256::new();
    for (name, digest) in &files {
        if name.contains(&b'\n') {
            return Err("dirhash: filenames with newlines are not supported".into());
        }
        summary.update(to_hex(digest).as_bytes());
        summary.update(b"  ");
        summary.update(name);
        summary.update(b"\n");
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    ))
}

/// The `/go.mod h1:` line of go.sum: `Hash1(["go.mod"])` over the `.mod` file.
#[cfg(test)]
pub fn go_mod_hash(content: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(content).into();
    hash1(vec![(b"go.mod".to_vec(), digest)]).expect("no newline in go.mod")
}

pub fn sha256_of(mut reader: impl Read, buf: &mut [u8]) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    loop {
        match reader.read(buf) {
            Ok(0) => return Ok(hasher.finalize().into()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `HashZip`: names as stored in the zip, decompressed contents (CRC-checked). A
/// duplicated name is hashed once per occurrence with the last entry's content, as go's
/// name → file map does. The error is the reason the zip cannot be read.
pub fn hash_zip(file: std::fs::File) -> Result<String, String> {
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| format!("zip: {e}"))?;
    let mut names: Vec<Vec<u8>> = Vec::with_capacity(archive.len());
    let mut last: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| format!("zip: {e}"))?;
        let name = entry.name_raw().to_vec();
        last.insert(name.clone(), i);
        names.push(name);
    }
    let mut digests: HashMap<usize, [u8; 32]> = HashMap::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let i = last[&name];
        let digest = match digests.get(&i) {
            Some(d) => *d,
            None => {
                let entry = archive.by_index(i).map_err(|e| format!("zip: {e}"))?;
                let d = sha256_of(entry, &mut buf)
                    .map_err(|e| format!("zip: reading {}: {e}", String::from_utf8_lossy(&name)))?;
                digests.insert(i, d);
                d
            }
        };
        files.push((name, digest));
    }
    hash1(files)
}

/// Lower-case hex, as go prints digests.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}
