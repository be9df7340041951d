//! Network commands: `network create/ls/inspect/rm/prune/connect/disconnect`, as docker CLI 28
//! words them (its client-side IPAM checks, its request bodies, its output).

use std::net::IpAddr;

use clap::Args;
use hyper::Method;
use serde_json::{Map, Value, json};

use crate::client::{Client, filters_json, path_escape, urlencode};
use crate::commands::out;
use crate::error::{CliError, EXIT_USAGE};
use crate::format::json::Ordered;
use crate::format::{Format, Row, short_id};

#[derive(Args, Debug, Default)]
pub struct CreateArgs {
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long = "aux-address", value_name = "map")]
    pub aux_address: Vec<String>,
    /// The network from which to copy the configuration
    #[arg(long = "config-from", value_name = "string")]
    pub config_from: Option<String>,
    /// Create a configuration only network
    #[arg(long = "config-only")]
    pub config_only: bool,
    /// Driver to manage the Network
    #[arg(short = 'd', long, value_name = "string", default_value = "bridge")]
    pub driver: String,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long, value_name = "strings")]
    pub gateway: Vec<String>,
    /// Create swarm routing-mesh network
    #[arg(long)]
    pub ingress: bool,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range", value_name = "strings")]
    pub ip_range: Vec<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", value_name = "string", default_value = "default")]
    pub ipam_driver: String,
    /// Set IPAM driver specific options
    #[arg(long = "ipam-opt", value_name = "map")]
    pub ipam_opt: Vec<String>,
    /// Enable or disable IPv4 address assignment (default true)
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub ipv4: Option<String>,
    /// Enable or disable IPv6 address assignment
    #[arg(long, value_name = "bool", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub ipv6: Option<String>,
    /// Set metadata on a network
    #[arg(long, value_name = "list")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long, value_name = "map")]
    pub opt: Vec<String>,
    /// Control the network's scope
    #[arg(long, value_name = "string")]
    pub scope: Option<String>,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long, value_name = "strings")]
    pub subnet: Vec<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct LsArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    #[arg(long, value_name = "string", default_value = "",
          help = crate::commands::container::FORMAT_HELP)]
    pub format: String,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display network IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct InspectArgs {
    #[arg(short = 'f', long, value_name = "string", default_value = "",
          help = INSPECT_FORMAT_HELP)]
    pub format: String,
    /// Verbose output for diagnostics
    #[arg(short = 'v', long)]
    pub verbose: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

const INSPECT_FORMAT_HELP: &str = "Format output using a custom template:\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template.\nRefer to https://docs.docker.com/go/formatting/ for more information about formatting output with templates";

#[derive(Args, Debug, Default)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PruneArgs {
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
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long, value_name = "strings")]
    pub alias: Vec<String>,
    /// driver options for the network
    #[arg(long = "driver-opt", value_name = "strings")]
    pub driver_opt: Vec<String>,
    #[arg(
        long = "gw-priority",
        value_name = "int",
        allow_negative_numbers = true,
        help = "Highest gw-priority provides the default gateway. Accepts positive and negative values."
    )]
    pub gw_priority: Option<i64>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long, value_name = "string")]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long, value_name = "string")]
    pub ip6: Option<String>,
    /// Add link to another container
    #[arg(long, value_name = "list")]
    pub link: Vec<String>,
    /// Add a link-local address for the container
    #[arg(long = "link-local-ip", value_name = "strings")]
    pub link_local_ip: Vec<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// pflag's string slices: each value is itself comma separated (CSV, without quoting).
fn csv(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A flag-value error, with the usage text, as pflag reports it (exit 125).
fn flag_err(path: &str, flag: &str, value: &str, why: &str) -> CliError {
    CliError::new(
        format!(
            "invalid argument \"{value}\" for \"{flag}\" flag: {why}\n\nUsage:  {}\n\nRun 'berth {path} --help' for more information",
            crate::cli::usage(path)
        ),
        EXIT_USAGE,
    )
}

/// docker's MapOpts: "k=v" (or "k", empty value), last one wins.
fn map_opts(values: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    for v in values {
        let (k, val) = v.split_once('=').unwrap_or((v, ""));
        m.insert(k.to_string(), val.into());
    }
    m
}

/// docker's ValidateLabel: a label needs a name.
pub fn check_labels(path: &str, flag: &str, labels: &[String]) -> Result<(), CliError> {
    for l in labels {
        let name = l.split_once('=').map_or(l.as_str(), |(k, _)| k);
        if name.trim().is_empty() {
            return Err(flag_err(
                path,
                flag,
                l,
                &format!("invalid label '{l}': empty name"),
            ));
        }
    }
    Ok(())
}

/// docker's ValidateLink: "name" or "name:alias".
pub fn check_links(path: &str, links: &[String]) -> Result<(), CliError> {
    for l in links {
        let parts: Vec<&str> = l.split(':').collect();
        if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(flag_err(
                path,
                "--link",
                l,
                &format!("bad format for links: {l}"),
            ));
        }
    }
    Ok(())
}

/// Flag values checked before anything else (cobra parses flags before counting arguments).
pub fn precheck(path: &str, cmd: &NetworkCmd) -> Result<(), CliError> {
    use crate::cli::{Arity, check_args, check_filters};
    match cmd {
        NetworkCmd::Create(a) => {
            for (flag, v) in [("--ipv4", &a.ipv4), ("--ipv6", &a.ipv6)] {
                if let Some(v) = v {
                    crate::commands::image::parse_bool_flag(v, flag, path)?;
                }
            }
            check_labels(path, "--label", &a.label)?;
            check_args(path, &a.args, Arity::Exact(1))
        }
        NetworkCmd::Ls(a) => {
            check_filters(path, &a.filter, "-f, --filter")?;
            check_args(path, &a.args, Arity::None)
        }
        NetworkCmd::Inspect(a) => check_args(path, &a.args, Arity::AtLeast(1)),
        NetworkCmd::Rm(a) => check_args(path, &a.args, Arity::AtLeast(1)),
        NetworkCmd::Prune(a) => {
            check_filters(path, &a.filter, "--filter")?;
            check_args(path, &a.args, Arity::None)
        }
        NetworkCmd::Connect(a) => {
            check_links(path, &a.link)?;
            check_args(path, &a.args, Arity::Exact(2))
        }
        NetworkCmd::Disconnect(a) => check_args(path, &a.args, Arity::Exact(2)),
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum NetworkCmd {
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Create a network
    Create(CreateArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

pub async fn dispatch(client: &Client, cmd: NetworkCmd) -> Result<(), CliError> {
    match cmd {
        NetworkCmd::Create(a) => create(client, a).await,
        NetworkCmd::Ls(a) => list(client, a).await,
        NetworkCmd::Inspect(a) => {
            let q = a.verbose.then_some("verbose=true");
            let typed = Some(typed_network as fn(&mut Ordered));
            crate::commands::inspect::run_with(client, &a.args, &a.format, "network", q, typed)
                .await
        }
        NetworkCmd::Rm(a) => remove(client, a).await,
        NetworkCmd::Prune(a) => prune(client, a).await,
        NetworkCmd::Connect(a) => connect(client, a).await,
        NetworkCmd::Disconnect(a) => disconnect(client, a).await,
    }
}

/// The IPAM config fields the daemon omits when empty but docker's typed struct always has,
/// so `{{range .IPAM.Config}}{{.Gateway}}{{end}}` prints "" as with docker.
fn typed_network(v: &mut Ordered) {
    let Ordered::Object(top) = v else { return };
    let Some((_, Ordered::Object(ipam))) = top.iter_mut().find(|(k, _)| k == "IPAM") else {
        return;
    };
    let Some((_, Ordered::Array(cfgs))) = ipam.iter_mut().find(|(k, _)| k == "Config") else {
        return;
    };
    for c in cfgs {
        let Ordered::Object(fields) = c else { continue };
        for key in ["Subnet", "IPRange", "Gateway"] {
            if !fields.iter().any(|(k, _)| k == key) {
                fields.push((key.to_string(), Ordered::String(String::new())));
            }
        }
        // Go's field name; the JSON one is AuxiliaryAddresses.
        if !fields.iter().any(|(k, _)| k == "AuxAddress") {
            let aux = fields
                .iter()
                .find(|(k, _)| k == "AuxiliaryAddresses")
                .map(|(_, v)| v.clone())
                .unwrap_or(Ordered::Object(Vec::new()));
            fields.push(("AuxAddress".to_string(), aux));
        }
    }
}

// ---- create ----

/// A parsed CIDR: address and prefix length, as Go's net.ParseCIDR.
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("invalid CIDR address: {s}");
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return Err(bad());
    }
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > max {
        return Err(bad());
    }
    Ok((ip, len))
}

fn contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    match (net.0, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(net.1)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(net.1)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// docker's subnetMatches: is `data` (an address, or the address of a CIDR) inside `subnet`?
fn subnet_matches(subnet: &str, data: &str) -> Result<bool, String> {
    let net = parse_cidr(subnet).map_err(|e| format!("invalid subnet: {e}"))?;
    let ip = if data.contains('/') {
        parse_cidr(data)?.0
    } else {
        match data.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return Ok(false),
        }
    };
    Ok(contains(net, ip))
}

/// docker's createIPAMConfig: subnets with their ranges, gateways and aux addresses, checked
/// the way the docker CLI checks them (same messages). Kept in the order given.
fn ipam_config(a: &CreateArgs) -> Result<Vec<Value>, String> {
    let subnets = csv(&a.subnet);
    let ranges = csv(&a.ip_range);
    let gateways = csv(&a.gateway);
    if subnets.len() < ranges.len() || subnets.len() < gateways.len() {
        return Err("every ip-range or gateway must have a corresponding subnet".into());
    }
    struct Cfg {
        subnet: String,
        range: String,
        gateway: String,
        aux: Map<String, Value>,
    }
    let mut cfgs: Vec<Cfg> = Vec::new();
    for s in &subnets {
        for c in &cfgs {
            if subnet_matches(s, &c.subnet)? || subnet_matches(&c.subnet, s)? {
                return Err("multiple overlapping subnet configuration is not supported".into());
            }
        }
        cfgs.push(Cfg {
            subnet: s.clone(),
            range: String::new(),
            gateway: String::new(),
            aux: Map::new(),
        });
    }
    for r in &ranges {
        let mut matched = false;
        for c in cfgs.iter_mut() {
            parse_cidr(r)?;
            if !subnet_matches(&c.subnet, r)? {
                continue;
            }
            if !c.range.is_empty() {
                return Err(format!(
                    "cannot configure multiple ranges ({r}, {}) on the same subnet ({})",
                    c.range, c.subnet
                ));
            }
            c.range = r.clone();
            matched = true;
        }
        if !matched {
            return Err(format!("no matching subnet for range {r}"));
        }
    }
    for g in &gateways {
        let mut matched = false;
        for c in cfgs.iter_mut() {
            if !subnet_matches(&c.subnet, g)? {
                continue;
            }
            if !c.gateway.is_empty() {
                return Err(format!(
                    "cannot configure multiple gateways ({g}, {}) for the same subnet ({})",
                    c.gateway, c.subnet
                ));
            }
            c.gateway = g.clone();
            matched = true;
        }
        if !matched {
            return Err(format!("no matching subnet for gateway {g}"));
        }
    }
    // docker walks a Go map here (random order); sorted keys keep the first error stable.
    let aux = map_opts(&a.aux_address);
    let mut keys: Vec<&String> = aux.keys().collect();
    keys.sort();
    for k in keys {
        let v = aux[k].as_str().unwrap_or("");
        let mut matched = false;
        for c in cfgs.iter_mut() {
            if !subnet_matches(&c.subnet, v)? {
                continue;
            }
            c.aux.insert(k.clone(), v.into());
            matched = true;
        }
        if !matched {
            return Err(format!("no matching subnet for aux-address {v}"));
        }
    }
    Ok(cfgs
        .into_iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("Subnet".into(), c.subnet.into());
            if !c.range.is_empty() {
                m.insert("IPRange".into(), c.range.into());
            }
            if !c.gateway.is_empty() {
                m.insert("Gateway".into(), c.gateway.into());
            }
            if !c.aux.is_empty() {
                m.insert("AuxiliaryAddresses".into(), c.aux.into());
            }
            Value::Object(m)
        })
        .collect())
}

/// The body of POST /networks/create, as docker CLI 28 sends it.
pub fn create_body(a: &CreateArgs) -> Result<Value, CliError> {
    let config = ipam_config(a).map_err(CliError::msg)?;
    let mut labels = Map::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.into());
    }
    let mut body = json!({
        "Name": a.args.first().cloned().unwrap_or_default(),
        "Driver": a.driver,
        "Scope": a.scope.clone().unwrap_or_default(),
        "IPAM": {
            "Driver": a.ipam_driver,
            "Options": map_opts(&a.ipam_opt),
            "Config": config,
        },
        "Internal": a.internal,
        "Attachable": a.attachable,
        "Ingress": a.ingress,
        "ConfigOnly": a.config_only,
        "ConfigFrom": a.config_from.as_ref().map(|n| json!({"Network": n})),
        "Options": map_opts(&a.opt),
        "Labels": labels,
    });
    // Sent only when given on the command line, so the daemon's defaults apply otherwise.
    for (key, v) in [("EnableIPv4", &a.ipv4), ("EnableIPv6", &a.ipv6)] {
        if let Some(v) = v {
            let b = crate::commands::image::parse_bool_flag(v, key, "network create")?;
            body[key] = b.into();
        }
    }
    Ok(body)
}

async fn create(client: &Client, a: CreateArgs) -> Result<(), CliError> {
    let mut body = create_body(&a)?;
    // Daemons before API 1.44 allow duplicate names unless asked; docker's client asks.
    if crate::client::parse_version(&client.api_version) < (1, 44) {
        body["CheckDuplicate"] = true.into();
    }
    let r = client
        .raw(
            Method::POST,
            "/networks/create",
            Some(body.to_string().into()),
        )
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let v = Ordered::parse(&r.body).map_err(|e| CliError::msg(e.to_string()))?;
    let id = v.get("Id").and_then(Ordered::as_str).unwrap_or("");
    out(&format!("{id}\n"))
}

// ---- ls ----

const LS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";
const LS_RAW: &str =
    "network_id: {{.ID}}\nname: {{.Name}}\ndriver: {{.Driver}}\nscope: {{.Scope}}\n";

fn bool_text(v: Option<&Ordered>) -> &'static str {
    match v {
        Some(Ordered::Bool(true)) => "true",
        _ => "false",
    }
}

/// Go's time.Time.String() of an RFC 3339 timestamp from the daemon.
fn go_time(s: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => {
            let frac = t.format("%f").to_string();
            let frac = frac.trim_end_matches('0');
            let frac = if frac.is_empty() {
                String::new()
            } else {
                format!(".{frac}")
            };
            let off = t.format("%z").to_string();
            // Go names the zone it parsed: UTC for "Z", else the bare offset.
            let zone = if t.offset().local_minus_utc() == 0 {
                "UTC".to_string()
            } else {
                off.clone()
            };
            format!("{}{frac} {off} {zone}", t.format("%Y-%m-%d %H:%M:%S"))
        }
        Err(_) => "0001-01-01 00:00:00 +0000 UTC".into(),
    }
}

fn network_row(n: &Ordered, trunc: bool) -> Row {
    let s = |k: &str| n.get(k).and_then(Ordered::as_str).unwrap_or("").to_string();
    let id = s("Id");
    let mut labels: Vec<String> = match n.get("Labels") {
        Some(Ordered::Object(o)) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect(),
        _ => Vec::new(),
    };
    // A Go map in docker (random order); sorted here.
    labels.sort();
    Row::new()
        .with("ID", "NETWORK ID", if trunc { short_id(&id) } else { id })
        .with("Name", "NAME", s("Name"))
        .with("Driver", "DRIVER", s("Driver"))
        .with("Scope", "SCOPE", s("Scope"))
        .with("IPv4", "IPV4", bool_text(n.get("EnableIPv4")))
        .with("IPv6", "IPV6", bool_text(n.get("EnableIPv6")))
        .with("Internal", "INTERNAL", bool_text(n.get("Internal")))
        .with("Labels", "LABELS", labels.join(","))
        .with("CreatedAt", "CREATED AT", go_time(&s("Created")))
}

/// Go's sortorder.NaturalLess: digit runs compare by value.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ca, cb) = (a[i], b[j]);
        if ca.is_ascii_digit() && cb.is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i] == b'0' {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j] == b'0' {
                j += 1;
            }
            let (zi, zj) = (i - si, j - sj);
            let ni = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let nj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let (da, db) = (&a[ni..i], &b[nj..j]);
            let ord = da
                .len()
                .cmp(&db.len())
                .then_with(|| da.cmp(db))
                .then_with(|| zi.cmp(&zj));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if ca != cb {
                return ca.cmp(&cb);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

async fn list(client: &Client, a: LsArgs) -> Result<(), CliError> {
    let mut q = String::from("/networks");
    if !a.filter.is_empty() {
        q.push_str(&format!(
            "?filters={}",
            urlencode(&filters_json(&a.filter)?)
        ));
    }
    let mut nets = match client.get_json(&q).await? {
        Ordered::Array(v) => v,
        _ => Vec::new(),
    };
    nets.sort_by(|x, y| {
        let n = |v: &Ordered| {
            v.get("Name")
                .and_then(Ordered::as_str)
                .unwrap_or("")
                .to_string()
        };
        natural_cmp(&n(x), &n(y))
    });
    let user = match (a.format.as_str(), a.quiet) {
        ("" | "table", true) => "{{.ID}}",
        ("", false) => LS_TABLE,
        ("raw", true) => "network_id: {{.ID}}",
        ("raw", false) => LS_RAW,
        (f, _) => f,
    };
    let fmt = Format::new(user, LS_TABLE).typed("*network.networkContext");
    let rows: Vec<Row> = nets.iter().map(|n| network_row(n, !a.no_trunc)).collect();
    let header = network_row(&Ordered::Null, true);
    out(&fmt.render_rows(&rows, &header).map_err(CliError::msg)?)
}

// ---- rm, prune ----

async fn remove(client: &Client, a: RmArgs) -> Result<(), CliError> {
    let mut failed = false;
    for name in &a.args {
        let r = client
            .raw(
                Method::DELETE,
                &format!("/networks/{}", path_escape(name)),
                None,
            )
            .await?;
        if r.status.is_success() {
            out(&format!("{name}\n"))?;
            continue;
        }
        if a.force && r.status == hyper::StatusCode::NOT_FOUND {
            continue;
        }
        eprintln!("Error response from daemon: {}", r.message());
        failed = true;
    }
    if failed {
        // docker's StatusError without a message prints this.
        return Err(CliError::msg("exit status 1"));
    }
    Ok(())
}

async fn prune(client: &Client, a: PruneArgs) -> Result<(), CliError> {
    let warning = "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?";
    if !a.force && !crate::commands::image::confirm(warning)? {
        return Ok(());
    }
    let mut q = String::from("/networks/prune");
    if !a.filter.is_empty() {
        q.push_str(&format!(
            "?filters={}",
            urlencode(&filters_json(&a.filter)?)
        ));
    }
    let r = client.raw(Method::POST, &q, None).await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    let rep = Ordered::parse(&r.body).map_err(|e| CliError::msg(e.to_string()))?;
    let deleted: Vec<String> = match rep.get("NetworksDeleted") {
        Some(Ordered::Array(v)) => v
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    if deleted.is_empty() {
        return Ok(());
    }
    let mut s = String::from("Deleted Networks:\n");
    for d in deleted {
        s.push_str(&d);
        s.push('\n');
    }
    s.push('\n');
    out(&s)
}

// ---- connect, disconnect ----

/// The body of POST /networks/{id}/connect, as docker CLI 28 sends it.
pub fn connect_body(a: &ConnectArgs) -> Result<Value, CliError> {
    let mut driver_opts = Map::new();
    for o in csv(&a.driver_opt) {
        let (k, v) = o.split_once('=').unwrap_or((&o, ""));
        if !o.contains('=') || k.trim().is_empty() {
            return Err(CliError::msg(
                "invalid key/value pair format in driver options",
            ));
        }
        driver_opts.insert(k.trim().to_string(), v.trim().into());
    }
    let mut ipam = Map::new();
    if let Some(ip) = a.ip.as_ref().filter(|s| !s.is_empty()) {
        ipam.insert("IPv4Address".into(), ip.clone().into());
    }
    if let Some(ip) = a.ip6.as_ref().filter(|s| !s.is_empty()) {
        ipam.insert("IPv6Address".into(), ip.clone().into());
    }
    let lls = csv(&a.link_local_ip);
    if !lls.is_empty() {
        ipam.insert("LinkLocalIPs".into(), lls.into());
    }
    Ok(json!({
        "Container": a.args.get(1).cloned().unwrap_or_default(),
        "EndpointConfig": {
            "IPAMConfig": ipam,
            "Links": if a.link.is_empty() { Value::Null } else { a.link.clone().into() },
            "Aliases": csv(&a.alias),
            "MacAddress": "",
            "DriverOpts": driver_opts,
            "GwPriority": a.gw_priority.unwrap_or(0),
            "NetworkID": "",
            "EndpointID": "",
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": null,
        }
    }))
}

async fn post_ok(client: &Client, path: &str, body: Value) -> Result<(), CliError> {
    let r = client
        .raw(Method::POST, path, Some(body.to_string().into()))
        .await?;
    if !r.status.is_success() {
        return Err(CliError::daemon(r.message()));
    }
    Ok(())
}

async fn connect(client: &Client, a: ConnectArgs) -> Result<(), CliError> {
    let body = connect_body(&a)?;
    let net = path_escape(&a.args[0]);
    post_ok(client, &format!("/networks/{net}/connect"), body).await
}

async fn disconnect(client: &Client, a: DisconnectArgs) -> Result<(), CliError> {
    let net = path_escape(&a.args[0]);
    let body = json!({"Container": a.args[1], "Force": a.force});
    post_ok(client, &format!("/networks/{net}/disconnect"), body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_args(f: impl FnOnce(&mut CreateArgs)) -> CreateArgs {
        let mut a = CreateArgs {
            driver: "bridge".into(),
            ipam_driver: "default".into(),
            args: vec!["n1".into()],
            ..Default::default()
        };
        f(&mut a);
        a
    }

    #[test]
    fn create_body_like_docker() {
        // What docker 28 sent for: --subnet 10.9.0.0/16 --gateway 10.9.0.1 --ip-range
        // 10.9.1.0/24 --internal --attachable --label a=b --label c -o k=v n1
        let a = create_args(|a| {
            a.subnet = vec!["10.9.0.0/16".into()];
            a.gateway = vec!["10.9.0.1".into()];
            a.ip_range = vec!["10.9.1.0/24".into()];
            a.internal = true;
            a.attachable = true;
            a.label = vec!["a=b".into(), "c".into()];
            a.opt = vec!["com.docker.network.bridge.name=br9".into()];
        });
        let want: Value = serde_json::from_str(r#"{"Driver":"bridge","Scope":"","IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.9.0.0/16","IPRange":"10.9.1.0/24","Gateway":"10.9.0.1"}]},"Internal":true,"Attachable":true,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{"com.docker.network.bridge.name":"br9"},"Labels":{"a":"b","c":""},"Name":"n1"}"#).unwrap();
        assert_eq!(create_body(&a).unwrap(), want);
        let a = create_args(|a| a.ipv6 = Some("true".into()));
        let b = create_body(&a).unwrap();
        assert_eq!(b["EnableIPv6"], true);
        assert!(b.get("EnableIPv4").is_none());
    }

    #[test]
    fn ipam_checks_word_errors_like_docker() {
        let err = |f: fn(&mut CreateArgs)| create_body(&create_args(f)).unwrap_err().message;
        assert_eq!(
            err(|a| a.gateway = vec!["10.0.0.1".into()]),
            "every ip-range or gateway must have a corresponding subnet"
        );
        assert_eq!(
            err(|a| a.subnet = vec!["10.0.0.0/8".into(), "10.1.0.0/16".into()]),
            "multiple overlapping subnet configuration is not supported"
        );
        assert_eq!(
            err(|a| a.subnet = vec!["10.0.0.0/8".into(), "bogus".into()]),
            "invalid subnet: invalid CIDR address: bogus"
        );
        assert_eq!(
            err(|a| {
                a.subnet = vec!["10.0.0.0/8".into()];
                a.ip_range = vec!["bogus".into()];
            }),
            "invalid CIDR address: bogus"
        );
        assert_eq!(
            err(|a| {
                a.subnet = vec!["10.0.0.0/8".into()];
                a.ip_range = vec!["11.0.0.0/16".into()];
            }),
            "no matching subnet for range 11.0.0.0/16"
        );
        assert_eq!(
            err(|a| {
                a.subnet = vec!["10.0.0.0/8".into(), "11.0.0.0/8".into()];
                a.gateway = vec!["10.0.0.1".into(), "10.0.0.2".into()];
            }),
            "cannot configure multiple gateways (10.0.0.2, 10.0.0.1) for the same subnet (10.0.0.0/8)"
        );
        assert_eq!(
            err(|a| {
                a.subnet = vec!["10.0.0.0/8".into()];
                a.aux_address = vec!["foo".into()];
            }),
            "no matching subnet for aux-address "
        );
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["net10", "net2", "bridge", "net1", "host"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["bridge", "host", "net1", "net2", "net10"]);
    }

    #[test]
    fn go_time_strings() {
        assert_eq!(
            go_time("2026-11-22T08:28:04.483636940Z"),
            "2026-11-22 08:28:04.48363694 +0000 UTC"
        );
        assert_eq!(
            go_time("2026-11-22T08:28:04Z"),
            "2026-11-22 08:28:04 +0000 UTC"
        );
    }
}
