//! Triggers, deploy checks and DORA metrics against the real binary: a real webhook receiver
//! (an HTTP server in the test), live traffic sent while the server evaluates, a `kill -9` in
//! the middle, and a scripted deploy history.

#[path = "../common/mod.rs"]
mod common;
mod deploy_checks;
mod dora;
mod support;
mod triggers;
