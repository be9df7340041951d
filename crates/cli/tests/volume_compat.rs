//! `berth volume ...` against a reference dockerd, next to the real docker CLI: identical
//! stdout, stderr (with "docker" read as "berth") and exit codes. Skips when dockerd/docker are
//! missing or we are not root.

mod common;

use common::*;

#[test]
fn volume_commands_match_docker_cli() {
    let d = match RefDocker::start() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIP: reference dockerd unavailable: {e}");
            return;
        }
    };
    ok(&d.docker(&["volume", "create", "v10"]), "create");
    ok(
        &d.docker(&["volume", "create", "--label", "a=b", "--label", "c", "v2"]),
        "create",
    );
    ok(
        &d.docker(&[
            "volume",
            "create",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "-o",
            "o=size=1m",
            "v1",
        ]),
        "create",
    );
    let mut f = Vec::new();
    for args in [
        &["volume", "ls"][..],
        &["volume", "list", "-q"],
        &["volume", "ls", "-f", "label=a=b"],
        &["volume", "ls", "-f", "name=v1"],
        &["volume", "ls", "-f", "dangling=true", "-q"],
        &["volume", "ls", "-f", "dangling=maybe"],
        &["volume", "ls", "-f", "bogus=1"],
        &[
            "volume",
            "ls",
            "--format",
            "{{.Name}}|{{.Driver}}|{{.Labels}}|{{.Scope}}|{{.Mountpoint}}",
        ],
        &["volume", "ls", "--format", "json"],
        &["volume", "inspect", "v1"],
        &["volume", "inspect", "v2", "v10"],
        &[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{json .Labels}}",
            "v2",
        ],
        &["volume", "inspect", "nosuch"],
        &["volume", "inspect"],
        &["volume", "rm"],
        &["volume", "rm", "nosuch"],
        &["volume", "rm", "-f", "nosuch"],
        &["volume", "create", "a", "b"],
        &["volume", "create", "--name", "x1", "x2"],
        &["volume", "create", "-d", "nosuchdriver", "xx"],
        &["volume", "create", "bad/name"],
        &["volume", "create", "-o", "foo=bar", "xy"],
        &["volume", "prune", "--filter", "nope"],
        &["volume", "ls", "extra"],
    ] {
        same(&d, args, &mut f);
    }
    // rm prints the names; prune -a -f reports what it deleted
    ok(&d.berth(&["volume", "create", "gone"]), "berth create");
    let rm = d.berth(&["volume", "rm", "gone", "nosuch"]);
    if text(&rm.stdout) != "gone\n"
        || text(&rm.stderr) != "Error response from daemon: get nosuch: no such volume\n"
        || rm.status.code() != Some(1)
    {
        f.push(format!("rm: {rm:?}"));
    }
    let asked = d.run(
        env!("CARGO_BIN_EXE_berth"),
        &["volume", "prune"],
        Some(b"n\n"),
    );
    let want = d.run("docker", &["volume", "prune"], Some(b"n\n"));
    if asked.stdout != want.stdout || asked.status.code() != want.status.code() {
        f.push(format!(
            "prune prompt: {:?} vs {:?}",
            text(&asked.stdout),
            text(&want.stdout)
        ));
    }
    assert!(
        f.is_empty(),
        "{} differences:\n\n{}",
        f.len(),
        f.join("\n\n")
    );
}
