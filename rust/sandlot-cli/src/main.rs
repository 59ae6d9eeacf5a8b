//! The `sandlot` binary: maps [`sandlot_cli::run`]'s status to the process exit code.

fn main() {
    std::process::exit(sandlot_cli::run(std::env::args_os().collect()));
}
