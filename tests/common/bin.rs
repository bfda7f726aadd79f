//! The `lamina` binary and scratch folders, for tests that run it as a user does.

use lamina::testdata;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn lamina(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lamina"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the lamina binary runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn smollm2() -> String {
    testdata::file(testdata::SMOLLM2)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A fresh, empty folder of its own for each call (tests run in parallel threads, and test
/// binaries in parallel processes).
pub fn test_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!(
        "lamina-{}-{name}-{}-{n}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
