//! GOCACHE's on-disk format (`cmd/go/internal/cache/cache.go`): `<2 hex>/<64 hex>-a`
//! action files of exactly 175 bytes naming an output `<64 hex>-d` by its hash, and the
//! README that marks a directory as a build cache.
use super::*;

pub(super) const ACTION_LEN: usize = 175;
pub(super) const README_START: &[u8] =
    b"This directory holds cached build artifacts from the Go build system.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `<id>-a` and the output it names.
    Action,
    /// `<id>-d` named by no action.
    Output,
}

/// A 32-byte hash and whether it names an action or an orphan output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoId {
    pub hash: [u8; 32],
    pub role: Role,
}

impl GoId {
    /// The file name as a NUL-terminated C string, without allocating.
    pub(super) fn c_name(&self) -> [u8; 67] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut name = [0u8; 67];
        for (i, b) in self.hash.iter().enumerate() {
            name[2 * i] = HEX[(b >> 4) as usize];
            name[2 * i + 1] = HEX[(b & 15) as usize];
        }
        name[64] = b'-';
        name[65] = match self.role {
            Role::Action => b'a',
            Role::Output => b'd',
        };
        name
    }

    pub(super) fn file_name(&self) -> String {
        String::from_utf8_lossy(&self.c_name()[..66]).into_owned()
    }
}

/// A parsed `-a` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub action: [u8; 32],
    pub output: [u8; 32],
    pub size: u64,
    pub time_ns: i64,
}

/// Parses an action file as `putIndexEntry` writes it; the error is a problem code.
pub fn parse_action(bytes: &[u8]) -> Result<Action, &'static str> {
    if bytes.len() < ACTION_LEN {
        return Err("action-truncated");
    }
    if bytes.len() > ACTION_LEN || !bytes.starts_with(b"v1 ") || bytes[ACTION_LEN - 1] != b'\n' {
        return Err("action-garbled");
    }
    let text = std::str::from_utf8(&bytes[..ACTION_LEN - 1]).map_err(|_| "action-garbled")?;
    // "v1" SP 64 SP 64 SP 20 SP 20: fixed columns.
    let field = |from: usize, to: usize| &text[from..to];
    if [2, 67, 132, 153].iter().any(|&i| bytes[i] != b' ') {
        return Err("action-garbled");
    }
    let action = from_hex(field(3, 67).as_bytes()).ok_or("action-garbled")?;
    let output = from_hex(field(68, 132).as_bytes()).ok_or("action-garbled")?;
    let size = field(133, 153)
        .trim_start()
        .parse::<u64>()
        .map_err(|_| "action-garbled")?;
    let time_ns = field(154, 174)
        .trim_start()
        .parse::<i64>()
        .map_err(|_| "action-garbled")?;
    Ok(Action {
        action,
        output,
        size,
        time_ns,
    })
}

/// Formats an action file exactly as go does (for tests and the benchmark generator).
pub fn format_action(a: &Action) -> String {
    format!(
        "v1 {} {} {:20} {:20}\n",
        to_hex(&a.action),
        to_hex(&a.output),
        a.size,
        a.time_ns
    )
}

/// Each byte's value as a lowercase hex digit, or 0xff.
pub(super) const HEX_DIGITS: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes 64 lowercase hex digits (go writes ids that way), branch-free: a scan
/// decodes every file name in the cache.
pub fn from_hex(digits: &[u8]) -> Option<[u8; 32]> {
    let digits: &[u8; 64] = digits.try_into().ok()?;
    let (mut out, mut invalid) = ([0u8; 32], 0u8);
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (HEX_DIGITS[pair[0] as usize], HEX_DIGITS[pair[1] as usize]);
        invalid |= high | low;
        *byte = high << 4 | low;
    }
    (invalid & 0xf0 == 0).then_some(out)
}

/// The output fingerprint entries carry in `aux`: enough to tell whether a surviving
/// entry names an output (a collision only keeps an output a little longer).
pub fn fingerprint(hash: &[u8; 32]) -> u64 {
    u64::from_le_bytes(hash[..8].try_into().unwrap())
}

/// Parses `<64 hex>-a` / `<64 hex>-d`.
pub(super) fn parse_file_name(name: &[u8]) -> Option<GoId> {
    if name.len() != 66 || name[64] != b'-' {
        return None;
    }
    let hash = from_hex(&name[..64])?;
    let role = match name[65] {
        b'a' => Role::Action,
        b'd' => Role::Output,
        _ => return None,
    };
    Some(GoId { hash, role })
}
