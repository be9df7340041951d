//! Run options that change the OCI spec or the way a container is run, beyond the record's
//! plain fields: `--init` (docker-init as PID 1), `--device`, `--device-cgroup-rule` and
//! `--runtime` (which OCI runtime the shim drives).

use std::path::PathBuf;

use berth_runtime::{ContainerSpecInput, DeviceMapping};
use serde_json::{Value, json};

use super::lifecycle::{BUILTIN_RUNTIME, Options};
use super::record::Record;
use crate::error::{Error, Result};

/// Where Docker mounts its init in the container.
const INIT_IN_CONTAINER: &str = "/sbin/docker-init";

/// At create: fill in `HostConfig.Runtime` (the daemon's default) and refuse what dockerd
/// refuses (unknown runtime, malformed device cgroup rules).
pub fn validate_create(hc: &mut Value, opts: &Options) -> Result<()> {
    let rt = hc.get("Runtime").and_then(Value::as_str).unwrap_or("");
    if rt.is_empty() {
        hc["Runtime"] = json!(opts.default_runtime);
    } else if rt != BUILTIN_RUNTIME && !opts.runtimes.contains_key(rt) {
        return Err(Error::invalid(format!(
            "unknown or invalid runtime name: {rt}"
        )));
    }
    for r in hc
        .get("DeviceCgroupRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let r = r.as_str().unwrap_or("");
        berth_runtime::parse_cgroup_rule(r).map_err(|e| Error::invalid(e.to_string()))?;
    }
    Ok(())
}

/// The external runtime (binary, extra args) a container runs with; None = the built-in one.
pub fn external_runtime(r: &Record, opts: &Options) -> Result<Option<(String, crate::Runtime)>> {
    let name = match r.host_str("Runtime") {
        n if n.is_empty() => opts.default_runtime.clone(),
        n => n,
    };
    if name == BUILTIN_RUNTIME {
        return Ok(None);
    }
    match opts.runtimes.get(&name) {
        Some(rt) => Ok(Some((name, rt.clone()))),
        // it was configured when the container was created, not any more
        None => Err(Error::invalid(format!(
            "unknown or invalid runtime name: {name}"
        ))),
    }
}

/// Adds docker-init and the devices to the spec input of `r`.
pub fn apply(input: &mut ContainerSpecInput, r: &Record, opts: &Options) -> Result<()> {
    let hc = &r.host_config;
    let init = hc.get("Init").and_then(Value::as_bool).unwrap_or(opts.init);
    if init {
        let bin: PathBuf = opts.init_binary().ok_or_else(|| {
            Error::internal(
                "docker-init binary not found (install tini, or set --init-path): cannot run with --init",
            )
        })?;
        let m = berth_runtime::readonly_bind(INIT_IN_CONTAINER, &bin)
            .map_err(|e| Error::internal(e.to_string()))?;
        input.extra_mounts.push(m);
        let mut args = vec![INIT_IN_CONTAINER.to_owned(), "--".to_owned()];
        args.append(&mut input.args);
        input.args = args;
    }
    for d in hc
        .get("Devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let host = s("PathOnHost");
        if host.is_empty() {
            continue;
        }
        input.devices.push(DeviceMapping {
            path_on_host: PathBuf::from(host),
            path_in_container: s("PathInContainer"),
            cgroup_permissions: s("CgroupPermissions"),
        });
    }
    input.device_cgroup_rules = super::hc_strs(hc, "DeviceCgroupRules");
    Ok(())
}
