//! Container escape regressions: known runc/Docker breakouts replayed against berthd with real
//! containers. Each test states the class of CVE it keeps closed. Needs root, the docker CLI and
//! busybox-static; skipped otherwise.

use std::path::Path;
use std::process::Output;

use berth_e2e::{Fixture, OutputExt, archive, bin_dir, can_run_containers as can_run};

/// Prints the device:inode of the directory reached by walking `..` up from the cwd, then of
/// `/`. Inside the root the walk ends at `/` (its `..` is itself); from a cwd outside the
/// container's root it ends at some other root, so the two differ.
const CWD_CHECK: &str = "i=0; while [ $i -lt 40 ]; do cd -P .. 2>/dev/null; i=$((i+1)); done; \
                         stat -c %d:%i .; stat -c %d:%i /";

/// Fds open in the container process beyond stdio and the listing's own directory fd.
const FD_CHECK: &str = "for f in /proc/self/fd/*; do n=${f##*/}; [ $n -gt 2 ] || continue; \
                        t=$(readlink $f) || continue; echo \"$n $t\"; done";

/// Asserts that `o` either failed (the runtime refused the cwd) or ran with its cwd inside the
/// container: the two lines of CWD_CHECK agree.
fn assert_cwd_inside(o: &Output, what: &str) {
    if !o.status.success() {
        return;
    }
    let out = o.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{what}: {out}\n{}", o.stderr_str());
    assert_eq!(
        lines[0], lines[1],
        "{what}: the process got a cwd outside the container's root"
    );
}

/// Only the shell's own fd for the directory it reads may show up; anything else was inherited
/// from the runtime (a host directory, the shim's sockets or log files).
fn assert_no_leaked_fds(out: &str, what: &str) {
    for l in out.lines() {
        let target = l.split_once(' ').map(|(_, t)| t).unwrap_or("");
        assert!(
            target.starts_with("/proc/") && target.ends_with("/fd"),
            "{what}: leaked fd into the container: {l}\nall:\n{out}"
        );
    }
}

/// CVE-2024-21626 class: `-w /proc/self/fd/N` must never give the process a cwd on the host
/// (runc leaked an fd of the host's cgroup directory into the container's init), for `run` and
/// for `exec -w`; and no host fd reaches the container at all.
#[test]
fn cwd_through_leaked_fds_stays_inside() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    for n in 3..=12 {
        let w = format!("/proc/self/fd/{n}");
        let o = f.docker(&["run", "--rm", "-w", &w, "busybox", "sh", "-c", CWD_CHECK]);
        assert_cwd_inside(&o, &format!("run -w {w}"));
    }
    let o = f.docker(&["run", "--rm", "busybox", "sh", "-c", FD_CHECK]);
    assert_no_leaked_fds(&o.ok().stdout_str(), "run");
    let o = f.docker(&["run", "--rm", "-t", "busybox", "sh", "-c", FD_CHECK]);
    assert_no_leaked_fds(&o.ok().stdout_str().replace('\r', ""), "run -t");

    f.out(&["run", "-d", "--name", "victim", "busybox", "sleep", "1000"]);
    for n in 3..=12 {
        let w = format!("/proc/self/fd/{n}");
        let o = f.docker(&["exec", "-w", &w, "victim", "sh", "-c", CWD_CHECK]);
        assert_cwd_inside(&o, &format!("exec -w {w}"));
    }
    // exec processes come from the shim, which holds sockets, log files and directories
    for args in [
        &["exec", "victim", "sh", "-c", FD_CHECK][..],
        &["exec", "-i", "victim", "sh", "-c", FD_CHECK][..],
        &["exec", "-t", "victim", "sh", "-c", FD_CHECK][..],
    ] {
        let o = f.docker(args);
        assert_no_leaked_fds(&o.ok().stdout_str().replace('\r', ""), &args.join(" "));
    }
    // the init keeps no runtime fd either
    let o = f.docker(&[
        "exec",
        "victim",
        "sh",
        "-c",
        "ls -l /proc/1/fd | sed -n 's/.* \\([0-9]*\\) -> /\\1 /p'",
    ]);
    for l in o.ok().stdout_str().lines() {
        let (n, t) = l.split_once(' ').unwrap_or((l, ""));
        let n: u32 = n.parse().unwrap_or(99);
        assert!(n <= 2, "the container's init holds fd {n} -> {t}");
    }
    assert!(f.d.api("GET", "/_ping", None).status == 200);
}

/// Loads busybox plus the shared libraries `bin` needs (from the host, per `ldd`) as `tag`.
fn load_image_with_libs_of(f: &Fixture, bin: &Path, tag: &str) {
    let ldd = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .expect("ldd");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for l in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = l
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_owned);
        if let Some(p) = path
            && let Ok(data) = std::fs::read(&p)
        {
            files.push((p.trim_start_matches('/').to_owned(), data));
        }
    }
    let mut dirs: Vec<String> = Vec::new();
    for (p, _) in &files {
        let mut acc = String::new();
        for c in p
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            acc.push_str(c);
            acc.push('/');
            if !dirs.contains(&acc) {
                dirs.push(acc.clone());
            }
        }
    }
    let mut entries: Vec<archive::Entry> = dirs.iter().map(|d| archive::Entry::Dir(d)).collect();
    entries.extend(
        files
            .iter()
            .map(|(p, d)| archive::Entry::FileMode(p, d, 0o755)),
    );
    // a script whose interpreter is the runtime's binary
    entries.push(archive::Entry::FileMode("x", b"#!/proc/self/exe\n", 0o755));
    let layers = vec![archive::busybox_rootfs(), archive::layer(&entries)];
    let cfg = archive::config(&layers, &["sh"], "2025-11-05T00:00:00Z");
    f.d.docker_stdin(
        &["load"],
        Some(&archive::docker_archive(&layers, &cfg, &[tag])),
    )
    .ok();
}

fn sha256_file(p: &Path) -> String {
    archive::sha256_hex(&std::fs::read(p).expect("read host binary"))
}

/// CVE-2019-5736 class: a container process must not reach the runtime's binary on the host:
/// neither by making the runtime exec `/proc/self/exe` as the entrypoint, nor by opening
/// `/proc/<pid>/exe` of a process the runtime is just joining to the container (`exec`).
/// berth-shim and berthd stay byte-identical.
#[test]
fn runtime_binary_is_not_reachable_from_the_container() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let shim = bin_dir().join("berth-shim");
    let daemon = bin_dir().join("berthd");
    let before = (sha256_file(&shim), sha256_file(&daemon));

    // The entrypoint is the runtime's own /proc/self/exe. The image carries the shim's shared
    // libraries, so berth-shim would really run in there if the runtime let it: the host binary
    // would then be one open(O_RDWR) of /proc/1/exe away once no shim executes it.
    load_image_with_libs_of(&f, &shim, "shimlibs:1");
    for ep in ["/proc/self/exe", "/proc/1/exe"] {
        let o = f.docker(&["run", "--rm", "--entrypoint", ep, "shimlibs:1", "--help"]);
        let all = format!("{}{}", o.stdout_str(), o.stderr_str());
        assert!(
            !all.contains("usage: berth-shim"),
            "{ep}: ran the runtime: {all}"
        );
        assert_eq!(o.code(), 126, "{ep}: {all}");
    }
    // the same through a script's interpreter line
    let o = f.docker(&["run", "--rm", "--entrypoint", "/x", "shimlibs:1"]);
    let all = format!("{}{}", o.stdout_str(), o.stderr_str());
    assert!(
        !all.contains("usage: berth-shim"),
        "#!: ran the runtime: {all}"
    );
    assert_eq!(o.code(), 126, "#!: {all}");

    // A watcher inside the container tries every new process's exe while the runtime joins
    // processes to it; any exe that is not the container's own busybox is a leak.
    f.out(&[
        "run",
        "-d",
        "--name",
        "watch",
        "busybox",
        "sh",
        "-c",
        "while true; do for p in /proc/[0-9]*; do \
           t=$(readlink $p/exe 2>/dev/null) || continue; \
           [ \"$t\" = /bin/busybox ] && continue; echo \"$p $t\" >> /tmp/seen; \
           (echo x 1<> $p/exe) 2>/dev/null && echo \"WROTE $p $t\" >> /tmp/seen; \
         done; done",
    ]);
    for _ in 0..20 {
        f.out(&["exec", "watch", "true"]);
    }
    let seen = f.out(&[
        "exec",
        "watch",
        "sh",
        "-c",
        "cat /tmp/seen 2>/dev/null; true",
    ]);
    assert!(
        !seen.contains("berth") && !seen.contains("WROTE"),
        "the container reached a runtime binary:\n{seen}"
    );
    assert_eq!(
        (sha256_file(&shim), sha256_file(&daemon)),
        before,
        "a host binary changed"
    );
}

/// CVE-2025-31133 class (and /dev/console, CVE-2025-52565): an image whose /dev/null and
/// /dev/console are symlinks into /proc/sys must not turn the masking of /proc paths into a
/// writable host sysctl; masked paths stay masked and read-only paths read-only, also while a
/// process in the container keeps swapping /dev/null during exec.
#[test]
fn dev_null_symlinks_do_not_unmask_proc() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let base = archive::busybox_rootfs();
    let evil = archive::layer(&[
        archive::Entry::Dir("dev/"),
        archive::Entry::Symlink("dev/null", "/proc/sys/kernel/core_pattern"),
        archive::Entry::Symlink("dev/console", "/proc/sys/kernel/core_pattern"),
        archive::Entry::Symlink("dev/zero", "/proc/sysrq-trigger"),
        archive::Entry::Symlink("dev/ptmx", "/proc/sys/kernel/modprobe"),
    ]);
    let layers = vec![base, evil];
    let cfg = archive::config(&layers, &["sh"], "2025-11-05T00:00:00Z");
    let tar = archive::docker_archive(&layers, &cfg, &["evil:dev"]);
    f.d.docker_stdin(&["load"], Some(&tar)).ok();

    let host_core = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let host_modprobe = std::fs::read_to_string("/proc/sys/kernel/modprobe").unwrap_or_default();
    let check = "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
                   [ -e $p ] || continue; echo \"$p $(head -c 64 $p | wc -c)\"; done; \
                 for p in /proc/sys/kernel/core_pattern /proc/sys/kernel/modprobe /proc/sysrq-trigger; do \
                   (echo '|/tmp/pwn' > $p) 2>/dev/null && echo \"WROTE $p\"; done; \
                 echo to-null > /dev/null; true";
    for args in [
        &["run", "--rm", "evil:dev", "sh", "-c", check][..],
        &["run", "--rm", "-t", "evil:dev", "sh", "-c", check][..],
        &["run", "--rm", "-i", "evil:dev", "sh", "-c", check][..],
    ] {
        let o = f.docker(args);
        let out = o.ok().stdout_str().replace('\r', "");
        assert_masked(&out, &args.join(" "));
    }
    // exec while the container keeps replacing its /dev/null with a symlink into /proc/sys
    f.out(&[
        "run",
        "-d",
        "--name",
        "swapper",
        "evil:dev",
        "sh",
        "-c",
        "while true; do rm -f /dev/null; ln -s /proc/sys/kernel/core_pattern /dev/null; \
         rm -f /dev/null; mknod /dev/null c 1 3 2>/dev/null; done",
    ]);
    for i in 0..10 {
        let args: &[&str] = if i % 2 == 0 {
            &["exec", "swapper", "sh", "-c", check]
        } else {
            &["exec", "-t", "swapper", "sh", "-c", check]
        };
        let o = f.docker(args);
        assert_masked(&o.stdout_str().replace('\r', ""), &args.join(" "));
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default(),
        host_core,
        "the host's core_pattern changed"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/modprobe").unwrap_or_default(),
        host_modprobe,
        "the host's modprobe changed"
    );
}

fn assert_masked(out: &str, what: &str) {
    assert!(!out.contains("WROTE"), "{what}: wrote a host path:\n{out}");
    // other lines are the shell's complaints (a tty merges stderr), e.g. "can't create
    // /dev/null: Read-only file system" while the swapper has it pointing into /proc/sys
    for l in out.lines().filter(|l| l.starts_with("/proc/")) {
        if let Some((p, n)) = l.split_once(' ') {
            assert_eq!(n.trim(), "0", "{what}: {p} is not masked:\n{out}");
        }
    }
}
