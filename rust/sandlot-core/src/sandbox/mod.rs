//! Sandbox operations, one file each, as methods of [`Client`](crate::Client).

mod bulk;
mod create;
mod exec;
mod exec_agent;
mod get;
mod list;
mod logs;
mod settle;
mod terminate;
mod wait;

pub use bulk::{BULK_CONCURRENCY, Selection, TerminateOutcome};
pub(crate) use create::PodExtras;
pub use exec::{
    DEFAULT_MAX_OUTPUT, ExecKiller, ExecOptions, ExecOutput, ExecProcess, ExecResult, SpawnOptions,
    wait_for_background_kills,
};
pub(crate) use exec::{in_background, refuse_warm};
pub use exec_agent::MetricsFollow;
pub use list::ListFilter;
pub use logs::{LogBatch, LogBatches, LogOptions, set_follow_idle};
pub use settle::{LAUNCH_RETRY_WINDOW, set_launch_retry_window};
