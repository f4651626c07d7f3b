//! A `file://` GOPROXY built from the Go sources Debian's `golang-*-dev` packages put
//! under `/usr/share/gocode/src`, so the go-mod tests run the real toolchain with no
//! network (`../shared/docs/go-caches.md`, "A real Go cache with no network").
//!
//! Every module is served at two versions: `v1.0.0` (the sources as packaged) and
//! `v1.1.0` (plus one generated file), so tests can evict one version and keep the other.
//! Layout, as go's proxy protocol wants it: `<escaped module>/@v/list`, `<v>.info`,
//! `<v>.mod` and `<v>.zip` with every zip entry named `<module>@<v>/<file>`. Nested
//! modules (sub-directories with their own go.mod), `vendor/` and VCS directories are
//! left out, a go.mod is synthesized where a package has none, and `require` lines are
//! stripped so each module resolves on its own.
//!
//! The proxy is built once into cargo's per-target temp dir and reused by later runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const SOURCES: &str = "/usr/share/gocode/src";
pub const VERSIONS: [&str; 2] = ["v1.0.0", "v1.1.0"];
/// Bump when the layout below changes, so a stale cached proxy is not reused.
const LAYOUT: u32 = 1;

pub struct Proxy {
    pub dir: PathBuf,
    /// Module paths served.
    pub modules: Vec<String>,
}

impl Proxy {
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    pub fn has(&self, module: &str) -> bool {
        self.modules.iter().any(|m| m == module)
    }
}

/// The proxy shared by every test of this process.
pub fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("goproxy-v{LAYOUT}"));
        let modules = find_modules(Path::new(SOURCES));
        assert!(
            !modules.is_empty(),
            "no Go module sources under {SOURCES}: apt-get install golang-github-pkg-errors-dev golang-github-google-uuid-dev golang-github-burntsushi-toml-dev golang-golang-x-text-dev"
        );
        let done = dir.join("complete");
        let want: Vec<String> = modules.iter().map(|(m, _)| m.clone()).collect();
        let listed = std::fs::read_to_string(&done).ok();
        if listed.as_deref() != Some(want.join("\n").as_str()) {
            // Build next to the final place, then rename: a half-built proxy is never used.
            let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            for (module, src) in &modules {
                serve(&tmp, module, src);
            }
            std::fs::write(tmp.join("complete"), want.join("\n")).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).unwrap();
        }
        Proxy { dir, modules: want }
    })
}

/// `module.EscapePath`.
pub fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Module roots: directories with a go.mod whose module line names their path, or
/// repository roots of the usual hosts (`github.com/a/b`, `golang.org/x/b`,
/// `gopkg.in/b.vN`) without one. Symlinked copies are skipped.
fn find_modules(src: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(items) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in items.flatten() {
            if !item.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = item.path();
            let rel = path
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let elems: Vec<&str> = rel.split('/').collect();
            let declared = std::fs::read_to_string(path.join("go.mod"))
                .ok()
                .and_then(|t| module_line(&t));
            let repo_root = match elems.as_slice() {
                ["github.com", _, _] | ["golang.org", "x", _] => true,
                ["gopkg.in", name] => name.contains(".v"),
                _ => false,
            };
            if declared.as_deref() == Some(rel.as_str()) || (declared.is_none() && repo_root) {
                found.push((rel, path));
            } else if elems.len() < 3 {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

fn module_line(gomod: &str) -> Option<String> {
    gomod.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("module")?;
        rest.starts_with([' ', '\t'])
            .then(|| rest.trim().trim_matches('"').to_string())
    })
}

/// The go.mod served: the package's own without `require` lines, or a synthesized one.
fn served_gomod(module: &str, src: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(src.join("go.mod")) else {
        return format!("module {module}\n");
    };
    let mut out = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let t = line.trim();
        if in_block {
            in_block = t != ")";
            continue;
        }
        if t.starts_with("require") {
            in_block = t.trim_start_matches("require").trim().starts_with('(');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The files of a module zip: relative path → source file.
fn module_files(src: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(src)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            let nested =
                e.depth() > 0 && e.file_type().is_dir() && e.path().join("go.mod").exists();
            !(e.file_type().is_dir()
                && (name == "vendor" || name.starts_with('.'))
                && e.depth() > 0)
                && !nested
        });
    for e in walker.filter_map(Result::ok) {
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // Only names go's module zips accept everywhere.
        let ok = rel.split('/').all(|el| {
            !el.is_empty()
                && !el.starts_with('.')
                && el
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~+".contains(c))
        });
        if ok && rel != "go.mod" {
            files.push((rel, e.path().to_path_buf()));
        }
    }
    files
}

fn serve(proxy: &Path, module: &str, src: &Path) {
    let vdir = proxy.join(escape(module)).join("@v");
    std::fs::create_dir_all(&vdir).unwrap();
    let gomod = served_gomod(module, src);
    let files = module_files(src);
    for (i, version) in VERSIONS.iter().enumerate() {
        std::fs::write(
            vdir.join(format!("{version}.info")),
            format!(
                "{{\"Version\":\"{version}\",\"Time\":\"2024-0{}-01T00:00:00Z\"}}",
                i + 1
            ),
        )
        .unwrap();
        std::fs::write(vdir.join(format!("{version}.mod")), &gomod).unwrap();
        let mut zip = zip::ZipWriter::new(
            std::fs::File::create(vdir.join(format!("{version}.zip"))).unwrap(),
        );
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let prefix = format!("{module}@{version}");
        zip.start_file(format!("{prefix}/go.mod"), opts).unwrap();
        zip.write_all(gomod.as_bytes()).unwrap();
        for (rel, path) in &files {
            zip.start_file(format!("{prefix}/{rel}"), opts).unwrap();
            zip.write_all(&std::fs::read(path).unwrap()).unwrap();
        }
        if i > 0 {
            zip.start_file(format!("{prefix}/CACHEWARDEN_VERSION"), opts)
                .unwrap();
            zip.write_all(format!("{version}\n").as_bytes()).unwrap();
        }
        zip.finish().unwrap();
    }
    std::fs::write(
        vdir.join("list"),
        VERSIONS.map(|v| format!("{v}\n")).concat(),
    )
    .unwrap();
}
