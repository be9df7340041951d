//! A container's mounts: `-v`/Binds, `--mount`/Mounts, `--tmpfs`, `--volumes-from`, and the
//! anonymous volumes for the image's (and Config's) VOLUMEs.
//!
//! At create the request is parsed into [`MountPoint`]s (kept in the container record like
//! dockerd's `MountPoints`), named and anonymous volumes are created and referenced by the
//! container (so `volume rm` refuses them). At start each volume is mounted through the volume
//! store (which mounts `-o` volumes for their first user), filled from the image when empty
//! (copy-up), and everything becomes OCI mounts; the exit unmounts them again. `rm -v` removes
//! the container's anonymous volumes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_runtime::ContainerSpecInput;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Containers, Record};
use crate::error::{Error, Result};

/// One mount of a container (dockerd's `volumemounts.MountPoint`, as much as it shows).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountPoint {
    /// bind | volume | tmpfs
    #[serde(rename = "type")]
    pub typ: String,
    /// Host path of a bind (volumes resolve theirs through the store).
    #[serde(default)]
    pub source: String,
    pub destination: String,
    /// Volume name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub driver: String,
    /// The mode string as the user gave it (`ro`, `z`, ...), Docker's `Mode`.
    #[serde(default)]
    pub mode: String,
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
    /// Copy the image's content into the volume when it is empty (not `nocopy`).
    #[serde(default)]
    pub copy_data: bool,
    /// Created for this container (`rm -v` removes it).
    #[serde(default)]
    pub anonymous: bool,
    /// `bind-nonrecursive`.
    #[serde(default)]
    pub non_recursive: bool,
    /// tmpfs mount options (size=, mode=, user options).
    #[serde(default)]
    pub tmpfs_options: Vec<String>,
    /// From HostConfig.Tmpfs (`--tmpfs`): dockerd does not list those in `Mounts`.
    #[serde(default)]
    pub from_tmpfs_flag: bool,
}

/// A container path served by a host path: for `docker cp` into volumes and binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    /// Absolute path inside the container.
    pub destination: String,
    /// bind | volume | tmpfs
    pub typ: String,
    /// The host directory or file mounted there; None for tmpfs (it lives only inside the
    /// container's mount namespace).
    pub source: Option<PathBuf>,
    pub read_only: bool,
}

fn invalid_spec(spec: &str) -> Error {
    Error::invalid(format!("invalid volume specification: '{spec}'"))
}

fn valid_mode(m: &str) -> bool {
    m.split(',').all(|o| {
        matches!(
            o,
            "ro" | "rw"
                | "z"
                | "Z"
                | "nocopy"
                | "shared"
                | "rshared"
                | "slave"
                | "rslave"
                | "private"
                | "rprivate"
                | "consistent"
                | "cached"
                | "delegated"
        )
    })
}

fn mode_has(mode: &str, opt: &str) -> bool {
    mode.split(',').any(|o| o == opt)
}

fn propagation_of(mode: &str) -> Option<String> {
    mode.split(',')
        .find(|o| {
            matches!(
                *o,
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
            )
        })
        .map(str::to_owned)
}

/// Lexically clean an absolute container path (`/a//b/` -> `/a/b`).
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// `-v` / HostConfig.Binds: `[src:]dst[:mode]`.
fn parse_bind(spec: &str) -> Result<MountPoint> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [a, b] if valid_mode(b) && !b.is_empty() && !b.starts_with('/') => ("", *a, *b),
        [a, b] => (*a, *b, ""),
        [a, b, c] => (*a, *b, *c),
        _ => return Err(invalid_spec(spec)),
    };
    if dst.is_empty() {
        return Err(invalid_spec(spec));
    }
    if !mode.is_empty() && !valid_mode(mode) {
        return Err(Error::invalid(format!("invalid mode: {mode}")));
    }
    let typ = if src.starts_with('/') {
        "bind"
    } else {
        "volume"
    };
    if !dst.starts_with('/') {
        return Err(Error::invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"{typ}\": invalid mount path: '{dst}' mount path must be absolute"
        )));
    }
    if dst == "/" || clean(dst) == "/" {
        return Err(Error::invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"{typ}\": invalid specification: destination can't be '/'"
        )));
    }
    let rw = !mode_has(mode, "ro");
    let mut mp = MountPoint {
        typ: typ.into(),
        destination: clean(dst),
        mode: mode.into(),
        rw,
        ..Default::default()
    };
    if typ == "bind" {
        mp.source = clean(src);
        mp.propagation = propagation_of(mode).unwrap_or_else(|| "rprivate".into());
    } else {
        if !src.is_empty() {
            berth_volume::valid_name(src)
                .map_err(|e| Error::invalid(format!("create {src}: {e}")))?;
        }
        mp.name = src.into();
        mp.driver = "local".into();
        mp.copy_data = !mode_has(mode, "nocopy");
        if mp.mode.is_empty() && !src.is_empty() {
            mp.mode = "z".into();
        }
    }
    Ok(mp)
}

/// Labels and driver options for creating a `--mount` volume.
type VolumeArgs = (BTreeMap<String, String>, BTreeMap<String, String>);

fn mount_err(typ: &str, msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("invalid mount config for type \"{typ}\": {msg}"))
}

/// `--mount` / HostConfig.Mounts (API `Mount` objects). Returns the mount point and, for
/// volumes, the labels and driver options to create it with.
fn parse_api_mount(m: &Value) -> Result<(MountPoint, VolumeArgs)> {
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let typ = s("Type");
    let target = s("Target");
    let source = s("Source");
    let ro = m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
    let has = |k: &str| m.get(k).is_some_and(|v| !v.is_null());
    if !matches!(typ.as_str(), "bind" | "volume" | "tmpfs") {
        if typ.is_empty() {
            return Err(Error::invalid("invalid mount config: mount type unknown"));
        }
        return Err(Error::invalid(format!(
            "invalid mount config for type \"{typ}\": mount type unknown"
        )));
    }
    if target.is_empty() {
        return Err(mount_err(&typ, "field Target must not be empty"));
    }
    if !target.starts_with('/') {
        return Err(mount_err(
            &typ,
            format!("invalid mount path: '{target}' mount path must be absolute"),
        ));
    }
    let mut mp = MountPoint {
        typ: typ.clone(),
        destination: clean(&target),
        rw: !ro,
        ..Default::default()
    };
    let mut labels = BTreeMap::new();
    let mut opts = BTreeMap::new();
    match typ.as_str() {
        "bind" => {
            if source.is_empty() {
                return Err(mount_err(&typ, "field Source must not be empty"));
            }
            if has("VolumeOptions") {
                return Err(mount_err(&typ, "field VolumeOptions must not be specified"));
            }
            if has("TmpfsOptions") {
                return Err(mount_err(&typ, "field TmpfsOptions must not be specified"));
            }
            if !source.starts_with('/') {
                return Err(mount_err(
                    &typ,
                    format!("invalid mount path: '{source}' mount path must be absolute"),
                ));
            }
            let bo = m.get("BindOptions");
            let create = bo
                .and_then(|b| b.get("CreateMountpoint"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !create && std::fs::symlink_metadata(&source).is_err() {
                return Err(mount_err(
                    &typ,
                    format!("bind source path does not exist: {source}"),
                ));
            }
            mp.source = clean(&source);
            mp.propagation = bo
                .and_then(|b| b.get("Propagation"))
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .unwrap_or("rprivate")
                .to_owned();
            mp.non_recursive = bo
                .and_then(|b| b.get("NonRecursive"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
        }
        "volume" => {
            if has("BindOptions") {
                return Err(mount_err(&typ, "field BindOptions must not be specified"));
            }
            if has("TmpfsOptions") {
                return Err(mount_err(&typ, "field TmpfsOptions must not be specified"));
            }
            if !source.is_empty() {
                berth_volume::valid_name(&source)
                    .map_err(|e| Error::invalid(format!("create {source}: {e}")))?;
                mp.mode = "z".into();
            }
            mp.name = source;
            mp.driver = "local".into();
            let vo = m.get("VolumeOptions");
            // refused rather than ignored: mounting the whole volume would expose more than asked
            if vo
                .and_then(|v| v.get("Subpath"))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(Error::not_implemented(
                    "volume-subpath is not supported by berthd yet",
                ));
            }
            mp.copy_data = !vo
                .and_then(|v| v.get("NoCopy"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let strs = |v: Option<&Value>| -> BTreeMap<String, String> {
                v.and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            labels = strs(vo.and_then(|v| v.get("Labels")));
            opts = strs(vo.and_then(|v| v.pointer("/DriverConfig/Options")));
            if let Some(d) = vo
                .and_then(|v| v.pointer("/DriverConfig/Name"))
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
            {
                mp.driver = d.to_owned();
            }
        }
        _ => {
            if !source.is_empty() {
                return Err(mount_err(&typ, "field Source must not be specified"));
            }
            if has("BindOptions") {
                return Err(mount_err(&typ, "field BindOptions must not be specified"));
            }
            if has("VolumeOptions") {
                return Err(mount_err(&typ, "field VolumeOptions must not be specified"));
            }
            let to = m.get("TmpfsOptions");
            if let Some(n) = to
                .and_then(|t| t.get("SizeBytes"))
                .and_then(Value::as_i64)
                .filter(|n| *n > 0)
            {
                mp.tmpfs_options.push(format!("size={n}"));
            }
            if let Some(n) = to
                .and_then(|t| t.get("Mode"))
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
            {
                mp.tmpfs_options.push(format!("mode={:o}", n & 0o7777));
            }
        }
    }
    Ok((mp, (labels, opts)))
}

/// `--volumes-from name[:ro|rw]`.
fn split_volumes_from(spec: &str) -> Result<(&str, &str)> {
    let (name, mode) = match spec.rsplit_once(':') {
        Some((n, m)) => (n, m),
        None => (spec, ""),
    };
    if !matches!(mode, "" | "ro" | "rw") {
        return Err(Error::invalid(format!("invalid mode: {mode}")));
    }
    Ok((name, mode))
}

impl Containers {
    /// At create: every mount of the request, volumes created and referenced by `rec.id`.
    /// On error nothing stays referenced and new anonymous volumes are removed again.
    pub(super) async fn setup_mounts(
        &self,
        rec: &Record,
        image_volumes: Vec<String>,
    ) -> Result<Vec<MountPoint>> {
        let hc = rec.host_config.clone();
        let mut config_volumes: Vec<String> = rec
            .config
            .get("Volumes")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        config_volumes.extend(image_volumes);
        // --volumes-from: the other containers' mount points, looked up now
        let mut from = Vec::new();
        for spec in super::str_list(hc.get("VolumesFrom")).unwrap_or_default() {
            let (name, mode) = split_volumes_from(&spec)?;
            let other = self.get(name)?.record();
            for mp in other.mount_points.iter().filter(|m| m.typ != "tmpfs") {
                let mut cp = mp.clone();
                cp.rw = mp.rw && mode != "ro";
                if mode == "rw" {
                    cp.rw = true;
                }
                cp.copy_data = false;
                cp.anonymous = false;
                if !mode.is_empty() {
                    cp.mode = mode.to_owned();
                }
                from.push(cp);
            }
        }
        let vols = self.0.volumes.clone();
        let id = rec.id.clone();
        super::blocking(move || {
            let mut created_anon: Vec<String> = Vec::new();
            let res = build(&vols, &id, &hc, &config_volumes, from, &mut created_anon);
            if res.is_err() {
                vols.store().release_all(&id);
                for n in &created_anon {
                    let _ = vols.store().remove(n, true);
                }
            }
            res
        })
        .await
    }

    /// At daemon start: re-reference the volumes of every container, and re-mount those of
    /// running ones (a no-op for the mounts that outlived the daemon).
    pub(super) fn restore_mounts(&self, rec: &Record) {
        let store = self.0.volumes.store();
        for mp in rec.mount_points.iter().filter(|m| m.typ == "volume") {
            if let Err(e) = store.acquire(&mp.name, &rec.id) {
                tracing::warn!("container {}: volume {}: {e}", rec.id, mp.name);
                continue;
            }
            if rec.running()
                && let Err(e) = store.mount(&mp.name, &rec.id)
            {
                tracing::warn!("container {}: remounting volume {}: {e}", rec.id, mp.name);
            }
        }
    }

    /// The container stopped (or its start failed): drop its mounts of volumes.
    pub(super) async fn unmount_volumes(&self, rec: &Record) {
        let vols = self.0.volumes.clone();
        let rec = rec.clone();
        let _ = super::blocking(move || {
            for mp in rec.mount_points.iter().filter(|m| m.typ == "volume") {
                vols.store().unmount(&mp.name, &rec.id);
                vols.event("unmount", &mp.name, &[("container", rec.id.clone())]);
            }
            Ok(())
        })
        .await;
    }

    /// The container is removed: release its volumes; with `rm -v` (or `--rm`) remove its
    /// anonymous ones (unless another container still uses them).
    pub(super) async fn release_volumes(&self, rec: &Record, remove_anonymous: bool) {
        let vols = self.0.volumes.clone();
        let rec = rec.clone();
        let _ = super::blocking(move || {
            for mp in rec.mount_points.iter().filter(|m| m.typ == "volume") {
                vols.store().unmount(&mp.name, &rec.id);
                vols.store().release(&mp.name, &rec.id);
                if remove_anonymous && mp.anonymous {
                    match vols.store().remove(&mp.name, true) {
                        Ok(()) => vols.event("destroy", &mp.name, &[]),
                        Err(e) => tracing::info!("keeping volume {}: {e}", mp.name),
                    }
                }
            }
            Ok(())
        })
        .await;
    }

    /// The mount table of a container: destination -> host source, read-only flag. Sorted
    /// by destination; the longest destination that is a prefix of a path is the one that
    /// serves it (see [`resolve_host_path`]).
    pub fn mount_table(&self, name: &str) -> Result<Vec<HostMount>> {
        let rec = self.get(name)?.record();
        let store = self.0.volumes.store();
        let mut out: Vec<HostMount> = rec
            .mount_points
            .iter()
            .map(|mp| HostMount {
                destination: mp.destination.clone(),
                typ: mp.typ.clone(),
                source: match mp.typ.as_str() {
                    "bind" => Some(PathBuf::from(&mp.source)),
                    "volume" => store.get(&mp.name).ok().map(|v| v.mountpoint),
                    _ => None,
                },
                read_only: !mp.rw,
            })
            .collect();
        out.sort_by(|a, b| a.destination.cmp(&b.destination));
        Ok(out)
    }
}

/// For `docker cp`: the mount serving the container path `path` (absolute, cleaned) and the
/// rest of the path below its destination, or None when the path is in the container's own
/// filesystem. The rest must still be resolved inside the mount's source (RESOLVE_IN_ROOT).
pub fn resolve_host_path<'a>(
    table: &'a [HostMount],
    path: &str,
) -> Option<(&'a HostMount, String)> {
    let path = clean(path);
    table
        .iter()
        .filter(|m| {
            path == m.destination
                || path.starts_with(&format!("{}/", m.destination.trim_end_matches('/')))
        })
        .max_by_key(|m| m.destination.len())
        .map(|m| {
            let rest = path[m.destination.len()..]
                .trim_start_matches('/')
                .to_owned();
            (m, rest)
        })
}

fn build(
    vols: &crate::volumes::Volumes,
    id: &str,
    hc: &Value,
    config_volumes: &[String],
    from: Vec<MountPoint>,
    created_anon: &mut Vec<String>,
) -> Result<Vec<MountPoint>> {
    let mut out: Vec<MountPoint> = Vec::new();
    // a later source replaces an earlier one at the same destination (--volumes-from gives
    // way to the container's own mounts); duplicates among -v/--mount/--tmpfs are errors
    let push = |out: &mut Vec<MountPoint>, mp: MountPoint| {
        out.retain(|m| m.destination != mp.destination);
        out.push(mp);
    };
    for mp in from {
        push(&mut out, mp);
    }
    let mut seen: Vec<String> = Vec::new();
    for spec in super::str_list(hc.get("Binds")).unwrap_or_default() {
        let mp = parse_bind(&spec)?;
        if seen.contains(&mp.destination) {
            return Err(Error::invalid(format!(
                "Duplicate mount point: {}",
                mp.destination
            )));
        }
        seen.push(mp.destination.clone());
        push(&mut out, mp);
    }
    let mut labels_opts: BTreeMap<String, VolumeArgs> = BTreeMap::new();
    if let Some(ms) = hc.get("Mounts").and_then(Value::as_array) {
        for m in ms {
            let (mp, (labels, opts)) = parse_api_mount(m)?;
            if seen.contains(&mp.destination) {
                return Err(Error::invalid(format!(
                    "Duplicate mount point: {}",
                    mp.destination
                )));
            }
            seen.push(mp.destination.clone());
            labels_opts.insert(mp.destination.clone(), (labels, opts));
            push(&mut out, mp);
        }
    }
    if let Some(t) = hc.get("Tmpfs").and_then(Value::as_object) {
        for (dst, o) in t {
            if !dst.starts_with('/') {
                return Err(Error::invalid(format!(
                    "invalid tmpfs mount path: '{dst}' mount path must be absolute"
                )));
            }
            let opts: Vec<String> = o
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let mp = MountPoint {
                typ: "tmpfs".into(),
                destination: clean(dst),
                rw: !opts.iter().any(|o| o == "ro"),
                tmpfs_options: opts,
                from_tmpfs_flag: true,
                ..Default::default()
            };
            if seen.contains(&mp.destination) {
                return Err(Error::invalid(format!(
                    "Duplicate mount point: {}",
                    mp.destination
                )));
            }
            push(&mut out, mp);
        }
    }
    // image / Config VOLUMEs not covered by anything above: anonymous volumes
    for v in config_volumes {
        let d = clean(v);
        if out.iter().any(|m| m.destination == d) {
            continue;
        }
        out.push(MountPoint {
            typ: "volume".into(),
            destination: d,
            driver: "local".into(),
            rw: true,
            copy_data: true,
            ..Default::default()
        });
    }
    // create (or look up) the volumes, then reference them
    for mp in out.iter_mut().filter(|m| m.typ == "volume") {
        if mp.name.is_empty() {
            let (labels, _) = labels_opts
                .get(&mp.destination)
                .cloned()
                .unwrap_or_default();
            let v = vols.create_sync(None, labels, BTreeMap::new(), &mp.driver)?;
            created_anon.push(v.name.clone());
            mp.name = v.name;
            mp.anonymous = true;
        } else if vols.store().get(&mp.name).is_err() {
            let (labels, opts) = labels_opts
                .get(&mp.destination)
                .cloned()
                .unwrap_or_default();
            vols.create_sync(Some(&mp.name), labels, opts, &mp.driver)?;
        }
        vols.store().acquire(&mp.name, id)?;
    }
    // -v with a missing host path creates it (dockerd's legacy behaviour for Binds)
    for mp in out.iter().filter(|m| m.typ == "bind") {
        if std::fs::symlink_metadata(&mp.source).is_err()
            && let Err(e) = std::fs::create_dir_all(&mp.source)
        {
            return Err(Error::invalid(format!(
                "error while creating mount source path '{}': {e}",
                mp.source
            )));
        }
    }
    Ok(out)
}

/// At start: volumes mounted (and filled from the image when empty), every mount point an OCI
/// mount, parents before children. Default binds of /etc files give way to the user's.
pub(super) fn apply(
    vols: &crate::volumes::Volumes,
    rec: &Record,
    rootfs: &Path,
    input: &mut ContainerSpecInput,
) -> Result<()> {
    let mut mps: Vec<&MountPoint> = rec.mount_points.iter().collect();
    mps.sort_by_key(|m| m.destination.split('/').filter(|s| !s.is_empty()).count());
    for mp in mps {
        let mut options: Vec<String> = Vec::new();
        let (typ, source) = match mp.typ.as_str() {
            "tmpfs" => {
                let mut o: Vec<String> = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
                for u in &mp.tmpfs_options {
                    match u.as_str() {
                        "exec" => o.retain(|x| x != "noexec"),
                        "suid" => o.retain(|x| x != "nosuid"),
                        "dev" => o.retain(|x| x != "nodev"),
                        "rw" => {}
                        other => o.push(other.to_owned()),
                    }
                }
                if !mp.rw && !o.iter().any(|x| x == "ro") {
                    o.push("ro".into());
                }
                options = o;
                ("tmpfs".to_owned(), PathBuf::from("tmpfs"))
            }
            "volume" => {
                let p = vols.store().mount(&mp.name, &rec.id)?;
                if mp.copy_data {
                    vols.store().populate(&mp.name, rootfs, &mp.destination)?;
                }
                vols.event(
                    "mount",
                    &mp.name,
                    &[
                        ("container", rec.id.clone()),
                        ("destination", mp.destination.clone()),
                        ("read/write", mp.rw.to_string()),
                        ("propagation", mp.propagation.clone()),
                    ],
                );
                options.push("rbind".into());
                options.push(if mp.propagation.is_empty() {
                    "rprivate".into()
                } else {
                    mp.propagation.clone()
                });
                if !mp.rw {
                    options.push("ro".into());
                }
                ("bind".to_owned(), p)
            }
            _ => {
                options.push(if mp.non_recursive { "bind" } else { "rbind" }.into());
                options.push(if mp.propagation.is_empty() {
                    "rprivate".into()
                } else {
                    mp.propagation.clone()
                });
                if !mp.rw {
                    options.push("ro".into());
                }
                ("bind".to_owned(), PathBuf::from(&mp.source))
            }
        };
        match mp.destination.as_str() {
            "/etc/hosts" => input.hosts_path = None,
            "/etc/hostname" => input.hostname_path = None,
            "/etc/resolv.conf" => input.resolv_conf_path = None,
            _ => {}
        }
        let m = oci_spec::runtime::MountBuilder::default()
            .destination(&mp.destination)
            .typ(typ)
            .source(source)
            .options(options)
            .build()
            .map_err(|e| Error::internal(format!("building mount: {e}")))?;
        input.extra_mounts.push(m);
    }
    Ok(())
}

/// Docker's `Mounts` entries (container inspect and list).
pub(super) fn mounts_json(vols: &crate::volumes::Volumes, rec: &Record) -> Value {
    let mut out = Vec::new();
    let mut mps: Vec<&MountPoint> = rec
        .mount_points
        .iter()
        .filter(|m| !m.from_tmpfs_flag)
        .collect();
    mps.sort_by(|a, b| a.destination.cmp(&b.destination));
    for mp in mps {
        out.push(match mp.typ.as_str() {
            "volume" => json!({
                "Type": "volume",
                "Name": mp.name,
                "Source": vols.store().get(&mp.name).map(|v| v.mountpoint).unwrap_or_default(),
                "Destination": mp.destination,
                "Driver": mp.driver,
                "Mode": mp.mode,
                "RW": mp.rw,
                "Propagation": mp.propagation,
            }),
            "bind" => json!({
                "Type": "bind",
                "Source": mp.source,
                "Destination": mp.destination,
                "Mode": mp.mode,
                "RW": mp.rw,
                "Propagation": mp.propagation,
            }),
            _ => json!({
                "Type": mp.typ,
                "Source": "",
                "Destination": mp.destination,
                "Mode": mp.mode,
                "RW": mp.rw,
                "Propagation": mp.propagation,
            }),
        });
    }
    Value::Array(out)
}

/// `ps --filter volume=`: a volume name or a mount destination.
pub(super) fn uses_volume(rec: &Record, v: &str) -> bool {
    rec.mount_points
        .iter()
        .any(|m| (m.typ == "volume" && m.name == v) || m.destination == v || m.source == v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_specs() {
        let m = parse_bind("/host:/c:ro").unwrap();
        assert_eq!(
            (m.typ.as_str(), m.rw, m.mode.as_str()),
            ("bind", false, "ro")
        );
        assert_eq!(m.propagation, "rprivate");
        let m = parse_bind("data:/d").unwrap();
        assert_eq!(
            (m.typ.as_str(), m.name.as_str(), m.mode.as_str()),
            ("volume", "data", "z")
        );
        assert!(m.copy_data);
        let m = parse_bind("data:/d:nocopy").unwrap();
        assert!(!m.copy_data);
        let m = parse_bind("/anon").unwrap();
        assert_eq!((m.typ.as_str(), m.name.as_str()), ("volume", ""));
        let m = parse_bind("/anon:ro").unwrap();
        assert!(!m.rw);
        assert!(parse_bind("data:rel").is_err());
        assert!(parse_bind("/a:/b:bogus").is_err());
        assert!(parse_bind("a:b:c:d").is_err());
        assert!(parse_bind("x/y:/d").is_err());
    }

    #[test]
    fn api_mounts() {
        let (m, _) = parse_api_mount(
            &json!({"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576,"Mode":1023}}),
        )
        .unwrap();
        assert_eq!(m.tmpfs_options, vec!["size=1048576", "mode=1777"]);
        assert!(parse_api_mount(&json!({"Type":"volume","Source":"vv","Target":"/v","VolumeOptions":{"Subpath":"a"}})).is_err());
        let (m, (l, o)) = parse_api_mount(&json!({"Type":"volume","Source":"vv","Target":"/v","VolumeOptions":{"NoCopy":true,"Labels":{"a":"b"},"DriverConfig":{"Options":{"type":"tmpfs","device":"tmpfs"}}}})).unwrap();
        assert!(!m.copy_data);
        assert_eq!(l["a"], "b");
        assert_eq!(o["type"], "tmpfs");
        let e =
            parse_api_mount(&json!({"Type":"bind","Source":"/nonexistent-berth","Target":"/x"}))
                .unwrap_err();
        assert_eq!(
            e.message,
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth"
        );
        assert!(parse_api_mount(&json!({"Type":"tmpfs","Source":"x","Target":"/x"})).is_err());
    }

    #[test]
    fn host_paths_for_cp() {
        let t = vec![
            HostMount {
                destination: "/data".into(),
                typ: "volume".into(),
                source: Some("/v/_data".into()),
                read_only: false,
            },
            HostMount {
                destination: "/data/sub".into(),
                typ: "bind".into(),
                source: Some("/h".into()),
                read_only: true,
            },
        ];
        let (m, rest) = resolve_host_path(&t, "/data/sub/x/y").unwrap();
        assert_eq!(
            (m.destination.as_str(), rest.as_str()),
            ("/data/sub", "x/y")
        );
        let (m, rest) = resolve_host_path(&t, "/data").unwrap();
        assert_eq!((m.destination.as_str(), rest.as_str()), ("/data", ""));
        assert!(resolve_host_path(&t, "/datax").is_none());
    }
}
