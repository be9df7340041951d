//! Docker seccomp profiles (the JSON format of `--security-opt seccomp=`) converted to the OCI
//! `linux.seccomp` section, honouring `includes`/`excludes` by capability, arch and kernel
//! version the way moby's `profiles/seccomp` does.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::Deserialize;

use crate::Error;

/// Docker's default profile, a copy of ../shared/specs/docker-profiles/seccomp-default.json kept
/// inside the crate so the build needs nothing outside the repository.
pub const DEFAULT_PROFILE: &str = include_str!("seccomp-default.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    syscalls: Option<Vec<Syscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: LinuxSeccompOperator,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Go's GOARCH name of the machine we run on (the names the profile's arches filters use).
fn native_goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn native_scmp_arch() -> Option<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Arch::ScmpArchX86_64),
        "x86" => Some(Arch::ScmpArchX86),
        "aarch64" => Some(Arch::ScmpArchAarch64),
        "arm" => Some(Arch::ScmpArchArm),
        "s390x" => Some(Arch::ScmpArchS390x),
        "riscv64" => Some(Arch::ScmpArchRiscv64),
        _ => None,
    }
}

/// Docker's arch aliases for includes/excludes: "x86"/"x32" also match on amd64 hosts only if
/// listed; we compare against GOARCH exactly as moby does.
fn arch_matches(list: &[String], goarch: &str) -> bool {
    list.iter().any(|a| a == goarch)
}

fn parse_kernel(v: &str) -> (u32, u32) {
    let mut it = v.split(['.', '-']).map(|p| {
        p.chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Running kernel's (major, minor) from uname.
pub fn kernel_version() -> (u32, u32) {
    let u = rustix::system::uname();
    parse_kernel(&u.release().to_string_lossy())
}

/// Converts a Docker profile (JSON text) for a container with capability set `caps`
/// (`CAP_*` names).
pub fn convert(profile_json: &str, caps: &[String]) -> Result<LinuxSeccomp, Error> {
    convert_for(profile_json, caps, native_goarch(), kernel_version())
}

fn convert_for(
    profile_json: &str,
    caps: &[String],
    goarch: &str,
    kernel: (u32, u32),
) -> Result<LinuxSeccomp, Error> {
    let p: Profile = serde_json::from_str(profile_json)
        .map_err(|e| Error::InvalidInput(format!("decoding seccomp profile failed: {e}")))?;

    // archMap: only the native arch and its sub-arches (moby does the same).
    let mut arches: Vec<Arch> = Vec::new();
    if let Some(a) = p.architectures {
        arches = a;
    } else if let (Some(map), Some(native)) = (p.arch_map, native_scmp_arch()) {
        for m in map {
            if m.architecture == native {
                arches.push(m.architecture);
                arches.extend(m.sub_architectures.unwrap_or_default());
            }
        }
    }

    let mut out = Vec::new();
    'calls: for sc in p.syscalls.unwrap_or_default() {
        // includes: every listed cap must be held, native arch listed, kernel new enough.
        if let Some(need) = &sc.includes.caps
            && !need.iter().all(|c| caps.contains(c))
        {
            continue 'calls;
        }
        if let Some(a) = &sc.includes.arches
            && !arch_matches(a, goarch)
        {
            continue 'calls;
        }
        if let Some(k) = &sc.includes.min_kernel
            && kernel < parse_kernel(k)
        {
            continue 'calls;
        }
        // excludes: any listed cap held or arch matching drops the rule.
        if let Some(ex) = &sc.excludes.caps
            && ex.iter().any(|c| caps.contains(c))
        {
            continue 'calls;
        }
        if let Some(a) = &sc.excludes.arches
            && arch_matches(a, goarch)
        {
            continue 'calls;
        }
        let mut names = sc.names;
        if let Some(n) = sc.name {
            names.push(n);
        }
        let mut b = oci_spec::runtime::LinuxSyscallBuilder::default()
            .names(names)
            .action(sc.action);
        if let Some(e) = sc.errno_ret {
            b = b.errno_ret(e);
        }
        if let Some(args) = sc.args {
            let mut v = Vec::with_capacity(args.len());
            for a in args {
                let mut ab = oci_spec::runtime::LinuxSeccompArgBuilder::default()
                    .index(a.index)
                    .value(a.value)
                    .op(a.op);
                if a.value_two != 0 {
                    ab = ab.value_two(a.value_two);
                }
                v.push(ab.build()?);
            }
            b = b.args(v);
        }
        let call: LinuxSyscall = b.build()?;
        out.push(call);
    }

    let mut b = oci_spec::runtime::LinuxSeccompBuilder::default()
        .default_action(p.default_action)
        .architectures(arches)
        .syscalls(out);
    if let Some(e) = p.default_errno_ret {
        b = b.default_errno_ret(e);
    }
    if let Some(f) = p.flags {
        b = b.flags(f);
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps;

    fn allowed(s: &LinuxSeccomp, name: &str) -> bool {
        s.syscalls().as_ref().unwrap().iter().any(|c| {
            c.action() == LinuxSeccompAction::ScmpActAllow
                && c.names().iter().any(|n| n == name)
                && c.args().is_none()
        })
    }

    #[test]
    fn default_profile_with_default_caps() {
        let caps = caps::effective(false, &[], &[]).unwrap();
        let s = convert_for(DEFAULT_PROFILE, &caps, "amd64", (6, 18)).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_ref().unwrap(),
            &vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        assert!(allowed(&s, "read"));
        assert!(allowed(&s, "arch_prctl")); // includes arches amd64
        assert!(!allowed(&s, "mount")); // CAP_SYS_ADMIN only
        assert!(allowed(&s, "ptrace")); // minKernel 4.8
        assert!(!allowed(&s, "reboot"));
        // clone with the namespace-flag mask only when CAP_SYS_ADMIN is absent
        let clone_masked = s
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .any(|c| c.names().iter().any(|n| n == "clone") && c.args().is_some());
        assert!(clone_masked);
        // clone3 returns ENOSYS (38) without CAP_SYS_ADMIN, so glibc falls back to clone
        let clone3 = s
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.names().iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(38));
    }

    #[test]
    fn caps_widen_the_profile() {
        let caps = caps::effective(false, &["SYS_ADMIN".into(), "SYS_PTRACE".into()], &[]).unwrap();
        let s = convert_for(DEFAULT_PROFILE, &caps, "amd64", (6, 18)).unwrap();
        assert!(allowed(&s, "mount"));
        assert!(allowed(&s, "process_vm_readv"));
        assert!(allowed(&s, "clone")); // unrestricted clone with CAP_SYS_ADMIN
        assert!(!s.syscalls().as_ref().unwrap().iter().any(|c| {
            c.names().iter().any(|n| n == "clone3")
                && c.action() == LinuxSeccompAction::ScmpActErrno
        }));
    }

    #[test]
    fn min_kernel_and_bad_json() {
        let caps = caps::effective(false, &[], &[]).unwrap();
        let old = convert_for(DEFAULT_PROFILE, &caps, "amd64", (4, 4)).unwrap();
        let new = convert_for(DEFAULT_PROFILE, &caps, "amd64", (6, 1)).unwrap();
        assert!(old.syscalls().as_ref().unwrap().len() < new.syscalls().as_ref().unwrap().len());
        assert!(convert("{", &caps).is_err());
        assert_eq!(parse_kernel("6.18.0-1-amd64"), (6, 18));
    }
}
