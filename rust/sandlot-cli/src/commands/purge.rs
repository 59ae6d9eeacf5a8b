use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sandlot_core::{Client, Result};

use crate::args::PurgeArgs;
use crate::commands::confirm;
use crate::printer::Printer;

/// Purges the records of ended sandboxes; asks first unless --yes.
pub async fn run(client: &Client, printer: &Printer, args: PurgeArgs) -> Result<i32> {
    let selection = args.selection()?;
    if args.dry_run {
        for name in client.purge_candidates(&selection, args.older_than).await? {
            println!("{name} would be purged");
        }
        return Ok(0);
    }
    if !args.yes {
        confirm("Delete the records (and logs) of the matching ended sandboxes?")?;
    }
    let bar = (std::io::stderr().is_terminal() && !printer.is_json()).then(|| {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} purged")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let purged = client
        .purge_sandboxes_with(&selection, args.older_than, |done, total| {
            if let Some(bar) = bar.as_ref().filter(|_| total > 1) {
                if bar.is_hidden() {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        })
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for name in purged {
        printer.line(&format!("{name} purged"));
    }
    Ok(0)
}
