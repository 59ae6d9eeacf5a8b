//! One module per subcommand.

pub mod create;
pub mod exec;
pub mod files;
pub mod get;
pub mod list;
pub mod logs;
pub mod pool;
pub mod port;
pub mod process;
pub mod purge;
pub mod terminate;
pub mod volume;
pub mod wait;

use std::io::{BufRead, IsTerminal, Write};

use sandlot_core::{Error, Result};

/// Asks "QUESTION [y/N]" on the terminal. Without a terminal to ask on, it
/// refuses: destructive bulk operations in scripts need `--yes`.
pub fn confirm(question: &str) -> Result<()> {
    let refused = || {
        Error::invalid(
            "--yes",
            "confirm with --yes to proceed without a terminal to ask on",
        )
    };
    if !std::io::stdin().is_terminal() {
        return Err(refused());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|_| refused())?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::invalid("--yes", "not confirmed; nothing was done"))
    }
}
