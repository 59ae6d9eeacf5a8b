//! Volumes: one PersistentVolumeClaim each, created before the sandboxes that
//! mount them. Operations are methods of [`Client`](crate::Client).

mod ops;
mod spec;

pub use spec::{AccessMode, VolumePhase, VolumeSpec, VolumeStatus};
