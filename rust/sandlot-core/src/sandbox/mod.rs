//! Sandbox operations, one file each, as methods of [`Client`](crate::Client).

mod bulk;
mod create;
mod exec;
mod get;
mod list;
mod logs;
mod settle;
mod terminate;
mod wait;

pub use bulk::{BULK_CONCURRENCY, Selection, TerminateOutcome};
pub use exec::{ExecOptions, ExecProcess, ExecResult, SpawnOptions};
pub use list::ListFilter;
pub use logs::{LogBatch, LogBatches, LogOptions, set_follow_idle};
