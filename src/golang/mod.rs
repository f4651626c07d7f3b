//! Go's own facts and algorithms, independent of any cache kind: where go puts its
//! caches (`go env`), which go commands run (`/proc`) and which module versions each
//! may read (its build list), module path escaping and
//! semantic versions, and the dirhash `h1:` hashes of go.sum. Each follows the Go
//! source it cites.

pub mod build_list;
pub mod dirhash;
pub mod env;
pub mod module;
pub mod procs;
