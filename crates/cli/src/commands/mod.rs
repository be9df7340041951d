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

use crate::cli::{Cli, Cmd, ContainerCmd as C, ImageCmd, Lazy, LazySub, SystemCmd, VolumeCmd as V};
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
        Cmd::Registry(LazySub(r)) => return registry_server::run(r).await,
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
    if let Cmd::Logout(Lazy(a)) = cmd {
        return registry::logout(a).await;
    }
    // run/create send their create without the version ping first (Client::unverified);
    // when that finds no daemon or an older one, they start over after connect.
    let cmd = match cmd {
        Cmd::Run(Lazy(a)) | Cmd::Container(LazySub(C::Run(Lazy(a)))) if a.opts.pull != "always" => {
            let client = Client::unverified(cli.host.as_deref(), &tls)?;
            match container::run(client, &path, a.clone()).await {
                Err(e) if e.renegotiate => Cmd::Run(Lazy(a)),
                r => return r,
            }
        }
        Cmd::Create(Lazy(a)) | Cmd::Container(LazySub(C::Create(Lazy(a))))
            if a.opts.pull != "always" =>
        {
            let client = Client::unverified(cli.host.as_deref(), &tls)?;
            match container::create(&client, &path, a.clone()).await {
                Err(e) if e.renegotiate => Cmd::Create(Lazy(a)),
                r => return r,
            }
        }
        other => other,
    };
    let connected = Client::connect(cli.host.as_deref(), &tls).await;
    // version and info print their client part even without a daemon.
    let cmd = match cmd {
        Cmd::Version(Lazy(a)) => return system::version(connected, a).await,
        Cmd::Info(Lazy(a)) | Cmd::System(LazySub(SystemCmd::Info(a))) => {
            return system::info(connected, a, cli.debug).await;
        }
        other => other,
    };
    let client = connected?;
    // Commands that hold the client across tasks (hijacked streams) take it by value.
    let cmd = match cmd {
        Cmd::Run(Lazy(a)) | Cmd::Container(LazySub(C::Run(Lazy(a)))) => {
            return container::run(client, &path, a).await;
        }
        Cmd::Start(Lazy(a)) | Cmd::Container(LazySub(C::Start(Lazy(a)))) => {
            return container::start(client, &path, a).await;
        }
        Cmd::Attach(Lazy(a)) | Cmd::Container(LazySub(C::Attach(Lazy(a)))) => {
            return container::attach(client, &path, a).await;
        }
        Cmd::Exec(Lazy(a)) | Cmd::Container(LazySub(C::Exec(Lazy(a)))) => {
            return container::exec(client, &path, a).await;
        }
        Cmd::Stats(Lazy(a)) | Cmd::Container(LazySub(C::Stats(Lazy(a)))) => {
            return container::stats(client, a).await;
        }
        other => other,
    };
    match cmd {
        Cmd::Run(_) | Cmd::Start(_) | Cmd::Attach(_) | Cmd::Exec(_) => Ok(()),
        Cmd::Container(LazySub(C::Run(_) | C::Start(_) | C::Attach(_) | C::Exec(_))) => Ok(()),
        Cmd::Create(Lazy(a)) | Cmd::Container(LazySub(C::Create(Lazy(a)))) => {
            container::create(&client, &path, a).await
        }
        Cmd::Ps(Lazy(a)) | Cmd::Container(LazySub(C::Ls(Lazy(a)))) => {
            container::ps(&client, a).await
        }
        Cmd::Stop(Lazy(a)) | Cmd::Container(LazySub(C::Stop(Lazy(a)))) => {
            container::stop(&client, a, false).await
        }
        Cmd::Restart(Lazy(a)) | Cmd::Container(LazySub(C::Restart(Lazy(a)))) => {
            container::stop(&client, a, true).await
        }
        Cmd::Kill(Lazy(a)) | Cmd::Container(LazySub(C::Kill(Lazy(a)))) => {
            container::kill(&client, a).await
        }
        Cmd::Rm(Lazy(a)) | Cmd::Container(LazySub(C::Rm(Lazy(a)))) => {
            container::rm(&client, a).await
        }
        Cmd::Wait(Lazy(a)) | Cmd::Container(LazySub(C::Wait(Lazy(a)))) => {
            container::wait(&client, &a.args).await
        }
        Cmd::Pause(Lazy(a)) | Cmd::Container(LazySub(C::Pause(Lazy(a)))) => {
            container::simple(&client, "pause", &a.args).await
        }
        Cmd::Unpause(Lazy(a)) | Cmd::Container(LazySub(C::Unpause(Lazy(a)))) => {
            container::simple(&client, "unpause", &a.args).await
        }
        Cmd::Rename(Lazy(a)) | Cmd::Container(LazySub(C::Rename(Lazy(a)))) => {
            container::rename(&client, &a.args).await
        }
        Cmd::Logs(Lazy(a)) | Cmd::Container(LazySub(C::Logs(Lazy(a)))) => {
            container::logs(&client, a).await
        }
        Cmd::Top(Lazy(a)) | Cmd::Container(LazySub(C::Top(Lazy(a)))) => {
            container::top(&client, a).await
        }
        Cmd::Port(Lazy(a)) | Cmd::Container(LazySub(C::Port(Lazy(a)))) => {
            container::port(&client, a).await
        }
        Cmd::Update(Lazy(a)) | Cmd::Container(LazySub(C::Update(Lazy(a)))) => {
            container::update(&client, &path, a).await
        }
        Cmd::Stats(_) | Cmd::Container(LazySub(C::Stats(_))) => Ok(()),
        Cmd::Container(LazySub(C::Prune(Lazy(a)))) => container::prune(&client, a).await,
        Cmd::Cp(Lazy(a)) | Cmd::Container(LazySub(C::Cp(Lazy(a)))) => files::cp(&client, a).await,
        Cmd::Export(Lazy(a)) | Cmd::Container(LazySub(C::Export(Lazy(a)))) => {
            files::export(&client, a).await
        }
        Cmd::Diff(Lazy(a)) | Cmd::Container(LazySub(C::Diff(Lazy(a)))) => {
            files::diff(&client, &a.args[0]).await
        }
        Cmd::Commit(Lazy(a)) | Cmd::Container(LazySub(C::Commit(Lazy(a)))) => {
            files::commit(&client, a).await
        }
        Cmd::Container(LazySub(C::Inspect(Lazy(a)))) => {
            let size = a.size.then_some("size=1");
            inspect::run(&client, &a.args, &a.format, "container", size).await
        }
        Cmd::Images(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Ls(a))) => {
            image::list(&client, &path, a).await
        }
        Cmd::Rmi(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Rm(a))) => image::remove(&client, a).await,
        Cmd::History(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::History(a))) => {
            image::history(&client, a).await
        }
        Cmd::Tag(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Tag(a))) => image::tag(&client, a).await,
        Cmd::Image(LazySub(ImageCmd::Prune(a))) => image::prune(&client, a).await,
        Cmd::Save(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Save(a))) => {
            image::save(&client, a).await
        }
        Cmd::Load(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Load(a))) => {
            image::load(&client, a).await
        }
        Cmd::Import(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Import(a))) => {
            image::import(&client, a).await
        }
        Cmd::Pull(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Pull(a))) => {
            registry::pull(&client, a).await
        }
        Cmd::Build(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Build(a))) => {
            build::build(&client, a).await
        }
        Cmd::Push(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Push(a))) => {
            registry::push(&client, a).await
        }
        Cmd::Login(Lazy(a)) => registry::login(&client, a).await,
        Cmd::Logout(_) => Ok(()),
        Cmd::Search(Lazy(a)) => registry::search(&client, a).await,
        Cmd::Image(LazySub(ImageCmd::Inspect(a))) => {
            let platform = image::platform_query(&client, a.platform.as_deref(), "1.49")?;
            inspect::run(&client, &a.args, &a.format, "image", platform.as_deref()).await
        }
        Cmd::Inspect(Lazy(a)) => {
            let size = a.size.then_some("size=1");
            inspect::run(&client, &a.args, &a.format, &a.kind, size).await
        }
        Cmd::Version(_) | Cmd::Info(_) | Cmd::System(LazySub(SystemCmd::Info(_))) => Ok(()),
        Cmd::System(LazySub(SystemCmd::Df(a))) => system::df(&client, a).await,
        Cmd::Events(Lazy(a)) | Cmd::System(LazySub(SystemCmd::Events(a))) => {
            system::events(&client, a).await
        }
        Cmd::Registry(LazySub(_)) => Ok(()),
        Cmd::Volume(LazySub(V::Create(a))) => volume::create(&client, a).await,
        Cmd::Volume(LazySub(V::Ls(a))) => volume::ls(&client, a).await,
        Cmd::Volume(LazySub(V::Inspect(a))) => {
            inspect::run(&client, &a.args, &a.format, "volume", None).await
        }
        Cmd::Volume(LazySub(V::Rm(a))) => volume::rm(&client, a).await,
        Cmd::Volume(LazySub(V::Prune(a))) => volume::prune(&client, a).await,
        Cmd::Network(LazySub(n)) => network::dispatch(&client, n).await,
    }
}

/// Local validation that docker does before any request.
fn precheck(cmd: &Cmd, path: &str) -> Result<(), CliError> {
    use crate::cli::{Arity, check_args, check_filters};
    match cmd {
        Cmd::Run(Lazy(a)) | Cmd::Container(LazySub(C::Run(Lazy(a)))) => {
            check_args(path, &a.opts.args, Arity::AtLeast(1))
        }
        Cmd::Create(Lazy(a)) | Cmd::Container(LazySub(C::Create(Lazy(a)))) => {
            check_args(path, &a.opts.args, Arity::AtLeast(1))
        }
        Cmd::Start(Lazy(a)) | Cmd::Container(LazySub(C::Start(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Ps(Lazy(a)) | Cmd::Container(LazySub(C::Ls(Lazy(a)))) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Stop(Lazy(a))
        | Cmd::Restart(Lazy(a))
        | Cmd::Container(LazySub(C::Stop(Lazy(a)) | C::Restart(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Kill(Lazy(a)) | Cmd::Container(LazySub(C::Kill(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Rm(Lazy(a)) | Cmd::Container(LazySub(C::Rm(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Wait(Lazy(a))
        | Cmd::Pause(Lazy(a))
        | Cmd::Unpause(Lazy(a))
        | Cmd::Container(LazySub(C::Wait(Lazy(a)) | C::Pause(Lazy(a)) | C::Unpause(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Rename(Lazy(a)) | Cmd::Container(LazySub(C::Rename(Lazy(a)))) => {
            check_args(path, &a.args, Arity::Exact(2))
        }
        Cmd::Logs(Lazy(a)) | Cmd::Container(LazySub(C::Logs(Lazy(a)))) => {
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Attach(Lazy(a)) | Cmd::Container(LazySub(C::Attach(Lazy(a)))) => {
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Exec(Lazy(a)) | Cmd::Container(LazySub(C::Exec(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(2))
        }
        Cmd::Top(Lazy(a)) | Cmd::Container(LazySub(C::Top(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Port(Lazy(a)) | Cmd::Container(LazySub(C::Port(Lazy(a)))) => {
            check_args(path, &a.args, Arity::Range(1, 2))
        }
        Cmd::Update(Lazy(a)) | Cmd::Container(LazySub(C::Update(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Stats(_) | Cmd::Container(LazySub(C::Stats(_))) => Ok(()),
        Cmd::Container(LazySub(C::Prune(Lazy(a)))) => {
            check_filters(path, &a.filter, "--filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Container(LazySub(C::Inspect(Lazy(a)))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::Cp(Lazy(a)) | Cmd::Container(LazySub(C::Cp(Lazy(a)))) => {
            check_args(path, &a.args, Arity::Exact(2))
        }
        Cmd::Export(Lazy(a)) | Cmd::Container(LazySub(C::Export(Lazy(a)))) => {
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Diff(Lazy(a)) | Cmd::Container(LazySub(C::Diff(Lazy(a)))) => {
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Commit(Lazy(a)) | Cmd::Container(LazySub(C::Commit(Lazy(a)))) => {
            check_args(path, &a.args, Arity::Range(1, 2))
        }
        Cmd::Images(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Ls(a))) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::AtMost(1))
        }
        Cmd::Rmi(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Rm(a))) => {
            check_args(path, &a.args, Arity::AtLeast(1))
        }
        Cmd::History(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::History(a))) => {
            // Flag values are checked before argument counts, as cobra does.
            image::parse_bool_flag(&a.human, "-H, --human", path)?;
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Tag(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Tag(a))) => {
            check_args(path, &a.args, Arity::Exact(2))
        }
        Cmd::Image(LazySub(ImageCmd::Prune(a))) => {
            check_filters(path, &a.filter, "--filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Save(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Save(a))) => {
            check_args(path, &a.args, Arity::AtLeast(1))?;
            image::save_precheck(a)
        }
        Cmd::Load(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Load(a))) => {
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Import(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Import(a))) => {
            check_args(path, &a.args, Arity::Range(1, 2))
        }
        Cmd::Pull(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Pull(a))) => {
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Build(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Build(a))) => {
            build::precheck(a, path)?;
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Push(Lazy(a)) | Cmd::Image(LazySub(ImageCmd::Push(a))) => {
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Login(Lazy(a)) => check_args(path, &a.args, Arity::AtMost(1)),
        Cmd::Logout(Lazy(a)) => check_args(path, &a.args, Arity::AtMost(1)),
        Cmd::Search(Lazy(a)) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::Exact(1))
        }
        Cmd::Image(LazySub(ImageCmd::Inspect(a))) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Inspect(Lazy(a)) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Version(Lazy(a)) => check_args(path, &a.args, Arity::None),
        Cmd::Info(Lazy(a)) | Cmd::System(LazySub(SystemCmd::Info(a))) => {
            check_args(path, &a.args, Arity::None)
        }
        Cmd::System(LazySub(SystemCmd::Df(a))) => check_args(path, &a.args, Arity::None),
        Cmd::Events(Lazy(a)) | Cmd::System(LazySub(SystemCmd::Events(a))) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Registry(LazySub(_)) => Ok(()),
        Cmd::Volume(LazySub(V::Create(a))) => check_args(path, &a.args, Arity::AtMost(1)),
        Cmd::Volume(LazySub(V::Ls(a))) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Volume(LazySub(V::Inspect(a))) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Volume(LazySub(V::Rm(a))) => check_args(path, &a.args, Arity::AtLeast(1)),
        Cmd::Volume(LazySub(V::Prune(a))) => {
            check_filters(path, &a.filter, "--filter")?;
            check_args(path, &a.args, Arity::None)
        }
        Cmd::Network(LazySub(n)) => network::precheck(path, n),
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
