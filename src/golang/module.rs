//! Module paths and versions as `golang.org/x/mod` defines them: case escaping
//! (`module/module.go`) and semantic versions (`semver/semver.go`).

// ---------------------------------------------------------------------------------------
// Case escaping (golang.org/x/mod module/module.go: EscapePath, UnescapePath).

/// `module.EscapePath`/`EscapeVersion`: upper-case letters become `!` + lower case.
/// `None` for `!` or non-ASCII input, which go rejects too.
pub fn escape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '!' => return None,
            c if !c.is_ascii() => return None,
            'A'..='Z' => {
                out.push('!');
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// `unescapeString`: the inverse; `None` for an upper-case letter, a `!` not followed by
/// a lower-case letter, or non-ASCII.
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bang = false;
    for c in s.chars() {
        if !c.is_ascii() {
            return None;
        }
        if bang {
            bang = false;
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            continue;
        }
        match c {
            '!' => bang = true,
            'A'..='Z' => return None,
            c => out.push(c),
        }
    }
    (!bang).then_some(out)
}

// ---------------------------------------------------------------------------------------
// Semantic versions (golang.org/x/mod semver/semver.go), for `list`.

struct Semver<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    short: bool,
    prerelease: &'a str,
    build: &'a str,
}

fn parse_int(v: &str) -> Option<(&str, &str)> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (v.starts_with('0') && digits != 1) {
        return None;
    }
    Some(v.split_at(digits))
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

fn is_bad_num(v: &str) -> bool {
    v.len() > 1 && v.starts_with('0') && v.bytes().all(|c| c.is_ascii_digit())
}

fn parse_semver(v: &str) -> Option<Semver<'_>> {
    let rest = v.strip_prefix('v')?;
    let (major, rest) = parse_int(rest)?;
    let mut p = Semver {
        major,
        minor: "0",
        patch: "0",
        short: true,
        prerelease: "",
        build: "",
    };
    if rest.is_empty() {
        return Some(p);
    }
    let (minor, rest) = parse_int(rest.strip_prefix('.')?)?;
    p.minor = minor;
    if rest.is_empty() {
        return Some(p);
    }
    let (patch, mut rest) = parse_int(rest.strip_prefix('.')?)?;
    p.patch = patch;
    p.short = false;
    if rest.starts_with('-') {
        let end = rest.find('+').unwrap_or(rest.len());
        let pre = &rest[..end];
        let ok = pre[1..]
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(is_ident_char) && !is_bad_num(id));
        if !ok {
            return None;
        }
        p.prerelease = pre;
        rest = &rest[end..];
    }
    if rest.starts_with('+') {
        let ok = rest[1..]
            .split('.')
            .all(|id| !id.is_empty() && id.bytes().all(is_ident_char));
        if !ok {
            return None;
        }
        p.build = rest;
        rest = "";
    }
    rest.is_empty().then_some(p)
}

/// `module.CanonicalVersion(v) == v`: a full `vX.Y.Z[-pre]`, build metadata only as
/// `+incompatible`.
pub fn is_canonical_version(v: &str) -> bool {
    parse_semver(v).is_some_and(|p| !p.short && (p.build.is_empty() || p.build == "+incompatible"))
}

fn compare_int(x: &str, y: &str) -> std::cmp::Ordering {
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

fn compare_prerelease(x: &str, y: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    if x == y {
        return Equal;
    }
    if x.is_empty() {
        return Greater;
    }
    if y.is_empty() {
        return Less;
    }
    let (mut xs, mut ys) = (x[1..].split('.'), y[1..].split('.'));
    loop {
        match (xs.next(), ys.next()) {
            (Some(dx), Some(dy)) if dx != dy => {
                let (nx, ny) = (
                    dx.bytes().all(|c| c.is_ascii_digit()),
                    dy.bytes().all(|c| c.is_ascii_digit()),
                );
                return match (nx, ny) {
                    (true, false) => Less,
                    (false, true) => Greater,
                    (true, true) => compare_int(dx, dy),
                    (false, false) => dx.cmp(dy),
                };
            }
            (Some(_), Some(_)) => {}
            (None, Some(_)) => return Less,
            (Some(_), None) => return Greater,
            (None, None) => return Equal,
        }
    }
}

/// `semver.Compare`: invalid versions sort before valid ones.
pub fn compare_versions(v: &str, w: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (parse_semver(v), parse_semver(w)) {
        (None, None) => Equal,
        (None, Some(_)) => Less,
        (Some(_), None) => Greater,
        (Some(a), Some(b)) => compare_int(a.major, b.major)
            .then_with(|| compare_int(a.minor, b.minor))
            .then_with(|| compare_int(a.patch, b.patch))
            .then_with(|| compare_prerelease(a.prerelease, b.prerelease)),
    }
}

/// Go release versions (`go1.27.3`, `go1.21rc2`, `go1.21`) in go's own order
/// (`cmd/go/internal/gover`: `1.21` < `1.21rc1` < `1.21.0` < `1.21.1`).
pub fn compare_go_versions(v: &str, w: &str) -> std::cmp::Ordering {
    fn parts(v: &str) -> (Vec<u64>, u8, String) {
        let v = v.strip_prefix("go").unwrap_or(v);
        let cut = v
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(v.len());
        let (nums, pre) = v.split_at(cut);
        let nums: Vec<u64> = nums
            .split('.')
            .filter(|n| !n.is_empty())
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        // A language version (two numbers) sorts before its prereleases, which sort
        // before its releases.
        let rank = match (nums.len() >= 3, pre.is_empty()) {
            (true, _) => 2,
            (false, false) => 1,
            (false, true) => 0,
        };
        let mut padded = nums;
        padded.resize(2, 0);
        padded.truncate(2);
        let patch = v[..cut]
            .split('.')
            .nth(2)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        padded.push(patch);
        (padded, rank, pre.to_string())
    }
    let (a, b) = (parts(v), parts(w));
    a.0[..2]
        .cmp(&b.0[..2])
        .then(a.1.cmp(&b.1))
        .then(a.0[2].cmp(&b.0[2]))
        .then_with(|| a.2.cmp(&b.2))
}

/// `semver.Sort`: by precedence, ties by string.
pub fn sort_versions(list: &mut [String]) {
    list.sort_by(|a, b| compare_versions(a, b).then_with(|| a.cmp(b)));
}

#[cfg(test)]
mod go_version_tests {
    use super::compare_go_versions;

    #[test]
    fn go_versions_sort_as_go_sorts_them() {
        let mut v = vec![
            "go1.27.3",
            "go1.9",
            "go1.21.0",
            "go1.21rc2",
            "go1.21",
            "go1.24.11",
            "go1.21rc1",
            "go1.21.13",
        ];
        v.sort_by(|a, b| compare_go_versions(a, b));
        assert_eq!(
            v,
            [
                "go1.9",
                "go1.21",
                "go1.21rc1",
                "go1.21rc2",
                "go1.21.0",
                "go1.21.13",
                "go1.24.11",
                "go1.27.3"
            ]
        );
    }
}
