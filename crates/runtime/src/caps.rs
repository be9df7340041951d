//! Capability sets: Docker's 14 defaults, `--cap-add`/`--cap-drop` (with `ALL`), `--privileged`.

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability};

use crate::Error;

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows (up to CAP_CHECKPOINT_RESTORE); what `ALL` and
/// `--privileged` expand to.
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Normalizes a user-given name the way Docker does: case-insensitive, `CAP_` optional.
pub fn normalize(name: &str) -> Result<String, Error> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::InvalidInput(format!(
            "unknown capability: \"{name}\""
        )))
    }
}

/// Every capability the daemon's own bounding set still has: what `--privileged` and `ALL` can
/// really grant. On a host (or in a sandbox) that dropped one from the bounding set (e.g.
/// CAP_SYS_RESOURCE), asking for it would make the container's capset fail with EPERM.
pub fn available() -> Vec<String> {
    use std::str::FromStr;
    let Ok(bounding) = ::caps::read(None, ::caps::CapSet::Bounding) else {
        return ALL_CAPS.iter().map(|s| s.to_string()).collect();
    };
    ALL_CAPS
        .iter()
        .filter(|n| ::caps::Capability::from_str(n).is_ok_and(|c| bounding.contains(&c)))
        .map(|s| s.to_string())
        .collect()
}

/// The effective capability list (`CAP_*` names, sorted like Docker: defaults order then
/// additions) for the given flags.
pub fn effective(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>, Error> {
    if privileged {
        return Ok(available());
    }
    let add: Vec<String> = add.iter().map(|c| normalize(c)).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop
        .iter()
        .map(|c| normalize(c))
        .collect::<Result<_, _>>()?;
    let add_all = add.iter().any(|c| c == "ALL");
    let drop_all = drop.iter().any(|c| c == "ALL");

    // moby TweakCapabilities: add ALL = everything minus the drops; drop ALL = only the adds;
    // otherwise defaults minus drops plus adds.
    let mut base: Vec<String> = if add_all {
        available()
    } else if drop_all {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    base.retain(|c| !drop.contains(c));
    for c in add.iter().filter(|c| *c != "ALL") {
        if !base.contains(c) {
            base.push(c.clone());
        }
    }
    Ok(base)
}

/// Converts `CAP_*` names to oci-spec's set.
pub fn to_set(names: &[String]) -> Result<Capabilities, Error> {
    let mut set = HashSet::new();
    for n in names {
        let short = n.strip_prefix("CAP_").unwrap_or(n);
        let cap = Capability::from_str(short)
            .map_err(|_| Error::InvalidInput(format!("unknown capability: \"{n}\"")))?;
        set.insert(cap);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn defaults_are_dockers_14() {
        let c = effective(false, &[], &[]).unwrap();
        assert_eq!(c.len(), 14);
        assert!(!c.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_NET_ADMIN".to_string()));
        assert_eq!(to_set(&c).unwrap().len(), 14);
    }

    #[test]
    fn add_drop_all() {
        let c = effective(false, &s(&["net_admin"]), &s(&["CHOWN"])).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        let c = effective(false, &s(&["chown"]), &s(&["ALL"])).unwrap();
        assert_eq!(c, s(&["CAP_CHOWN"]));
        let c = effective(false, &s(&["ALL"]), &s(&["CAP_SYS_ADMIN"])).unwrap();
        assert_eq!(c.len(), available().len() - 1);
        assert!(effective(false, &s(&["NOPE"]), &[]).is_err());
        assert_eq!(effective(true, &[], &s(&["ALL"])).unwrap(), available());
        assert!(available().len() <= 41 && available().contains(&"CAP_SYS_ADMIN".to_string()));
        assert_eq!(to_set(&s(&ALL_CAPS)).unwrap().len(), 41);
    }
}
