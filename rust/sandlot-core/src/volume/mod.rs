//! Volumes: one PersistentVolumeClaim each, created before the sandboxes that
//! mount them. Operations are methods of [`Client`](crate::Client), one file
//! each, as for sandboxes.

mod create;
mod delete;
mod get;
mod list;
mod spec;

pub use spec::{AccessMode, VolumePhase, VolumeSpec, VolumeStatus};
