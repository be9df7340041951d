//! Command groups. Each module owns one group (`image`, `system`, ...) and takes a connected
//! [`Client`]; later groups (container, network, volume, build) slot in the same way.

pub mod build;
pub mod build_progress;
pub mod container;
pub mod files;
pub mod image;
pub mod inspect;
pub mod netopts;
pub mod network;
pub mod opts;
pub mod registry;
pub mod registry_server;
pub mod stdio;
pub mod system;
pub mod volume;

use std::io::Write;

use crate::cli::{Cli, Cmd, ContainerCmd as C, ImageCmd, SystemCmd, VolumeCmd as V};
use crate::client::{Client, TlsOptions};
use crate::error::CliError;

pub async fn dispatch(cli: Cli, argv: &[String]) -> Result<(), CliError> {
    let path = crate::cli::command_path(argv);
    let Some(cmd) = cli.command else {
        // `berth` alone prints help, like `docker`.
        print!("{}", crate::help::render("").unwrap_or_default());
        return Ok(());
    };
    // A server of its own, not a client of berthd: no connection.
    let cmd = match cmd {
        Cmd::Registry(r) => return registry_server::run(r).await,
        other => other,
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
    // logout only edits the client's config, as in docker.
    if let Cmd::Logout(a) = cmd {
        return registry::logout(a).await;
    }
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
    // Commands that hold the client across tasks (hijacked streams) take it by value.
    let cmd = match cmd {
        Cmd::Run(a) | Cmd::Container(C::Run(a)) => return container::run(client, &path, a).await,
        Cmd::Start(a) | Cmd::Container(C::Start(a)) => {
            return container::start(client, &path, a).await;
        }
        Cmd::Attach(a) | Cmd::Container(C::Attach(a)) => {
            return container::attach(client, &path, a).await;
        }
        Cmd::Exec(a) | Cmd::Container(C::Exec(a)) => {
            return container::exec(client, &path, a).await;
        }
        Cmd::Stats(a) | Cmd::Container(C::Stats(a)) => return container::stats(client, a).await,
        other => other,
    };
    match cmd {
        Cmd::Run(_) | Cmd::Start(_) | Cmd::Attach(_) | Cmd::Exec(_) => Ok(()),
        Cmd::Container(C::Run(_) | C::Start(_) | C::Attach(_) | C::Exec(_)) => Ok(()),
        Cmd::Create(a) | Cmd::Container(C::Create(a)) => container::create(&client, &path, a).await,
        Cmd::Ps(a) | Cmd::Container(C::Ls(a)) => container::ps(&client, a).await,
        Cmd::Stop(a) | Cmd::Container(C::Stop(a)) => container::stop(&client, a, false).await,
        Cmd::Restart(a) | Cmd::Container(C::Restart(a)) => container::stop(&client, a, true).await,
        Cmd::Kill(a) | Cmd::Container(C::Kill(a)) => container::kill(&client, a).await,
        Cmd::Rm(a) | Cmd::Container(C::Rm(a)) => container::rm(&client, a).await,
        Cmd::Wait(a) | Cmd::Container(C::Wait(a)) => container::wait(&client, &a.args).await,
        Cmd::Pause(a) | Cmd::Container(C::Pause(a)) => {
            container::simple(&client, "pause", &a.args).await
        }
        Cmd::Unpause(a) | Cmd::Container(C::Unpause(a)) => {
            container::simple(&client, "unpause", &a.args).await
        }
        Cmd::Rename(a) | Cmd::Container(C::Rename(a)) => container::rename(&client, &a.args).await,
        Cmd::Logs(a) | Cmd::Container(C::Logs(a)) => container::logs(&client, a).await,
        Cmd::Top(a) | Cmd::Container(C::Top(a)) => container::top(&client, a).await,
        Cmd::Port(a) | Cmd::Container(C::Port(a)) => container::port(&client, a).await,
        Cmd::Update(a) | Cmd::Container(C::Update(a)) => container::update(&client, &path, a).await,
        Cmd::Stats(_) | Cmd::Container(C::Stats(_)) => Ok(()),
        Cmd::Container(C::Prune(a)) => container::prune(&client, a).await,
        Cmd::Cp(a) | Cmd::Container(C::Cp(a)) => files::cp(&client, a).await,
        Cmd::Export(a) | Cmd::Container(C::Export(a)) => files::export(&client, a).await,
        Cmd::Diff(a) | Cmd::Container(C::Diff(a)) => files::diff(&client, &a.args[0]).await,
        Cmd::Commit(a) | Cmd::Container(C::Commit(a)) => files::commit(&client, a).await,
        Cmd::Container(C::Inspect(a)) => {
            let size = a.size.then_some("size=1");
            inspect::run(&client, &a.args, &a.format, "container", size).await
        }
        Cmd::Images(a) | Cmd::Image(ImageCmd::Ls(a)) => image::list(&client, &path, a).await,
        Cmd::Rmi(a) | Cmd::Image(ImageCmd::Rm(a)) => image::remove(&client, a).await,
        Cmd::History(a) | Cmd::Image(ImageCmd::History(a)) => image::history(&client, a).await,
        Cmd::Tag(a) | Cmd::Image(ImageCmd::Tag(a)) => image::tag(&client, a).await,
        Cmd::Image(ImageCmd::Prune(a)) => image::prune(&client, a).await,
        Cmd::Save(a) | Cmd::Image(ImageCmd::Save(a)) => image::save(&client, a).await,
        Cmd::Load(a) | Cmd::Image(ImageCmd::Load(a)) => image::load(&client, a).await,
        Cmd::Import(a) | Cmd::Image(ImageCmd::Import(a)) => image::import(&client, a).await,
        Cmd::Pull(a) | Cmd::Image(ImageCmd::Pull(a)) => registry::pull(&client, a).await,
        Cmd::Build(a) | Cmd::Image(ImageCmd::Build(a)) => build::build(&client, a).await,
        Cmd::Push(a) | Cmd::Image(ImageCmd::Push(a)) => registry::push(&client, a).await,
        Cmd::Login(a) => registry::login(&client, a).await,
        Cmd::Logout(_) => Ok(()),
        Cmd::Search(a) => registry::search(&client, a).await,
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
        Cmd::Registry(_) => Ok(()),
        Cmd::Volume(V::Create(a)) => volume::create(&client, a).await,
        Cmd::Volume(V::Ls(a)) => volume::ls(&client, a).await,
        Cmd::Volume(V::Inspect(a)) => {
            inspect::run(&client, &a.args, &a.format, "volume", None).await
        }
        Cmd::Volume(V::Rm(a)) => volume::rm(&client, a).await,
        Cmd::Volume(V::Prune(a)) => volume::prune(&client, a).await,
        Cmd::Network(n) => network::dispatch(&client, n).await,
    }
}

/// Local validation that docker does before any request.
fn precheck(cmd: &Cmd, path: &str) -> Result<(), CliError> {
    use crate::cli::{Arity, check_args, check_filters};
    match cmd {
        Cmd::Run(a) | Cmd::Container(C::Run(a)) => {
            check_args(path, &a.opts.args, Arity::AtLeast(1))
        }
        Cmd::Create(a) | Cmd::Container(C::Create(a)) => {
            check_args(path, &a.opts.args, Arity::AtLeast(1))
        }
        Cmd::Start(a) | Cmd::Container(C::Start(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Ps(a) | Cmd::Container(C::Ls(a)) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Stop(a) | Cmd::Restart(a) | Cmd::Container(C::Stop(a) | C::Restart(a)) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Kill(a) | Cmd::Container(C::Kill(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Rm(a) | Cmd::Container(C::Rm(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Wait(a)
        | Cmd::Pause(a)
        | Cmd::Unpause(a)
        | Cmd::Container(C::Wait(a) | C::Pause(a) | C::Unpause(a)) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Rename(a) | Cmd::Container(C::Rename(a)) => check_args(path, &a.args, Arity::Exact(2)),
        Cmd::Logs(a) | Cmd::Container(C::Logs(a)) => check_args(path, &a.args, Arity::Exact(1)),
        Cmd::Attach(a) | Cmd::Container(C::Attach(a)) => check_args(path, &a.args, Arity::Exact(1)),
        Cmd::Exec(a) | Cmd::Container(C::Exec(a)) => check_args(path, &a.args, Arity::AtLeast(2)),
        Cmd::Top(a) | Cmd::Container(C::Top(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Port(a) | Cmd::Container(C::Port(a)) => check_args(path, &a.args, Arity::Range(1, 2)),
        Cmd::Update(a) | Cmd::Container(C::Update(a)) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Stats(_) | Cmd::Container(C::Stats(_)) => Ok(()),
        Cmd::Container(C::Prune(a)) => {
            check_filters(path, &a.filter, "--filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Container(C::Inspect(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Cp(a) | Cmd::Container(C::Cp(a)) => check_args(path, &a.args, Arity::Exact(2)),
        Cmd::Export(a) | Cmd::Container(C::Export(a)) => check_args(path, &a.args, Arity::Exact(1)),
        Cmd::Diff(a) | Cmd::Container(C::Diff(a)) => check_args(path, &a.args, Arity::Exact(1)),
        Cmd::Commit(a) | Cmd::Container(C::Commit(a)) => {
            check_args(path, &a.args, Arity::Range(1, 2))
        }
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
        Cmd::Pull(a) | Cmd::Image(ImageCmd::Pull(a)) => check_args(path, &a.args, Arity::Exact(1)),
        Cmd::Build(a) | Cmd::Image(ImageCmd::Build(a)) => {
            build::precheck(a, path)?;
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Push(a) | Cmd::Image(ImageCmd::Push(a)) => check_args(path, &a.args, Arity::Exact(1)),
        Cmd::Login(a) => check_args(path, &a.args, Arity::AtMost(1)),
        Cmd::Logout(a) => check_args(path, &a.args, Arity::AtMost(1)),
        Cmd::Search(a) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::Exact(1))
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
        Cmd::Registry(_) => Ok(()),
        Cmd::Volume(V::Create(a)) => check_args(path, &a.args, Arity::AtMost(1)),
        Cmd::Volume(V::Ls(a)) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Volume(V::Inspect(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Volume(V::Rm(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Volume(V::Prune(a)) => {
            check_filters(path, &a.filter, "--filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Network(n) => network::precheck(path, n),
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
