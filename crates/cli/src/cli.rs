//! Command line: clap definitions mirroring docker's command names, aliases and flags, and the
//! translation of clap's parse errors into docker's (cobra's) messages and exit codes.
//!
//! Positional arguments are collected loosely and counted by each command, so the
//! "requires at least 1 argument" messages match docker's exactly.

use clap::{Args, Parser, Subcommand};

use crate::error::{CliError, EXIT_FAILURE, EXIT_USAGE};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "A self-sufficient runtime for containers",
    disable_version_flag = true,
    disable_help_subcommand = true,
    override_usage = "berth [OPTIONS] COMMAND"
)]
pub struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long = "host", value_name = "list")]
    pub host: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(
        short = 'l',
        long = "log-level",
        value_name = "string",
        default_value = "info"
    )]
    pub log_level: String,
    /// Use TLS; implied by --tlsverify
    #[arg(long)]
    pub tls: bool,
    /// Use TLS and verify the remote
    #[arg(long)]
    pub tlsverify: bool,
    /// Trust certs signed only by this CA
    #[arg(long, value_name = "string")]
    pub tlscacert: Option<std::path::PathBuf>,
    /// Path to TLS certificate file
    #[arg(long, value_name = "string")]
    pub tlscert: Option<std::path::PathBuf>,
    /// Path to TLS key file
    #[arg(long, value_name = "string")]
    pub tlskey: Option<std::path::PathBuf>,
    /// Location of client config files (accepted for compatibility)
    #[arg(long, value_name = "string")]
    pub config: Option<String>,
    /// Name of the context to use (accepted for compatibility)
    #[arg(short = 'c', long, value_name = "string")]
    pub context: Option<String>,
    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// A subcommand's arguments, defined only when that subcommand is the one parsed (clap's
/// `Command::defer`). Building every subcommand's ~1000 flags was most of the CLI's start-up
/// (`berth --version` 2 ms of CPU, not 1). Whatever walks the whole tree (help, flag labels)
/// calls `Command::build()` first.
#[derive(Debug, Clone)]
pub struct Lazy<T>(pub T);

impl<T: Args> Args for Lazy<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }
    fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Lazy)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
    fn update_from_arg_matches_mut(&mut self, m: &mut clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

/// A command group (`container`, `image`...) whose subcommands are defined only when the
/// group is the one parsed; see [`Lazy`].
#[derive(Debug)]
pub struct LazySub<T>(pub T);

impl<T: Subcommand> Subcommand for LazySub<T> {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands)
    }
    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands_for_update)
    }
    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for LazySub<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(LazySub)
    }
    fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(LazySub)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
    fn update_from_arg_matches_mut(&mut self, m: &mut clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List images
    Images(Lazy<ImagesArgs>),
    /// Remove one or more images
    Rmi(Lazy<RmiArgs>),
    /// Return low-level information on Docker objects
    Inspect(Lazy<InspectArgs>),
    /// Show the history of an image
    History(Lazy<HistoryArgs>),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(Lazy<TagArgs>),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(Lazy<SaveArgs>),
    /// Load an image from a tar archive or STDIN
    Load(Lazy<LoadArgs>),
    /// Import the contents from a tarball to create a filesystem image
    Import(Lazy<ImportArgs>),
    /// Download an image from a registry
    Pull(Lazy<crate::commands::registry::PullArgs>),
    /// Build an image from a Dockerfile
    Build(Lazy<Box<crate::commands::build::BuildArgs>>),
    /// Upload an image to a registry
    Push(Lazy<crate::commands::registry::PushArgs>),
    /// Authenticate to a registry
    Login(Lazy<crate::commands::registry::LoginArgs>),
    /// Log out from a registry
    Logout(Lazy<crate::commands::registry::LogoutArgs>),
    /// Search Docker Hub for images
    Search(Lazy<crate::commands::registry::SearchArgs>),
    /// Show the Docker version information
    Version(Lazy<VersionArgs>),
    /// Display system-wide information
    Info(Lazy<InfoArgs>),
    /// Get real time events from the server
    Events(Lazy<EventsArgs>),
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(Lazy<crate::commands::container::RunArgs>),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(Lazy<crate::commands::container::CreateArgs>),
    /// Start one or more stopped containers
    Start(Lazy<crate::commands::container::StartArgs>),
    /// List containers
    Ps(Lazy<crate::commands::container::PsArgs>),
    /// Stop one or more running containers
    Stop(Lazy<crate::commands::container::StopArgs>),
    /// Kill one or more running containers
    Kill(Lazy<crate::commands::container::KillArgs>),
    /// Restart one or more containers
    Restart(Lazy<crate::commands::container::StopArgs>),
    /// Remove one or more containers
    Rm(Lazy<crate::commands::container::RmArgs>),
    /// Block until one or more containers stop, then print their exit codes
    Wait(Lazy<crate::commands::container::NamesArgs>),
    /// Fetch the logs of a container
    Logs(Lazy<crate::commands::container::LogsArgs>),
    /// Attach local standard input, output, and error streams to a running container
    Attach(Lazy<crate::commands::container::AttachArgs>),
    /// Execute a command in a running container
    Exec(Lazy<crate::commands::container::ExecArgs>),
    /// Display the running processes of a container
    Top(Lazy<crate::commands::container::TopArgs>),
    /// Display a live stream of container(s) resource usage statistics
    Stats(Lazy<crate::commands::container::StatsArgs>),
    /// Pause all processes within one or more containers
    Pause(Lazy<crate::commands::container::NamesArgs>),
    /// Unpause all processes within one or more containers
    Unpause(Lazy<crate::commands::container::NamesArgs>),
    /// Rename a container
    Rename(Lazy<crate::commands::container::NamesArgs>),
    /// Update configuration of one or more containers
    Update(Lazy<crate::commands::container::UpdateArgs>),
    /// List port mappings or a specific mapping for the container
    Port(Lazy<crate::commands::container::PortArgs>),
    /// Copy files/folders between a container and the local filesystem
    Cp(Lazy<crate::commands::files::CpArgs>),
    /// Export a container's filesystem as a tar archive
    Export(Lazy<crate::commands::files::ExportArgs>),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(Lazy<crate::commands::container::NamesArgs>),
    /// Create a new image from a container's changes
    Commit(Lazy<crate::commands::files::CommitArgs>),
    /// Manage containers
    #[command(subcommand, arg_required_else_help = true)]
    Container(LazySub<ContainerCmd>),
    /// Manage images
    #[command(subcommand, arg_required_else_help = true)]
    Image(LazySub<ImageCmd>),
    /// Manage Docker
    #[command(subcommand, arg_required_else_help = true)]
    System(LazySub<SystemCmd>),
    /// Run a container registry
    #[command(subcommand, arg_required_else_help = true)]
    Registry(LazySub<crate::commands::registry_server::RegistryCmd>),
    /// Manage networks
    #[command(subcommand, arg_required_else_help = true)]
    Network(LazySub<crate::commands::network::NetworkCmd>),
    /// Manage volumes
    #[command(subcommand, arg_required_else_help = true)]
    Volume(LazySub<VolumeCmd>),
}

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(VolumeLsArgs),
    /// Remove all unused local volumes
    Prune(VolumePruneArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(VolumeRmArgs),
}

#[derive(Args, Debug, Default)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, value_name = "string", default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long, value_name = "list")]
    pub label: Vec<String>,
    /// Specify volume name
    #[arg(long, value_name = "string")]
    pub name: Option<String>,
    /// Set driver specific options
    #[arg(short = 'o', long, value_name = "map")]
    pub opt: Vec<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct VolumeInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long, value_name = "string", default_value = "")]
    pub format: String,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct VolumeLsArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    #[arg(long, value_name = "string", default_value = "",
          help = crate::commands::container::FORMAT_HELP)]
    pub format: String,
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// List images
    #[command(visible_alias = "list", alias = "images")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove", alias = "rmi")]
    Rm(RmiArgs),
    /// Display detailed information on one or more images
    Inspect(ImageInspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Download an image from a registry
    Pull(crate::commands::registry::PullArgs),
    /// Build an image from a Dockerfile
    Build(Box<crate::commands::build::BuildArgs>),
    /// Upload an image to a registry
    Push(crate::commands::registry::PushArgs),
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Attach local standard input, output, and error streams to a running container
    Attach(Lazy<crate::commands::container::AttachArgs>),
    /// Create a new image from a container's changes
    Commit(Lazy<crate::commands::files::CommitArgs>),
    /// Copy files/folders between a container and the local filesystem
    Cp(Lazy<crate::commands::files::CpArgs>),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(Lazy<crate::commands::container::CreateArgs>),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(Lazy<crate::commands::container::NamesArgs>),
    /// Execute a command in a running container
    Exec(Lazy<crate::commands::container::ExecArgs>),
    /// Export a container's filesystem as a tar archive
    Export(Lazy<crate::commands::files::ExportArgs>),
    /// Display detailed information on one or more containers
    Inspect(Lazy<InspectArgs>),
    /// Kill one or more running containers
    Kill(Lazy<crate::commands::container::KillArgs>),
    /// Fetch the logs of a container
    Logs(Lazy<crate::commands::container::LogsArgs>),
    /// List containers
    #[command(visible_aliases = ["list", "ps"])]
    Ls(Lazy<crate::commands::container::PsArgs>),
    /// Pause all processes within one or more containers
    Pause(Lazy<crate::commands::container::NamesArgs>),
    /// List port mappings or a specific mapping for the container
    Port(Lazy<crate::commands::container::PortArgs>),
    /// Remove all stopped containers
    Prune(Lazy<crate::commands::container::ContainerPruneArgs>),
    /// Rename a container
    Rename(Lazy<crate::commands::container::NamesArgs>),
    /// Restart one or more containers
    Restart(Lazy<crate::commands::container::StopArgs>),
    /// Remove one or more containers
    #[command(visible_aliases = ["remove"])]
    Rm(Lazy<crate::commands::container::RmArgs>),
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(Lazy<crate::commands::container::RunArgs>),
    /// Start one or more stopped containers
    Start(Lazy<crate::commands::container::StartArgs>),
    /// Display a live stream of container(s) resource usage statistics
    Stats(Lazy<crate::commands::container::StatsArgs>),
    /// Stop one or more running containers
    Stop(Lazy<crate::commands::container::StopArgs>),
    /// Display the running processes of a container
    Top(Lazy<crate::commands::container::TopArgs>),
    /// Unpause all processes within one or more containers
    Unpause(Lazy<crate::commands::container::NamesArgs>),
    /// Update configuration of one or more containers
    Update(Lazy<crate::commands::container::UpdateArgs>),
    /// Block until one or more containers stop, then print their exit codes
    Wait(Lazy<crate::commands::container::NamesArgs>),
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Display system-wide information
    Info(InfoArgs),
    /// Show docker disk usage
    Df(DfArgs),
    /// Get real time events from the server
    Events(EventsArgs),
}

#[derive(Args, Debug, Default)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    #[arg(long, value_name = "string", default_value = "",
          help = crate::commands::container::FORMAT_HELP)]
    pub format: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    pub no_prune: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long, value_name = "string", default_value = "")]
    pub format: String,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    /// Return JSON for specified type
    #[arg(long = "type", value_name = "string", default_value = "")]
    pub kind: String,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct ImageInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long, value_name = "string", default_value = "")]
    pub format: String,
    /// Display the image for a specific platform (accepted; the daemon decides)
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct HistoryArgs {
    /// Format output using a custom template
    #[arg(long, value_name = "string", default_value = "")]
    pub format: String,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, value_name = "bool", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true")]
    pub human: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Show history for the given platform. Formatted as "os[/arch[/variant]]" (e.g., "linux/amd64")
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct TagArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long, value_name = "string")]
    pub output: Option<String>,
    /// Save only the given platform (accepted; the daemon decides)
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long, value_name = "string")]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Load only the given platform (accepted; the daemon decides)
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change", value_name = "list")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long, value_name = "string")]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    #[arg(hide = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct VersionArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long, value_name = "string", default_value = "")]
    pub format: String,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct InfoArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long, value_name = "string", default_value = "")]
    pub format: String,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct DfArgs {
    /// Format output using a custom template
    #[arg(long, value_name = "string", default_value = "")]
    pub format: String,
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long, value_name = "string", default_value = "")]
    pub format: String,
    /// Show all events created since timestamp
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// docker's usage line for a command path ("images", "image ls", ...).
pub fn usage(path: &str) -> String {
    let rest = match path {
        "" => "[OPTIONS] COMMAND [ARG...]",
        "images" | "image ls" => "[OPTIONS] [REPOSITORY[:TAG]]",
        "rmi" | "image rm" => "[OPTIONS] IMAGE [IMAGE...]",
        "inspect" => "[OPTIONS] NAME|ID [NAME|ID...]",
        "image inspect" => "[OPTIONS] IMAGE [IMAGE...]",
        "history" | "image history" => "[OPTIONS] IMAGE",
        "tag" | "image tag" => "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
        "save" | "image save" => "[OPTIONS] IMAGE [IMAGE...]",
        "import" | "image import" => "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
        "image" | "system" | "container" | "volume" => "COMMAND",
        "volume create" => "[OPTIONS] [VOLUME]",
        "volume inspect" | "volume rm" => "[OPTIONS] VOLUME [VOLUME...]",
        "volume ls" | "volume prune" => "[OPTIONS]",
        "pull" | "image pull" => "[OPTIONS] NAME[:TAG|@DIGEST]",
        "build" | "image build" => "[OPTIONS] PATH | URL | -",
        "push" | "image push" => "[OPTIONS] NAME[:TAG]",
        "login" => "[OPTIONS] [SERVER]",
        "logout" => "[SERVER]",
        "search" => "[OPTIONS] TERM",
        "run" | "container run" => "[OPTIONS] IMAGE [COMMAND] [ARG...]",
        "create" | "container create" => "[OPTIONS] IMAGE [COMMAND] [ARG...]",
        "start" | "container start" => "[OPTIONS] CONTAINER [CONTAINER...]",
        "ps" | "container ls" => "[OPTIONS]",
        "stop" | "container stop" => "[OPTIONS] CONTAINER [CONTAINER...]",
        "kill" | "container kill" => "[OPTIONS] CONTAINER [CONTAINER...]",
        "restart" | "container restart" => "[OPTIONS] CONTAINER [CONTAINER...]",
        "rm" | "container rm" => "[OPTIONS] CONTAINER [CONTAINER...]",
        "wait" | "container wait" => "CONTAINER [CONTAINER...]",
        "logs" | "container logs" => "[OPTIONS] CONTAINER",
        "attach" | "container attach" => "[OPTIONS] CONTAINER",
        "exec" | "container exec" => "[OPTIONS] CONTAINER COMMAND [ARG...]",
        "top" | "container top" => "CONTAINER [ps OPTIONS]",
        "stats" | "container stats" => "[OPTIONS] [CONTAINER...]",
        "pause" | "container pause" => "CONTAINER [CONTAINER...]",
        "unpause" | "container unpause" => "CONTAINER [CONTAINER...]",
        "rename" | "container rename" => "CONTAINER NEW_NAME",
        "update" | "container update" => "[OPTIONS] CONTAINER [CONTAINER...]",
        "port" | "container port" => "CONTAINER [PRIVATE_PORT[/PROTO]]",
        "container prune" => "[OPTIONS]",
        "cp" | "container cp" => {
            "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
        }
        "export" | "container export" => "[OPTIONS] CONTAINER",
        "diff" | "container diff" => "CONTAINER",
        "commit" | "container commit" => "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
        "container inspect" => "[OPTIONS] CONTAINER [CONTAINER...]",
        "network" => "COMMAND",
        "network create" => "[OPTIONS] NETWORK",
        "network inspect" => "[OPTIONS] NETWORK [NETWORK...]",
        "network rm" => "NETWORK [NETWORK...]",
        "network connect" | "network disconnect" => "[OPTIONS] NETWORK CONTAINER",
        _ => "[OPTIONS]",
    };
    if path.is_empty() {
        format!("berth {rest}")
    } else {
        format!("berth {path} {rest}")
    }
}

/// Argument count rules, with docker's exact wording (including its "SRun" typo).
pub enum Arity {
    None,
    Exact(usize),
    AtLeast(usize),
    AtMost(usize),
    Range(usize, usize),
}

pub fn check_args(path: &str, args: &[String], arity: Arity) -> Result<(), CliError> {
    let n = args.len();
    let plural = |k: usize| if k == 1 { "argument" } else { "arguments" };
    let (bad, text, see) = match arity {
        Arity::None => (n > 0, "accepts no arguments".to_string(), "Run"),
        Arity::Exact(k) => (n != k, format!("requires {k} {}", plural(k)), "Run"),
        Arity::AtLeast(k) => (n < k, format!("requires at least {k} {}", plural(k)), "See"),
        Arity::AtMost(k) => (n > k, format!("requires at most {k} {}", plural(k)), "SRun"),
        Arity::Range(a, b) => (
            n < a || n > b,
            format!("requires at least {a} and at most {b} {}", plural(b)),
            "Run",
        ),
    };
    if !bad {
        return Ok(());
    }
    Err(CliError::new(
        format!(
            "berth: 'berth {path}' {text}\n\nUsage:  {}\n\n{see} 'berth {path} --help' for more information",
            usage(path)
        ),
        EXIT_FAILURE,
    ))
}

/// `--filter` values must be name=value; docker rejects others as a flag error (125).
pub fn check_filters(path: &str, filters: &[String], flag: &str) -> Result<(), CliError> {
    match filters.iter().find(|f| !f.contains('=')) {
        Some(f) => Err(CliError::new(
            format!(
                "invalid argument \"{f}\" for \"{flag}\" flag: bad format of filter (expected name=value)\n\nUsage:  {}\n\nRun 'berth {path} --help' for more information",
                usage(path)
            ),
            EXIT_USAGE,
        )),
        None => Ok(()),
    }
}

/// The command path the user typed ("image ls"), for messages; aliases are canonicalized.
pub fn command_path(argv: &[String]) -> String {
    let mut words = Vec::new();
    let mut i = 1;
    let takes_value = [
        "-H",
        "--host",
        "-l",
        "--log-level",
        "--tlscacert",
        "--tlscert",
        "--tlskey",
        "--config",
        "-c",
        "--context",
    ];
    while i < argv.len() {
        let a = &argv[i];
        if a.starts_with('-') {
            if words.is_empty() && takes_value.contains(&a.as_str()) {
                i += 1;
            }
            i += 1;
            continue;
        }
        words.push(canonical(words.first().map(String::as_str), a));
        if words.len() == 2
            || !matches!(
                a.as_str(),
                "image" | "system" | "container" | "network" | "volume"
            )
        {
            break;
        }
        i += 1;
    }
    words.join(" ")
}

fn canonical(group: Option<&str>, w: &str) -> String {
    match (group, w) {
        (Some("image"), "list" | "images") => "ls".into(),
        (Some("image"), "remove" | "rmi") => "rm".into(),
        (Some("container"), "list" | "ps") => "ls".into(),
        (Some("container"), "remove") => "rm".into(),
        (Some("volume"), "list") => "ls".into(),
        (Some("volume"), "remove") => "rm".into(),
        (Some("network"), "list") => "ls".into(),
        (Some("network"), "remove") => "rm".into(),
        _ => w.into(),
    }
}

/// "-t, --timeout" (or "--cpus") and the value name of a flag of the command at `path`.
fn flag_label(path: &str, long: &str) -> (String, String) {
    use clap::CommandFactory;
    let mut root = Cli::command();
    // Subcommands are defined lazily (Lazy); this reads their flags.
    root.build();
    let mut cmd = &root;
    for word in path.split(' ').filter(|w| !w.is_empty()) {
        match cmd.get_subcommands().find(|c| c.get_name() == word) {
            Some(c) => cmd = c,
            None => break,
        }
    }
    let Some(a) = cmd.get_arguments().find(|a| a.get_long() == Some(long)) else {
        return (format!("--{long}"), String::new());
    };
    let vname = a
        .get_value_names()
        .and_then(|v| v.first())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let label = match a.get_short() {
        Some(c) => format!("-{c}, --{long}"),
        None => format!("--{long}"),
    };
    (label, vname)
}

/// Turn a clap error into docker's text and exit code; help/version print and exit 0.
pub fn clap_error(e: clap::Error, argv: &[String]) -> CliError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let path = command_path(argv);
    let help_hint = |path: &str| {
        if path.is_empty() {
            "Run 'berth --help' for more information".to_string()
        } else {
            format!("Run 'berth {path} --help' for more information")
        }
    };
    let ctx = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.first().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Asked-for help goes to stdout with status 0.
            match crate::help::render(&path) {
                Some(h) => print!("{h}"),
                None => print!("{}", e.render()),
            }
            CliError::silent(0)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A group alone (`berth image`): docker prints its help to stderr, status 0.
            match crate::help::render(&path) {
                Some(h) => eprint!("{h}"),
                None => eprint!("{}", e.render()),
            }
            CliError::silent(0)
        }
        ErrorKind::ValueValidation => {
            // A number flag that does not parse: Go's strconv wording.
            let arg = ctx(ContextKind::InvalidArg);
            let long = arg
                .split_whitespace()
                .next()
                .unwrap_or(&arg)
                .trim_start_matches('-')
                .to_string();
            let value = ctx(ContextKind::InvalidValue);
            let (label, vname) = flag_label(&path, &long);
            let func = if vname.starts_with("uint") {
                "strconv.ParseUint"
            } else {
                "strconv.ParseInt"
            };
            CliError::new(
                format!(
                    "invalid argument \"{value}\" for \"{label}\" flag: {func}: parsing \"{value}\": invalid syntax\n\nUsage:  {}\n\n{}",
                    usage(&path),
                    help_hint(&path)
                ),
                EXIT_USAGE,
            )
        }
        ErrorKind::InvalidSubcommand => {
            let sub = ctx(ContextKind::InvalidSubcommand);
            let full = if path.is_empty() || path == sub {
                sub.clone()
            } else {
                format!("{} {sub}", path.split(' ').next().unwrap_or(""))
            };
            let group = full.rsplit_once(' ').map(|(g, _)| g.to_string());
            let msg = match group {
                Some(g) => format!(
                    "berth: unknown command: berth {full}\n\nUsage:  berth {g}\n\n{}",
                    help_hint(&g)
                ),
                None => format!("berth: unknown command: berth {full}\n\n{}", help_hint("")),
            };
            CliError::new(msg, EXIT_FAILURE)
        }
        ErrorKind::UnknownArgument => {
            let arg = ctx(ContextKind::InvalidArg);
            let flag = arg.split('=').next().unwrap_or(&arg).to_string();
            let what = if flag.starts_with("--") {
                format!("unknown flag: {flag}")
            } else {
                format!(
                    "unknown shorthand flag: '{}' in {arg}",
                    flag.trim_start_matches('-').chars().next().unwrap_or('?')
                )
            };
            CliError::new(
                format!("{what}\n\nUsage:  {}\n\n{}", usage(&path), help_hint(&path)),
                EXIT_USAGE,
            )
        }
        ErrorKind::InvalidValue | ErrorKind::NoEquals => {
            let arg = ctx(ContextKind::InvalidArg);
            let flag = arg.split_whitespace().next().unwrap_or(&arg).to_string();
            let value = ctx(ContextKind::InvalidValue);
            let msg = if value.is_empty() {
                format!("flag needs an argument: {flag}")
            } else {
                format!("invalid argument \"{value}\" for \"{flag}\" flag")
            };
            CliError::new(
                format!("{msg}\n\nUsage:  {}\n\n{}", usage(&path), help_hint(&path)),
                EXIT_USAGE,
            )
        }
        _ => CliError::new(
            format!(
                "{}\n\nUsage:  {}\n\n{}",
                e.to_string()
                    .trim_start_matches("error: ")
                    .lines()
                    .next()
                    .unwrap_or(""),
                usage(&path),
                help_hint(&path)
            ),
            EXIT_USAGE,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn parse_err(s: &str) -> CliError {
        match Cli::try_parse_from(argv(s)) {
            Ok(_) => panic!("parsed: {s}"),
            Err(e) => clap_error(e, &argv(s)),
        }
    }

    #[test]
    fn aliases_parse() {
        for s in [
            "berth images",
            "berth image ls",
            "berth image list",
            "berth -H unix:///x image rm a",
        ] {
            assert!(Cli::try_parse_from(argv(s)).is_ok(), "{s}");
        }
    }

    #[test]
    fn command_paths() {
        assert_eq!(
            command_path(&argv("berth -H unix:///x image list -a")),
            "image ls"
        );
        assert_eq!(command_path(&argv("berth --debug images")), "images");
        assert_eq!(command_path(&argv("berth system df")), "system df");
    }

    #[test]
    fn unknown_flag_is_usage_error_125() {
        let e = parse_err("berth images --bogus");
        assert_eq!(e.code, 125);
        assert_eq!(
            e.message,
            "unknown flag: --bogus\n\nUsage:  berth images [OPTIONS] [REPOSITORY[:TAG]]\n\nRun 'berth images --help' for more information"
        );
    }

    #[test]
    fn unknown_command_exits_1() {
        let e = parse_err("berth nosuch");
        assert_eq!(e.code, 1);
        assert_eq!(
            e.message,
            "berth: unknown command: berth nosuch\n\nRun 'berth --help' for more information"
        );
        let e = parse_err("berth image nosuch");
        assert_eq!(
            e.message,
            "berth: unknown command: berth image nosuch\n\nUsage:  berth image\n\nRun 'berth image --help' for more information"
        );
    }

    #[test]
    fn arity_messages() {
        let e = check_args("tag", &argv("a"), Arity::Exact(2)).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.message.starts_with("berth: 'berth tag' requires 2 arguments\n\nUsage:  berth tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]\n\nRun 'berth tag --help'"));
        let e = check_args("rmi", &[], Arity::AtLeast(1)).unwrap_err();
        assert!(e.message.contains("requires at least 1 argument\n"));
        assert!(e.message.contains("\n\nSee 'berth rmi --help'"));
        assert!(check_args("images", &argv("a"), Arity::AtMost(1)).is_ok());
    }
}
