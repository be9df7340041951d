//! Image store: load/save/import, tags, rmi/prune rules, shared layers, crash leftovers.

mod common;

use std::path::Path;

use berth_image::{
    Error, ImageStore, ImageUsage, ImportOptions, LoadProgress, NoUsage, PruneOptions, RemoveEvent,
    RemoveOptions,
};
use berth_types::{Digest, Reference};
use common::*;

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<E<'_>> = files.iter().map(|(p, d)| E::file(p, d)).collect();
    tar_of(&entries)
}

fn load(store: &ImageStore, data: &[u8]) -> berth_image::Result<Vec<berth_image::LoadedImage>> {
    store.load(&mut &data[..], &mut |_| {})
}

/// Everything on disk apart from the database (for "nothing changed" assertions).
fn disk_state(root: &Path) -> Vec<String> {
    tree(root)
        .into_iter()
        .filter(|p| !p.starts_with("image/image.db"))
        .collect()
}

struct Users(Vec<(String, bool)>);
impl ImageUsage for Users {
    fn containers_using(&self, _image: &Digest) -> Vec<(String, bool)> {
        self.0.clone()
    }
}

fn base_layer() -> Vec<u8> {
    layer(&[("bin/sh", b"shell"), ("etc/os-release", b"berth")])
}

fn simple_image(tag: &str, label: &str) -> (Vec<u8>, Digest, Vec<u8>) {
    let l0 = base_layer();
    let l1 = layer(&[("app", label.as_bytes())]);
    let cfg = config(&[&l0, &l1], label);
    let id = Digest::of(&cfg);
    let archive = docker_archive(&[Img {
        config: cfg.clone(),
        tags: vec![tag],
        layers: vec![l0, l1],
    }]);
    (archive, id, cfg)
}

#[test]
fn load_lookup_and_layer_dirs() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let (archive, id, cfg) = simple_image("busybox:latest", "one");
    let mut events = Vec::new();
    let loaded = store
        .load(&mut &archive[..], &mut |p| events.push(p))
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, id);
    assert_eq!(loaded[0].tags[0].familiar(), "busybox:latest");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LoadProgress::Layer { .. }))
    );

    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        &id.to_string(),
        id.hex(),
        &id.hex()[..12],
        &format!("sha256:{}", &id.hex()[..8]),
    ] {
        assert_eq!(store.lookup(name).unwrap().id, id, "lookup {name}");
    }
    match store.lookup("nope") {
        Err(Error::NotFound(m)) => assert_eq!(m, "nope:latest"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.lookup("Busybox"), Err(Error::Reference(_))));

    let img = store.get(&id).unwrap();
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.size, 5 + 5 + 3);
    assert_eq!(store.config_bytes(&id).unwrap(), cfg);
    let dirs = store.layer_dirs(&id).unwrap();
    assert_eq!(std::fs::read(dirs[0].join("bin/sh")).unwrap(), b"shell");
    assert_eq!(std::fs::read(dirs[1].join("app")).unwrap(), b"one");
    let links = store.layer_links(&id).unwrap();
    for (l, d) in links.iter().zip(&dirs) {
        let resolved = std::fs::canonicalize(store.overlay_root().join(l)).unwrap();
        assert_eq!(&resolved, &std::fs::canonicalize(d).unwrap());
        assert_eq!(l.len(), 2 + 26);
    }
    // Reopening keeps everything.
    drop(store);
    let store = ImageStore::open(t.path()).unwrap();
    assert_eq!(store.lookup("busybox").unwrap().id, id);
    assert!(store.layer_dirs(&id).unwrap()[1].join("app").exists());
}

#[test]
fn save_load_round_trip_is_exact_and_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&t.path().join("a")).unwrap();
    let l0 = base_layer();
    let l1 = layer(&[("app", b"v1")]);
    let cfg = config(&[&l0, &l1], "rt");
    let id = Digest::of(&cfg);
    // Layers arrive gzip-compressed: save must write the uncompressed bytes.
    let archive = docker_archive(&[Img {
        config: cfg.clone(),
        tags: vec!["app:1", "localhost:5000/team/app:2"],
        layers: vec![gzip(&l0), l1.clone()],
    }]);
    load(&store, &archive).unwrap();

    let mut out1 = Vec::new();
    store.save(&["app:1".into()], &mut out1).unwrap();
    let mut out2 = Vec::new();
    store.save(&["app:1".into()], &mut out2).unwrap();
    assert_eq!(out1, out2, "save must be deterministic");

    let entries = read_tar(&out1);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let get = |n: &str| &entries.iter().find(|(x, _)| x == n).unwrap().1;
    assert_eq!(names[0], "blobs/");
    assert_eq!(names[1], "blobs/sha256/");
    assert_eq!(
        &names[names.len() - 4..],
        &["index.json", "manifest.json", "oci-layout", "repositories"]
    );
    assert_eq!(get(&format!("blobs/sha256/{}", Digest::of(&l0).hex())), &l0);
    assert_eq!(get(&format!("blobs/sha256/{}", Digest::of(&l1).hex())), &l1);
    assert_eq!(get(&format!("blobs/sha256/{}", id.hex())), &cfg);
    let manifest: serde_json::Value = serde_json::from_slice(get("manifest.json")).unwrap();
    assert_eq!(manifest[0]["Config"], format!("blobs/sha256/{}", id.hex()));
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["app:1"]));
    assert_eq!(
        manifest[0]["Layers"][1],
        format!("blobs/sha256/{}", Digest::of(&l1).hex())
    );
    assert!(get("manifest.json").ends_with(b"\n"));
    let index: serde_json::Value = serde_json::from_slice(get("index.json")).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let m0 = &index["manifests"][0];
    assert_eq!(
        m0["annotations"]["io.containerd.image.name"],
        "docker.io/library/app:1"
    );
    assert_eq!(m0["annotations"]["org.opencontainers.image.ref.name"], "1");
    let mdigest: Digest = m0["digest"].as_str().unwrap().parse().unwrap();
    let mbytes = get(&format!("blobs/sha256/{}", mdigest.hex()));
    let m: serde_json::Value = serde_json::from_slice(mbytes).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(m["layers"][0]["size"], l0.len());
    assert_eq!(get("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#);
    let repos: serde_json::Value = serde_json::from_slice(get("repositories")).unwrap();
    assert_eq!(repos["app"]["1"], Digest::of(&l1).hex());

    // Load into a fresh store: same ID, same layer bytes on the way out again.
    let other = ImageStore::open(&t.path().join("b")).unwrap();
    let loaded = load(&other, &out1).unwrap();
    assert_eq!(loaded[0].id, id);
    assert_eq!(loaded[0].tags[0].familiar(), "app:1");
    let mut out3 = Vec::new();
    other.save(&["app:1".into()], &mut out3).unwrap();
    assert_eq!(out3, out1);

    // By ID: untagged, RepoTags null, the index entry has no annotations.
    let mut by_id = Vec::new();
    store
        .save(&[id.hex()[..12].to_owned()], &mut by_id)
        .unwrap();
    let e = read_tar(&by_id);
    let man = &e.iter().find(|(n, _)| n == "manifest.json").unwrap().1;
    let v: serde_json::Value = serde_json::from_slice(man).unwrap();
    assert!(v[0]["RepoTags"].is_null());
    assert!(!e.iter().any(|(n, _)| n == "repositories"));

    // A bare repository name saves all its tags.
    let mut repo = Vec::new();
    store
        .save(&["localhost:5000/team/app".into()], &mut repo)
        .unwrap();
    let e = read_tar(&repo);
    let man = &e.iter().find(|(n, _)| n == "manifest.json").unwrap().1;
    let v: serde_json::Value = serde_json::from_slice(man).unwrap();
    assert_eq!(
        v[0]["RepoTags"],
        serde_json::json!(["localhost:5000/team/app:2"])
    );
}

#[test]
fn save_regenerates_a_missing_layer_blob_only_when_exact() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    // A layer tar exactly as berth itself writes it (so regeneration reproduces it).
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), b"content").unwrap();
    let mut l0 = Vec::new();
    berth_image::layer::write_layer_tar(&src, &mut l0).unwrap();
    let cfg = config(&[&l0], "regen");
    load(
        &store,
        &docker_archive(&[Img {
            config: cfg.clone(),
            tags: vec!["regen:1"],
            layers: vec![l0.clone()],
        }]),
    )
    .unwrap();
    std::fs::remove_file(
        t.path()
            .join("image/blobs/sha256")
            .join(Digest::of(&l0).hex()),
    )
    .unwrap();
    let mut out = Vec::new();
    store.save(&["regen:1".into()], &mut out).unwrap();
    let e = read_tar(&out);
    let blob = &e
        .iter()
        .find(|(n, _)| n == &format!("blobs/sha256/{}", Digest::of(&l0).hex()))
        .unwrap()
        .1;
    assert_eq!(blob, &l0);

    // A foreign layer (different header layout) cannot be regenerated: clear error.
    let (archive, _, _) = simple_image("foreign:1", "f");
    load(&store, &archive).unwrap();
    let f = store.lookup("foreign:1").unwrap();
    // (Its bottom layer has no directory entries, so a re-tar differs.)
    std::fs::remove_file(t.path().join("image/blobs/sha256").join(f.layers[0].hex())).unwrap();
    let err = store
        .save(&["foreign:1".into()], &mut Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("cannot save layer"), "{err}");
}

#[test]
fn oci_layout_with_nested_index_and_compressed_layers() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let l0 = base_layer();
    let cfg = config(&[&l0], "oci");
    let img = Img {
        config: cfg.clone(),
        tags: vec![],
        layers: vec![gzip(&l0)],
    };
    let data = oci_layout(&img, "registry.example.com/ns/oci:v3");
    // The whole archive zstd-compressed, too.
    let loaded = load(&store, &zstd(&data)).unwrap();
    assert_eq!(loaded[0].id, Digest::of(&cfg));
    assert_eq!(
        loaded[0].tags[0].to_string(),
        "registry.example.com/ns/oci:v3"
    );
    assert!(store.lookup("registry.example.com/ns/oci:v3").is_ok());
}

#[test]
fn combined_docker25_archive_loads_via_manifest_json() {
    // What berth's own save writes is Docker 25's combined layout: load it in a store that has
    // nothing, with the whole thing gzip-compressed.
    let t = tempfile::tempdir().unwrap();
    let a = ImageStore::open(&t.path().join("a")).unwrap();
    let (archive, id, _) = simple_image("combo:1", "c");
    load(&a, &archive).unwrap();
    let mut out = Vec::new();
    a.save(&["combo:1".into()], &mut out).unwrap();
    let b = ImageStore::open(&t.path().join("b")).unwrap();
    let loaded = load(&b, &gzip(&out)).unwrap();
    assert_eq!(loaded[0].id, id);
}

#[test]
fn digest_mismatch_and_truncation_store_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let before = disk_state(t.path());

    // A layer whose content does not match the config's diff ID.
    let l0 = base_layer();
    let cfg = config(&[&l0], "bad");
    let evil = layer(&[("bin/sh", b"trojan")]);
    let archive = docker_archive(&[Img {
        config: cfg,
        tags: vec!["bad:1"],
        layers: vec![evil],
    }]);
    assert!(matches!(
        load(&store, &archive),
        Err(Error::DigestMismatch { .. })
    ));

    // Second image fails after the first one's layers were unpacked: still nothing.
    let (good, _, _) = simple_image("good:1", "g");
    let mut two = read_tar(&good);
    let l_bad = layer(&[("x", b"y")]);
    let cfg_bad = config(&[&base_layer()], "other");
    two.push(("zz/layer.tar".into(), l_bad));
    two.push((
        format!("{}.json", Digest::of(&cfg_bad).hex()),
        cfg_bad.clone(),
    ));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&two.iter().find(|(n, _)| n == "manifest.json").unwrap().1).unwrap();
    manifest.as_array_mut().unwrap().push(serde_json::json!({
        "Config": format!("{}.json", Digest::of(&cfg_bad).hex()),
        "RepoTags": ["bad:2"],
        "Layers": ["zz/layer.tar"],
    }));
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in &two {
        let d = if n == "manifest.json" {
            serde_json::to_vec(&manifest).unwrap()
        } else {
            d.clone()
        };
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, n, &d[..]).unwrap();
    }
    let two = b.into_inner().unwrap();
    assert!(matches!(
        load(&store, &two),
        Err(Error::DigestMismatch { .. })
    ));

    // Config renamed so that its file name lies about its digest.
    let (ok, id, _) = simple_image("x:1", "x");
    let mut entries = read_tar(&ok);
    for (n, _) in entries.iter_mut() {
        if n.ends_with(".json") && n != "manifest.json" {
            *n = format!("{}.json", "a".repeat(64));
        }
    }
    let _ = id;

    // Truncated archive.
    let (ok, _, _) = simple_image("trunc:1", "t");
    assert!(matches!(
        load(&store, &ok[..ok.len() / 2]),
        Err(Error::InvalidArchive(_))
    ));
    // Garbage.
    assert!(load(&store, b"this is not a tar at all, not even close......").is_err());

    assert!(store.list().unwrap().is_empty());
    assert_eq!(disk_state(t.path()), before);
}

#[test]
fn shared_layers_are_stored_once_and_freed_with_the_last_image() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let (a, ida, _) = simple_image("a:1", "A");
    let (b, idb, _) = simple_image("b:1", "B");
    load(&store, &a).unwrap();
    let mut exists = 0;
    store
        .load(&mut &b[..], &mut |p| {
            if matches!(p, LoadProgress::LayerExists { .. }) {
                exists += 1;
            }
        })
        .unwrap();
    assert_eq!(exists, 1, "the base layer is shared");
    let layer_dirs = |root: &Path| {
        std::fs::read_dir(root.join("overlay2"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != "l")
            .count()
    };
    assert_eq!(layer_dirs(t.path()), 3);
    assert_eq!(
        store.layer_dirs(&ida).unwrap()[0],
        store.layer_dirs(&idb).unwrap()[0]
    );
    let du = store.disk_usage().unwrap();
    assert_eq!(du.layers_size, 10 + 1 + 1);
    for (_, size, shared) in &du.images {
        assert_eq!((*size, *shared), (11, 10));
    }

    let ev = store
        .remove("a:1", RemoveOptions::default(), &NoUsage)
        .unwrap();
    assert_eq!(ev[0], RemoveEvent::Untagged("a:1".into()));
    assert_eq!(ev[1], RemoveEvent::Deleted(ida.clone()));
    assert_eq!(ev.len(), 3, "image + its own top layer: {ev:?}");
    assert_eq!(layer_dirs(t.path()), 2);
    assert!(store.layer_dirs(&idb).unwrap()[0].join("bin/sh").exists());

    store
        .remove("b:1", RemoveOptions::default(), &NoUsage)
        .unwrap();
    assert_eq!(layer_dirs(t.path()), 0);
    assert_eq!(
        std::fs::read_dir(t.path().join("image/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(t.path().join("overlay2/l"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn remove_follows_dockers_rules() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let (a, id, _) = simple_image("busybox:latest", "r");
    load(&store, &a).unwrap();
    let r2 = Reference::parse_tagged("other/name:v1").unwrap();
    assert_eq!(store.tag(&id, &r2).unwrap(), None);
    let short = id.short().to_owned();

    // By ID with two repositories: must be forced.
    let e = store
        .remove(&short, RemoveOptions::default(), &NoUsage)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
        )
    );
    // By one reference: only untag.
    let ev = store
        .remove("other/name:v1", RemoveOptions::default(), &NoUsage)
        .unwrap();
    assert_eq!(ev, vec![RemoveEvent::Untagged("other/name:v1".into())]);

    // Last reference, used by a stopped container.
    let stopped = Users(vec![("c0ffee1234567890".into(), false)]);
    let e = store
        .remove("busybox", RemoveOptions::default(), &stopped)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "conflict: unable to remove repository reference \"busybox\" (must force) - container c0ffee123456 is using its referenced image {short}"
        )
    );
    let e = store
        .remove(&short, RemoveOptions::default(), &stopped)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "conflict: unable to delete {short} (must be forced) - image is being used by stopped container c0ffee123456"
        )
    );
    // Running container: even force is refused.
    let running = Users(vec![("abcdef0123456789".into(), true)]);
    let force = RemoveOptions {
        force: true,
        prune_parents: true,
    };
    let e = store.remove(&short, force, &running).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "conflict: unable to delete {short} (cannot be forced) - image is being used by running container abcdef012345"
        )
    );
    assert!(matches!(e, Error::Conflict(_)));

    // Force with a stopped container: the container's hold keeps the layers.
    store.hold_layers("c0ffee1234567890", &id, true).unwrap();
    let dirs = store.layer_dirs(&id).unwrap();
    let ev = store.remove(&short, force, &stopped).unwrap();
    assert_eq!(
        ev,
        vec![
            RemoveEvent::Untagged("busybox:latest".into()),
            RemoveEvent::Deleted(id.clone())
        ]
    );
    assert!(dirs[1].join("app").exists(), "held layers survive");
    assert!(matches!(store.get(&id), Err(Error::NotFound(_))));
    store.release_layers("c0ffee1234567890", true).unwrap();
    assert!(!dirs[1].exists());
    assert!(!dirs[0].exists());

    // Unknown image.
    match store.remove("busybox", RemoveOptions::default(), &NoUsage) {
        Err(Error::NotFound(m)) => assert_eq!(m, "busybox:latest"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tag_moves_and_prune() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let (a, ida, _) = simple_image("app:latest", "1");
    let (b, idb, _) = simple_image("app:latest", "2");
    let (c, idc, _) = simple_image("keep:1", "3");
    load(&store, &a).unwrap();
    load(&store, &b).unwrap(); // moves app:latest: a is now dangling
    load(&store, &c).unwrap();
    assert!(store.get(&ida).unwrap().repo_tags.is_empty());
    assert_eq!(store.lookup("app").unwrap().id, idb);

    // Dangling only.
    let rep = store.prune(&PruneOptions::default(), &NoUsage).unwrap();
    assert!(rep.deleted.contains(&RemoveEvent::Deleted(ida.clone())));
    assert!(rep.space_reclaimed > 0);
    assert!(store.get(&idb).is_ok());

    // -a with a label filter: only images labelled test=3, and not one in use.
    let opts = PruneOptions {
        all: true,
        until: None,
        labels: vec![("test".into(), Some("3".into()), false)],
    };
    let in_use = Users(vec![("1234567890ab".into(), false)]);
    let rep = store.prune(&opts, &in_use).unwrap();
    assert!(rep.deleted.is_empty(), "{:?}", rep.deleted);
    let rep = store.prune(&opts, &NoUsage).unwrap();
    assert_eq!(rep.deleted[0], RemoveEvent::Untagged("keep:1".into()));
    assert!(rep.deleted.contains(&RemoveEvent::Deleted(idc.clone())));
    assert!(store.get(&idb).is_ok());
    // until: created 2024 < cutoff 2020 is false -> nothing.
    let opts = PruneOptions {
        all: true,
        until: Some(1_577_836_800),
        labels: vec![],
    };
    assert!(store.prune(&opts, &NoUsage).unwrap().deleted.is_empty());
    let opts = PruneOptions {
        all: true,
        ..Default::default()
    };
    store.prune(&opts, &NoUsage).unwrap();
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn import_builds_a_one_layer_image() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let rootfs = tar_of(&[E::dir("bin/"), E::file("bin/busybox", b"ELF")]);
    let mut cfg = berth_types::image_config::ContainerConfig::default();
    berth_image::apply_changes(&mut cfg, &["CMD [\"sh\"]".into(), "ENV A=b".into()]).unwrap();
    let opts = ImportOptions {
        config: berth_types::image_config::ImageConfig {
            config: Some(cfg),
            ..Default::default()
        },
        message: None,
        reference: Some(Reference::parse_tagged("imported:1").unwrap()),
    };
    let id = store
        .import(&mut &gzip(&rootfs)[..], opts, &mut |_| {})
        .unwrap();
    let img = store.lookup("imported:1").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.config.architecture, "amd64");
    assert_eq!(img.config.os, "linux");
    assert_eq!(img.layers, vec![Digest::of(&rootfs)]);
    assert_eq!(img.config.history.len(), 1);
    assert_eq!(
        img.config.history[0].comment.as_deref(),
        Some("Imported from -")
    );
    assert_eq!(
        img.config.config.as_ref().unwrap().cmd.as_deref(),
        Some(&["sh".to_owned()][..])
    );
    assert!(
        store.layer_dirs(&id).unwrap()[0]
            .join("bin/busybox")
            .exists()
    );
    let h = store.history(&id).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].id.as_ref(), Some(&id));
    assert_eq!(h[0].size, 3);
    assert_eq!(h[0].tags, vec!["imported:1".to_owned()]);

    // Same rootfs again: the layer is shared, not unpacked twice.
    let id2 = store
        .import(&mut &rootfs[..], ImportOptions::default(), &mut |_| {})
        .unwrap();
    assert_ne!(id, id2);
    assert_eq!(
        store.layer_dirs(&id).unwrap(),
        store.layer_dirs(&id2).unwrap()
    );
    let n = std::fs::read_dir(t.path().join("overlay2"))
        .unwrap()
        .count();
    assert_eq!(n, 2, "one layer dir + l/");
    // Hostile rootfs: rejected, nothing stored.
    let evil = tar_of(&[E::file("../../x", b"x")]);
    assert!(matches!(
        store.import(&mut &evil[..], ImportOptions::default(), &mut |_| {}),
        Err(Error::InvalidArchive(_))
    ));
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn history_matches_layers_and_marks_missing() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let (a, id, _) = simple_image("h:1", "h");
    load(&store, &a).unwrap();
    let h = store.history(&id).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].created_by, "CMD [\"sh\"]");
    assert_eq!(h[0].size, 0);
    assert_eq!(h[0].id.as_ref(), Some(&id));
    assert_eq!(h[0].tags, vec!["h:1".to_owned()]);
    assert_eq!(h[1].created_by, "step 1");
    assert_eq!(h[1].size, 1);
    assert_eq!(h[1].id, None);
    assert_eq!(h[2].size, 10);
    assert_eq!(h[2].created, 1_704_164_645);
}

#[test]
fn open_removes_crash_leftovers() {
    let t = tempfile::tempdir().unwrap();
    let (a, id, _) = simple_image("survivor:1", "s");
    {
        let store = ImageStore::open(t.path()).unwrap();
        load(&store, &a).unwrap();
    }
    let good = disk_state(t.path());
    // What a kill -9 in the middle of load/import/rmi can leave behind.
    let ov = t.path().join("overlay2");
    let (a64, b64) = ("a".repeat(64), "b".repeat(64));
    std::fs::create_dir_all(ov.join(format!("{a64}.tmp-1234/diff/etc"))).unwrap();
    std::fs::create_dir_all(ov.join(&b64).join("diff")).unwrap();
    std::os::unix::fs::symlink(
        format!("../{b64}/diff"),
        ov.join("l/ORPHANLINKAAAAAAAAAAAAAAAA"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../gone/diff", ov.join("l/DANGLINGLINKAAAAAAAAAAAAAA")).unwrap();
    std::fs::create_dir_all(t.path().join("image/tmp/load-1")).unwrap();
    std::fs::write(t.path().join("image/tmp/load-1/f0"), b"x").unwrap();
    std::fs::write(t.path().join("image/tmp/blob-1"), b"x").unwrap();
    std::fs::write(
        t.path().join("image/blobs/sha256").join("f".repeat(64)),
        b"orphan",
    )
    .unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    assert_eq!(disk_state(t.path()), good);
    assert!(store.layer_dirs(&id).unwrap()[1].join("app").exists());
}

/// Run in a child process by `kill_9_during_load_leaves_nothing`: loads a big archive slowly.
#[test]
#[ignore]
fn child_slow_load() {
    let Ok(root) = std::env::var("BERTH_TEST_CRASH_ROOT") else {
        return;
    };
    let store = ImageStore::open(Path::new(&root)).unwrap();
    let data = std::fs::read(Path::new(&root).join("../archive.tar")).unwrap();
    struct Slow<'a>(&'a [u8]);
    impl std::io::Read for Slow<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_millis(2));
            let n = buf.len().min(self.0.len()).min(64 * 1024);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let _ = store.load(&mut Slow(&data), &mut |_| {});
}

#[test]
fn kill_9_during_load_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    {
        ImageStore::open(&root).unwrap();
    }
    let before = disk_state(&root);
    // Several layers of ~3 MiB each: long enough to be killed mid-way.
    let big: Vec<Vec<u8>> = (0..6u8)
        .map(|i| {
            let data = vec![i; 3 << 20];
            let name = format!("file{i}");
            tar_of(&[E::file(&name, &data)])
        })
        .collect();
    let refs: Vec<&[u8]> = big.iter().map(|v| v.as_slice()).collect();
    let cfg = config(&refs, "big");
    std::fs::write(
        t.path().join("archive.tar"),
        docker_archive(&[Img {
            config: cfg,
            tags: vec!["big:1"],
            layers: big.clone(),
        }]),
    )
    .unwrap();
    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_slow_load", "--ignored", "--nocapture"])
            .env("BERTH_TEST_CRASH_ROOT", &root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let check = |root: &Path| -> bool {
        let store = ImageStore::open(root).unwrap();
        let imgs = store.list().unwrap();
        if imgs.is_empty() {
            assert_eq!(disk_state(root), before);
            return false;
        }
        // Finished before the kill: then it is whole, and prune -a returns to empty.
        assert_eq!(imgs[0].layers.len(), 6);
        for d in store.layer_dirs(&imgs[0].id).unwrap() {
            assert!(d.exists());
        }
        let all = PruneOptions {
            all: true,
            ..Default::default()
        };
        store.prune(&all, &NoUsage).unwrap();
        assert_eq!(disk_state(root), before);
        true
    };
    let mut interrupted = 0;
    // Killed while spooling the archive.
    for delay in [150u64, 400] {
        let mut child = spawn();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if !check(&root) {
            interrupted += 1;
        }
    }
    // Killed the moment the first layer directory is in place (before the commit).
    let mut child = spawn();
    let ov = root.join("overlay2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let placed = std::fs::read_dir(&ov).unwrap().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n != "l" && !n.contains(".tmp-")
        });
        if placed || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    if !check(&root) {
        interrupted += 1;
    }
    assert!(interrupted >= 2, "the kills did not interrupt the load");
}

fn config_with_history(layers: &[&[u8]], steps: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let history: Vec<serde_json::Value> = steps
        .iter()
        .map(|s| serde_json::json!({"created": "2024-01-02T03:04:05Z", "created_by": s}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
        "history": history, "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

#[test]
fn parent_links_survive_load_and_save() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let l0 = base_layer();
    let l1 = layer(&[("child", b"c")]);
    let base = config_with_history(&[&l0], &["base"]);
    let child = config_with_history(&[&l0, &l1], &["base", "child"]);
    let (bid, cid) = (Digest::of(&base), Digest::of(&child));
    let archive = docker_archive(&[
        Img {
            config: base.clone(),
            tags: vec!["base:1"],
            layers: vec![l0.clone()],
        },
        Img {
            config: child.clone(),
            tags: vec!["child:1"],
            layers: vec![l0.clone(), l1.clone()],
        },
    ]);
    // Add "Parent" to the child's manifest entry.
    let mut entries = read_tar(&archive);
    for (n, d) in entries.iter_mut() {
        if n == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(d).unwrap();
            m[1]["Parent"] = serde_json::json!(bid.to_string());
            *d = serde_json::to_vec(&m).unwrap();
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in &entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, n, &d[..]).unwrap();
    }
    load(&store, &b.into_inner().unwrap()).unwrap();
    assert_eq!(store.get(&cid).unwrap().parent, Some(bid.clone()));
    assert_eq!(store.children(&bid).unwrap(), vec![cid.clone()]);

    let h = store.history(&cid).unwrap();
    assert_eq!(h[0].id.as_ref(), Some(&cid));
    assert_eq!(h[1].id.as_ref(), Some(&bid));
    assert_eq!(h[1].tags, vec!["base:1".to_owned()]);

    let e = store
        .remove(&bid.hex()[..12], RemoveOptions::default(), &NoUsage)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
            bid.short()
        )
    );
    // Untagging the base keeps it (it has a child); removing the child prunes the untagged parent.
    let ev = store
        .remove("base:1", RemoveOptions::default(), &NoUsage)
        .unwrap();
    assert_eq!(ev, vec![RemoveEvent::Untagged("base:1".into())]);
    assert!(store.get(&bid).is_ok());

    let mut out = Vec::new();
    store
        .save(&["child:1".into(), bid.to_string()], &mut out)
        .unwrap();
    let man = read_tar(&out)
        .into_iter()
        .find(|(n, _)| n == "manifest.json")
        .unwrap()
        .1;
    let v: serde_json::Value = serde_json::from_slice(&man).unwrap();
    assert_eq!(v[0]["Parent"], bid.to_string());

    let ev = store
        .remove(
            "child:1",
            RemoveOptions {
                force: false,
                prune_parents: true,
            },
            &NoUsage,
        )
        .unwrap();
    assert!(ev.contains(&RemoveEvent::Deleted(cid)));
    assert!(ev.contains(&RemoveEvent::Deleted(bid)));
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn create_image_on_a_parent_like_commit() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    let rootfs = tar_of(&[
        E::dir("etc/"),
        E::file("etc/motd", b"hi"),
        E::file("etc/keep", b"k"),
    ]);
    let base = store
        .import(
            &mut &rootfs[..],
            ImportOptions {
                reference: Some(Reference::parse_tagged("base").unwrap()),
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
    // A container's upper dir: one new file, one deletion (overlay whiteout).
    let upper = t.path().join("upper");
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::write(upper.join("etc/new"), b"n").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("etc/motd"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    let mut tar = Vec::new();
    let (diff, _) = berth_image::layer::write_layer_tar(&upper, &mut tar).unwrap();
    let base_cfg = store.get(&base).unwrap().config;
    let h = berth_types::image_config::History {
        created: Some("2025-01-01T00:00:00Z".into()),
        created_by: Some("/bin/sh -c rm /etc/motd".into()),
        ..Default::default()
    };
    let child = store
        .create_image(
            Some(&base),
            Some(&mut &tar[..]),
            base_cfg.clone(),
            h.clone(),
            Some(&Reference::parse_tagged("child:1").unwrap()),
            &mut |_| {},
        )
        .unwrap();
    let img = store.get(&child).unwrap();
    assert_eq!(img.parent, Some(base.clone()));
    assert_eq!(img.layers, vec![Digest::of(&rootfs), diff]);
    assert_eq!(img.config.history.len(), 2);
    assert_eq!(store.children(&base).unwrap(), vec![child.clone()]);
    let dirs = store.layer_dirs(&child).unwrap();
    assert_eq!(dirs[0], store.layer_dirs(&base).unwrap()[0]);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(dirs[1].join("etc/motd"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let hist = store.history(&child).unwrap();
    assert_eq!(hist[0].id.as_ref(), Some(&child));
    assert_eq!(hist[1].id.as_ref(), Some(&base));

    // A config-only step: no layer, empty_layer history.
    let cfg_only = store
        .create_image(Some(&child), None, img.config.clone(), h, None, &mut |_| {})
        .unwrap();
    let c = store.get(&cfg_only).unwrap();
    assert_eq!(c.layers.len(), 2);
    assert!(c.config.history[2].empty_layer);
    assert!(c.is_dangling());
    assert_eq!(store.layer_dirs(&cfg_only).unwrap(), dirs);

    // Save and load elsewhere: identical IDs.
    let mut out = Vec::new();
    store.save(&["child:1".into()], &mut out).unwrap();
    let other = ImageStore::open(&t.path().join("other")).unwrap();
    assert_eq!(load(&other, &out).unwrap()[0].id, child);
}

#[test]
fn open_leaves_other_subsystems_entries_alone() {
    let t = tempfile::tempdir().unwrap();
    let (a, id, _) = simple_image("x:1", "x");
    {
        let store = ImageStore::open(t.path()).unwrap();
        load(&store, &a).unwrap();
        let lower = store.lowerdir(&id).unwrap();
        let links = store.layer_links(&id).unwrap();
        assert_eq!(lower, format!("{}:{}", links[1], links[0]));
    }
    let ov = t.path().join("overlay2");
    std::fs::create_dir_all(ov.join("c0ffee-rw/diff")).unwrap();
    std::os::unix::fs::symlink(
        "../c0ffee-rw/diff",
        ov.join("l/CONTAINERLINKAAAAAAAAAAAAAA"),
    )
    .unwrap();
    ImageStore::open(t.path()).unwrap();
    assert!(ov.join("c0ffee-rw/diff").exists());
    assert!(ov.join("l/CONTAINERLINKAAAAAAAAAAAAAA").exists());
}

#[test]
fn repo_digests_follow_dockers_rules() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let (a, id, _) = simple_image("busybox:1", "d");
    load(&store, &a).unwrap();
    let m = Digest::of(b"manifest");
    let canonical = Reference::parse_normalized(&format!("busybox@{m}")).unwrap();
    store.add_repo_digest(&id, &canonical).unwrap();
    let img = store.lookup(&format!("busybox@{m}")).unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.repo_digests, vec![canonical.clone()]);
    assert!(!img.is_dangling());
    // Removing the repository's last tag also drops its digest references, then the image.
    let ev = store
        .remove("busybox:1", RemoveOptions::default(), &NoUsage)
        .unwrap();
    assert_eq!(ev[0], RemoveEvent::Untagged("busybox:1".into()));
    assert_eq!(ev[1], RemoveEvent::Untagged(format!("busybox@{m}")));
    assert_eq!(ev[2], RemoveEvent::Deleted(id.clone()));

    // The last tag of an image a container uses needs force.
    load(&store, &a).unwrap();
    store.add_repo_digest(&id, &canonical).unwrap();
    store
        .remove(
            "busybox:1",
            RemoveOptions::default(),
            &Users(vec![("c".repeat(64), false)]),
        )
        .unwrap_err();
    let r = Reference::parse_tagged("busybox:1").unwrap();
    let ev = store
        .remove(
            "busybox:1",
            RemoveOptions {
                force: true,
                prune_parents: true,
            },
            &NoUsage,
        )
        .unwrap();
    assert!(ev.contains(&RemoveEvent::Deleted(id.clone())));
    // An image with only a digest reference is pruned as dangling.
    load(&store, &a).unwrap();
    store.add_repo_digest(&id, &canonical).unwrap();
    // Move the tag away: now only the digest reference is left.
    let (b, idb, _) = simple_image("busybox:1", "other");
    load(&store, &b).unwrap();
    assert_eq!(store.lookup(&r.to_string()).unwrap().id, idb);
    assert!(store.get(&id).unwrap().is_dangling());
    let rep = store.prune(&PruneOptions::default(), &NoUsage).unwrap();
    assert!(
        rep.deleted
            .contains(&RemoveEvent::Untagged(format!("busybox@{m}")))
    );
    assert!(rep.deleted.contains(&RemoveEvent::Deleted(id)));
    assert!(store.get(&idb).is_ok());
}

#[test]
fn save_survives_a_concurrent_rmi() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let (a, id, _) = simple_image("gone:1", "g");
    load(&store, &a).unwrap();
    struct RemovingWriter<'a> {
        store: &'a ImageStore,
        out: Vec<u8>,
        removed: bool,
    }
    impl std::io::Write for RemovingWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.removed {
                self.removed = true;
                self.store
                    .remove("gone:1", RemoveOptions::default(), &NoUsage)
                    .unwrap();
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = RemovingWriter {
        store: &store,
        out: Vec::new(),
        removed: false,
    };
    store.save(&["gone:1".into()], &mut w).unwrap();
    assert!(w.removed);
    assert!(store.get(&id).is_err());
    // The archive is complete and the held layers are gone once the save finished.
    let other = ImageStore::open(&t.path().join("other")).unwrap();
    assert_eq!(load(&other, &w.out).unwrap()[0].id, id);
    let dirs = std::fs::read_dir(t.path().join("overlay2"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "l")
        .count();
    assert_eq!(dirs, 0);
}

#[test]
fn second_open_of_the_same_data_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = berth_image::ImageStore::open(dir.path()).unwrap();
    let err = berth_image::ImageStore::open(dir.path())
        .err()
        .expect("second open must fail");
    assert!(
        err.to_string().contains("in use by another berthd"),
        "{err}"
    );
    drop(first);
    berth_image::ImageStore::open(dir.path()).unwrap();
}
