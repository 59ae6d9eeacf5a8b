//! Command-line definitions.

use std::collections::BTreeMap;

use clap::{Args, Parser, Subcommand};
use sandlot_core::{AccessMode, Error, Phase, Resources, SandboxSpec, Selection, VolumeSpec};

/// Sandboxes on Kubernetes for untrusted code.
#[derive(Debug, Parser)]
#[command(name = "sandlot", version, about)]
pub struct Cli {
    /// Namespace to work in [default: $SANDLOT_NAMESPACE, else "sandlot"].
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a sandbox from an image; prints its name.
    Create(CreateArgs),
    /// List sandboxes.
    List(ListArgs),
    /// Show one sandbox's status.
    Get(NameArg),
    /// Print a sandbox's log.
    Logs(LogsArgs),
    /// Run a command in a running sandbox; exits with the command's exit code.
    Exec(ExecArgs),
    /// Terminate sandboxes by name, tag, phase or --all (their logs stay readable).
    Terminate(TerminateArgs),
    /// Create, list, inspect and delete volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(VolumeCreateArgs),
    /// List volumes.
    List(VolumeListArgs),
    /// Show one volume.
    Inspect(NameArg),
    /// Delete a volume and wait until its name is free.
    Delete(VolumeDeleteArgs),
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Volume name.
    pub name: String,
    /// Size, a Kubernetes quantity.
    #[arg(long, default_value = "1Gi")]
    pub size: String,
    /// Storage class [default: the cluster's default].
    #[arg(long)]
    pub storage_class: Option<String>,
    /// ReadWriteOnce, ReadWriteOncePod, ReadOnlyMany or ReadWriteMany.
    #[arg(long, default_value = "ReadWriteOnce")]
    pub access_mode: String,
    /// Tag KEY=VALUE (repeatable).
    #[arg(short, long = "tag", value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
}

impl VolumeCreateArgs {
    pub fn spec(&self) -> sandlot_core::Result<VolumeSpec> {
        Ok(VolumeSpec {
            name: self.name.clone(),
            size: self.size.clone(),
            storage_class: self.storage_class.clone(),
            access_mode: AccessMode::parse("--access-mode", &self.access_mode)?,
            tags: pairs("--tag", &self.tag)?,
        })
    }
}

#[derive(Debug, Args)]
pub struct VolumeListArgs {
    /// Only volumes with tag KEY=VALUE (repeatable).
    #[arg(short, long = "tag", value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumeDeleteArgs {
    /// Volume name.
    pub name: String,
    /// Terminate the sandboxes that mount it first.
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the deletion to complete.
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    pub timeout: f64,
}

impl Command {
    /// Checks what can be checked without the cluster.
    pub fn validate(&self) -> sandlot_core::Result<()> {
        match self {
            Command::Create(args) => args.spec().and_then(|spec| spec.validate()),
            Command::List(args) => args.tags().map(drop),
            Command::Terminate(args) => args.selection().map(drop),
            Command::Volume(VolumeCommand::Create(args)) => {
                args.spec().and_then(|spec| spec.validate())
            }
            Command::Volume(VolumeCommand::List(args)) => pairs("--tag", &args.tag).map(drop),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Sandbox name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container image, e.g. docker.io/library/python:3.11-slim.
    pub image: String,
    /// Sandbox name [default: generated].
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Tag KEY=VALUE (repeatable).
    #[arg(short, long = "tag", value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
    /// Mount a volume at a path, read-only with :ro (repeatable).
    #[arg(long = "volume", value_name = "VOLUME:/PATH[:ro]")]
    pub volume: Vec<String>,
    /// CPU limit, e.g. 500m.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory limit, e.g. 256Mi.
    #[arg(long)]
    pub memory: Option<String>,
    /// Maximum lifetime in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<i64>,
    /// Run as this non-root uid instead of the image's user.
    #[arg(long, value_name = "UID")]
    pub user: Option<i64>,
    /// Make the image's filesystem read-only (/tmp stays writable).
    #[arg(long)]
    pub read_only: bool,
    /// Kubernetes RuntimeClass to run under, e.g. gvisor.
    #[arg(long, value_name = "CLASS")]
    pub runtime_class: Option<String>,
    /// Wait until the sandbox is running (or has ended) before returning.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// Command to run instead of idling [after --].
    #[arg(last = true)]
    pub command: Vec<String>,
}

impl CreateArgs {
    pub fn spec(&self) -> sandlot_core::Result<SandboxSpec> {
        Ok(SandboxSpec {
            image: self.image.clone(),
            name: self.name.clone(),
            command: (!self.command.is_empty()).then(|| self.command.clone()),
            args: None,
            env: pairs("--env", &self.env)?,
            tags: pairs("--tag", &self.tag)?,
            volume_mounts: mounts(&self.volume)?,
            resources: Resources {
                cpu: self.cpu.clone(),
                memory: self.memory.clone(),
            },
            ttl_seconds: self.ttl,
            run_as_user: self.user,
            read_only_root_filesystem: self.read_only,
            runtime_class: self.runtime_class.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sandboxes in this phase (repeatable).
    #[arg(long, value_parser = parse_phase)]
    pub phase: Vec<Phase>,
    /// Only sandboxes with tag KEY=VALUE (repeatable).
    #[arg(short, long = "tag", value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
}

impl ListArgs {
    pub fn tags(&self) -> sandlot_core::Result<BTreeMap<String, String>> {
        pairs("--tag", &self.tag)
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Sandbox name.
    pub name: String,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Prefix lines with timestamps.
    #[arg(long)]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox name.
    pub name: String,
    /// Seconds before giving up.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Pass this terminal's stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// The command [after --].
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TerminateArgs {
    /// Sandbox names.
    pub names: Vec<String>,
    /// Every sandbox of the namespace.
    #[arg(long, conflicts_with_all = ["names", "tag", "phase"])]
    pub all: bool,
    /// Sandboxes with tag KEY=VALUE (repeatable).
    #[arg(short, long = "tag", value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
    /// Sandboxes in this phase (repeatable).
    #[arg(long, value_parser = parse_phase)]
    pub phase: Vec<Phase>,
    /// List what would be terminated, and terminate nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl TerminateArgs {
    pub fn selection(&self) -> sandlot_core::Result<Selection> {
        Ok(Selection {
            names: self.names.clone(),
            tags: pairs("--tag", &self.tag)?,
            phases: self.phase.clone(),
            all: self.all,
        })
    }
}

fn parse_phase(text: &str) -> Result<Phase, String> {
    text.parse().map_err(|err: Error| err.to_string())
}

/// Parses repeated VOLUME:/PATH[:ro] options into mount path -> "volume[:ro]".
fn mounts(items: &[String]) -> sandlot_core::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| {
            let malformed = || {
                Error::invalid(
                    "--volume",
                    format!("{item:?} must look like VOLUME:/PATH or VOLUME:/PATH:ro"),
                )
            };
            let (volume, rest) = item.split_once(':').ok_or_else(malformed)?;
            let (path, value) = match rest.rsplit_once(':') {
                Some((path, "ro")) => (path, format!("{volume}:ro")),
                Some((path, "rw")) => (path, volume.to_owned()),
                Some(_) => return Err(malformed()),
                None => (rest, volume.to_owned()),
            };
            Ok((path.to_owned(), value))
        })
        .collect()
}

/// Parses repeated KEY=VALUE options into a map, naming the option on error.
pub fn pairs(option: &str, items: &[String]) -> sandlot_core::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Error::invalid(option, format!("{item:?} must look like KEY=VALUE")))
        })
        .collect()
}
