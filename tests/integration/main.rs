//! One integration-test binary (as ripgrep does): the real `cachewarden` binary against
//! temp caches and temp sockets.

mod cacheprog;
mod cargo;
mod cargo_home;
mod cli;
mod common;
mod daemon;
mod faults;
mod first_hour;
mod go_build;
mod go_mod;
mod go_versions;
mod goproxy;
mod hostile;
mod local_attacks;
mod shared_server;
mod soak;
mod socket;
mod toolchains;
