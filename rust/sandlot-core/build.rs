//! Builds sandlot's two freestanding programs with rustc alone and leaves
//! them in `$OUT_DIR` for the core to embed:
//! - the network gate (`gate/gate.rs`), which restricted sandboxes run before
//!   their workload, as `sandlot-gate` (for `network.rs`);
//! - the sandbox agent (`agent/main.rs`, with the `sandlot-wire` crate), as
//!   `sandlot-agent` (for `agent.rs`).
//!
//! They exist for Linux x86-64 nodes only; on another target the files are
//! left empty, restricted networks are refused at create, and execs take the
//! Kubernetes path.

use std::path::PathBuf;
use std::process::Command;

const WIRE: &str = "../sandlot-wire/src/lib.rs";

fn main() {
    for source in ["gate", "agent", WIRE] {
        println!("cargo::rerun-if-changed={source}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let target = std::env::var("TARGET").expect("TARGET");
    if !(target.starts_with("x86_64-") && target.contains("-linux-")) {
        for program in ["sandlot-gate", "sandlot-agent"] {
            std::fs::write(out_dir.join(program), b"").expect("write an empty program");
        }
        return;
    }
    let rustc = || {
        let mut command = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
        command
            .args(["--edition", "2024", "--target", &target])
            .args(["-C", "opt-level=s", "-C", "panic=abort"]);
        command
    };
    let run = |mut command: Command, what: &str| {
        let status = command
            .status()
            .unwrap_or_else(|err| panic!("run rustc for {what}: {err}"));
        assert!(status.success(), "building {what} failed");
    };
    let program = |source: &str, name: &str, out: &str| {
        let mut command = rustc();
        command
            .args(["--crate-type", "bin", "--crate-name", name])
            .args(["-C", "strip=symbols", "-C", "relocation-model=static"])
            .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
            .args(["-C", "link-arg=-static"])
            .arg("-L")
            .arg(&out_dir)
            .arg(source)
            .arg("-o")
            .arg(out_dir.join(out));
        command
    };
    run(
        program("gate/gate.rs", "sandlot_gate", "sandlot-gate"),
        "the network gate",
    );
    let mut wire = rustc();
    wire.args(["--crate-type", "rlib", "--crate-name", "sandlot_wire"])
        .arg(WIRE)
        .arg("--out-dir")
        .arg(&out_dir);
    run(wire, "the agent's wire protocol");
    let mut agent = program("agent/main.rs", "sandlot_agent", "sandlot-agent");
    agent
        .arg("--extern")
        .arg(format!(
            "sandlot_wire={}",
            out_dir.join("libsandlot_wire.rlib").display()
        ))
        .args(["-C", "lto", "-C", "codegen-units=1"]);
    run(agent, "the sandbox agent");
}
