//! Networking in the CLI against the real `docker` CLI 28:
//! - the request bodies: both CLIs talk to a small recording API server of the test's own (a
//!   unix socket in a temp dir), and what they send (method, path, query, JSON body) must be
//!   the same, for `network *` and for the networking flags of `run`/`create`;
//! - the output: `network create/ls/inspect/rm/prune/connect/disconnect` and their errors on a
//!   private reference dockerd (own data root and socket; its bridges get unique names and
//!   subnets and are removed).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;

/// One request as the server saw it: method, path without the API version, parsed body.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

/// A recording Docker API server: answers every request with canned JSON, remembers them.
struct Recorder {
    sock: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
}

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn canned(method: &str, path: &str) -> (u16, String) {
    if path.starts_with("/_ping") {
        return (200, "OK".into());
    }
    let p = path.split('?').next().unwrap_or("");
    if p.ends_with("/containers/create") {
        return (201, format!(r#"{{"Id":"{ID}","Warnings":[]}}"#));
    }
    if p.ends_with("/networks/create") {
        return (201, format!(r#"{{"Id":"{ID}","Warning":""}}"#));
    }
    if p.ends_with("/networks/prune") {
        return (200, r#"{"NetworksDeleted":["n1","n2"]}"#.into());
    }
    if p.ends_with("/version") {
        return (
            200,
            r#"{"Version":"28.2.2","ApiVersion":"1.50","MinAPIVersion":"1.24","Os":"linux","Arch":"amd64"}"#
                .into(),
        );
    }
    if method == "GET" && p.ends_with("/networks") {
        return (200, "[]".into());
    }
    (200, "{}".into())
}

impl Recorder {
    fn start() -> Recorder {
        let dir = tempfile::Builder::new()
            .prefix("berthrec")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let sock = dir.path().join("api.sock");
        let listener = UnixListener::bind(&sock).expect("bind recorder");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, s));
            }
        });
        Recorder {
            sock: format!("unix://{}", sock.display()),
            seen,
            _dir: dir,
        }
    }

    /// Runs one CLI against the recorder; returns its output and the requests it made.
    fn run(&self, bin: &str, args: &[&str]) -> (std::process::Output, Vec<Seen>) {
        self.seen.lock().unwrap().clear();
        let o = Command::new(bin)
            .args(["-H", &self.sock])
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("BERTH_HOST")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run CLI");
        let seen = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !r.path.starts_with("/_ping"))
            .cloned()
            .collect();
        (o, seen)
    }
}

fn serve(conn: std::os::unix::net::UnixStream, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap_or(0);
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(len, 0);
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        // "/v1.50/networks" -> "/networks", query decoded.
        let path = match target.strip_prefix("/v") {
            Some(rest) => rest
                .find('/')
                .map_or(target.clone(), |i| rest[i..].to_string()),
            None => target.clone(),
        };
        let path = percent_decode(&path);
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
        };
        let (status, answer) = canned(&method, &path);
        seen.lock().unwrap().push(Seen { method, path, body });
        let head = format!(
            "HTTP/1.1 {status} OK\r\nApi-Version: 1.50\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        let _ = w.write_all(head.as_bytes());
        if !line.starts_with("HEAD") {
            let _ = w.write_all(answer.as_bytes());
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len() + 1
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The networking part of a container create body (the rest is compared elsewhere).
fn net_part(body: &Value) -> Value {
    let hc = &body["HostConfig"];
    serde_json::json!({
        "Hostname": body["Hostname"],
        "Domainname": body["Domainname"],
        "ExposedPorts": body["ExposedPorts"],
        "MacAddress": body.get("MacAddress"),
        "NetworkingConfig": body["NetworkingConfig"],
        "HostConfig": {
            "NetworkMode": hc["NetworkMode"],
            "PortBindings": hc["PortBindings"],
            "PublishAllPorts": hc["PublishAllPorts"],
            "Dns": hc["Dns"],
            "DnsOptions": hc["DnsOptions"],
            "DnsSearch": hc["DnsSearch"],
            "ExtraHosts": hc["ExtraHosts"],
            "Links": hc["Links"],
        },
    })
}

/// docker builds IPAM.Config from a Go map: its order is random, so compare it sorted.
fn sorted_ipam(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(Value::Array(cfgs)) = b.pointer_mut("/IPAM/Config") {
        cfgs.sort_by_key(|c| c.to_string());
    }
    b
}

fn docker_cli_available() -> bool {
    which("docker").is_some()
}

#[test]
fn requests_match_docker_cli() {
    if !docker_cli_available() {
        eprintln!("SKIP: docker CLI not installed");
        return;
    }
    let rec = Recorder::start();
    let berth = env!("CARGO_BIN_EXE_berth");
    let cases: Vec<Vec<&str>> = vec![
        vec!["network", "create", "n1"],
        vec![
            "network",
            "create",
            "--subnet",
            "10.9.0.0/16",
            "--gateway",
            "10.9.0.1",
            "--ip-range",
            "10.9.1.0/24",
            "--internal",
            "--attachable",
            "--label",
            "a=b",
            "--label",
            "c",
            "-o",
            "com.docker.network.bridge.name=br9",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "-o",
            "com.docker.network.bridge.enable_ip_masquerade=false",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "-d",
            "bridge",
            "n1",
        ],
        vec!["network", "create", "--ipv6", "--ipv4=false", "n3"],
        vec!["network", "create", "--ipv6=0", "n3"],
        vec![
            "network",
            "create",
            "--subnet",
            "10.1.0.0/16,fd00:1::/64",
            "--gateway",
            "fd00:1::1",
            "--aux-address",
            "a=10.1.0.4",
            "--ipam-opt",
            "q=r",
            "--scope",
            "local",
            "--config-from",
            "base",
            "--config-only",
            "-o",
            "foo",
            "x",
        ],
        vec!["network", "create", "--gateway", "10.0.0.1", "x"],
        vec![
            "network",
            "create",
            "--subnet",
            "10.0.0.0/8",
            "--subnet",
            "10.1.0.0/16",
            "x",
        ],
        vec![
            "network",
            "create",
            "--subnet",
            "10.0.0.0/8",
            "--ip-range",
            "bogus",
            "x",
        ],
        vec!["network", "create", "--label", "=x", "x"],
        vec!["network", "create", "--ipv4=maybe", "x"],
        vec!["network", "create"],
        vec![
            "network", "connect", "--ip", "10.9.0.5", "--alias", "a1", "--alias", "a2,a3",
            "--link", "c1:x", "n1", "ctr",
        ],
        vec![
            "network",
            "connect",
            "--ip6",
            "fd00::5",
            "--link-local-ip",
            "169.254.0.1",
            "--driver-opt",
            "k=v",
            "--gw-priority",
            "3",
            "n1",
            "ctr",
        ],
        vec!["network", "connect", "n1", "ctr"],
        vec!["network", "connect", "--driver-opt", "foo", "n1", "ctr"],
        vec!["network", "connect", "--link", "a:b:c", "n1", "ctr"],
        vec!["network", "connect", "n1"],
        vec!["network", "disconnect", "-f", "n1", "ctr"],
        vec!["network", "disconnect", "n1", "ctr"],
        vec![
            "network", "prune", "-f", "--filter", "until=1h", "--filter", "label=a",
        ],
        vec!["network", "prune", "-f"],
        vec![
            "network",
            "ls",
            "--filter",
            "driver=bridge",
            "-f",
            "name=x",
            "--no-trunc",
        ],
        vec!["network", "ls", "-q"],
        vec!["network", "inspect", "-v", "n1"],
        vec!["network", "ls", "-f", "bogus"],
        vec!["network", "list", "x"],
        vec![
            "create",
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1:9000-9002:7000-7002/udp",
            "-p",
            "53/udp",
            "-p",
            "127.0.0.1::81",
            "-p",
            "[::1]:8443:443",
            "-p",
            "7100-7101",
            "-P",
            "--expose",
            "3000",
            "--expose",
            "4000-4001/udp",
            "--network",
            "mynet",
            "--network-alias",
            "web",
            "--network-alias",
            "w2",
            "--ip",
            "10.9.0.7",
            "--ip6",
            "fd00::7",
            "--mac-address",
            "02:42:ac:11:00:02",
            "--dns",
            "1.1.1.1",
            "--dns-search",
            "ex.com",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "h1:1.2.3.4",
            "--add-host",
            "h2=host-gateway",
            "--link",
            "c1:al",
            "--link",
            "c2",
            "--hostname",
            "hh",
            "--domainname",
            "dd.com",
            "img",
        ],
        vec!["create", "--net", "host", "img"],
        vec!["create", "--network", "none", "img"],
        vec!["create", "--network", "container:abc", "img"],
        vec![
            "create",
            "--network",
            "bridge",
            "--mac-address",
            "02:42:ac:11:00:03",
            "img",
        ],
        vec!["create", "--link", "c1:al", "img"],
        vec!["create", "-p", "9000-9001:80", "img"],
        vec!["create", "-p", "1.2.3.4:80:80/tcp", "-p", "80/sctp", "img"],
    ];
    let mut failures = Vec::new();
    for args in &cases {
        let (want, want_req) = rec.run("docker", args);
        let (got, got_req) = rec.run(berth, args);
        let norm = |reqs: &[Seen]| -> Vec<Seen> {
            reqs.iter()
                .filter(|r| !r.path.ends_with("/version"))
                .map(|r| Seen {
                    method: r.method.clone(),
                    path: r.path.clone(),
                    body: if r.path.starts_with("/containers/create") {
                        net_part(&r.body)
                    } else {
                        sorted_ipam(&r.body)
                    },
                })
                // docker looks the network up before removing it; the answer changes nothing.
                .filter(|r| !(r.method == "GET" && args[..2] == ["network", "rm"]))
                .collect()
        };
        let want_err = text(&want.stderr).replace("docker", "berth");
        let (wr, gr) = (norm(&want_req), norm(&got_req));
        assert!(
            !(want.status.success() && wr.is_empty()),
            "the recorder saw nothing of `{}`",
            args.join(" ")
        );
        if wr != gr
            || want.stdout != got.stdout
            || want_err != text(&got.stderr)
            || want.status.code() != got.status.code()
        {
            failures.push(format!(
                "`{}`\n--- docker (exit {:?})\n{}{}{:#?}\n--- berth (exit {:?})\n{}{}{:#?}",
                args.join(" "),
                want.status.code(),
                text(&want.stdout),
                want_err,
                wr,
                got.status.code(),
                text(&got.stdout),
                text(&got.stderr),
                gr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A busybox image imported into the reference daemon.
fn busybox(d: &RefDocker) {
    let tar = rootfs_tar(d.path());
    ok(
        &d.docker(&[
            "import",
            "-c",
            "CMD [\"sh\"]",
            &tar.to_string_lossy(),
            "busybox:latest",
        ]),
        "import busybox",
    );
}

/// Removes what the test made even when it fails: containers, networks, and (should the
/// daemon have kept them) the bridges, by their test-unique names.
struct Cleanup<'a> {
    d: &'a RefDocker,
    containers: Vec<String>,
    networks: Vec<String>,
    bridges: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.d.docker(&["rm", "-f", c]);
        }
        // By ID: a failed run may have left two networks of one name.
        let all = self
            .d
            .docker(&["network", "ls", "--format", "{{.ID}} {{.Name}}"]);
        for line in text(&all.stdout).lines() {
            if let Some((id, name)) = line.split_once(' ')
                && self.networks.iter().any(|n| n == name)
            {
                let _ = self.d.docker(&["network", "rm", id]);
            }
        }
        for b in &self.bridges {
            let _ = Command::new("ip")
                .args(["link", "del", b])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[test]
fn network_commands_match_docker() {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: /bin/busybox (busybox-static) not installed");
        return;
    }
    let d = match RefDocker::start() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIP: reference dockerd unavailable: {e}");
            return;
        }
    };
    busybox(&d);
    // Unique bridge names and subnets per run: the reference daemon creates real bridges.
    let tag = format!("{:x}", std::process::id() & 0xfff);
    let third = 100 + (std::process::id() % 100);
    let n1 = format!("bnt1{tag}");
    let n2 = format!("bnt2{tag}");
    let sub1 = format!("10.{third}.1.0/24");
    let sub2 = format!("10.{third}.2.0/24");
    let br1 = format!("brb1{tag}");
    let br2 = format!("brb2{tag}");
    let _cleanup = Cleanup {
        d: &d,
        containers: vec![format!("bntc{tag}"), format!("bntr{tag}")],
        networks: vec![n1.clone(), n2.clone()],
        bridges: vec![br1.clone(), br2.clone()],
    };
    let mut f = Vec::new();

    // Create: docker makes one, berth the other; same output shape (an ID).
    let o1 = d.docker(&[
        "network",
        "create",
        "--subnet",
        &sub1,
        "--gateway",
        &format!("10.{third}.1.254"),
        "--label",
        "bt=1",
        "--label",
        "zz",
        "-o",
        &format!("com.docker.network.bridge.name={br1}"),
        "-o",
        "com.docker.network.driver.mtu=1400",
        &n1,
    ]);
    let o2 = d.berth(&[
        "network",
        "create",
        "--subnet",
        &sub2,
        "--ip-range",
        &format!("10.{third}.2.128/25"),
        "--internal",
        "--attachable",
        "--label",
        "bt=2",
        "-o",
        &format!("com.docker.network.bridge.name={br2}"),
        &n2,
    ]);
    let id1 = ok(&o1, "docker network create");
    let id2 = ok(&o2, "berth network create");
    assert_eq!(id2.trim().len(), 64, "berth printed an ID: {id2:?}");
    assert_eq!(id1.trim().len(), 64);
    let short2 = &id2.trim()[..12];

    let c = format!("bntc{tag}");
    ok(
        &d.docker(&["create", "--name", &c, "--network", &n1, "busybox", "true"]),
        "create container",
    );

    for args in [
        vec!["network", "ls"],
        vec!["network", "list", "--no-trunc"],
        vec!["network", "ls", "-q"],
        vec!["network", "ls", "--format", "json"],
        vec!["network", "ls", "--format", "raw"],
        vec!["network", "ls", "-q", "--format", "raw"],
        vec![
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Labels}} {{.IPv6}} {{.Internal}} {{.CreatedAt}}",
        ],
        vec![
            "network",
            "ls",
            "--format",
            "table {{.Name}}\t{{.Driver}}\t{{.IPv4}}",
        ],
        vec!["network", "ls", "-f", "label=bt"],
        vec!["network", "ls", "-f", "name=bnt", "-f", "driver=bridge"],
        vec!["network", "ls", "-f", &format!("id={short2}")],
        vec!["network", "ls", "-f", "type=custom", "-q"],
        vec![
            "network",
            "ls",
            "-f",
            "scope=local",
            "--format",
            "{{.Name}}",
        ],
        vec![
            "network",
            "ls",
            "-f",
            "dangling=true",
            "--format",
            "{{.Name}}",
        ],
        vec!["network", "ls", "-f", "bogus=1"],
        vec!["network", "ls", "-f", "type=bogus"],
        vec!["network", "ls", "x"],
        vec!["network", "inspect", &n1],
        vec!["network", "inspect", &n1, &n2],
        vec![
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}} {{.IPRange}}{{end}} {{.Internal}} {{json .Labels}}",
            &n1,
            &n2,
        ],
        vec!["network", "inspect", "-v", &n2],
        vec!["network", "inspect", &n1, "nosuch"],
        vec!["network", "inspect", "nosuch"],
        vec!["network", "inspect"],
        vec!["network", "create", &n1],
        vec![
            "network",
            "create",
            "--subnet",
            "10.0.0.0/8",
            "--gateway",
            "11.0.0.1",
            "x",
        ],
        vec!["network", "create", "-d", "nosuchdriver", "x"],
        vec!["network", "rm", "nosuch"],
        vec!["network", "rm", "-f", "nosuch"],
        vec!["network", "rm", "nosuch1", "nosuch2"],
        vec!["network", "connect", &n2, "nosuch"],
        vec!["network", "connect", "nonet", &c],
        vec!["network", "disconnect", &n2, &c],
        vec!["network", "disconnect", "-f", "nonet", "nosuch"],
        vec!["network", "prune", "-f", "--filter", "bogus=1"],
        vec!["network", "prune", "-f", "--filter", "label=nosuchlabel"],
    ] {
        same(&d, &args, &mut f);
    }
    for args in [
        &["network", "--help"][..],
        &["network"],
        &["network", "create", "--help"],
        &["network", "ls", "--help"],
        &["network", "list", "--help"],
        &["network", "inspect", "--help"],
        &["network", "rm", "--help"],
        &["network", "prune", "--help"],
        &["network", "connect", "--help"],
        &["network", "disconnect", "--help"],
    ] {
        let (want, got) = (d.docker(args), d.berth(args));
        let fix = |b: &[u8]| {
            text(b)
                .replace("docker", "berth")
                .replace("docs.berth.com", "docs.docker.com")
        };
        if fix(&want.stdout) != text(&got.stdout) || fix(&want.stderr) != text(&got.stderr) {
            f.push(format!(
                "`{}`\n--- docker\n{}{}\n--- berth\n{}{}",
                args.join(" "),
                fix(&want.stdout),
                fix(&want.stderr),
                text(&got.stdout),
                text(&got.stderr)
            ));
        }
    }

    // connect/disconnect: docker on one network, berth on the other, then compare the state.
    ok(
        &d.docker(&["network", "connect", "--alias", "x1", &n2, &c]),
        "docker connect",
    );
    same(&d, &["network", "connect", &n2, &c], &mut f); // already connected: same error
    let o = d.berth(&["network", "disconnect", &n2, &c]);
    assert_eq!(ok(&o, "berth disconnect"), "");
    let o = d.berth(&[
        "network",
        "connect",
        "--alias",
        "x2",
        "--ip",
        &format!("10.{third}.2.130"),
        &n2,
        &c,
    ]);
    assert_eq!(ok(&o, "berth connect"), "");
    let o = d.docker(&["inspect", "-f", &format!("{{{{json (index .NetworkSettings.Networks \"{n2}\").Aliases}}}} {{{{(index .NetworkSettings.Networks \"{n2}\").IPAMConfig.IPv4Address}}}}"), &c]);
    // (The daemon adds the container's short ID as an alias of its own.)
    let got = ok(&o, "inspect");
    assert!(
        got.starts_with("[\"x2\"") && got.ends_with(&format!("] 10.{third}.2.130\n")),
        "{got}"
    );
    same(&d, &["network", "disconnect", "-f", &n2, &c], &mut f);

    // Published ports of a running container: ps's Ports column and `port`.
    let r = format!("bntr{tag}");
    ok(
        &d.docker(&[
            "run",
            "-d",
            "--name",
            &r,
            "--network",
            &n1,
            "-p",
            "127.0.0.1::80",
            "-p",
            "127.0.0.1::81/udp",
            "--expose",
            "99",
            "busybox",
            "/bin/busybox",
            "sleep",
            "60",
        ]),
        "run with ports",
    );
    for args in [
        vec![
            "ps",
            "--filter",
            &format!("name={r}"),
            "--format",
            "{{.Ports}}",
        ],
        vec!["port", &r],
        vec!["port", &r, "80"],
        vec!["port", &r, "81/udp"],
        vec!["port", &r, "99"],
    ] {
        same(&d, &args, &mut f);
    }
    ok(&d.docker(&["rm", "-f", &r]), "rm running container");

    // rm of several, then prune: each CLI removes its own.
    ok(&d.docker(&["rm", &c]), "rm container");
    let o = d.berth(&["network", "rm", &n1, "nosuch", &n2]);
    assert_eq!(text(&o.stdout), format!("{n1}\n{n2}\n"));
    assert_eq!(
        text(&o.stderr),
        "Error response from daemon: network nosuch not found\nexit status 1\n"
    );
    assert_eq!(o.status.code(), Some(1));
    for (bin, name, sub) in [("docker", &n1, &sub1), ("berth", &n2, &sub2)] {
        let br = if bin == "docker" { &br1 } else { &br2 };
        let args = [
            "network",
            "create",
            "--subnet",
            sub,
            "--label",
            &format!("bnp{tag}={bin}"),
            "-o",
            &format!("com.docker.network.bridge.name={br}"),
            name,
        ];
        ok(&d.docker(&args), "create for prune");
    }
    let want = d.docker(&[
        "network",
        "prune",
        "-f",
        "--filter",
        &format!("label=bnp{tag}=docker"),
    ]);
    let got = d.berth(&[
        "network",
        "prune",
        "-f",
        "--filter",
        &format!("label=bnp{tag}=berth"),
    ]);
    assert_eq!(text(&want.stdout).replace(&n1, &n2), text(&got.stdout));
    assert_eq!(text(&got.stdout), format!("Deleted Networks:\n{n2}\n\n"));

    assert!(f.is_empty(), "{} differences:\n{}", f.len(), f.join("\n\n"));
}
