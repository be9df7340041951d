//! Key parts of the generated spec compared with what Docker 28 puts in config.json.

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn input(root: &Path) -> ContainerSpecInput {
    ContainerSpecInput {
        id: "abc123".into(),
        rootfs: root.to_path_buf(),
        args: s(&["sh"]),
        hostname: "abc123".into(),
        cgroup_v2: Some(false),
        ..Default::default()
    }
}

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(d.path().join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    d
}

#[test]
fn entrypoint_cmd_rules() {
    let ep = s(&["/entry.sh"]);
    let cmd = s(&["serve", "--port", "80"]);
    // image only
    assert_eq!(
        entrypoint_cmd(&ep, &cmd, None, None),
        s(&["/entry.sh", "serve", "--port", "80"])
    );
    // user cmd replaces image cmd, keeps entrypoint
    assert_eq!(
        entrypoint_cmd(&ep, &cmd, None, Some(&s(&["x"]))),
        s(&["/entry.sh", "x"])
    );
    // user entrypoint resets image cmd
    assert_eq!(
        entrypoint_cmd(&ep, &cmd, Some(&s(&["sh"])), None),
        s(&["sh"])
    );
    assert_eq!(
        entrypoint_cmd(&ep, &cmd, Some(&s(&["sh"])), Some(&s(&["-c", "true"]))),
        s(&["sh", "-c", "true"])
    );
    // --entrypoint "" clears the entrypoint but keeps the image cmd
    assert_eq!(entrypoint_cmd(&ep, &cmd, Some(&s(&[""])), None), cmd);
    assert_eq!(
        entrypoint_cmd(&ep, &cmd, Some(&[]), Some(&s(&["ls"]))),
        s(&["ls"])
    );
    // empty user cmd = none given
    assert_eq!(entrypoint_cmd(&[], &cmd, None, Some(&[])), cmd);
}

#[test]
fn docker_defaults() {
    let r = rootfs();
    let mut cfg = input(r.path());
    cfg.hosts_path = Some("/x/hosts".into());
    cfg.hostname_path = Some("/x/hostname".into());
    cfg.resolv_conf_path = Some("/x/resolv.conf".into());
    let spec = container_spec(&cfg).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_ref().unwrap(),
        Path::new("/berth/abc123")
    );
    assert_eq!(linux.masked_paths().as_ref().unwrap(), &s(&MASKED_PATHS));
    assert_eq!(
        linux.readonly_paths().as_ref().unwrap(),
        &s(&READONLY_PATHS)
    );
    assert!(linux.seccomp().is_some());
    let ns: Vec<_> = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    use LinuxNamespaceType::*;
    assert_eq!(ns, vec![Pid, Ipc, Uts, Mount, Network]); // no cgroupns on v1

    let p = spec.process().as_ref().unwrap();
    let caps = p.capabilities().as_ref().unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
    assert_eq!(caps.effective(), caps.bounding());
    assert!(caps.inheritable().is_none() && caps.ambient().is_none());
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!(
        p.env().as_ref().unwrap(),
        &s(&[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=abc123",
            "HOME=/root"
        ])
    );
    assert_eq!(p.terminal(), Some(false));
    assert!(p.no_new_privileges().is_none());
    assert!(p.rlimits().as_ref().unwrap().is_empty());
    assert_eq!(spec.hostname().as_deref(), Some("abc123"));

    let mounts = spec.mounts().as_ref().unwrap();
    let dests: Vec<_> = mounts
        .iter()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        dests,
        s(&[
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm",
            "/etc/resolv.conf",
            "/etc/hostname",
            "/etc/hosts"
        ])
    );
    let shm = &mounts[6];
    assert!(
        shm.options()
            .as_ref()
            .unwrap()
            .contains(&"size=67108864".to_string())
    );
    assert!(
        mounts[3]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string())
    );
    assert_eq!(
        mounts[7].source().as_deref(),
        Some(Path::new("/x/resolv.conf"))
    );

    let devs = linux.devices().as_ref().unwrap();
    assert_eq!(devs.len(), 6);
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert!(!rules[0].allow() && rules[0].access().as_deref() == Some("rwm"));
    assert!(linux.resources().as_ref().unwrap().memory().is_none());

    // round-trips through JSON as libcontainer will read it
    let json = serde_json::to_string(&spec).unwrap();
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.linux().as_ref().unwrap().cgroups_path(),
        linux.cgroups_path()
    );
}

#[test]
fn privileged_and_security_opts() {
    let r = rootfs();
    let mut cfg = input(r.path());
    cfg.privileged = true;
    let spec = container_spec(&cfg).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    let p = spec.process().as_ref().unwrap();
    assert_eq!(
        p.capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .as_ref()
            .unwrap()
            .len(),
        caps::available().len()
    );
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert!(rules[0].allow());
    assert!(linux.devices().as_ref().unwrap().len() > 6); // host devices

    let mut cfg = input(r.path());
    cfg.seccomp = SeccompMode::Unconfined;
    cfg.no_new_privileges = true;
    cfg.readonly_rootfs = true;
    cfg.tty = true;
    cfg.env = s(&["PATH=/bin", "A=1", "HOSTNAME=override"]);
    let spec = container_spec(&cfg).unwrap();
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(
        p.env().as_ref().unwrap(),
        &s(&[
            "PATH=/bin",
            "HOSTNAME=override",
            "TERM=xterm",
            "A=1",
            "HOME=/root"
        ])
    );

    let mut cfg = input(r.path());
    cfg.seccomp = SeccompMode::ProfileJson(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod"],"action":"SCMP_ACT_ERRNO"}]}"#.into(),
    );
    let spec = container_spec(&cfg).unwrap();
    let sc = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
    assert_eq!(sc.syscalls().as_ref().unwrap().len(), 1);
    cfg.seccomp = SeccompMode::ProfilePath("/nonexistent/profile.json".into());
    assert!(matches!(container_spec(&cfg), Err(Error::InvalidInput(_))));
}

#[test]
fn resources_like_docker() {
    let r = rootfs();
    let mut cfg = input(r.path());
    cfg.resources = Resources {
        memory: 32 << 20,
        memory_reservation: 16 << 20,
        nano_cpus: 1_500_000_000,
        cpu_shares: 512,
        cpuset_cpus: "0".into(),
        pids_limit: Some(100),
        oom_kill_disable: true,
        ..Default::default()
    };
    cfg.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    cfg.shm_size = Some(1 << 20);
    cfg.cgroup_v2 = Some(true);
    cfg.network = NetworkMode::Path("/run/netns/x".into());
    let spec = container_spec(&cfg).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let res = linux.resources().as_ref().unwrap();
    let mem = res.memory().as_ref().unwrap();
    assert_eq!(mem.limit(), Some(32 << 20));
    assert_eq!(mem.swap(), Some(64 << 20)); // Docker: default swap = 2x memory
    assert_eq!(mem.reservation(), Some(16 << 20));
    assert_eq!(mem.disable_oom_killer(), Some(true));
    let cpu = res.cpu().as_ref().unwrap();
    assert_eq!((cpu.quota(), cpu.period()), (Some(150_000), Some(100_000)));
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!(cpu.cpus().as_deref(), Some("0"));
    assert_eq!(res.pids().as_ref().unwrap().limit(), 100);
    assert_eq!(linux.sysctl().as_ref().unwrap()["net.ipv4.ip_forward"], "1");
    let nss = linux.namespaces().as_ref().unwrap();
    let net = nss
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .unwrap();
    assert_eq!(net.path().as_deref(), Some(Path::new("/run/netns/x")));
    assert!(nss.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
    let shm = &spec.mounts().as_ref().unwrap()[6];
    assert!(
        shm.options()
            .as_ref()
            .unwrap()
            .contains(&"size=1048576".to_string())
    );

    cfg.resources = Resources {
        memory_swap: 100,
        ..Default::default()
    };
    assert!(container_spec(&cfg).is_err());
    cfg.resources = Resources {
        memory: 1 << 20,
        memory_swap: -1,
        ..Default::default()
    };
    let spec = container_spec(&cfg).unwrap();
    let mem = *spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .as_ref()
        .unwrap()
        .memory();
    assert_eq!(mem.unwrap().swap(), Some(-1));
}

#[test]
fn ulimits_never_above_own_hard_limit() {
    let r = rootfs();
    let mut cfg = input(r.path());
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    cfg.ulimits = vec![
        Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 1 << 30,
        },
        Ulimit {
            name: "core".into(),
            soft: 0,
            hard: 0,
        },
    ];
    let spec = container_spec(&cfg).unwrap();
    let rl = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
    assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
    assert_eq!(rl[0].hard(), hard.min(1 << 30));
    assert_eq!(rl[0].soft(), 1024u64.min(hard));
    assert_eq!((rl[1].soft(), rl[1].hard()), (0, 0));
    cfg.ulimits = vec![Ulimit {
        name: "bogus".into(),
        soft: 1,
        hard: 1,
    }];
    assert!(container_spec(&cfg).is_err());
}

#[test]
fn users_and_errors() {
    let r = rootfs();
    let mut cfg = input(r.path());
    cfg.user = "nobody".into();
    cfg.group_add = s(&["root"]);
    cfg.cwd = "/tmp".into();
    let spec = container_spec(&cfg).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!((p.user().uid(), p.user().gid()), (65534, 65534));
    // the primary group first, as dockerd (CVE-2022-36109), then --group-add
    assert_eq!(
        p.user().additional_gids().as_deref(),
        Some(&[65534u32, 0][..])
    );
    assert_eq!(p.cwd(), Path::new("/tmp"));
    cfg.user = "ghost".into();
    assert!(matches!(container_spec(&cfg), Err(Error::User(_))));
    cfg.user = String::new();
    cfg.cwd = "relative".into();
    assert!(matches!(container_spec(&cfg), Err(Error::InvalidInput(_))));
    cfg.cwd = String::new();
    cfg.cap_add = s(&["NOT_A_CAP"]);
    assert!(container_spec(&cfg).is_err());
    cfg.cap_add = s(&["SYS_ADMIN"]);
    let spec = container_spec(&cfg).unwrap();
    let sc = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    assert!(
        sc.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c.names().iter().any(|n| n == "mount"))
    );
}

#[test]
fn device_mapping_like_docker() {
    let r = rootfs();
    let mut cfg = input(r.path());
    cfg.devices = vec![DeviceMapping {
        path_on_host: "/dev/null".into(),
        path_in_container: "/dev/mynull".into(),
        cgroup_permissions: "rw".into(),
    }];
    let spec = container_spec(&cfg).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let d = linux
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .find(|d| d.path() == Path::new("/dev/mynull"))
        .unwrap();
    assert_eq!((d.major(), d.minor()), (1, 3));
    let rule = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(rule.allow());
    assert_eq!((rule.major(), rule.minor()), (Some(1), Some(3)));
    assert_eq!(rule.access().as_deref(), Some("rw"));

    cfg.devices[0].cgroup_permissions = "rwx".into();
    assert!(container_spec(&cfg).is_err());
    cfg.devices[0] = DeviceMapping {
        path_on_host: "/etc/hostname".into(),
        path_in_container: String::new(),
        cgroup_permissions: String::new(),
    };
    assert!(matches!(container_spec(&cfg), Err(Error::InvalidInput(_))));
}

#[test]
fn device_directory_expands_to_its_nodes() {
    use rustix::fs::{FileType, Mode, mknodat};
    let r = rootfs();
    let dir = tempfile::tempdir().unwrap();
    let mk = |p: &Path, maj: u32, min: u32| {
        mknodat(
            rustix::fs::CWD,
            p,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(maj, min),
        )
        .unwrap();
    };
    mk(&dir.path().join("null"), 1, 3);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    mk(&dir.path().join("sub/zero"), 1, 5);
    std::fs::write(dir.path().join("not-a-device"), "x").unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("link")).unwrap();
    let mut cfg = input(r.path());
    cfg.devices = vec![DeviceMapping {
        path_on_host: dir.path().to_path_buf(),
        path_in_container: "/dev/mine".into(),
        cgroup_permissions: "r".into(),
    }];
    let spec = container_spec(&cfg).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let mine: Vec<(String, i64, i64)> = linux
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|d| d.path().starts_with("/dev/mine"))
        .map(|d| (d.path().display().to_string(), d.major(), d.minor()))
        .collect();
    assert_eq!(
        mine,
        vec![
            ("/dev/mine/null".to_string(), 1, 3),
            ("/dev/mine/sub/zero".to_string(), 1, 5)
        ]
    );
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    let n = rules.len();
    assert_eq!(
        rules[n - 2..]
            .iter()
            .map(|r| (r.major(), r.minor(), r.access().clone()))
            .collect::<Vec<_>>(),
        vec![
            (Some(1), Some(3), Some("r".to_string())),
            (Some(1), Some(5), Some("r".to_string()))
        ]
    );
    // a directory without device nodes is refused like a file
    let empty = tempfile::tempdir().unwrap();
    cfg.devices[0].path_on_host = empty.path().to_path_buf();
    assert!(matches!(container_spec(&cfg), Err(Error::InvalidInput(_))));
}
