//! sandlot's core: sandboxes on Kubernetes, with every Kubernetes concern here
//! and no Python. The Python bindings and the CLI only translate to and from it.
//!
//! A sandbox is asked for with a [`SandboxRequest`], checked once into a
//! [`SandboxSpec`], and runs as one pod ([`SandboxSpec::to_pod`]); its phase is
//! derived from the pod by [`SandboxStatus::from_pod`]; operations are methods
//! of [`Client`].

mod agent;
mod client;
mod deadline;
mod error;
mod files;
mod labels;
mod lean_pod;
mod mount;
mod namespace;
mod network;
mod owner;
mod pool;
mod port;
mod program;
mod rate;
mod retry;
mod sandbox;
mod spec;
mod status;
#[cfg(test)]
mod test_api;
mod userns;
mod validate;
mod volume;
mod watch;

pub use agent::{AgentProcessInfo, ExecPath, SandboxMetrics};
pub use client::{Client, ConnectOptions, DEFAULT_TTL_ENV, EXEC_PATH_ENV};
pub use deadline::deadline_after;
pub use error::{Error, ObjectKind, Result};
pub use files::{
    EntryKind, FileEntry, FileReader, FileTarget, FileWriter, HELPER_IMAGE_ENV, Progress,
    WriteOptions, errno_text, local_mode, set_file_idle,
};
pub use mount::Mount;
pub use namespace::{
    ConfigSource, DEFAULT_NAMESPACE, NAMESPACE_ENV, NamespaceSource, Placement, ResolvedNamespace,
};
pub use network::{EgressRule, GATE_DEADLINE_SECONDS, Network, NetworkMode};
pub use owner::POD_NAME_ENV;
pub use pool::{
    DEFAULT_IDLE_SECONDS, DEFAULT_MAX_TTL_SECONDS, MAX_POOL_SIZE, PoolRequest, PoolSpec,
    PoolStatus, PoolTemplate, check_pool_name, check_size,
};
pub use port::{
    ExposeRequest, ExposedPort, ForwardStats, PortForward, check_local_port, check_port,
};
pub use program::{STALE_AFTER, set_stale_program_age};
pub use rate::{DEFAULT_BURST, DEFAULT_QPS, RequestRate};
pub use sandbox::{
    BULK_CONCURRENCY, DEFAULT_MAX_OUTPUT, ExecKiller, ExecOptions, ExecOutput, ExecProcess,
    ExecResult, LAUNCH_RETRY_WINDOW, ListFilter, LogBatch, LogBatches, LogOptions, MetricsFollow,
    Selection, SpawnOptions, TerminateOutcome, set_follow_idle, set_launch_retry_window,
    wait_for_background_kills,
};
pub use spec::{DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, Resources, SandboxRequest, SandboxSpec, Ttl};
pub use status::{Phase, SandboxStatus, Tags, TerminationReason};
pub use userns::NodeSupport;
pub use volume::{AccessMode, VolumePhase, VolumeSpec, VolumeStatus};
