//! Command groups. Each module owns one group (`image`, `system`, ...) and takes a connected
//! [`Client`]; later groups (container, network, volume, build) slot in the same way.

pub mod image;
pub mod inspect;
pub mod system;

use std::io::Write;

use crate::cli::{Cli, Cmd, ImageCmd, SystemCmd};
use crate::client::{Client, TlsOptions};
use crate::error::CliError;

pub async fn dispatch(cli: Cli, argv: &[String]) -> Result<(), CliError> {
    let path = crate::cli::command_path(argv);
    let Some(cmd) = cli.command else {
        // `berth` alone prints help, like `docker`.
        print!("{}", crate::help::render("").unwrap_or_default());
        return Ok(());
    };
    let tls = TlsOptions {
        enabled: cli.tls,
        verify: cli.tlsverify,
        ca: cli.tlscacert.clone(),
        cert: cli.tlscert.clone(),
        key: cli.tlskey.clone(),
    };
    // Argument checks and local refusals come before connecting, as in docker.
    let pre = precheck(&cmd, &path);
    pre?;
    let connected = Client::connect(cli.host.as_deref(), &tls).await;
    // version and info print their client part even without a daemon.
    let cmd = match cmd {
        Cmd::Version(a) => return system::version(connected, a).await,
        Cmd::Info(a) | Cmd::System(SystemCmd::Info(a)) => {
            return system::info(connected, a, cli.debug).await;
        }
        other => other,
    };
    let client = connected?;
    match cmd {
        Cmd::Images(a) | Cmd::Image(ImageCmd::Ls(a)) => image::list(&client, &path, a).await,
        Cmd::Rmi(a) | Cmd::Image(ImageCmd::Rm(a)) => image::remove(&client, a).await,
        Cmd::History(a) | Cmd::Image(ImageCmd::History(a)) => image::history(&client, a).await,
        Cmd::Tag(a) | Cmd::Image(ImageCmd::Tag(a)) => image::tag(&client, a).await,
        Cmd::Image(ImageCmd::Prune(a)) => image::prune(&client, a).await,
        Cmd::Save(a) | Cmd::Image(ImageCmd::Save(a)) => image::save(&client, a).await,
        Cmd::Load(a) | Cmd::Image(ImageCmd::Load(a)) => image::load(&client, a).await,
        Cmd::Import(a) | Cmd::Image(ImageCmd::Import(a)) => image::import(&client, a).await,
        Cmd::Image(ImageCmd::Inspect(a)) => {
            let platform = image::platform_query(&client, a.platform.as_deref(), "1.49")?;
            inspect::run(&client, &a.args, &a.format, "image", platform.as_deref()).await
        }
        Cmd::Inspect(a) => {
            let size = a.size.then_some("size=1");
            inspect::run(&client, &a.args, &a.format, &a.kind, size).await
        }
        Cmd::Version(_) | Cmd::Info(_) | Cmd::System(SystemCmd::Info(_)) => Ok(()),
        Cmd::System(SystemCmd::Df(a)) => system::df(&client, a).await,
        Cmd::Events(a) | Cmd::System(SystemCmd::Events(a)) => system::events(&client, a).await,
    }
}

/// Local validation that docker does before any request.
fn precheck(cmd: &Cmd, path: &str) -> Result<(), CliError> {
    use crate::cli::{Arity, check_args, check_filters};
    match cmd {
        Cmd::Images(a) | Cmd::Image(ImageCmd::Ls(a)) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::AtMost(1))
        }
        Cmd::Rmi(a) | Cmd::Image(ImageCmd::Rm(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::History(a) | Cmd::Image(ImageCmd::History(a)) => {
            // Flag values are checked before argument counts, as cobra does.
            image::parse_bool_flag(&a.human, "-H, --human", path)?;
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Tag(a) | Cmd::Image(ImageCmd::Tag(a)) => check_args(path, &a.args, Arity::Exact(2)),
        Cmd::Image(ImageCmd::Prune(a)) => {
            check_filters(path, &a.filter, "--filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Save(a) | Cmd::Image(ImageCmd::Save(a)) => {
            check_args(path, &a.args, Arity::AtLeast(1))?;
            image::save_precheck(a)
        }
        Cmd::Load(a) | Cmd::Image(ImageCmd::Load(a)) => check_args(path, &a.args, Arity::None),
        Cmd::Import(a) | Cmd::Image(ImageCmd::Import(a)) => {
            check_args(path, &a.args, Arity::Range(1, 2))
        }
        Cmd::Image(ImageCmd::Inspect(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Inspect(a) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Version(a) => check_args(path, &a.args, Arity::None),
        Cmd::Info(a) | Cmd::System(SystemCmd::Info(a)) => check_args(path, &a.args, Arity::None),
        Cmd::System(SystemCmd::Df(a)) => check_args(path, &a.args, Arity::None),
        Cmd::Events(a) | Cmd::System(SystemCmd::Events(a)) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::None)
        }
    }
}

/// Write to stdout; a closed pipe (`| head`) ends quietly like docker.
pub fn out(s: &str) -> Result<(), CliError> {
    let mut o = std::io::stdout().lock();
    match o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::silent(0)),
        Err(e) => Err(e.into()),
    }
}
