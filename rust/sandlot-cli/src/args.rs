//! Command-line definitions.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use sandlot_core::{
    AccessMode, EgressRule, Error, FileTarget, MAX_POOL_SIZE, Mount, Phase, PoolRequest, PoolSpec,
    PoolTemplate, RequestRate, Resources, SandboxRequest, SandboxSpec, Selection, Ttl, VolumeSpec,
};

/// Sandboxes on Kubernetes for untrusted code.
#[derive(Debug, Parser)]
#[command(
    name = "sandlot",
    version,
    about,
    after_help = "Examples:\n  sandlot create docker.io/library/python:3.11-slim --name job --wait\n  \
sandlot exec job -- python3 -c 'print(6*7)'\n  sandlot cp ./src job:/work/\n  sandlot list -o json\n  sandlot terminate --tag batch=nightly --yes\n\n\
Exit status: 0 ok, 1 error, 2 usage or invalid input, 3 sandbox not running, 4 not found, 124 timeout;\n\
`exec` exits with the command's own code."
)]
pub struct Cli {
    /// Namespace to work in [default: $SANDLOT_NAMESPACE, else inside a pod
    /// its own namespace, else "sandlot"].
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config, else in-cluster].
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Print only what scripts need (names, errors).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Make created sandboxes owned by the pod this runs in (same namespace
    /// only), so Kubernetes deletes them when the pod goes.
    #[arg(long, global = true)]
    pub owned_by_pod: bool,
    /// How commands run in sandboxes: "auto" (through the sandbox agent where
    /// it answers, else Kubernetes exec), "agent" or "kubernetes" [default:
    /// $SANDLOT_EXEC_PATH, else auto].
    #[arg(long, global = true, value_name = "PATH")]
    pub exec_path: Option<String>,
    /// Requests per second to the API server at most, on average, or "none"
    /// for no limit [default: 50, as kubectl].
    #[arg(long, global = true, value_name = "N|none")]
    pub qps: Option<String>,
    /// Requests that may go at once after a quiet spell [default: 300].
    #[arg(long, global = true, value_name = "N")]
    pub burst: Option<u32>,
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON with stable field names.
    Json,
    /// Names only, one per line.
    Name,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a sandbox from an image; prints its name.
    #[command(
        after_help = "Examples:\n  sandlot create docker.io/library/busybox:1.36 --name idle --wait\n  \
sandlot create docker.io/library/python:3.11-slim --tag batch=x --volume data:/data --ttl 600 -- python3 job.py"
    )]
    Create(Box<CreateArgs>),
    /// List sandboxes (active ones unless --phase or --all-phases).
    #[command(
        after_help = "Examples:\n  sandlot list\n  sandlot list --phase failed --tag batch=x\n  sandlot list --all-phases -o json"
    )]
    List(ListArgs),
    /// Show one sandbox's full status.
    #[command(after_help = "Example:\n  sandlot get job -o json")]
    Get(NameArg),
    /// Print a sandbox's log; -f follows it until the sandbox ends.
    #[command(
        after_help = "Examples:\n  sandlot logs job --tail 20\n  sandlot logs job -f --since 10m"
    )]
    Logs(LogsArgs),
    /// Run a command in a running sandbox; exits with the command's exit code.
    #[command(
        after_help = "Examples:\n  sandlot exec job -- ls -la /\n  echo data | sandlot exec -i job -- wc -c\n  sandlot exec -it job -- sh"
    )]
    Exec(ExecArgs),
    /// List the processes a sandbox's agent keeps: running ones and the last that ended.
    #[command(after_help = "Example:\n  sandlot ps job -o json")]
    Ps(NameArg),
    /// Stream a process's output (from the start the agent keeps) until it
    /// ends; exits with its exit code.
    #[command(
        after_help = "Examples:\n  sandlot exec --detach job -- ./train.sh\n  sandlot attach job 3\n  \
sandlot exec --detach --tty job -- python3\n  sandlot attach -t job 4"
    )]
    Attach(AttachArgs),
    /// Show a sandbox's resources (CPU, memory, processes, network, disk); -f repeats.
    #[command(after_help = "Examples:\n  sandlot top job\n  sandlot top job -f --interval 2")]
    Top(TopArgs),
    /// Send a signal (9 unless --signal) to a process and every process it started.
    #[command(after_help = "Example:\n  sandlot kill job 3 --signal 15")]
    Kill(KillArgs),
    /// Copy a file or directory tree between this machine and a sandbox or volume.
    #[command(
        after_help = "Operands (exactly one of SRC and DST is in a sandbox or volume):\n  \
SANDBOX:PATH       a path in a sandbox\n  \
volume:NAME:PATH   a path in a volume, from its root; no sandbox needs to mount it\n  \
-                  stdin as SRC, stdout as DST: a single file\n  \
anything else      a path on this machine (one starting with / or . always is: ./a:b)\n\n\
A file or tree copied into an existing directory, or to a DST ending in /, goes inside it\n\
under its own name (a missing remote parent is made); files keep their permission bits.\n\n\
Examples:\n  sandlot cp ./src job:/work/\n  sandlot cp job:/work/out.csv .\n  \
tar c logs | sandlot cp - job:/tmp/logs.tar\n  sandlot cp job:/etc/os-release - | head -1\n  \
sandlot cp volume:data:/model.bin ./model.bin"
    )]
    Cp(CpArgs),
    /// List a directory of a sandbox or volume (or show one file).
    #[command(
        after_help = "Examples:\n  sandlot ls job:/work\n  sandlot ls -lR volume:data:/\n  sandlot ls job:/etc/hosts -o json"
    )]
    Ls(LsArgs),
    /// Write a file of a sandbox or volume to stdout, byte for byte.
    #[command(
        after_help = "Examples:\n  sandlot cat job:/etc/os-release\n  sandlot cat volume:data:/results.json | jq ."
    )]
    Cat(CatArgs),
    /// Set the permission bits of a file or directory in a sandbox or volume
    /// (a symlink there is refused, never followed).
    #[command(
        after_help = "Examples:\n  sandlot chmod 755 job:/work/run.sh\n  sandlot chmod 600 volume:data:/secrets.env"
    )]
    Chmod(ChmodArgs),
    /// Forward a local port to a port of a sandbox until the sandbox ends
    /// (or Ctrl-C); prints the local address first.
    #[command(
        name = "port-forward",
        after_help = "Examples:\n  sandlot port-forward web 8000\n  sandlot port-forward web 9000:8000 --wait 30\n  \
sandlot port-forward web 0:8000   # a free local port, printed"
    )]
    PortForward(PortForwardArgs),
    /// Expose a port of a sandbox inside the cluster (a Service it owns);
    /// prints its in-cluster URL.
    #[command(
        after_help = "Examples:\n  sandlot expose web 8000\n  sandlot expose web 8000 --allow-from apps/app=agent -o json"
    )]
    Expose(ExposeArgs),
    /// Stop exposing a port of a sandbox (deletes its Service).
    #[command(after_help = "Example:\n  sandlot unexpose web 8000")]
    Unexpose(PortArgs),
    /// Wait until a sandbox is in a phase; prints its status.
    #[command(
        after_help = "Example:\n  sandlot wait job --phase succeeded --phase failed --timeout 600"
    )]
    Wait(WaitArgs),
    /// Delete the records of ended sandboxes, freeing their names.
    #[command(
        after_help = "Examples:\n  sandlot purge --older-than 24h --yes\n  sandlot purge --tag batch=x --dry-run"
    )]
    Purge(PurgeArgs),
    /// Terminate sandboxes by name, tag, phase or --all (their logs stay readable).
    #[command(
        after_help = "Examples:\n  sandlot terminate job\n  sandlot terminate --tag batch=x --yes\n  sandlot terminate --all --dry-run"
    )]
    Terminate(TerminateArgs),
    /// Create, list, inspect and delete volumes.
    #[command(
        subcommand,
        after_help = "Examples:\n  sandlot volume create data --size 1Gi\n  sandlot volume list\n  sandlot volume delete data --force"
    )]
    Volume(VolumeCommand),
    /// Warm pools: sandboxes started ahead of time that `create --pool` takes
    /// over at once.
    #[command(
        subcommand,
        after_help = "Examples:\n  sandlot pool create py docker.io/library/python:3.11-slim --size 5 --wait 120\n  \
sandlot create --pool py\n  sandlot pool list\n  sandlot pool resize py 0\n  sandlot pool delete py"
    )]
    Pool(PoolCommand),
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

impl Cli {
    /// The request rate `--qps` and `--burst` ask for.
    pub fn request_rate(&self) -> sandlot_core::Result<RequestRate> {
        let mut rate = RequestRate::default();
        if let Some(qps) = &self.qps {
            rate.qps = match qps.as_str() {
                "none" => None,
                text => Some(text.parse::<f64>().map_err(|_| {
                    Error::invalid("--qps", format!("{text:?} is not a number or \"none\""))
                })?),
            };
        }
        if let Some(burst) = self.burst {
            rate.burst = burst;
        }
        rate.check().map_err(|err| match err {
            Error::InvalidSpec { field, rule } => Error::invalid(format!("--{field}"), rule),
            other => other,
        })?;
        Ok(rate)
    }
}

impl Command {
    /// Checks what can be checked without the cluster. A create's spec is
    /// checked as it is built ([`CreateArgs::spec`]), so it is not checked here.
    pub fn validate(&self) -> sandlot_core::Result<()> {
        match self {
            Command::List(args) => args.tags().map(drop),
            Command::Terminate(args) => args.selection().map(drop),
            Command::Purge(args) => args.selection().map(drop),
            Command::Volume(VolumeCommand::Create(args)) => {
                args.spec().and_then(|spec| spec.validate())
            }
            Command::Volume(VolumeCommand::List(args)) => pairs("--tag", &args.tag).map(drop),
            Command::Cp(args) => {
                args.transfer()?;
                for operand in [&args.src, &args.dst] {
                    if let Operand::Remote(remote) = operand {
                        args.as_user.apply(&mut remote.clone())?;
                    }
                }
                Ok(())
            }
            Command::Ls(LsArgs {
                target, as_user, ..
            })
            | Command::Cat(CatArgs { target, as_user })
            | Command::Chmod(ChmodArgs {
                target, as_user, ..
            }) => as_user.apply(&mut target.clone()),
            Command::Pool(PoolCommand::Create(args)) => args.spec().map(drop),
            Command::Pool(PoolCommand::Update(args)) => args.spec().map(drop),
            Command::PortForward(args) => args.ports().map(drop),
            Command::Expose(args) => sandlot_core::check_port("PORT", args.port).map(drop),
            Command::Unexpose(args) => sandlot_core::check_port("PORT", args.port).map(drop),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// Sandbox name.
    pub name: String,
    /// The sandbox's port, after the local one if given (0: a free one).
    #[arg(value_name = "[LOCAL:]REMOTE")]
    pub ports: String,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// Seconds to wait for something in the sandbox to listen on the port
    /// [default: it must listen already].
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<f64>,
}

impl PortForwardArgs {
    /// The local port (0 unless given) and the sandbox's.
    pub fn ports(&self) -> sandlot_core::Result<(u16, u16)> {
        let field = "[LOCAL:]REMOTE";
        let number = |text: &str| {
            text.parse::<i64>().map_err(|_| {
                sandlot_core::Error::invalid(field, format!("{text:?} is not a port number"))
            })
        };
        match self.ports.split_once(':') {
            Some((local, remote)) => Ok((
                sandlot_core::check_local_port(field, number(local)?)?,
                sandlot_core::check_port(field, number(remote)?)?,
            )),
            None => {
                let remote = sandlot_core::check_port(field, number(&self.ports)?)?;
                Ok((remote, remote))
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// Sandbox name.
    pub name: String,
    /// The sandbox's port (the Service serves the same one).
    pub port: i64,
    /// The Service's name [default: SANDBOX-PORT].
    #[arg(long = "service-name", value_name = "NAME")]
    pub service_name: Option<String>,
    /// Who may connect where the sandbox's network is restricted: NAMESPACE
    /// or NAMESPACE/KEY=VALUE[,KEY=VALUE] (repeatable) [default: the pods of
    /// the namespace, sandboxes excepted].
    #[arg(long = "allow-from", value_name = "NAMESPACE[/LABELS]")]
    pub allow_from: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// Sandbox name.
    pub name: String,
    /// The sandbox's port.
    pub port: i64,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Sandbox name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container image, e.g. docker.io/library/python:3.11-slim [default
    /// with --pool: the pool's].
    pub image: Option<String>,
    /// Sandbox name [default: generated].
    #[arg(long)]
    pub name: Option<String>,
    /// Tag KEY=VALUE (repeatable).
    #[arg(short, long = "tag", value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
    /// Mount a volume at a path, read-only with :ro (repeatable).
    #[arg(long = "volume", value_name = "VOLUME:/PATH[:ro]")]
    pub volume: Vec<String>,
    /// Maximum lifetime in seconds, or "none" for no lifetime [default:
    /// $SANDLOT_DEFAULT_TTL, else 3600].
    #[arg(long, value_name = "SECONDS|none")]
    pub ttl: Option<String>,
    #[command(flatten)]
    pub options: SandboxOptions,
    /// Take a warm sandbox of this pool (`sandlot pool`) if one fits and is
    /// ready, else create it from the pool's options; IMAGE may then be left out.
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
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

/// The options of a sandbox that a pool's warm sandboxes are made with too:
/// one set of flags for `sandlot create` and `sandlot pool create/update`.
#[derive(Debug, Args)]
pub struct SandboxOptions {
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// CPU limit, e.g. 500m.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory limit, e.g. 256Mi.
    #[arg(long)]
    pub memory: Option<String>,
    /// Disk limit (its filesystem, /tmp and logs), e.g. 4Gi [default: 2Gi].
    #[arg(long)]
    pub disk: Option<String>,
    /// Run as this non-root uid instead of the image's user.
    #[arg(long, value_name = "UID")]
    pub user: Option<i64>,
    /// Make the image's filesystem read-only (/tmp stays writable).
    #[arg(long)]
    pub read_only: bool,
    /// Kubernetes RuntimeClass to run under, e.g. gvisor.
    #[arg(long, value_name = "CLASS")]
    pub runtime_class: Option<String>,
    /// Run in a user namespace (uid 0 inside is an unprivileged uid of the
    /// node); an error where the nodes cannot [default: where every node
    /// supports it, without --runtime-class].
    #[arg(long, conflicts_with = "no_user_namespace")]
    pub user_namespace: bool,
    /// Run without a user namespace: uid 0 inside is uid 0 of the node.
    #[arg(long)]
    pub no_user_namespace: bool,
    /// Which destinations the sandbox may connect to: internet (public
    /// addresses only), none, allowlist (only --allow-egress), unrestricted
    /// [default: allowlist with --allow-egress, else internet].
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Allow connections to a CIDR, CIDR:PORT or in-cluster Service
    /// NAMESPACE/NAME (repeatable).
    #[arg(long = "allow-egress", value_name = "CIDR[:PORT]|NAMESPACE/SERVICE")]
    pub allow_egress: Vec<String>,
}

impl SandboxOptions {
    /// These options as a pool's template for `image`, each checked as its
    /// flag (the template as a whole is checked by [`PoolSpec::try_from`]).
    pub fn template(&self, image: &str) -> sandlot_core::Result<PoolTemplate> {
        Ok(PoolTemplate {
            image: image.to_owned(),
            env: pairs("--env", &self.env)?,
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            disk: self.disk.clone(),
            network: self
                .network
                .as_deref()
                .map(|mode| mode.parse().map_err(|e| flag_error("--network", e)))
                .transpose()?,
            allow_egress: self
                .allow_egress
                .iter()
                .map(|text| {
                    EgressRule::parse("--allow-egress", text)?;
                    Ok(text.clone())
                })
                .collect::<sandlot_core::Result<_>>()?,
            run_as_user: self.user,
            read_only_root_filesystem: self.read_only,
            runtime_class: self.runtime_class.clone(),
            user_namespace: match (self.user_namespace, self.no_user_namespace) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        })
    }
}

/// The request of an idle sandbox made with `template`'s options.
fn template_request(template: PoolTemplate) -> SandboxRequest {
    SandboxRequest {
        image: template.image,
        env: template.env,
        resources: Resources {
            cpu: template.cpu,
            memory: template.memory,
            disk: template.disk,
        },
        network: template.network,
        allow_egress: template.allow_egress,
        run_as_user: template.run_as_user,
        read_only_root_filesystem: template.read_only_root_filesystem,
        runtime_class: template.runtime_class,
        user_namespace: template.user_namespace,
        ..SandboxRequest::default()
    }
}

impl CreateArgs {
    /// The checked spec these arguments ask for.
    pub fn spec(&self) -> sandlot_core::Result<SandboxSpec> {
        if self.image.is_none() && self.pool.is_none() {
            return Err(Error::invalid(
                "IMAGE",
                "an image is needed unless --pool names a pool to take it from",
            ));
        }
        let image = self.image.clone().unwrap_or_default();
        SandboxSpec::try_from(SandboxRequest {
            name: self.name.clone(),
            command: (!self.command.is_empty()).then(|| self.command.clone()),
            args: None,
            tags: pairs("--tag", &self.tag)?,
            volume_mounts: mounts(&self.volume)?,
            ttl_seconds: match &self.ttl {
                Some(text) => Ttl::parse("--ttl", text)?,
                None => Ttl::Default,
            },
            pool: self.pool.clone(),
            ..template_request(self.options.template(&image)?)
        })
        .map_err(|err| match err {
            Error::InvalidSpec { field, rule } if field == "pool" => Error::invalid("--pool", rule),
            other => other,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool and start its warm sandboxes; prints its name.
    #[command(
        after_help = "Examples:\n  sandlot pool create py docker.io/library/python:3.11-slim --size 5 --memory 512Mi --wait 120\n  \
sandlot create --pool py --tag job=1"
    )]
    Create(PoolCreateArgs),
    /// Replace a pool's options (its warm sandboxes are replaced gradually).
    #[command(
        after_help = "Example:\n  sandlot pool update py docker.io/library/python:3.12-slim --memory 512Mi --wait 120"
    )]
    Update(PoolUpdateArgs),
    /// Set how many warm sandboxes a pool keeps.
    #[command(
        after_help = "Examples:\n  sandlot pool resize py 10 --wait 120\n  sandlot pool resize py 0"
    )]
    Resize(PoolResizeArgs),
    /// Top a pool up to its size (and retire stale warm sandboxes).
    #[command(after_help = "Example:\n  sandlot pool fill py --wait 120")]
    Fill(PoolFillArgs),
    /// Show one pool.
    #[command(after_help = "Example:\n  sandlot pool get py -o json")]
    Get(PoolNameArg),
    /// List pools.
    #[command(after_help = "Example:\n  sandlot pool list")]
    List,
    /// Delete a pool and end its warm sandboxes (those created from it go on).
    #[command(after_help = "Example:\n  sandlot pool delete py")]
    Delete(PoolNameArg),
}

#[derive(Debug, Args)]
pub struct PoolNameArg {
    /// Pool name.
    pub name: String,
}

/// What `pool create` and `pool update` share: the pool's name, image and options.
#[derive(Debug, Args)]
pub struct PoolDefinition {
    /// Pool name (at most 40 characters: its sandboxes are named after it).
    pub name: String,
    /// Container image of its sandboxes, e.g. docker.io/library/python:3.11-slim.
    pub image: String,
    #[command(flatten)]
    pub options: SandboxOptions,
    /// Seconds a warm sandbox waits to be taken before a fill replaces it
    /// [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    pub idle_seconds: Option<i64>,
    /// The longest --ttl a create from the pool may ask for and still get a
    /// warm sandbox [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    pub max_ttl_seconds: Option<i64>,
    /// Then wait until the pool is full (its warm sandboxes ready), at most
    /// SECONDS.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub wait: Option<std::time::Duration>,
}

impl PoolDefinition {
    /// The checked spec of a pool of `size`, each refusal named by its flag
    /// where it has one.
    fn spec(&self, size: u32) -> sandlot_core::Result<PoolSpec> {
        PoolSpec::try_from(PoolRequest {
            name: self.name.clone(),
            size,
            template: self.options.template(&self.image)?,
            idle_seconds: self.idle_seconds,
            max_ttl_seconds: self.max_ttl_seconds,
        })
        .map_err(pool_flag)
    }

    /// The spec of one of the pool's warm sandboxes, for the user namespace
    /// warning a create would show.
    pub fn sandbox_spec(&self) -> sandlot_core::Result<SandboxSpec> {
        SandboxSpec::try_from(template_request(self.options.template(&self.image)?))
    }
}

/// A core refusal of a pool's field, named by its flag.
pub fn pool_flag(error: Error) -> Error {
    match error {
        Error::InvalidSpec { field, rule } => {
            let flag = match field.as_str() {
                "size" => "--size",
                "idle_seconds" => "--idle-seconds",
                "max_ttl_seconds" => "--max-ttl-seconds",
                "user_namespace" => "--user-namespace",
                _ => return Error::InvalidSpec { field, rule },
            };
            Error::invalid(flag, rule)
        }
        other => other,
    }
}

#[derive(Debug, Args)]
pub struct PoolCreateArgs {
    /// How many warm sandboxes it keeps.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = pool_size)]
    pub size: u32,
    #[command(flatten)]
    pub pool: PoolDefinition,
}

impl PoolCreateArgs {
    pub fn spec(&self) -> sandlot_core::Result<PoolSpec> {
        self.pool.spec(self.size)
    }
}

#[derive(Debug, Args)]
pub struct PoolUpdateArgs {
    /// How many warm sandboxes it keeps [default: as it is].
    #[arg(long, value_name = "N", value_parser = pool_size)]
    pub size: Option<u32>,
    #[command(flatten)]
    pub pool: PoolDefinition,
}

impl PoolUpdateArgs {
    /// The checked spec, and whether the pool keeps its size.
    pub fn spec(&self) -> sandlot_core::Result<(PoolSpec, bool)> {
        Ok((self.pool.spec(self.size.unwrap_or(0))?, self.size.is_none()))
    }
}

#[derive(Debug, Args)]
pub struct PoolResizeArgs {
    /// Pool name.
    pub name: String,
    /// How many warm sandboxes it keeps (0 ends them all but keeps the pool).
    #[arg(value_parser = pool_size)]
    pub size: u32,
    /// Then wait until the pool is full, at most SECONDS.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub wait: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct PoolFillArgs {
    /// Pool name.
    pub name: String,
    /// Keep filling until the pool is full, at most SECONDS [default: one pass].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub wait: Option<std::time::Duration>,
}

/// Parses a pool size: 0 to [`MAX_POOL_SIZE`].
fn pool_size(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|size| *size <= MAX_POOL_SIZE)
        .ok_or_else(|| format!("{text:?} is not a pool size from 0 to {MAX_POOL_SIZE}"))
}

/// Parses a number of seconds >= 0 (fractions allowed).
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds >= 0"))
}

/// A core refusal of a value given by `flag`, re-labelled with the flag.
fn flag_error(flag: &str, error: Error) -> Error {
    match error {
        Error::InvalidSpec { rule, .. } => Error::invalid(flag, rule),
        other => other,
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sandboxes in this phase (repeatable).
    #[arg(long, value_parser = parse_phase, conflicts_with = "all_phases")]
    pub phase: Vec<Phase>,
    /// Sandboxes in every phase, ended ones included.
    #[arg(long)]
    pub all_phases: bool,
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
    /// Keep printing lines until the sandbox ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Only lines of the last DURATION, e.g. 30s, 10m, 2h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Prefix lines with timestamps.
    #[arg(long)]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox name.
    pub name: String,
    /// Seconds before giving up; the command is killed then (needs /bin/sh in the image).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Pass this terminal's stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command on a terminal (raw mode, window size, Ctrl-C to the command).
    #[arg(short, long)]
    pub tty: bool,
    /// Start the command detached (through the sandbox agent) and print its
    /// process id; `sandlot attach` reads it later, from any client. With -i
    /// or -t its stdin stays open for `attach -i`; with -t it gets a terminal.
    #[arg(short, long, conflicts_with = "timeout")]
    pub detach: bool,
    /// The command [after --].
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Sandbox name.
    pub name: String,
    /// The process id that `sandlot ps` shows.
    pub id: u32,
    /// Pass this terminal's stdin to the process (its end closes the
    /// process's stdin); without it the process's stdin is left as it is.
    #[arg(short, long)]
    pub interactive: bool,
    /// For a process started with a terminal: raw mode, window size and
    /// Ctrl-C go to it (implies -i).
    #[arg(short, long)]
    pub tty: bool,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Sandbox name.
    pub name: String,
    /// Print a new reading every interval until the sandbox ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Seconds CPU use is averaged over (and between readings with -f).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub interval: f64,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Sandbox name.
    pub name: String,
    /// The process id that `sandlot ps` shows.
    pub id: u32,
    /// The signal to send, by number.
    #[arg(short, long, default_value_t = 9)]
    pub signal: i32,
}

/// A path in a sandbox or volume: `SANDBOX:PATH` or `volume:NAME:PATH`.
#[derive(Debug, Clone)]
pub struct RemotePath {
    pub target: FileTarget,
    /// Any bytes but NUL; a volume's is from the volume's root.
    pub path: Vec<u8>,
}

impl std::fmt::Display for RemotePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = String::from_utf8_lossy(&self.path);
        match &self.target {
            FileTarget::Sandbox(name) => write!(f, "{name}:{path}"),
            FileTarget::Volume { name, .. } => write!(f, "volume:{name}:{path}"),
        }
    }
}

/// A `cp` operand on this machine.
#[derive(Debug, Clone)]
pub enum Local {
    Path(PathBuf),
    /// `-`: stdin as the source, stdout as the destination.
    Standard,
}

/// A `cp` operand.
#[derive(Debug, Clone)]
pub enum Operand {
    Local(Local),
    Remote(RemotePath),
}

impl Operand {
    /// Reads an operand, as bytes (names need not be UTF-8): `-`; a local
    /// path if it starts with `/` or `.`; `volume:NAME:PATH` (but
    /// `volume:/PATH` is in the sandbox `volume`); `SANDBOX:PATH` where the
    /// text before the first colon has no `/`; else a local path. A remote
    /// operand needs a path after its colon, and a sandbox or volume name in
    /// UTF-8.
    pub fn parse(text: impl AsRef<OsStr>) -> Result<Operand, String> {
        let text = text.as_ref();
        let bytes = text.as_bytes();
        let shown = text.to_string_lossy();
        if bytes == b"-" {
            return Ok(Operand::Local(Local::Standard));
        }
        if bytes.starts_with(b"/") || bytes.starts_with(b".") {
            return Ok(Operand::Local(Local::Path(text.into())));
        }
        let name = |name: &[u8]| {
            String::from_utf8(name.to_vec())
                .map_err(|_| format!("{shown:?}: a sandbox or volume name is UTF-8"))
        };
        let remote = |target: FileTarget, path: &[u8]| {
            if path.is_empty() {
                return Err(format!(
                    "{shown:?} names no path after its colon (\"/\" is the root)"
                ));
            }
            Ok(Operand::Remote(RemotePath {
                target,
                path: path.to_vec(),
            }))
        };
        if let Some(rest) = bytes.strip_prefix(b"volume:")
            && !rest.starts_with(b"/")
        {
            let (volume, path) = split_at_colon(rest)
                .ok_or_else(|| format!("{shown:?} must look like volume:NAME:PATH"))?;
            return remote(FileTarget::volume(name(volume)?), path);
        }
        match split_at_colon(bytes) {
            Some((sandbox, path)) if !sandbox.is_empty() && !sandbox.contains(&b'/') => {
                remote(FileTarget::Sandbox(name(sandbox)?), path)
            }
            _ => Ok(Operand::Local(Local::Path(text.into()))),
        }
    }

    fn describe(&self) -> String {
        match self {
            Operand::Local(Local::Path(path)) => format!("{:?}", path.display().to_string()),
            Operand::Local(Local::Standard) => "-".into(),
            Operand::Remote(remote) => format!("{:?}", remote.to_string()),
        }
    }
}

/// The bytes before and after the first colon, if there is one.
fn split_at_colon(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = text.iter().position(|&b| b == b':')?;
    Some((&text[..colon], &text[colon + 1..]))
}

/// Reads an operand that must be in a sandbox or volume.
fn parse_remote(text: OsString) -> Result<RemotePath, String> {
    match Operand::parse(&text)? {
        Operand::Remote(remote) => Ok(remote),
        Operand::Local(_) => Err(format!(
            "{:?} is not in a sandbox or volume: write SANDBOX:PATH or volume:NAME:PATH",
            text.to_string_lossy()
        )),
    }
}

/// How clap reads `cp` operands: as the bytes given.
fn operand_parser() -> impl TypedValueParser<Value = Operand> {
    OsStringValueParser::new().try_map(Operand::parse)
}

/// How clap reads remote operands: as the bytes given.
fn remote_parser() -> impl TypedValueParser<Value = RemotePath> {
    OsStringValueParser::new().try_map(parse_remote)
}

/// `--user` of the file commands.
#[derive(Debug, Args)]
pub struct FileUser {
    /// With a volume:NAME:PATH operand, act as this non-root uid: the helper
    /// pod runs with the uid, gid and fsGroup of a sandbox created with
    /// --user UID, so what it writes is theirs [default: uid 0].
    #[arg(long, value_name = "UID")]
    pub user: Option<i64>,
}

impl FileUser {
    /// Makes `remote` act as this user, if one is given: a volume's helper
    /// runs as the uid; a sandbox refuses one (its files act as its own user).
    pub fn apply(&self, remote: &mut RemotePath) -> sandlot_core::Result<()> {
        let Some(uid) = self.user else {
            return Ok(());
        };
        remote.target = match &remote.target {
            FileTarget::Volume { name, .. } => {
                FileTarget::volume_as(name.clone(), uid).map_err(|err| match err {
                    Error::InvalidSpec { rule, .. } => Error::invalid("--user", rule),
                    other => other,
                })?
            }
            FileTarget::Sandbox(name) => {
                return Err(Error::invalid(
                    "--user",
                    format!(
                        "applies to volume:NAME:PATH operands; the files of sandbox {name:?} \
                         act as the sandbox's own user"
                    ),
                ));
            }
        };
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: SANDBOX:PATH, volume:NAME:PATH, a local path, or - for stdin.
    #[arg(value_parser = operand_parser())]
    pub src: Operand,
    /// Where to: SANDBOX:PATH, volume:NAME:PATH, a local path, or - for stdout.
    #[arg(value_parser = operand_parser())]
    pub dst: Operand,
    #[command(flatten)]
    pub as_user: FileUser,
}

/// Which way a copy goes, between this machine and a sandbox or volume.
#[derive(Debug)]
pub enum Transfer<'a> {
    Up(&'a Local, &'a RemotePath),
    Down(&'a RemotePath, &'a Local),
}

impl CpArgs {
    /// Makes the remote operand act as `--user` (see [`FileUser::apply`]).
    pub fn apply_user(&mut self) -> sandlot_core::Result<()> {
        for operand in [&mut self.src, &mut self.dst] {
            if let Operand::Remote(remote) = operand {
                self.as_user.apply(remote)?;
            }
        }
        Ok(())
    }

    /// The copy's direction: exactly one operand must be remote, and a
    /// copy from stdin needs a file name to write.
    pub fn transfer(&self) -> sandlot_core::Result<Transfer<'_>> {
        let invalid = |rule: String| Error::invalid("SRC and DST", rule);
        match (&self.src, &self.dst) {
            (Operand::Local(Local::Standard), Operand::Remote(remote))
                if remote.path.ends_with(b"/") =>
            {
                Err(invalid(format!(
                    "{} ends in \"/\"; a copy from stdin needs the file's name",
                    self.dst.describe()
                )))
            }
            (Operand::Local(local), Operand::Remote(remote)) => Ok(Transfer::Up(local, remote)),
            (Operand::Remote(remote), Operand::Local(local)) => Ok(Transfer::Down(remote, local)),
            (Operand::Local(_), Operand::Local(_)) => Err(invalid(format!(
                "{} and {} are both on this machine; one must be SANDBOX:PATH or \
                 volume:NAME:PATH (./a:b is a local path with a colon)",
                self.src.describe(),
                self.dst.describe()
            ))),
            (Operand::Remote(_), Operand::Remote(_)) => Err(invalid(format!(
                "{} and {} are both remote; copy through this machine, one side at a time",
                self.src.describe(),
                self.dst.describe()
            ))),
        }
    }
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// SANDBOX:PATH, or volume:NAME:PATH for a path from a volume's root.
    #[arg(value_parser = remote_parser(), value_name = "SANDBOX:PATH")]
    pub target: RemotePath,
    /// Everything below the directory, not just its entries.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Show the mode, size, modification time and a symlink's target.
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub as_user: FileUser,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// SANDBOX:PATH, or volume:NAME:PATH for a path from a volume's root.
    #[arg(value_parser = remote_parser(), value_name = "SANDBOX:PATH")]
    pub target: RemotePath,
    #[command(flatten)]
    pub as_user: FileUser,
}

#[derive(Debug, Args)]
pub struct ChmodArgs {
    /// The permission bits, in octal (e.g. 755, 0644).
    #[arg(value_parser = octal_mode)]
    pub mode: u32,
    /// SANDBOX:PATH, or volume:NAME:PATH for a path from a volume's root.
    #[arg(value_parser = remote_parser(), value_name = "SANDBOX:PATH")]
    pub target: RemotePath,
    #[command(flatten)]
    pub as_user: FileUser,
}

/// An octal mode of at most 0o7777.
fn octal_mode(text: &str) -> std::result::Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|&mode| mode <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not an octal mode from 0 to 7777"))
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
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Sandbox name.
    pub name: String,
    /// Phase to wait for (repeatable; any of them will do).
    #[arg(long, value_parser = parse_phase, default_value = "running")]
    pub phase: Vec<Phase>,
    /// Seconds before giving up.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    pub timeout: f64,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Sandbox names [default: every ended sandbox matching the other options].
    pub names: Vec<String>,
    /// Only sandboxes that ended at least DURATION ago, e.g. 24h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Only sandboxes with tag KEY=VALUE (repeatable).
    #[arg(short, long = "tag", value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
    /// List what would be purged, and purge nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

impl PurgeArgs {
    pub fn selection(&self) -> sandlot_core::Result<Selection> {
        let tags = pairs("--tag", &self.tag)?;
        Ok(Selection {
            all: self.names.is_empty() && tags.is_empty(),
            names: self.names.clone(),
            tags,
            phases: Vec::new(),
        })
    }
}

/// Parses a duration: plain seconds ("90"), or jiff's friendly format with a
/// day taken as 24 hours ("30s", "10m", "2h", "1d", "1h30m", "2 hours").
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("{text:?} is not a duration like 30s, 10m, 2h or 1d");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|_| invalid());
    }
    let span: jiff::Span = text.parse().map_err(|_| invalid())?;
    let seconds = span
        .total((
            jiff::Unit::Second,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .map_err(|_| invalid())?;
    std::time::Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
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

/// Parses repeated VOLUME:/PATH[:ro] (or :rw) options into mount path -> mount.
fn mounts(items: &[String]) -> sandlot_core::Result<BTreeMap<String, Mount>> {
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
            let (path, read_only) = match rest.rsplit_once(':') {
                Some((path, "ro")) => (path, true),
                Some((path, "rw")) => (path, false),
                Some(_) => return Err(malformed()),
                None => (rest, false),
            };
            let mount = Mount {
                volume: volume.to_owned(),
                read_only,
            };
            Ok((path.to_owned(), mount))
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_in_seconds_or_with_a_unit() {
        for (text, seconds) in [
            ("90", 90),
            ("0", 0),
            ("30s", 30),
            ("10m", 600),
            ("2h", 7200),
            ("1d", 86400),
            ("1h30m", 5400),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text:?}"
            );
        }
        for bad in ["", "abc", "-5m", "10x", "1.5.h"] {
            assert_eq!(
                parse_duration(bad),
                Err(format!("{bad:?} is not a duration like 30s, 10m, 2h or 1d")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn operands_are_remote_only_with_a_sandbox_or_volume_prefix() {
        let remote = |text: &str| match Operand::parse(text) {
            Ok(Operand::Remote(RemotePath { target, path })) => Some((target, path)),
            _ => None,
        };
        let sandbox =
            |name: &str, path: &[u8]| Some((FileTarget::Sandbox(name.into()), path.into()));
        assert_eq!(remote("job:/work/a"), sandbox("job", b"/work/a"));
        assert_eq!(remote("job:rel:x"), sandbox("job", b"rel:x"));
        assert_eq!(remote("volume:/etc"), sandbox("volume", b"/etc"));
        assert_eq!(
            remote("volume:data:/x/y"),
            Some((FileTarget::volume("data"), b"/x/y".to_vec()))
        );
        for local in ["./a:b", "/abs:x", "dir/a:b", "plain", ":x"] {
            assert!(
                matches!(Operand::parse(local), Ok(Operand::Local(Local::Path(p))) if p == Path::new(local)),
                "{local:?}"
            );
        }
        assert!(matches!(
            Operand::parse("-"),
            Ok(Operand::Local(Local::Standard))
        ));
        for bad in ["job:", "volume:data", "volume:data:"] {
            assert!(Operand::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn operands_keep_bytes_that_are_not_utf8() {
        let text = |bytes: &[u8]| OsStr::from_bytes(bytes).to_owned();
        match Operand::parse(text(b"job:/tmp/caf\xe9")) {
            Ok(Operand::Remote(RemotePath { target, path })) => {
                assert_eq!(target, FileTarget::Sandbox("job".into()));
                assert_eq!(path, b"/tmp/caf\xe9");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Operand::parse(text(b"./caf\xe9")),
            Ok(Operand::Local(Local::Path(p))) if p.as_os_str().as_bytes() == b"./caf\xe9"
        ));
        let refused = Operand::parse(text(b"j\xffb:/x")).unwrap_err();
        assert!(refused.contains("UTF-8"), "{refused}");
        assert!(Operand::parse(text(b"volume:d\xff:/x")).is_err());
    }

    #[test]
    fn a_copy_has_exactly_one_remote_side() {
        let copy = |src: &str, dst: &str| {
            CpArgs {
                src: Operand::parse(src).unwrap(),
                dst: Operand::parse(dst).unwrap(),
                as_user: FileUser { user: None },
            }
            .transfer()
            .map(|t| matches!(t, Transfer::Up(..)))
        };
        assert_eq!(copy("a", "job:/b").ok(), Some(true));
        assert_eq!(copy("-", "volume:v:/b").ok(), Some(true));
        assert_eq!(copy("job:/b", "-").ok(), Some(false));
        for (src, dst) in [
            ("a", "b"),
            ("-", "./b"),
            ("job:/a", "other:/b"),
            ("-", "job:/dir/"),
        ] {
            assert!(
                matches!(copy(src, dst), Err(Error::InvalidSpec { .. })),
                "{src} {dst}"
            );
        }
    }

    fn parse(argv: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(["sandlot"].iter().chain(argv)).map(|cli| cli.command)
    }

    #[test]
    fn user_makes_a_volume_operand_act_as_that_uid_and_nothing_else() {
        let Command::Cp(mut args) = parse(&["cp", "--user", "1000", "a", "volume:v:/b"]).unwrap()
        else {
            panic!("not a cp");
        };
        args.apply_user().unwrap();
        let Operand::Remote(remote) = &args.dst else {
            panic!("not remote");
        };
        assert_eq!(remote.target, FileTarget::volume_as("v", 1000).unwrap());
        for argv in [
            &["cp", "--user", "1000", "a", "job:/b"][..],
            &["ls", "--user", "0", "volume:v:/"],
            &["cat", "--user", "2147483648", "volume:v:/x"],
            &["chmod", "--user", "7", "644", "job:/x"],
        ] {
            assert_eq!(
                refused_field(parse(argv).unwrap().validate()),
                "--user",
                "{argv:?}"
            );
        }
        assert!(
            parse(&["ls", "--user", "7", "volume:v:/"])
                .unwrap()
                .validate()
                .is_ok()
        );
    }

    fn refused_field(result: sandlot_core::Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn a_create_needs_an_image_unless_it_names_a_pool() {
        let create = |argv: &[&str]| match parse(argv).unwrap() {
            Command::Create(args) => args.spec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(refused_field(create(&["create"])), "IMAGE");
        let spec = create(&["create", "--pool", "py", "--tag", "a=b"]).unwrap();
        assert_eq!(spec.request().image, "");
        assert_eq!(spec.request().pool.as_deref(), Some("py"));
        assert_eq!(refused_field(create(&["create", "--pool", "Py"])), "--pool");
        let spec = create(&["create", "busybox", "-e", "A=1", "--no-user-namespace"]).unwrap();
        assert_eq!(spec.request().pool, None);
        assert_eq!(spec.request().env["A"], "1");
        assert_eq!(spec.request().user_namespace, Some(false));
    }

    #[test]
    fn pool_flags_are_the_creates_and_refusals_name_them() {
        let pool = |argv: &[&str]| match parse(argv).unwrap() {
            Command::Pool(PoolCommand::Create(args)) => args.spec().map(|_| args),
            other => panic!("{other:?}"),
        };
        let args = pool(&[
            "pool",
            "create",
            "py",
            "python:3.12",
            "--env",
            "A=1",
            "--memory",
            "256Mi",
            "--network",
            "none",
            "--user",
            "1000",
            "--read-only",
            "--no-user-namespace",
        ])
        .unwrap();
        assert_eq!(args.size, 1);
        let template = args.pool.options.template(&args.pool.image).unwrap();
        assert_eq!(
            template,
            PoolTemplate {
                image: "python:3.12".into(),
                env: BTreeMap::from([("A".into(), "1".into())]),
                memory: Some("256Mi".into()),
                network: Some(sandlot_core::NetworkMode::None),
                run_as_user: Some(1000),
                read_only_root_filesystem: true,
                user_namespace: Some(false),
                ..PoolTemplate::default()
            }
        );
        for (flag, value, field) in [
            ("--idle-seconds", "5", "--idle-seconds"),
            ("--max-ttl-seconds", "0", "--max-ttl-seconds"),
            ("--network", "bogus", "--network"),
            ("--env", "A", "--env"),
            ("--cpu", "lots", "resources.cpu"),
        ] {
            let refused = pool(&["pool", "create", "py", "busybox", flag, value]);
            assert_eq!(refused_field(refused), field, "{flag}");
        }
        assert_eq!(
            refused_field(pool(&["pool", "create", "Py", "busybox"])),
            "name"
        );
        for argv in [
            &["pool", "create", "py", "busybox", "--size", "501"][..],
            &["pool", "create", "py", "busybox", "--wait", "-1"],
            &["pool", "resize", "py", "-1"],
            &["pool", "update", "py"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?}");
        }
        match parse(&["pool", "update", "py", "busybox"]).unwrap() {
            Command::Pool(PoolCommand::Update(args)) => assert!(args.spec().unwrap().1),
            other => panic!("{other:?}"),
        }
        match parse(&["pool", "update", "py", "busybox", "--size", "3"]).unwrap() {
            Command::Pool(PoolCommand::Update(args)) => assert!(!args.spec().unwrap().1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn volumes_mount_read_write_unless_ro() {
        let parsed = mounts(&["data:/data".into(), "cache:/cache:ro".into()]).unwrap();
        assert_eq!(
            parsed["/data"],
            Mount {
                volume: "data".into(),
                read_only: false
            }
        );
        assert!(parsed["/cache"].read_only);
        assert!(mounts(&["data".into()]).is_err());
        assert!(mounts(&["data:/x:rx".into()]).is_err());
    }
}
