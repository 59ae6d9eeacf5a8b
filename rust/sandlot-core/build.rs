//! Builds the network gate (`gate/gate.rs`), the freestanding program that
//! restricted sandboxes run before their workload, with rustc alone, and
//! leaves it in `$OUT_DIR/sandlot-gate` for `network.rs` to embed. It exists
//! for Linux x86-64 nodes only; on another target the file is left empty and
//! restricted networks are refused at create.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "gate/gate.rs";
    println!("cargo::rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("sandlot-gate");
    let target = std::env::var("TARGET").expect("TARGET");
    if !(target.starts_with("x86_64-") && target.contains("-linux-")) {
        std::fs::write(&out, b"").expect("write an empty gate");
        return;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--crate-name",
            "sandlot_gate",
        ])
        .args(["--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "relocation-model=static"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static"])
        .arg(source)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run rustc for the network gate");
    assert!(status.success(), "building the network gate failed");
}
