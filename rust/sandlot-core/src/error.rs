//! The one error type of sandlot's core. Each variant is a case a caller can act
//! on; the Python layer maps each to its own exception class.

use std::time::Duration;

use kube::core::Status;

use crate::namespace::{NamespaceSource, ResolvedNamespace};
use crate::sandbox::ExecOutput;
use crate::status::SandboxStatus;

/// What kind of object an error is about; displayed in lowercase ("sandbox").
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum ObjectKind {
    /// A sandbox (one pod).
    Sandbox,
    /// A volume (one persistent volume claim).
    Volume,
    /// The namespace a client works in.
    Namespace,
    /// An in-cluster Service named in an allowlist (`namespace/name`).
    Service,
    /// A process the sandbox agent runs (named by its id).
    Process,
    /// A warm pool (one ConfigMap, see `pool/`).
    Pool,
}

/// Every failure sandlot reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No object of that kind and name exists in the namespace.
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: ObjectKind,
        name: String,
        namespace: String,
    },

    /// The name is taken (sandbox names stay taken while their record exists).
    #[error("{kind} name {name:?} is already taken in namespace {namespace:?}")]
    NameConflict {
        kind: ObjectKind,
        name: String,
        namespace: String,
    },

    /// Input broke a rule; nothing was sent to the cluster.
    #[error("invalid {field}: {rule}")]
    InvalidSpec { field: String, rule: String },

    /// The operation needs a running sandbox.
    #[error("sandbox {name:?} is not running (phase {phase})")]
    NotRunning { name: String, phase: String },

    /// Nothing in the sandbox listens on the TCP port.
    #[error(
        "nothing listens on port {port} in sandbox {name:?}; start the server first, or wait \
         for it with wait_for_port"
    )]
    PortNotOpen { name: String, port: u16 },

    /// A wait cannot succeed: the sandbox reached a terminal phase other than
    /// the ones waited for.
    #[error("sandbox {name:?} ended {phase} while waiting for {wanted}", name = .status.name, phase = .status.phase)]
    PhaseUnreachable {
        status: Box<SandboxStatus>,
        wanted: String,
    },

    /// The volume is mounted by live sandboxes.
    #[error("volume {name:?} is in use by sandbox(es) {}", .sandboxes.join(", "))]
    VolumeInUse {
        name: String,
        sandboxes: Vec<String>,
    },

    /// A create mounts a volume that is being deleted (or that a delete is
    /// deciding about), so the sandbox could never start on it.
    #[error(
        "volume {name:?} in namespace {namespace:?} is being deleted; mount another \
         volume, or create it again once its deletion has completed"
    )]
    VolumeDeleting { name: String, namespace: String },

    /// The namespace's ResourceQuota refused the object (403 "exceeded quota").
    #[error("quota exceeded in namespace {namespace:?}: {message}")]
    QuotaExceeded { message: String, namespace: String },

    /// A create of sandbox `name` failed with `error`. The name is the one the
    /// sandbox has or would have had (generated names included), so a caller
    /// can look for it; a create that fails after its request may have landed
    /// deletes the pod it made.
    #[error("creating sandbox {name:?}: {error}")]
    Create { name: String, error: Box<Error> },

    /// A wait or call did not finish in time.
    #[error("timed out after {:.1}s waiting for {what}", .after.as_secs_f64())]
    Timeout { what: String, after: Duration },

    /// An exec did not finish in time; its processes were killed. `output` is
    /// what the command had written until then.
    #[error("timed out after {:.1}s waiting for {what}", .after.as_secs_f64())]
    ExecTimeout {
        what: String,
        after: Duration,
        output: Box<ExecOutput>,
    },

    /// The cluster refused the credentials or the action (401 or 403), in
    /// `namespace`, which came from `source`.
    #[error("permission denied in namespace {namespace:?} ({}): {message}", .namespace_source.describe())]
    PermissionDenied {
        message: String,
        namespace: String,
        namespace_source: NamespaceSource,
    },

    /// The cluster cannot be reached or no usable configuration was found.
    #[error("cluster unreachable: {message}")]
    ClusterUnreachable { message: String },

    /// An exec stream broke before the command's exit status arrived.
    #[error("exec in sandbox {name:?} failed: {message}")]
    Exec { name: String, message: String },

    /// A file operation failed in the sandbox or volume `target` (`sandbox
    /// "name"` or `volume "name"`) at `path` (lossy text of `path_bytes`),
    /// with the system's `errno` (`message` says what it means, or why
    /// sandlot refused: errno 1 for an entry a download will not write).
    #[error("{target}: {path:?}: {message}")]
    File {
        target: String,
        path: String,
        path_bytes: Vec<u8>,
        errno: i32,
        message: String,
    },

    /// A log stream broke before the log ended.
    #[error("log stream of sandbox {name:?} broke: {message}")]
    LogStream { name: String, message: String },

    /// Any other answer of the API server, with its HTTP status.
    #[error("API error {status} ({reason}): {message}")]
    Api {
        status: u16,
        reason: String,
        message: String,
    },
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidSpec`] for `field` breaking `rule`.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// The error itself, looking through the context of a create
    /// ([`Error::Create`]): what a caller classifies by.
    pub fn underlying(&self) -> &Error {
        match self {
            Error::Create { error, .. } => error.underlying(),
            other => other,
        }
    }
}

/// The server's status of a failed request, if the failure was an API answer.
pub(crate) fn api_status(err: &kube::Error) -> Option<&Status> {
    match err {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

impl ResolvedNamespace {
    /// An [`Error::PermissionDenied`] for a refusal in this namespace.
    pub(crate) fn refused(&self, message: String) -> Error {
        Error::PermissionDenied {
            message,
            namespace: self.name.clone(),
            namespace_source: self.source,
        }
    }
}

/// Converts a kube error of a client working in `namespace`, whose subject is
/// not a specific object. Reached only through the client's own mapping
/// (`Client::api_error`, `Client::object_error`), which knows the namespace.
pub(crate) fn from_kube(err: kube::Error, namespace: &ResolvedNamespace) -> Error {
    match err {
        kube::Error::Api(status) => match status.code {
            403 if status.message.contains("exceeded quota") => Error::QuotaExceeded {
                message: status.message,
                namespace: namespace.name.clone(),
            },
            401 | 403 => namespace.refused(status.message),
            code => Error::Api {
                status: code,
                reason: status.reason,
                message: status.message,
            },
        },
        kube::Error::HyperError(e) => Error::ClusterUnreachable {
            message: error_chain(&e),
        },
        kube::Error::Service(e) => Error::ClusterUnreachable {
            message: error_chain(e.as_ref()),
        },
        kube::Error::Auth(e) => namespace.refused(error_chain(&e)),
        other => Error::Api {
            status: 0,
            reason: "ClientError".into(),
            message: error_chain(&other),
        },
    }
}

/// Converts a kube error about one named object: 404 becomes `NotFound`, 409 on
/// create becomes `NameConflict`.
pub(crate) fn object_error(
    err: kube::Error,
    kind: ObjectKind,
    name: &str,
    namespace: &ResolvedNamespace,
) -> Error {
    match api_status(&err).map(|s| (s.code, s.reason.as_str())) {
        Some((404, _)) => Error::NotFound {
            kind,
            name: name.to_owned(),
            namespace: namespace.name.clone(),
        },
        Some((409, "AlreadyExists")) => Error::NameConflict {
            kind,
            name: name.to_owned(),
            namespace: namespace.name.clone(),
        },
        _ => from_kube(err, namespace),
    }
}

/// An error and its sources on one line: "outer: inner: root".
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_refusal_is_its_own_error_and_not_a_permission_problem() {
        let mut status = Status::failure(
            "pods \"sb-1\" is forbidden: exceeded quota: sandboxes, requested: pods=1, used: \
             pods=1, limited: pods=1",
            "Forbidden",
        );
        status.code = 403;
        let namespace = ResolvedNamespace {
            name: "apps".into(),
            source: NamespaceSource::Argument,
        };
        let err = object_error(
            kube::Error::Api(status.boxed()),
            ObjectKind::Sandbox,
            "sb-1",
            &namespace,
        );
        assert!(
            matches!(&err, Error::QuotaExceeded { namespace, message }
                if namespace == "apps" && message.contains("limited: pods=1")),
            "{err:?}"
        );
        let created = Error::Create {
            name: "sb-1".into(),
            error: Box::new(err),
        };
        assert!(matches!(created.underlying(), Error::QuotaExceeded { .. }));
        assert!(
            created
                .to_string()
                .starts_with("creating sandbox \"sb-1\": quota exceeded in namespace \"apps\""),
            "{created}"
        );
    }

    fn forbidden() -> kube::Error {
        let mut status = Status::failure(
            "pods is forbidden: User \"system:serviceaccount:apps:sandlot\" cannot list resource \"pods\"",
            "Forbidden",
        );
        status.code = 403;
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn a_refusal_names_the_namespace_and_where_it_came_from() {
        let namespace = ResolvedNamespace {
            name: "apps".into(),
            source: NamespaceSource::ServiceAccount,
        };
        let err = object_error(forbidden(), ObjectKind::Sandbox, "job", &namespace);
        assert!(
            matches!(&err, Error::PermissionDenied { namespace, namespace_source, .. }
                if namespace == "apps" && *namespace_source == NamespaceSource::ServiceAccount),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "permission denied in namespace \"apps\" (the pod's own namespace, from its service \
             account): pods is forbidden: User \"system:serviceaccount:apps:sandlot\" cannot list \
             resource \"pods\""
        );
    }
}
