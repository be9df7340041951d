//! Networking end to end: real bridges, veths, namespaces and nftables rules of a throwaway
//! berthd, real traffic between containers and from the host over loopback. Each daemon has
//! its own bridge, subnets and table (see `Daemon`), and the tests check that nothing of ours
//! stays behind. Needs root, busybox-static, the docker CLI and nft; skipped otherwise.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_e2e::{Daemon, OutputExt, archive, have};

fn can_run() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root || !have("docker") || !have("nft") || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root, the docker CLI, nft and busybox-static");
        return false;
    }
    true
}

struct Fx {
    d: Daemon,
}

impl Fx {
    fn new(args: &[&str]) -> Fx {
        let d = Daemon::start_with(args);
        let tar = archive::busybox_rootfs();
        d.docker_stdin(&["import", "-", "busybox:latest"], Some(&tar))
            .ok();
        Fx { d }
    }
    fn out(&self, args: &[&str]) -> String {
        self.d.docker(args).ok().stdout_str().trim().to_owned()
    }
    fn ip(&self, name: &str) -> String {
        self.out(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            name,
        ])
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
    }
    fn pid(&self, name: &str) -> i32 {
        self.out(&["inspect", "-f", "{{.State.Pid}}", name])
            .parse()
            .unwrap_or(0)
    }
    fn clean(&self) {
        let ids = self.d.docker(&["ps", "-aq"]).stdout_str();
        let mut args = vec!["rm", "-f"];
        args.extend(ids.split_whitespace());
        // one call: the CLI removes them in parallel
        if args.len() > 2 {
            let _ = self.d.docker(&args);
        }
    }
}

impl Drop for Fx {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Nothing of this daemon's is left in the kernel: bridges, our nft table, netns files.
fn assert_clean(d: &Daemon, bridges: &[String]) {
    // the default network's bridge was given with -b: the harness's, it stays
    for b in bridges.iter().filter(|b| **b != d.bridge) {
        assert!(
            !Path::new("/sys/class/net").join(b).exists(),
            "bridge {b} left behind"
        );
    }
    for family in ["ip", "bridge"] {
        let t = std::process::Command::new("nft")
            .args(["list", "table", family, &d.nft_table()])
            .output()
            .unwrap();
        assert!(
            !t.status.success(),
            "table {family} {} left behind",
            d.nft_table()
        );
    }
    let ns = d.exec_root.join("netns");
    let left: Vec<_> = std::fs::read_dir(&ns)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "netns files left: {left:?}");
}

fn http_get(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn wait_http(addr: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(addr) {
            Ok(r) if r.contains(want) => return r,
            r if Instant::now() > deadline => panic!("GET {addr}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// An HTTP GET from inside a container (busybox-static's wget crashes in static glibc's NSS).
fn nc_get(ip: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} {port}")
}

const HTTPD: &str = "echo hello-from-httpd > /tmp/index.html && exec httpd -f -p 80 -h /tmp";

/// A free TCP port on the host (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn default_bridge_ports_nat_and_cleanup() {
    if !can_run() {
        return;
    }
    let mut fx = Fx::new(&[]);
    let port = free_port();
    let pub_arg = format!("127.0.0.1:{port}:80");
    fx.out(&[
        "run", "-d", "--name", "web", "-p", &pub_arg, "busybox", "sh", "-c", HTTPD,
    ]);
    let ip = fx.ip("web");
    assert!(
        ip.starts_with(fx.d.bip.trim_end_matches("1/24")),
        "{ip} not in {}",
        fx.d.bip
    );
    // from the host on 127.0.0.1
    wait_http(&format!("127.0.0.1:{port}"), "hello-from-httpd");
    // `port` and inspect report the binding
    assert_eq!(fx.out(&["port", "web", "80"]), format!("127.0.0.1:{port}"));
    // another container on the default bridge reaches it by address, and through the
    // published port on the gateway (hairpin)
    let gw = fx.d.bip.trim_end_matches("/24").to_owned();
    let got = fx.out(&["run", "--rm", "busybox", "sh", "-c", &nc_get(&ip, 80)]);
    assert!(got.contains("hello-from-httpd"), "{got}");
    let hp = free_port();
    let pub_all = format!("{hp}:80");
    fx.out(&[
        "run", "-d", "--name", "web2", "-p", &pub_all, "busybox", "sh", "-c", HTTPD,
    ]);
    wait_http(&format!("127.0.0.1:{hp}"), "hello-from-httpd");
    let got = fx.out(&["run", "--rm", "busybox", "sh", "-c", &nc_get(&gw, hp)]);
    assert!(got.contains("hello-from-httpd"), "{got}");

    // a port already taken: a clear error, and nothing half set up
    let r = fx.d.docker(&[
        "run", "-d", "--name", "clash", "-p", &pub_arg, "busybox", "sleep", "100",
    ]);
    assert!(!r.status.success());
    assert!(
        r.stderr_str().contains("port is already allocated"),
        "{}",
        r.stderr_str()
    );
    assert_eq!(
        fx.out(&["inspect", "-f", "{{.State.Running}}", "clash"]),
        "false"
    );
    let netns: Vec<_> = std::fs::read_dir(fx.d.exec_root.join("netns"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(netns.len(), 2, "{netns:?}");

    // -P publishes EXPOSEd ports on ephemeral host ports that `port` reports
    fx.out(&[
        "run", "-d", "--name", "pall", "--expose", "80", "-P", "busybox", "sh", "-c", HTTPD,
    ]);
    let p = fx.out(&["port", "pall", "80/tcp"]);
    let hostport = p.rsplit(':').next().unwrap().to_owned();
    assert!(hostport.parse::<u16>().unwrap() > 0, "{p}");
    wait_http(&format!("127.0.0.1:{hostport}"), "hello-from-httpd");

    // UDP: a socket inside the container's namespace answers on the published port
    let up = free_port();
    let udp_arg = format!("127.0.0.1:{up}:53/udp");
    fx.out(&[
        "run", "-d", "--name", "udp", "-p", &udp_arg, "busybox", "sleep", "100",
    ]);
    let pid = fx.pid("udp");
    let server = std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let s = UdpSocket::bind("0.0.0.0:53").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        s.send_to(&buf[..n], from).unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send_to(b"ping-udp", format!("127.0.0.1:{up}")).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping-udp");
    server.join().unwrap();

    // outbound NAT: the container's traffic leaves with the host's address
    let ruleset = std::process::Command::new("nft")
        .args(["list", "table", "ip", &fx.d.nft_table()])
        .output()
        .unwrap()
        .stdout_str();
    assert!(ruleset.contains("masquerade"), "{ruleset}");

    // --network none and host
    let none = fx.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(none.lines().count(), 1, "{none}");
    let host = fx.out(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    // the host's links (their number changes while other tests run: check the names)
    let names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("bt") && !n.starts_with("veth") && !n.starts_with("br-"))
        .collect();
    assert!(names.len() > 1);
    for n in &names {
        assert!(host.contains(&format!(": {n}:")), "{n} not in {host}");
    }

    // everything goes away with the containers and the daemon
    fx.clean();
    let bridges = fx.d.bridges();
    fx.d.stop();
    assert_clean(&fx.d, &bridges);
}

#[test]
fn user_networks_isolation_dns_and_modes() {
    if !can_run() {
        return;
    }
    let mut fx = Fx::new(&[]);
    let (s1, s2, s3) = (fx.d.subnet(), fx.d.subnet(), fx.d.subnet());
    fx.out(&[
        "network", "create", "--subnet", &s1, "--label", "t=1", "front",
    ]);
    fx.out(&["network", "create", "--subnet", &s2, "back"]);
    fx.out(&["network", "create", "--subnet", &s3, "--internal", "sealed"]);
    let ls = fx.out(&["network", "ls", "--format", "{{.Name}}"]);
    for n in ["bridge", "host", "none", "front", "back", "sealed"] {
        assert!(ls.lines().any(|l| l == n), "{n} missing from {ls}");
    }
    assert_eq!(
        fx.out(&["network", "ls", "-q", "--filter", "label=t=1"])
            .lines()
            .count(),
        1
    );
    let insp: serde_json::Value =
        serde_json::from_str(&fx.out(&["network", "inspect", "front"])).unwrap();
    assert_eq!(insp[0]["IPAM"]["Config"][0]["Subnet"], s1.as_str());

    fx.out(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--network-alias",
        "www",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    fx.out(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "back",
        "busybox",
        "sleep",
        "100",
    ]);
    let ip = fx.ip("web");
    assert!(
        ip.starts_with(s1.trim_end_matches("0/24")),
        "{ip} not in {s1}"
    );
    // same network: by name and by alias through the embedded DNS
    for host in ["web", "www", &ip] {
        let got = fx.out(&[
            "run",
            "--rm",
            "--network",
            "front",
            "busybox",
            "sh",
            "-c",
            &nc_get(host, 80),
        ]);
        assert!(got.contains("hello-from-httpd"), "{host}: {got}");
    }
    // another network: neither the name nor the address
    let r =
        fx.d.docker(&["exec", "other", "sh", "-c", &nc_get(&ip, 80)]);
    assert!(!r.stdout_str().contains("hello-from-httpd"));
    // (no lookup of "web" from there: a name not ours goes to the host's resolvers)
    // connect puts it on front: now it answers
    fx.out(&["network", "connect", "front", "other"]);
    let got = fx.out(&["exec", "other", "sh", "-c", &nc_get("web", 80)]);
    assert!(got.contains("hello-from-httpd"), "{got}");
    fx.out(&["network", "disconnect", "front", "other"]);
    let links = fx.out(&["exec", "other", "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 2, "{links}");
    // an internal network has no way out (no route, no NAT); inside it traffic flows
    let r = fx.d.docker(&[
        "run",
        "--rm",
        "--network",
        "sealed",
        "busybox",
        "ip",
        "route",
    ]);
    assert!(!r.stdout_str().contains("default"), "{}", r.stdout_str());
    // container:<name> shares the namespace (localhost)
    let got = fx.out(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "sh",
        "-c",
        &nc_get("127.0.0.1", 80),
    ]);
    assert!(got.contains("hello-from-httpd"), "{got}");
    // a network in use cannot go; unused ones are pruned
    let r = fx.d.docker(&["network", "rm", "front"]);
    assert!(!r.status.success());
    assert!(
        r.stderr_str().contains("active endpoints"),
        "{}",
        r.stderr_str()
    );
    let r = fx.d.docker(&["network", "rm", "bridge"]);
    assert!(r.stderr_str().contains("pre-defined"), "{}", r.stderr_str());
    fx.clean();
    let bridges = fx.d.bridges();
    assert!(bridges.len() >= 4, "{bridges:?}");
    let pruned = fx.out(&["network", "prune", "-f"]);
    for n in ["front", "back", "sealed"] {
        assert!(pruned.contains(n), "{pruned}");
    }
    for b in &bridges[1..] {
        assert!(!Path::new("/sys/class/net").join(b).exists(), "{b} left");
    }
    fx.d.stop();
    assert_clean(&fx.d, &bridges);
}

/// A busybox httpd `web` published on 127.0.0.1:<free port>, answering: (port, the -p value).
fn published_web(fx: &Fx) -> (u16, String) {
    let port = free_port();
    let pub_arg = format!("127.0.0.1:{port}:80");
    fx.out(&[
        "run", "-d", "--name", "web", "-p", &pub_arg, "busybox", "sh", "-c", HTTPD,
    ]);
    wait_http(&format!("127.0.0.1:{port}"), "hello-from-httpd");
    (port, pub_arg)
}

#[test]
fn daemon_restart_keeps_ports_and_kill9_recovers() {
    if !can_run() {
        return;
    }
    let mut fx = Fx::new(&[]);
    let (port, pub_arg) = published_web(&fx);
    fx.d.kill9();
    // the kernel keeps serving while the daemon is down
    wait_http(&format!("127.0.0.1:{port}"), "hello-from-httpd");
    fx.d.restart();
    wait_http(&format!("127.0.0.1:{port}"), "hello-from-httpd");
    // the port is still ours: nobody else gets it
    let r =
        fx.d.docker(&["run", "-d", "-p", &pub_arg, "busybox", "sleep", "5"]);
    assert!(!r.status.success(), "{}", r.stdout_str());
    assert_eq!(fx.out(&["port", "web", "80"]), format!("127.0.0.1:{port}"));
    fx.clean();
    let bridges = fx.d.bridges();
    fx.d.stop();
    assert_clean(&fx.d, &bridges);
}

/// A kill -9 that takes the background writes (a released sandbox, a removed container) with
/// it: the next start repairs them. No rule is left for the removed container's port and its
/// address is given again.
#[test]
fn kill9_losing_the_release_writes_is_repaired_at_restart() {
    if !can_run() {
        return;
    }
    let mut fx = Fx::new(&[]);
    let (port, _) = published_web(&fx);
    let ip = fx.ip("web");
    let state = fx.d.data_root.join("network").join("state.json");
    let before = std::fs::read(&state).unwrap();
    fx.out(&["rm", "-f", "web"]);
    fx.d.kill9();
    // as if nothing written after the removal had reached the page cache
    std::fs::write(&state, &before).unwrap();
    fx.d.restart();
    let rules = std::process::Command::new("nft")
        .args(["list", "table", "ip", &fx.d.nft_table()])
        .output()
        .unwrap()
        .stdout_str();
    assert!(!rules.contains(&format!("dport {port}")), "{rules}");
    fx.out(&["run", "-d", "--name", "web2", "busybox", "sleep", "60"]);
    assert_eq!(fx.ip("web2"), ip);
    fx.clean();
    let bridges = fx.d.bridges();
    fx.d.stop();
    assert_clean(&fx.d, &bridges);
}

#[test]
fn legacy_links_env_hosts_and_user_network_aliases() {
    if !can_run() {
        return;
    }
    let mut fx = Fx::new(&[]);
    fx.out(&[
        "run",
        "-d",
        "--name",
        "db",
        "-e",
        "SECRET=s3",
        "--expose",
        "5432",
        "--expose",
        "80/udp",
        "--expose",
        "8000-8002",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    let ip = fx.ip("db");
    // default bridge: Docker's legacy variables and an /etc/hosts entry
    let env = fx.out(&[
        "run",
        "--rm",
        "--name",
        "web",
        "--link",
        "db:my-db",
        "-e",
        "MY_DB_ENV_SECRET=mine",
        "busybox",
        "sh",
        "-c",
        "env; cat /etc/hosts",
    ]);
    for want in [
        format!("MY_DB_PORT=udp://{ip}:80"),
        format!("MY_DB_PORT_5432_TCP=tcp://{ip}:5432"),
        format!("MY_DB_PORT_5432_TCP_ADDR={ip}"),
        "MY_DB_PORT_5432_TCP_PORT=5432".to_owned(),
        "MY_DB_PORT_5432_TCP_PROTO=tcp".to_owned(),
        format!("MY_DB_PORT_80_UDP_ADDR={ip}"),
        // a run of exposed ports, as dockerd names it (keyed by its first port)
        format!("MY_DB_PORT_8000_TCP_START=tcp://{ip}:8000"),
        format!("MY_DB_PORT_8000_TCP_END=tcp://{ip}:8002"),
        "MY_DB_PORT_8000_TCP_PORT_START=8000".to_owned(),
        "MY_DB_PORT_8000_TCP_PORT_END=8002".to_owned(),
        format!("MY_DB_PORT_8001_TCP=tcp://{ip}:8001"),
        "MY_DB_NAME=/web/my-db".to_owned(),
        // the container's own value wins over the link's
        "MY_DB_ENV_SECRET=mine".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing:\n{env}");
    }
    assert!(
        env.lines()
            .any(|l| l.starts_with(&format!("{ip}\tmy-db ")) && l.ends_with(" db")),
        "{env}"
    );
    fx.out(&[
        "create", "--name", "w2", "--link", "db:my-db", "busybox", "true",
    ]);
    assert_eq!(
        fx.out(&["inspect", "-f", "{{json .HostConfig.Links}}", "w2"]),
        r#"["/db:/w2/my-db"]"#
    );
    assert_eq!(
        fx.out(&["inspect", "-f", "{{json .HostConfig.Links}}", "db"]),
        "null"
    );
    // user network: a link is a DNS alias for the linking container only
    let s = fx.d.subnet();
    fx.out(&["network", "create", "--subnet", &s, "n1"]);
    fx.out(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "n1",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    let got = fx.out(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "--link",
        "srv:back-end",
        "busybox",
        "sh",
        "-c",
        &nc_get("back-end", 80),
    ]);
    assert!(got.contains("hello-from-httpd"), "{got}");
    let r = fx.d.docker(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "busybox",
        "sh",
        "-c",
        &nc_get("back-end", 80),
    ]);
    assert!(!r.stdout_str().contains("hello-from-httpd"));
}

/// dockerd 20.10's checks of `--link` on the default bridge: a missing target is refused at
/// create (400), a stopped one at start, and links do not go with host or container networking.
#[test]
fn links_to_missing_or_stopped_containers_are_refused_like_dockerd() {
    if !can_run() {
        return;
    }
    let fx = Fx::new(&[]);
    let r =
        fx.d.docker(&["create", "--link", "nope:x", "busybox", "true"]);
    assert!(!r.status.success());
    assert!(
        r.stderr_str()
            .contains("could not get container for nope: No such container: nope"),
        "{}",
        r.stderr_str()
    );
    let r = fx.d.api(
        "POST",
        "/containers/create",
        Some(br#"{"Image":"busybox","HostConfig":{"Links":["nope:x"]}}"#),
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    fx.out(&["create", "--name", "stopped", "busybox", "true"]);
    let r = fx.d.docker(&[
        "run",
        "--name",
        "web",
        "--link",
        "stopped:x",
        "busybox",
        "true",
    ]);
    assert!(!r.status.success());
    assert!(
        r.stderr_str()
            .contains("Cannot link to a non running container: /stopped AS /web/x"),
        "{}",
        r.stderr_str()
    );
    // nothing of the failed start stays: no sandbox, the container is still there, created
    assert_eq!(
        fx.out(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.NetworkSettings.SandboxKey}}",
            "web"
        ]),
        "created"
    );
    for (mode, word) in [
        ("host", "host type networking"),
        ("container:stopped", "container type network"),
    ] {
        let r = fx.d.docker(&[
            "create",
            "--network",
            mode,
            "--link",
            "stopped:x",
            "busybox",
            "true",
        ]);
        assert!(!r.status.success(), "--network {mode}");
        assert!(
            r.stderr_str().contains(&format!(
                "conflicting options: {word} can't be used with links"
            )),
            "{}",
            r.stderr_str()
        );
    }
    // once the target runs, the link works
    fx.out(&["rm", "-f", "stopped", "web"]);
    fx.out(&["run", "-d", "--name", "stopped", "busybox", "sleep", "60"]);
    let hosts = fx.out(&[
        "run",
        "--rm",
        "--link",
        "stopped:x",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains("\tx "), "{hosts}");
}

#[test]
fn mac_address_on_the_veth_and_in_inspect() {
    if !can_run() {
        return;
    }
    let mut fx = Fx::new(&[]);
    let mac = "02:42:ac:11:fe:01";
    // docker 28 sends it per endpoint (API >= 1.44)
    fx.out(&[
        "run",
        "-d",
        "--name",
        "m1",
        "--mac-address",
        mac,
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(
        fx.out(&["exec", "m1", "cat", "/sys/class/net/eth0/address"]),
        mac
    );
    assert_eq!(
        fx.out(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.MacAddress}} {{.NetworkSettings.Networks.bridge.MacAddress}}",
            "m1",
        ]),
        format!("{mac} {mac}")
    );
    // older clients send Config.MacAddress: it goes to the main network's endpoint
    let s = fx.d.subnet();
    fx.out(&["network", "create", "--subnet", &s, "macnet"]);
    let mac2 = "02:42:0a:00:00:99";
    let body = format!(
        r#"{{"Image":"busybox","Cmd":["sleep","60"],"MacAddress":"{mac2}","HostConfig":{{"NetworkMode":"macnet"}}}}"#
    );
    let r = fx.d.api(
        "POST",
        "/v1.41/containers/create?name=m2",
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    fx.out(&["start", "m2"]);
    assert_eq!(
        fx.out(&["exec", "m2", "cat", "/sys/class/net/eth0/address"]),
        mac2
    );
    assert_eq!(
        fx.out(&["inspect", "-f", "{{.Config.MacAddress}}", "m2"]),
        mac2
    );
    // bad input: 400 with a message, nothing created
    let r =
        fx.d.docker(&["create", "--mac-address", "zz:42", "busybox", "true"]);
    assert!(!r.status.success());
    assert!(r.stderr_str().contains("zz:42"), "{}", r.stderr_str());
    let body = br#"{"Image":"busybox","MacAddress":"02:42:ac:11:fe:02","HostConfig":{"NetworkMode":"host"}}"#;
    let r = fx.d.api("POST", "/v1.41/containers/create", Some(body));
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(fx.out(&["ps", "-aq"]).lines().count(), 2);
}

/// A fake "internet" for outbound NAT tests: a netns of the test's own, joined to the host by
/// a veth pair on a /24 of its own (host .1, netns .2, default route back via .1), with a TCP
/// server in it that answers each connection with the peer address it sees. Removed on drop,
/// so a failing test leaves nothing behind.
struct FakeInternet {
    ns: String,
    host_if: String,
    host_ip: String,
    server: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _subnet: berth_e2e::Subnet,
}

fn sh(cmd: &[&str]) {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl FakeInternet {
    fn new() -> FakeInternet {
        use std::sync::atomic::{AtomicBool, Ordering};
        let subnet = berth_e2e::Subnet::claim();
        let p = subnet.prefix3();
        // the /24 is ours machine-wide, so names made of it are unique (and <= 15 bytes)
        let tag = p.trim_start_matches("10.").replace('.', "x");
        let mut fi = FakeInternet {
            ns: format!("berth-inet-{tag}"),
            host_if: format!("bi{tag}"),
            host_ip: format!("{p}.1"),
            server: format!("{p}.2:8080"),
            stop: std::sync::Arc::new(AtomicBool::new(false)),
            thread: None,
            _subnet: subnet,
        };
        let peer = format!("{}p", fi.host_if);
        sh(&["ip", "netns", "add", &fi.ns]);
        sh(&[
            "ip",
            "link",
            "add",
            &fi.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &fi.ns,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{p}.1/24"),
            "dev",
            &fi.host_if,
        ]);
        sh(&["ip", "link", "set", &fi.host_if, "up"]);
        for c in [
            vec!["addr", "add", &format!("{p}.2/24"), "dev", &peer],
            vec!["link", "set", &peer, "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", &fi.host_ip],
        ] {
            let mut a = vec!["ip", "-n", fi.ns.as_str()];
            a.extend(c.iter().map(|s| -> &str { s }));
            sh(&a);
        }
        let ns = std::fs::File::open(format!("/run/netns/{}", fi.ns)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = fi.stop.clone();
        let addr = fi.server.clone();
        fi.thread = Some(std::thread::spawn(move || {
            // SAFETY: setns on this thread only (CLONE_NEWNET), with a valid fd.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            let l = if r == 0 {
                std::net::TcpListener::bind(&addr)
            } else {
                Err(std::io::Error::last_os_error())
            };
            let l = match l {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = l.set_nonblocking(true);
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.write_all(format!("from {}\n", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }));
        rx.recv().unwrap().expect("server in the fake internet");
        fi
    }

    /// What the server answers a container (`from <address it saw>`), or "" if unreachable.
    fn reach(&self, fx: &Fx, network: &str) -> String {
        let (ip, port) = self.server.split_once(':').unwrap();
        let r = fx.d.docker(&[
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "sh",
            "-c",
            &format!("nc -w 3 {ip} {port} </dev/null"),
        ]);
        r.stdout_str().trim().to_owned()
    }
}

impl Drop for FakeInternet {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // the netns dies with its last reference: its end of the veth pair, then ours, go
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
        if Path::new("/sys/class/net").join(&self.host_if).exists() {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.host_if])
                .status();
        }
    }
}

#[test]
fn outbound_nat_through_a_fake_internet() {
    if !can_run() || !have("ip") {
        return;
    }
    let inet = FakeInternet::new();
    let host = format!("from {}", inet.host_ip);
    let mut fx = Fx::new(&[]);
    // default bridge and a user network: masqueraded behind the host's address
    assert_eq!(inet.reach(&fx, "bridge"), host);
    let (s1, s2, s3) = (fx.d.subnet(), fx.d.subnet(), fx.d.subnet());
    fx.out(&["network", "create", "--subnet", &s1, "out"]);
    assert_eq!(inet.reach(&fx, "out"), host);
    // --internal: no way out
    fx.out(&["network", "create", "--subnet", &s2, "--internal", "sealed"]);
    assert_eq!(inet.reach(&fx, "sealed"), "");
    // no masquerade: the server sees the container's own address
    fx.out(&[
        "network",
        "create",
        "--subnet",
        &s3,
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "plain",
    ]);
    let got = inet.reach(&fx, "plain");
    assert!(
        got.starts_with(&format!("from {}", s3.trim_end_matches("0/24"))),
        "{got}"
    );
    drop(fx);

    let fx = Fx::new(&["--ip-masq=false"]);
    let got = inet.reach(&fx, "bridge");
    let prefix = fx.d.bip.trim_end_matches("1/24").to_owned();
    assert!(got.starts_with(&format!("from {prefix}")), "{got}");
}

/// docker-compose 1.29 (Debian's package) against the test daemon.
fn compose(d: &Daemon, dir: &Path, project: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker-compose")
        .args(["-p", project, "-f"])
        .arg(dir.join("docker-compose.yml"))
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn docker_compose_two_services_by_name() {
    if !can_run() || !have("docker-compose") {
        return;
    }
    let fx = Fx::new(&[]);
    let dir = fx.d.dir.join("compose");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"version: "3"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hello-from-compose > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]
  client:
    image: busybox
    depends_on: [web]
    command: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 80 && break; sleep 0.5; done; exec sleep 60"]
"#,
    )
    .unwrap();
    let project = format!("bc{}", std::process::id());
    let up = compose(&fx.d, &dir, &project, &["up", "-d"]);
    up.ok();
    let ps = compose(&fx.d, &dir, &project, &["ps"]);
    let ps_out = ps.ok().stdout_str();
    for s in ["web_1", "client_1"] {
        assert!(
            ps_out.lines().any(|l| l.contains(s) && l.contains("Up")),
            "{s} not up:\n{ps_out}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let logs = compose(&fx.d, &dir, &project, &["logs", "--no-color", "client"]);
        let out = logs.ok().stdout_str();
        if out.contains("hello-from-compose") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "client never reached web:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let net = format!("{project}_default");
    assert!(
        fx.out(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|l| l == net)
    );
    compose(&fx.d, &dir, &project, &["down", "-t", "1"]).ok();
    let nets = fx.out(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.lines().any(|l| l == net), "{nets}");
    assert_eq!(fx.out(&["ps", "-aq"]), "");
}

/// Acceptance: N containers on one user network start and resolve each other by name. They
/// are created and started over the API from 4 threads (the CLI's own start-up would dominate),
/// then two of them, the first and the last, ping every other one by name. The start time of
/// each quarter is printed: the per-container cost must not grow with N.
fn many_on_one_network(n: usize) {
    let mut fx = Fx::new(&[]);
    let s = fx.d.subnet();
    fx.out(&["network", "create", "--subnet", &s, "many"]);
    let t0 = Instant::now();
    let sock = fx.d.sock.clone();
    let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let sock = sock.clone();
            let started = started.clone();
            std::thread::spawn(move || {
                for i in (w..n).step_by(4) {
                    let body = br#"{"Image":"busybox","Cmd":["sleep","600"],"HostConfig":{"NetworkMode":"many"}}"#;
                    let r = berth_e2e::http::request(
                        &sock,
                        "POST",
                        &format!("/containers/create?name=m{i}"),
                        &[("Content-Type", "application/json")],
                        Some(body),
                    )
                    .unwrap();
                    assert_eq!(r.status, 201, "create m{i}: {}", String::from_utf8_lossy(&r.body));
                    let r = berth_e2e::http::request(
                        &sock,
                        "POST",
                        &format!("/containers/m{i}/start"),
                        &[],
                        None,
                    )
                    .unwrap();
                    assert_eq!(r.status, 204, "start m{i}: {}", String::from_utf8_lossy(&r.body));
                    started.lock().unwrap().push(t0.elapsed());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a starter thread failed");
    }
    let mut done = started.lock().unwrap().clone();
    done.sort();
    let quarters: Vec<String> = (0..4)
        .map(|q| {
            let a = if q == 0 {
                Duration::ZERO
            } else {
                done[q * n / 4 - 1]
            };
            format!("{:?}", done[(q + 1) * n / 4 - 1] - a)
        })
        .collect();
    eprintln!(
        "{n} containers started in {:?} (each quarter: {})",
        t0.elapsed(),
        quarters.join(", ")
    );
    let script = format!(
        "for i in $(seq 0 {}); do ping -c 1 -W 2 m$i >/dev/null 2>&1 || echo unreachable m$i; done; echo done",
        n - 1
    );
    for from in ["m0", &format!("m{}", n - 1)] {
        let out = fx.out(&["exec", from, "sh", "-c", &script]);
        assert_eq!(out, "done", "from {from}:\n{out}");
    }
    eprintln!("{n} containers started and resolved in {:?}", t0.elapsed());
    let t1 = Instant::now();
    fx.clean();
    eprintln!("{n} containers removed in {:?}", t1.elapsed());
    fx.out(&["network", "rm", "many"]);
    let bridges = fx.d.bridges();
    fx.d.stop();
    assert_clean(&fx.d, &bridges);
}

/// The issue's acceptance: 200 on one network (about 30 s here in a debug build at load 10,
/// per-container start time flat across the quarters).
#[test]
fn two_hundred_containers_on_one_network() {
    if !can_run() {
        return;
    }
    many_on_one_network(200);
}

#[test]
fn icc_off_isolates_containers_of_one_bridge() {
    if !can_run() {
        return;
    }
    let mut fx = Fx::new(&["--icc=false"]);
    let (s1, s2) = (fx.d.subnet(), fx.d.subnet());
    fx.out(&[
        "network",
        "create",
        "--subnet",
        &s1,
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "closed",
    ]);
    fx.out(&["network", "create", "--subnet", &s2, "open"]);
    let ping = |net: &str, ip: &str| {
        fx.d.docker(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            ip,
        ])
        .status
        .success()
    };
    for net in ["bridge", "closed", "open"] {
        fx.out(&[
            "run",
            "-d",
            "--name",
            &format!("t-{net}"),
            "--network",
            net,
            "busybox",
            "sleep",
            "60",
        ]);
    }
    // the endpoint's gateway (the network's IPAM config shows none for a given subnet)
    let gw = |net: &str| {
        fx.out(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}",
            &format!("t-{net}"),
        ])
    };
    // the default bridge (--icc=false) and the closed network: no container to container
    // traffic, the gateway still answers
    for net in ["bridge", "closed"] {
        assert!(
            !ping(net, &fx.ip(&format!("t-{net}"))),
            "{net}: containers reach each other"
        );
        assert!(ping(net, &gw(net)), "{net}: gateway unreachable");
    }
    assert!(
        ping("open", &fx.ip("t-open")),
        "open network blocks containers"
    );
    let rules = std::process::Command::new("nft")
        .args(["list", "table", "bridge", &fx.d.nft_table()])
        .output()
        .unwrap();
    assert!(rules.status.success());
    fx.clean();
    fx.out(&["network", "rm", "closed", "open"]);
}

#[test]
fn a_missing_non_default_bridge_is_refused_like_dockerd() {
    if !can_run() {
        return;
    }
    let dir = berth_e2e::scratch("nobr");
    std::fs::write(dir.join("daemon.json"), "{}").unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    let out = std::process::Command::new(berth_e2e::bin_dir().join("berthd"))
        .args([
            "--data-root",
            &p("data"),
            "--exec-root",
            &p("exec"),
            "--pidfile",
            &p("pid"),
        ])
        .args([
            "-H",
            &format!("unix://{}", p("s.sock")),
            "--config-file",
            &p("daemon.json"),
        ])
        .args(["-b", "nosuchbr0"])
        .output()
        .unwrap();
    berth_e2e::cleanup_dir(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bridge device with non default name nosuchbr0 must be created manually"),
        "{err}"
    );
    assert!(!Path::new("/sys/class/net/nosuchbr0").exists());
}

/// `network create --ipv6`: each container gets an address of the IPv6 subnet and a default
/// route via the bridge's, the embedded DNS answers AAAA, traffic flows over IPv6 between
/// containers and from the host; elsewhere IPv6 is off in the container, as dockerd does.
#[test]
fn ipv6_user_network_addresses_dns_and_traffic() {
    if !can_run() {
        return;
    }
    let mut fx = Fx::new(&[]);
    let v4 = fx.d.subnet();
    // a prefix of this test's own (fd00::/64 may be the host's)
    let pid = std::process::id();
    let prefix = format!("fd42:{:x}:{:x}:1", pid >> 16, pid & 0xffff);
    let v6 = format!("{prefix}::/64");
    fx.out(&[
        "network", "create", "--ipv6", "--subnet", &v4, "--subnet", &v6, "n6",
    ]);
    assert_eq!(
        fx.out(&[
            "network",
            "inspect",
            "-f",
            "{{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}},{{.Gateway}} {{end}}",
            "n6",
        ]),
        // as dockerd: no gateway shown for a given subnet without one
        format!("true {v4}, {v6},")
    );
    fx.out(&[
        "run",
        "-d",
        "--name",
        "v6a",
        "--network",
        "n6",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    assert_eq!(
        fx.out(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}/{{.GlobalIPv6PrefixLen}} {{.IPv6Gateway}}{{end}}",
            "v6a",
        ]),
        format!("{prefix}::2/64 {prefix}::1")
    );
    let out = fx.out(&[
        "run",
        "--rm",
        "--network",
        "n6",
        "busybox",
        "sh",
        "-c",
        "nslookup -type=aaaa v6a 127.0.0.11; ping -6 -c 1 -W 3 v6a && echo pinged; ip -6 route; cat /etc/hosts",
    ]);
    assert!(out.contains(&format!("{prefix}::3\t")), "{out}");
    assert!(out.contains(&format!("{prefix}::2")), "{out}");
    assert!(out.contains("pinged"), "{out}");
    assert!(out.contains(&format!("default via {prefix}::1")), "{out}");
    // the host reaches the container through the bridge
    wait_http(&format!("[{prefix}::2]:80"), "hello-from-httpd");
    // --ip6 picks the address
    let ip6 = format!("{prefix}::99");
    let out = fx.out(&[
        "run",
        "--rm",
        "--network",
        "n6",
        "--ip6",
        &ip6,
        "busybox",
        "ip",
        "-6",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(out.contains(&format!("{ip6}/64")), "{out}");
    let inspect = fx.out(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.IPv6Address}}{{end}}",
        "n6",
    ]);
    assert_eq!(inspect, format!("{prefix}::2/64"));
    // the default bridge: no IPv6 in the container
    assert_eq!(
        fx.out(&[
            "run",
            "--rm",
            "busybox",
            "cat",
            "/proc/sys/net/ipv6/conf/all/disable_ipv6",
        ]),
        "1"
    );
    // dockerd 20.10 has no default IPv6 pools
    let r = fx.d.docker(&["network", "create", "--ipv6", "n7"]);
    assert!(!r.status.success());
    assert!(
        r.stderr_str()
            .contains("could not find an available, non-overlapping IPv6 address pool"),
        "{}",
        r.stderr_str()
    );
    fx.out(&["rm", "-f", "v6a"]);
    fx.out(&["network", "rm", "n6"]);
    let bridges = fx.d.bridges();
    fx.d.stop();
    assert_clean(&fx.d, &bridges);
}

/// `network create --ipv6` against the reference dockerd 20.10: the same refusal without an
/// IPv6 subnet, and the same EnableIPv6/IPAM view of a network with both pools.
#[test]
fn ipv6_network_create_like_the_reference_dockerd() {
    if !can_run() {
        return;
    }
    let Some(refd) = berth_e2e::RefDocker::start() else {
        return;
    };
    let mut fx = Fx::new(&[]);
    let pid = std::process::id();
    let nopool = |out: std::process::Output| {
        assert!(!out.status.success());
        out.stderr_str()
            .lines()
            .find(|l| l.contains("Error response from daemon"))
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        nopool(fx.d.docker(&["network", "create", "--ipv6", "n7"])),
        nopool(refd.docker(&["network", "create", "--ipv6", "n7"]))
    );
    // each daemon its own subnets: their bridges share the host's routes
    let view = |docker: &dyn Fn(&[&str]) -> std::process::Output, v4: &str, v6: &str| {
        docker(&[
            "network", "create", "--ipv6", "--subnet", v4, "--subnet", v6, "n6",
        ])
        .ok();
        let out = docker(&[
            "network",
            "inspect",
            "-f",
            "{{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}},{{.Gateway}} {{end}}",
            "n6",
        ]);
        docker(&["network", "rm", "n6"]).ok();
        out.ok()
            .stdout_str()
            .replace(v4, "V4")
            .replace(v6, "V6")
            .trim()
            .to_owned()
    };
    let (a4, b4) = (fx.d.subnet(), fx.d.subnet());
    let a6 = format!("fd43:{:x}:{:x}:1::/64", pid >> 16, pid & 0xffff);
    let b6 = format!("fd43:{:x}:{:x}:2::/64", pid >> 16, pid & 0xffff);
    let ours = view(&|a: &[&str]| fx.d.docker(a), &a4, &a6);
    let theirs = view(&|a: &[&str]| refd.docker(a), &b4, &b6);
    assert_eq!(ours, theirs);
    assert_eq!(ours, "true V4, V6,");
}
