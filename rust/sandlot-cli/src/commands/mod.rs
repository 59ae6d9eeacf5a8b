//! One module per subcommand.

pub mod create;
pub mod exec;
pub mod get;
pub mod list;
pub mod logs;
pub mod terminate;
pub mod volume;
