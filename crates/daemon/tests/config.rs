//! Flag and daemon.json handling, compared with dockerd's behaviour.

use berthd::config::{ConfigError, resolve};

fn with_file(json: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("daemon.json");
    std::fs::write(&p, json).unwrap();
    let s = p.display().to_string();
    (dir, s)
}

#[test]
fn defaults() {
    let (_d, f) = with_file("{}");
    let c = resolve(["berthd", "--config-file", &f]).unwrap();
    assert_eq!(c.hosts, vec!["unix:///run/berth/berth.sock"]);
    assert_eq!(c.data_root.to_str(), Some("/var/lib/berth"));
    assert_eq!(c.exec_root.to_str(), Some("/run/berth"));
    assert_eq!(c.pidfile.to_str(), Some("/run/berth/berthd.pid"));
    assert_eq!(c.default_runtime, "runc");
    assert!(!c.debug && !c.tls && !c.live_restore);
    assert!(c.cgroup_favordynmods);
}

#[test]
fn cgroup_favordynmods_opt_out() {
    let (_d, f) = with_file("{}");
    let c = resolve(["berthd", "--config-file", &f, "--cgroup-favordynmods=false"]).unwrap();
    assert!(!c.cgroup_favordynmods);
    let (_d, f) = with_file(r#"{"cgroup-favordynmods": false}"#);
    let c = resolve(["berthd", "--config-file", &f]).unwrap();
    assert!(!c.cgroup_favordynmods);
}

#[test]
fn flags() {
    let (_d, f) = with_file("{}");
    let c = resolve([
        "berthd",
        "--config-file",
        &f,
        "-H",
        "unix:///tmp/a.sock",
        "-H",
        "tcp://127.0.0.1:2376",
        "--tlsverify",
        "--tlscacert",
        "/c/ca.pem",
        "--tlscert",
        "/c/cert.pem",
        "--tlskey",
        "/c/key.pem",
        "--data-root",
        "/d",
        "--exec-root",
        "/e",
        "--pidfile",
        "/p",
        "-D",
        "--bip",
        "172.30.0.1/16",
        "-b",
        "br0",
        "--live-restore",
        "--storage-driver",
        "overlay2",
        "--add-runtime",
        "crun=/usr/bin/crun",
        "--default-runtime",
        "crun",
        "--insecure-registry",
        "myreg:5000",
        "--insecure-registry",
        "10.0.0.0/8",
        "--registry-mirror",
        "https://mirror.example",
    ])
    .unwrap();
    assert_eq!(c.hosts.len(), 2);
    assert!(c.tls && c.tlsverify);
    assert_eq!(c.tlscacert.to_str(), Some("/c/ca.pem"));
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.bridge.as_deref(), Some("br0"));
    assert_eq!(c.runtimes["crun"].0, "/usr/bin/crun");
    assert_eq!(c.default_runtime, "crun");
    assert_eq!(c.insecure_registries, vec!["myreg:5000", "10.0.0.0/8"]);
    assert_eq!(c.registry_mirrors, vec!["https://mirror.example"]);
}

#[test]
fn file_keys() {
    let (_d, f) = with_file(
        r#"{"hosts":["unix:///tmp/x.sock"],"data-root":"/dr","exec-root":"/er","pidfile":"/pf",
            "debug":true,"log-level":"warn","bip":"10.1.0.1/24","bridge":"none","live-restore":true,
            "storage-driver":"overlay2","default-runtime":"runc",
            "runtimes":{"kata":{"path":"/bin/kata","runtimeArgs":["--x"]}},
            "insecure-registries":["r:1"],"registry-mirrors":["https://m"],
            "tlsverify":false,"tlscacert":"/a","tlscert":"/b","tlskey":"/c"}"#,
    );
    let c = resolve(["berthd", "--config-file", &f]).unwrap();
    assert_eq!(c.hosts, vec!["unix:///tmp/x.sock"]);
    assert_eq!(c.data_root.to_str(), Some("/dr"));
    assert!(c.debug && c.live_restore);
    assert_eq!(
        c.runtimes["kata"],
        ("/bin/kata".to_owned(), vec!["--x".to_owned()])
    );
    assert_eq!(c.tlskey.to_str(), Some("/c"));
}

#[test]
fn unknown_key_is_refused_like_dockerd() {
    let (_d, f) = with_file(r#"{"data-root":"/x","no-such-thing":1}"#);
    let e = resolve(["berthd", "--config-file", &f])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the following directives don't match any configuration option: no-such-thing"),
        "{e}"
    );
}

#[test]
fn flag_and_file_conflict_like_dockerd() {
    let (_d, f) = with_file(r#"{"data-root":"/from-file","debug":false}"#);
    let e = resolve([
        "berthd",
        "--config-file",
        &f,
        "--data-root",
        "/from-flag",
        "-D",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "the following directives are specified both as a flag and in the configuration file"
        ),
        "{e}"
    );
    assert!(
        e.contains("data-root: (from flag: /from-flag, from file: /from-file)"),
        "{e}"
    );
    assert!(
        e.contains("debug: (from flag: true, from file: false)"),
        "{e}"
    );
}

#[test]
fn bad_input() {
    let (_d, f) = with_file("{}");
    let e = resolve(["berthd", "--config-file", &f, "--storage-driver", "vfs"]).unwrap_err();
    assert!(e.to_string().contains("driver not supported: vfs"), "{e}");
    let e = resolve(["berthd", "--config-file", &f, "--bogus"]).unwrap_err();
    assert!(matches!(e, ConfigError::Usage(_)));
    let e = resolve(["berthd", "--config-file", &f, "--add-runtime", "nopath"]).unwrap_err();
    assert!(e.to_string().contains("name=path"), "{e}");
    let e = resolve(["berthd", "--config-file", &f, "--add-runtime", "runc=/x"]).unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
    let e = resolve(["berthd", "--config-file", &f, "--bip", "nonsense"]).unwrap_err();
    assert!(e.to_string().contains("invalid bip"), "{e}");
    let e = resolve(["berthd", "--config-file", "/nonexistent/daemon.json"]).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/daemon.json"), "{e}");
    let (_d2, bad) = with_file("{not json");
    assert!(resolve(["berthd", "--config-file", &bad]).is_err());
}

#[test]
fn max_concurrent_downloads_and_uploads() {
    let (_d, f) = with_file("{}");
    let c = resolve(["berthd", "--config-file", &f]).unwrap();
    assert_eq!(c.max_concurrent_downloads, None);
    let c = resolve([
        "berthd",
        "--config-file",
        &f,
        "--max-concurrent-downloads",
        "2",
        "--max-concurrent-uploads",
        "0",
    ])
    .unwrap();
    assert_eq!(c.max_concurrent_downloads, Some(2));
    // dockerd takes 0 as "one at a time" too.
    assert_eq!(c.max_concurrent_uploads, Some(1));
    let err = resolve([
        "berthd",
        "--config-file",
        &f,
        "--max-concurrent-downloads",
        "-1",
    ])
    .unwrap_err();
    assert_eq!(err.to_string(), "invalid max concurrent downloads: -1");

    let (_d, f) = with_file(r#"{"max-concurrent-downloads": 7, "max-concurrent-uploads": 9}"#);
    let c = resolve(["berthd", "--config-file", &f]).unwrap();
    assert_eq!(
        (c.max_concurrent_downloads, c.max_concurrent_uploads),
        (Some(7), Some(9))
    );
    let e = resolve([
        "berthd",
        "--config-file",
        &f,
        "--max-concurrent-downloads",
        "3",
    ]);
    assert!(matches!(e, Err(ConfigError::File { .. })), "{e:?}");
}
