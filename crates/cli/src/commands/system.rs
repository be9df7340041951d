//! System commands: `version`, `info`/`system info`, `system df`, `events`/`system events`.

use futures_util::StreamExt;
use http_body_util::BodyStream;

use crate::cli::{DfArgs, EventsArgs, InfoArgs, VersionArgs};
use crate::client::{CLIENT_API_VERSION, Client, filters_json, urlencode};
use crate::commands::out;
use crate::error::CliError;
use crate::format::json::Ordered;
use crate::format::tabwriter::TabWriter;
use crate::format::units::{bytes_size, human_size, human_size_with_precision, since_unix};
use crate::format::{Format, Row, short_id};

pub const GIT_COMMIT: &str = env!("BERTH_GIT_COMMIT");
const BUILD_TIME: &str = env!("BERTH_BUILD_TIME");
const RUST_VERSION: &str = env!("BERTH_RUSTC_VERSION");

fn s<'a>(v: &'a Ordered, k: &str) -> &'a str {
    v.get(k).and_then(Ordered::as_str).unwrap_or("")
}

/// Go's fmt of a JSON scalar (numbers, bools, strings) as Println prints it.
fn scalar(v: Option<&Ordered>) -> String {
    match v {
        Some(Ordered::String(x)) => x.clone(),
        Some(Ordered::Number(n)) => n.to_string(),
        Some(Ordered::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn client_version_json(api_version: &str) -> Ordered {
    let st = |x: &str| Ordered::String(x.to_string());
    Ordered::Object(vec![
        ("Version".into(), st(env!("CARGO_PKG_VERSION"))),
        ("ApiVersion".into(), st(api_version)),
        ("DefaultAPIVersion".into(), st(CLIENT_API_VERSION)),
        ("GitCommit".into(), st(GIT_COMMIT)),
        ("GoVersion".into(), st(RUST_VERSION)),
        ("Os".into(), st(std::env::consts::OS)),
        ("Arch".into(), st(go_arch())),
        ("BuildTime".into(), st(BUILD_TIME)),
        ("Context".into(), st("default")),
    ])
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Go field names where the API's JSON names differ.
const VERSION_ALIASES: &[(&str, &str)] = &[("ApiVersion", "APIVersion")];

fn client_version_text(cv: &Ordered) -> String {
    let mut t = String::new();
    t.push_str("Client:\n");
    t.push_str(&format!(" Version:\t{}\n", s(cv, "Version")));
    let api = s(cv, "ApiVersion");
    if api != CLIENT_API_VERSION {
        t.push_str(&format!(
            " API version:\t{api} (downgraded from {CLIENT_API_VERSION})\n"
        ));
    } else {
        t.push_str(&format!(" API version:\t{api}\n"));
    }
    t.push_str(&format!(" Go version:\t{RUST_VERSION}\n"));
    t.push_str(&format!(" Git commit:\t{GIT_COMMIT}\n"));
    t.push_str(&format!(" Built:\t{BUILD_TIME}\n"));
    t.push_str(&format!(
        " OS/Arch:\t{}/{}\n",
        std::env::consts::OS,
        go_arch()
    ));
    t.push_str(" Context:\tdefault\n");
    t
}

/// docker prints components' RFC3339 build times as time.ANSIC ("Mon Jan  2 15:04:05 2006").
fn ansic(v: &mut Ordered) {
    if let Ordered::String(t) = v
        && let Ok(d) = chrono::DateTime::parse_from_rfc3339(t)
    {
        *t = d.format("%a %b %e %H:%M:%S %Y").to_string();
    }
}

fn fix_build_times(server: &mut Ordered) {
    let Ordered::Object(o) = server else { return };
    for (k, v) in o.iter_mut() {
        if let ("Components", Ordered::Array(cs)) = (k.as_str(), v) {
            for c in cs.iter_mut() {
                let Ordered::Object(co) = c else { continue };
                for (ck, cv) in co.iter_mut() {
                    let ("Details", Ordered::Object(d)) = (ck.as_str(), cv) else {
                        continue;
                    };
                    for (dk, dv) in d.iter_mut() {
                        if dk == "BuildTime" {
                            ansic(dv);
                        }
                    }
                }
            }
        }
    }
}

/// `version` prints the client part even when the daemon is unreachable, like docker.
pub async fn version(client: Result<Client, CliError>, a: VersionArgs) -> Result<(), CliError> {
    let (mut server, cv) = match &client {
        Ok(c) => (
            c.get_json("/version").await,
            client_version_json(&c.api_version),
        ),
        Err(e) => (Err(e.clone()), client_version_json(CLIENT_API_VERSION)),
    };
    if let Err(e) = server {
        if a.format.is_empty() {
            let mut tw = TabWriter::new(20, 1);
            tw.write_str(&client_version_text(&cv));
            out(&tw.flush())?;
        }
        return Err(e);
    }
    if let Ok(s) = server.as_mut() {
        fix_build_times(s);
    }
    let server = server.unwrap_or(Ordered::Null);
    if !a.format.is_empty() {
        let doc = Ordered::Object(vec![("Client".into(), cv), ("Server".into(), server)]);
        let f = Format::new(&a.format, "")
            .typed("system.versionInfo")
            .errors("", "version");
        let text = f.render_value_aliased(&doc, VERSION_ALIASES).map_err(|e| {
            // docker still ends the (empty) output with its newline.
            let _ = out("\n");
            CliError::msg(e)
        })?;
        return out(&format!("{text}\n"));
    }
    let mut t = client_version_text(&cv);
    t.push('\n');
    let platform = server.get("Platform").map(|p| s(p, "Name")).unwrap_or("");
    if platform.is_empty() {
        t.push_str("Server:\n");
    } else {
        t.push_str(&format!("Server: {platform}\n"));
    }
    let components = match server.get("Components") {
        Some(Ordered::Array(c)) => c.clone(),
        _ => Vec::new(),
    };
    for c in &components {
        let name = s(c, "Name");
        let d = c.get("Details").cloned().unwrap_or(Ordered::Null);
        t.push_str(&format!(" {name}:\n"));
        if name == "Engine" {
            t.push_str(&format!("  Version:\t{}\n", s(c, "Version")));
            t.push_str(&format!(
                "  API version:\t{} (minimum version {})\n",
                scalar(d.get("ApiVersion")),
                scalar(d.get("MinAPIVersion"))
            ));
            t.push_str(&format!("  Go version:\t{}\n", scalar(d.get("GoVersion"))));
            t.push_str(&format!("  Git commit:\t{}\n", scalar(d.get("GitCommit"))));
            t.push_str(&format!("  Built:\t{}\n", scalar(d.get("BuildTime"))));
            t.push_str(&format!(
                "  OS/Arch:\t{}/{}\n",
                scalar(d.get("Os")),
                scalar(d.get("Arch"))
            ));
            t.push_str(&format!(
                "  Experimental:\t{}\n",
                scalar(d.get("Experimental"))
            ));
        } else {
            t.push_str(&format!("  Version:\t{}\n", s(c, "Version")));
            if let Ordered::Object(kv) = &d {
                let mut keys: Vec<&String> = kv.iter().map(|(k, _)| k).collect();
                keys.sort();
                for k in keys {
                    t.push_str(&format!("  {k}:\t{}\n", scalar(d.get(k))));
                }
            }
        }
    }
    // docker's version template ends without a newline after the last line; Println adds one.
    let mut tw = TabWriter::new(20, 1);
    tw.write_str(&t);
    out(&tw.flush())
}

fn strs(v: Option<&Ordered>) -> Vec<String> {
    match v {
        Some(Ordered::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// `info` prints the client part, then the server part or the connection error.
pub async fn info(
    client: Result<Client, CliError>,
    a: InfoArgs,
    debug: bool,
) -> Result<(), CliError> {
    let info = match &client {
        Ok(c) => c.get_json("/info").await,
        Err(e) => Err(e.clone()),
    };
    let info = match info {
        Ok(i) => i,
        Err(e) => {
            if a.format.is_empty() {
                out(&format!("{}\nServer:\n", client_info_text(debug)))?;
            }
            return Err(e);
        }
    };
    if !a.format.is_empty() {
        let mut doc = match info {
            Ordered::Object(o) => o,
            _ => Vec::new(),
        };
        doc.push((
            "ClientInfo".into(),
            Ordered::Object(vec![
                ("Debug".into(), Ordered::Bool(debug)),
                (
                    "Version".into(),
                    Ordered::String(env!("CARGO_PKG_VERSION").into()),
                ),
                ("GitCommit".into(), Ordered::String(GIT_COMMIT.into())),
                ("Context".into(), Ordered::String("default".into())),
                ("Plugins".into(), Ordered::Array(Vec::new())),
                ("Warnings".into(), Ordered::Null),
            ]),
        ));
        let f = Format::new(&a.format, "")
            .typed("system.berthInfo")
            .errors("", "");
        // A typed struct on docker's side: JSON keeps the daemon's field order.
        let text = f
            .render_value_aliased(&Ordered::Object(doc), &[])
            .map_err(|e| {
                // docker still ends the (empty) output with its newline.
                let _ = out("\n");
                CliError::msg(e)
            })?;
        return out(&format!("{text}\n"));
    }
    let mut t = client_info_text(debug);
    t.push_str("\nServer:\n");
    let g = |k: &str| scalar(info.get(k));
    let nonempty = |t: &mut String, label: &str, v: String| {
        if !v.is_empty() {
            t.push_str(&format!("{label} {v}\n"));
        }
    };
    t.push_str(&format!(" Containers: {}\n", g("Containers")));
    t.push_str(&format!("  Running: {}\n", g("ContainersRunning")));
    t.push_str(&format!("  Paused: {}\n", g("ContainersPaused")));
    t.push_str(&format!("  Stopped: {}\n", g("ContainersStopped")));
    t.push_str(&format!(" Images: {}\n", g("Images")));
    nonempty(&mut t, " Server Version:", g("ServerVersion"));
    nonempty(&mut t, " Storage Driver:", g("Driver"));
    for (key, indent) in [("DriverStatus", "  "), ("SystemStatus", " ")] {
        if let Some(Ordered::Array(pairs)) = info.get(key) {
            for p in pairs {
                let p = strs(Some(p));
                if p.len() >= 2 {
                    t.push_str(&format!("{indent}{}: {}\n", p[0], p[1]));
                }
            }
        }
    }
    nonempty(&mut t, " Logging Driver:", g("LoggingDriver"));
    nonempty(&mut t, " Cgroup Driver:", g("CgroupDriver"));
    nonempty(&mut t, " Cgroup Version:", g("CgroupVersion"));
    let plugins = info.get("Plugins").cloned().unwrap_or(Ordered::Null);
    t.push_str(" Plugins:\n");
    t.push_str(&format!(
        "  Volume: {}\n",
        strs(plugins.get("Volume")).join(" ")
    ));
    t.push_str(&format!(
        "  Network: {}\n",
        strs(plugins.get("Network")).join(" ")
    ));
    let authz = strs(plugins.get("Authorization"));
    if !authz.is_empty() {
        t.push_str(&format!("  Authorization: {}\n", authz.join(" ")));
    }
    t.push_str(&format!("  Log: {}\n", strs(plugins.get("Log")).join(" ")));
    let cdi = strs(info.get("CDISpecDirs"));
    if !cdi.is_empty() {
        t.push_str(" CDI spec directories:\n");
        for d in cdi {
            t.push_str(&format!("  {d}\n"));
        }
    }
    let swarm = info.get("Swarm").cloned().unwrap_or(Ordered::Null);
    t.push_str(&format!(" Swarm: {}\n", s(&swarm, "LocalNodeState")));
    if let Some(Ordered::Object(rt)) = info.get("Runtimes")
        && !rt.is_empty()
    {
        let mut names: Vec<&str> = rt.iter().map(|(k, _)| k.as_str()).collect();
        names.sort();
        t.push_str(&format!(" Runtimes: {}\n", names.join(" ")));
        t.push_str(&format!(" Default Runtime: {}\n", g("DefaultRuntime")));
    }
    if g("OSType") == "linux" {
        t.push_str(&format!(" Init Binary: {}\n", g("InitBinary")));
        for (name, key) in [
            ("containerd", "ContainerdCommit"),
            ("runc", "RuncCommit"),
            ("init", "InitCommit"),
        ] {
            let c = info.get(key).cloned().unwrap_or(Ordered::Null);
            t.push_str(&format!(" {name} version: {}\n", s(&c, "ID")));
        }
        let sec = strs(info.get("SecurityOptions"));
        if !sec.is_empty() {
            t.push_str(" Security Options:\n");
            for so in sec {
                let mut name = String::new();
                let mut profile = None;
                for kv in so.split(',') {
                    match kv.split_once('=') {
                        Some(("name", v)) => name = v.to_string(),
                        Some(("profile", v)) => profile = Some(v.to_string()),
                        _ => {}
                    }
                }
                t.push_str(&format!("  {name}\n"));
                if let Some(p) = profile {
                    t.push_str(&format!("   Profile: {p}\n"));
                }
            }
        }
    }
    if g("OSType") == "windows" {
        t.push_str(&format!(" Default Isolation: {}\n", g("Isolation")));
    }
    nonempty(&mut t, " Kernel Version:", g("KernelVersion"));
    nonempty(&mut t, " Operating System:", g("OperatingSystem"));
    nonempty(&mut t, " OSType:", g("OSType"));
    nonempty(&mut t, " Architecture:", g("Architecture"));
    t.push_str(&format!(" CPUs: {}\n", g("NCPU")));
    let mem = info.get("MemTotal").and_then(|m| match m {
        Ordered::Number(n) => n.as_f64(),
        _ => None,
    });
    t.push_str(&format!(
        " Total Memory: {}\n",
        bytes_size(mem.unwrap_or(0.0))
    ));
    nonempty(&mut t, " Name:", g("Name"));
    nonempty(&mut t, " ID:", g("ID"));
    t.push_str(&format!(" Docker Root Dir: {}\n", g("DockerRootDir")));
    t.push_str(&format!(" Debug Mode: {}\n", g("Debug")));
    // Daemon debug facts show when either side is in debug mode, as in docker.
    if g("Debug") == "true" || debug {
        t.push_str(&format!("  File Descriptors: {}\n", g("NFd")));
        t.push_str(&format!("  Goroutines: {}\n", g("NGoroutines")));
        t.push_str(&format!("  System Time: {}\n", g("SystemTime")));
        t.push_str(&format!("  EventsListeners: {}\n", g("NEventsListener")));
    }
    nonempty(&mut t, " HTTP Proxy:", g("HttpProxy"));
    nonempty(&mut t, " HTTPS Proxy:", g("HttpsProxy"));
    nonempty(&mut t, " No Proxy:", g("NoProxy"));
    nonempty(&mut t, " Username:", g("Username"));
    let labels = strs(info.get("Labels"));
    if !labels.is_empty() {
        t.push_str(" Labels:\n");
        for l in labels {
            t.push_str(&format!("  {l}\n"));
        }
    }
    t.push_str(&format!(" Experimental: {}\n", g("ExperimentalBuild")));
    let reg = info.get("RegistryConfig").cloned().unwrap_or(Ordered::Null);
    let cidrs = strs(reg.get("InsecureRegistryCIDRs"));
    let idx = match reg.get("IndexConfigs") {
        Some(Ordered::Object(o)) => o.clone(),
        _ => Vec::new(),
    };
    if !cidrs.is_empty() || !idx.is_empty() {
        t.push_str(" Insecure Registries:\n");
        for (_, c) in &idx {
            if !matches!(c.get("Secure"), Some(Ordered::Bool(true))) {
                t.push_str(&format!("  {}\n", s(c, "Name")));
            }
        }
        for c in cidrs {
            t.push_str(&format!("  {c}\n"));
        }
    }
    let mirrors = strs(reg.get("Mirrors"));
    if !mirrors.is_empty() {
        t.push_str(" Registry Mirrors:\n");
        for m in mirrors {
            t.push_str(&format!("  {m}\n"));
        }
    }
    t.push_str(&format!(
        " Live Restore Enabled: {}\n",
        g("LiveRestoreEnabled")
    ));
    nonempty(&mut t, " Product License:", g("ProductLicense"));
    if let Some(Ordered::Array(pools)) = info.get("DefaultAddressPools")
        && !pools.is_empty()
    {
        t.push_str(" Default Address Pools:\n");
        for p in pools {
            t.push_str(&format!(
                "   Base: {}, Size: {}\n",
                s(p, "Base"),
                scalar(p.get("Size"))
            ));
        }
    }
    t.push('\n');
    out(&t)?;
    let warnings = strs(info.get("Warnings"));
    if !warnings.is_empty() {
        eprintln!("{}", warnings.join("\n"));
    }
    Ok(())
}

fn client_info_text(debug: bool) -> String {
    format!(
        "Client:\n Version:    {}\n Context:    default\n Debug Mode: {debug}\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn num(v: Option<&Ordered>) -> i64 {
    match v {
        Some(Ordered::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn arr(v: Option<&Ordered>) -> Vec<Ordered> {
    match v {
        Some(Ordered::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

fn with_pct(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            human_size(reclaimable as f64),
            reclaimable * 100 / total
        )
    } else {
        human_size(reclaimable as f64)
    }
}

fn df_row(kind: &str, total: usize, active: usize, size: String, reclaimable: String) -> Row {
    Row::new()
        .with("Active", "ACTIVE", active.to_string())
        .with("Reclaimable", "RECLAIMABLE", reclaimable)
        .with("Size", "SIZE", size)
        .with("TotalCount", "TOTAL", total.to_string())
        .with("Type", "TYPE", kind.to_string())
}

pub async fn df(client: &Client, a: DfArgs) -> Result<(), CliError> {
    let du = client.get_json("/system/df").await?;
    let images = arr(du.get("Images"));
    let containers = arr(du.get("Containers"));
    let volumes = arr(du.get("Volumes"));
    let cache = arr(du.get("BuildCache"));
    if a.verbose && (a.format.is_empty() || a.format == "table") {
        return out(&df_verbose(&du, &images, &containers, &volumes, &cache)?);
    }
    let layers = num(du.get("LayersSize"));
    let used: i64 = images
        .iter()
        .filter(|i| num(i.get("Containers")) != 0)
        .filter(|i| num(i.get("Size")) != -1 && num(i.get("SharedSize")) != -1)
        .map(|i| num(i.get("Size")) - num(i.get("SharedSize")))
        .sum();
    let img_active = images
        .iter()
        .filter(|i| num(i.get("Containers")) > 0)
        .count();
    let is_active = |c: &Ordered| {
        let st = s(c, "State");
        st.contains("running") || st.contains("paused") || st.contains("restarting")
    };
    let c_size: i64 = containers.iter().map(|c| num(c.get("SizeRw"))).sum();
    let c_recl: i64 = containers
        .iter()
        .filter(|c| !is_active(c))
        .map(|c| num(c.get("SizeRw")))
        .sum();
    let vsize = |v: &Ordered| v.get("UsageData").map_or(-1, |u| num(u.get("Size")));
    let vrefs = |v: &Ordered| v.get("UsageData").map_or(0, |u| num(u.get("RefCount")));
    let v_size: i64 = volumes.iter().map(vsize).filter(|s| *s != -1).sum();
    let v_recl: i64 = volumes
        .iter()
        .filter(|v| vrefs(v) == 0)
        .map(vsize)
        .filter(|s| *s != -1)
        .sum();
    let flag = |c: &Ordered, k: &str| matches!(c.get(k), Some(Ordered::Bool(true)));
    let b_size: i64 = cache
        .iter()
        .filter(|c| !flag(c, "Shared"))
        .map(|c| num(c.get("Size")))
        .sum();
    let b_inuse: i64 = cache
        .iter()
        .filter(|c| flag(c, "InUse") && !flag(c, "Shared"))
        .map(|c| num(c.get("Size")))
        .sum();
    let rows = vec![
        df_row(
            "Images",
            images.len(),
            img_active,
            human_size(layers as f64),
            with_pct(layers - used, layers),
        ),
        df_row(
            "Containers",
            containers.len(),
            containers.iter().filter(|c| is_active(c)).count(),
            human_size(c_size as f64),
            with_pct(c_recl, c_size),
        ),
        df_row(
            "Local Volumes",
            volumes.len(),
            volumes.iter().filter(|v| vrefs(v) > 0).count(),
            human_size(v_size as f64),
            with_pct(v_recl, v_size),
        ),
        df_row(
            "Build Cache",
            cache.len(),
            cache.iter().filter(|c| flag(c, "InUse")).count(),
            human_size(b_size as f64),
            human_size((b_size - b_inuse) as f64),
        ),
    ];
    let default = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
    let user = if a.format.is_empty() {
        default
    } else {
        a.format.as_str()
    };
    let f = Format::new(user, default).typed("*formatter.diskUsageImagesContext");
    out(&f.render_rows(&rows, &rows[0]).map_err(CliError::msg)?)
}

fn table(format: &str, rows: &[Row], header: &Row) -> Result<String, CliError> {
    Format::new(format, format)
        .render_rows(rows, header)
        .map_err(CliError::msg)
}

fn df_verbose(
    du: &Ordered,
    images: &[Ordered],
    containers: &[Ordered],
    volumes: &[Ordered],
    cache: &[Ordered],
) -> Result<String, CliError> {
    let mut t = String::from("Images space usage:\n\n");
    let img_rows: Vec<Row> = images
        .iter()
        .map(|i| {
            // system df shows one row per image: its first tag.
            let tags = strs(i.get("RepoTags"));
            let (repo, tag) = tags
                .first()
                .filter(|t| t.as_str() != "<none>:<none>")
                .and_then(|t| berth_types::Reference::parse_normalized(t).ok())
                .and_then(|r| r.tag.clone().map(|tag| (r.familiar_name(), tag)))
                .unwrap_or_else(|| ("<none>".into(), "<none>".into()));
            let size = num(i.get("Size"));
            let shared = num(i.get("SharedSize"));
            Row::new()
                .with("Repository", "REPOSITORY", repo)
                .with("Tag", "TAG", tag)
                .with("ID", "IMAGE ID", short_id(s(i, "Id")))
                .with("CreatedSince", "CREATED", since_unix(num(i.get("Created"))))
                .with("Size", "SIZE", human_size_with_precision(size as f64, 3))
                .with(
                    "SharedSize",
                    "SHARED SIZE",
                    if shared == -1 {
                        "N/A".into()
                    } else {
                        human_size(shared as f64)
                    },
                )
                .with(
                    "UniqueSize",
                    "UNIQUE SIZE",
                    if shared == -1 || size == -1 {
                        "N/A".into()
                    } else {
                        human_size((size - shared) as f64)
                    },
                )
                .with(
                    "Containers",
                    "CONTAINERS",
                    num(i.get("Containers")).to_string(),
                )
        })
        .collect();
    let img_header = Row::new()
        .with("Repository", "REPOSITORY", "")
        .with("Tag", "TAG", "")
        .with("ID", "IMAGE ID", "")
        .with("CreatedSince", "CREATED", "")
        .with("Size", "SIZE", "")
        .with("SharedSize", "SHARED SIZE", "")
        .with("UniqueSize", "UNIQUE SIZE", "")
        .with("Containers", "CONTAINERS", "");
    t.push_str(&table(
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
        &img_rows,
        &img_header,
    )?);
    t.push_str("\nContainers space usage:\n\n");
    let c_rows: Vec<Row> = containers
        .iter()
        .map(|c| {
            let cmd = s(c, "Command");
            let names: Vec<String> = strs(c.get("Names"))
                .iter()
                .map(|n| n.trim_start_matches('/').to_string())
                .collect();
            Row::new()
                .with("ID", "CONTAINER ID", short_id(s(c, "Id")))
                .with("Image", "IMAGE", s(c, "Image").to_string())
                .with("Command", "COMMAND", format!("\"{}\"", ellipsis(cmd, 20)))
                .with(
                    "LocalVolumes",
                    "LOCAL VOLUMES",
                    arr(c.get("Mounts"))
                        .iter()
                        .filter(|m| s(m, "Type") == "volume")
                        .count()
                        .to_string(),
                )
                .with("Size", "SIZE", human_size(num(c.get("SizeRw")) as f64))
                .with("RunningFor", "CREATED", since_unix(num(c.get("Created"))))
                .with("Status", "STATUS", s(c, "Status").to_string())
                .with("Names", "NAMES", names.join(","))
        })
        .collect();
    let c_header = Row::new()
        .with("ID", "CONTAINER ID", "")
        .with("Image", "IMAGE", "")
        .with("Command", "COMMAND", "")
        .with("LocalVolumes", "LOCAL VOLUMES", "")
        .with("Size", "SIZE", "")
        .with("RunningFor", "CREATED", "")
        .with("Status", "STATUS", "")
        .with("Names", "NAMES", "");
    t.push_str(&table(
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
        &c_rows,
        &c_header,
    )?);
    t.push_str("\nLocal Volumes space usage:\n\n");
    let v_rows: Vec<Row> = volumes
        .iter()
        .map(|v| {
            let u = v.get("UsageData").cloned().unwrap_or(Ordered::Null);
            let size = u.get("Size").map_or(-1, |x| num(Some(x)));
            Row::new()
                .with("Name", "VOLUME NAME", s(v, "Name").to_string())
                .with("Links", "LINKS", scalar(u.get("RefCount")))
                .with(
                    "Size",
                    "SIZE",
                    if size == -1 {
                        "N/A".into()
                    } else {
                        human_size(size as f64)
                    },
                )
        })
        .collect();
    let v_header = Row::new()
        .with("Name", "VOLUME NAME", "")
        .with("Links", "LINKS", "")
        .with("Size", "SIZE", "");
    t.push_str(&table(
        "table {{.Name}}\t{{.Links}}\t{{.Size}}",
        &v_rows,
        &v_header,
    )?);
    let builder = num(du.get("BuilderSize"));
    t.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        human_size(builder as f64)
    ));
    let b_rows: Vec<Row> = cache
        .iter()
        .map(|b| {
            let created = chrono::DateTime::parse_from_rfc3339(s(b, "CreatedAt"))
                .map(|d| d.timestamp())
                .unwrap_or(0);
            let last = chrono::DateTime::parse_from_rfc3339(s(b, "LastUsedAt"))
                .ok()
                .map(|d| since_unix(d.timestamp()));
            Row::new()
                .with("ID", "CACHE ID", short_id(s(b, "ID")))
                .with("CacheType", "CACHE TYPE", s(b, "Type").to_string())
                .with("Size", "SIZE", human_size(num(b.get("Size")) as f64))
                .with("CreatedSince", "CREATED", since_unix(created))
                .with("LastUsedSince", "LAST USED", last.unwrap_or_default())
                .with("UsageCount", "USAGE", scalar(b.get("UsageCount")))
                .with("Shared", "SHARED", scalar(b.get("Shared")))
        })
        .collect();
    let b_header = Row::new()
        .with("ID", "CACHE ID", "")
        .with("CacheType", "CACHE TYPE", "")
        .with("Size", "SIZE", "")
        .with("CreatedSince", "CREATED", "")
        .with("LastUsedSince", "LAST USED", "")
        .with("UsageCount", "USAGE", "")
        .with("Shared", "SHARED", "");
    t.push_str(&table(
        "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}",
        &b_rows,
        &b_header,
    )?);
    Ok(t)
}

fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max || max == 0 {
        return s.to_string();
    }
    let mut o: String = s.chars().take(max - 1).collect();
    o.push('…');
    o
}

/// docker's timetypes.GetTimestamp: durations are relative to now, dates become
/// "secs.nanos", plain unix timestamps pass through.
pub fn get_timestamp(value: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, CliError> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    if value != "0"
        && let Ok(ns) = berth_types::duration::parse(value)
    {
        let t = now.timestamp_nanos_opt().unwrap_or(0).saturating_sub(ns);
        return Ok(t.div_euclid(1_000_000_000).to_string());
    }
    let fmt_ts = |t: chrono::DateTime<chrono::FixedOffset>| {
        format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(fmt_ts(t));
    }
    let local = |n: NaiveDateTime| {
        chrono::Local
            .from_local_datetime(&n)
            .single()
            .map(|t| t.fixed_offset())
    };
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"] {
        if let Some(t) = NaiveDateTime::parse_from_str(value, f).ok().and_then(local) {
            return Ok(fmt_ts(t));
        }
    }
    if let Some(t) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(local)
    {
        return Ok(fmt_ts(t));
    }
    if value.contains('-') {
        return Err(CliError::msg(format!(
            "parsing time \"{value}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse"
        )));
    }
    let mut parts = value.splitn(2, '.');
    let secs_ok = parts.next().is_some_and(|p| p.parse::<i64>().is_ok());
    let nanos_ok = parts.next().is_none_or(|p| p.parse::<i64>().is_ok());
    if secs_ok && nanos_ok {
        return Ok(value.to_string());
    }
    Err(CliError::msg(format!(
        "failed to parse value as time or duration: \"{value}\""
    )))
}

const EVENT_ALIASES: &[(&str, &str)] = &[
    ("status", "Status"),
    ("id", "ID"),
    ("from", "From"),
    ("scope", "Scope"),
    ("time", "Time"),
    ("timeNano", "TimeNano"),
];

/// docker's default event line: RFC3339NanoFixed time, type, action, actor, sorted attributes.
pub fn pretty_event(e: &Ordered) -> String {
    let mut line = String::new();
    let nano = e.get("timeNano").map_or(0, |v| num(Some(v)));
    let secs = e.get("time").map_or(0, |v| num(Some(v)));
    let ts = if nano != 0 {
        Some(chrono::DateTime::from_timestamp(
            nano.div_euclid(1_000_000_000),
            nano.rem_euclid(1_000_000_000) as u32,
        ))
    } else if secs != 0 {
        Some(chrono::DateTime::from_timestamp(secs, 0))
    } else {
        None
    };
    if let Some(Some(t)) = ts {
        let t = t.with_timezone(&chrono::Local);
        line.push_str(&t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string());
        let off = t.format("%:z").to_string();
        line.push_str(if off == "+00:00" { "Z" } else { &off });
        line.push(' ');
    }
    let actor = e.get("Actor").cloned().unwrap_or(Ordered::Null);
    line.push_str(&format!(
        "{} {} {}",
        s(e, "Type"),
        s(e, "Action"),
        s(&actor, "ID")
    ));
    if let Some(Ordered::Object(attrs)) = actor.get("Attributes")
        && !attrs.is_empty()
    {
        let mut kv: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", scalar(Some(v))))
            .collect();
        kv.sort();
        line.push_str(&format!(" ({})", kv.join(", ")));
    }
    line.push('\n');
    line
}

pub async fn events(client: &Client, a: EventsArgs) -> Result<(), CliError> {
    let now = chrono::Utc::now();
    let mut q = Vec::new();
    if let Some(s) = &a.since {
        q.push(format!("since={}", urlencode(&get_timestamp(s, now)?)));
    }
    if let Some(u) = &a.until {
        q.push(format!("until={}", urlencode(&get_timestamp(u, now)?)));
    }
    if !a.filter.is_empty() {
        q.push(format!("filters={}", urlencode(&filters_json(&a.filter)?)));
    }
    let path = if q.is_empty() {
        "/events".to_string()
    } else {
        format!("/events?{}", q.join("&"))
    };
    let tmpl = (!a.format.is_empty()).then(|| {
        Format::new(&a.format, "")
            .typed("*events.Message")
            .errors("Error parsing format: ", "")
    });
    let body = client.get_stream(&path).await?;
    let mut stream = BodyStream::new(body);
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| CliError::msg(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        // The daemon writes one JSON object per line.
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if line.trim_ascii().is_empty() {
                continue;
            }
            let ev = Ordered::parse(&line).map_err(|e| CliError::msg(e.to_string()))?;
            let text = match &tmpl {
                None => pretty_event(&ev),
                // docker exits 64 on a template it cannot execute.
                Some(t) => format!(
                    "{}\n",
                    t.render_value_aliased(&ev, EVENT_ALIASES)
                        .map_err(|e| CliError::new(e, 64))?
                ),
            };
            out(&text)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_like_docker() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(get_timestamp("10m", now).unwrap(), "1699999400");
        assert_eq!(get_timestamp("1700000000", now).unwrap(), "1700000000");
        assert_eq!(get_timestamp("1700000000.5", now).unwrap(), "1700000000.5");
        assert_eq!(
            get_timestamp("2024-01-01T00:00:00Z", now).unwrap(),
            "1704067200.000000000"
        );
        assert!(get_timestamp("yesterday", now).is_err());
    }

    #[test]
    fn event_line_like_docker() {
        let e = Ordered::parse(br#"{"status":"tag","id":"sha256:ab","Type":"image","Action":"tag","Actor":{"ID":"sha256:ab","Attributes":{"name":"busybox:latest","a":"b"}},"scope":"local","time":1704067200,"timeNano":1704067200000000001}"#).unwrap();
        // The test machine runs in UTC, like CI.
        if chrono::Local::now().offset().to_string() == "+00:00" {
            assert_eq!(
                pretty_event(&e),
                "2024-01-01T00:00:00.000000001Z image tag sha256:ab (a=b, name=busybox:latest)\n"
            );
        }
    }
}
