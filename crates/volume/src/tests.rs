use std::collections::BTreeMap;
use std::os::unix::fs::symlink;

use super::*;

fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn create_list_remove_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = VolumeStore::open(dir.path()).unwrap();
    let (v, created) = s
        .create(Some("data"), "", m(&[("a", "b")]), m(&[]))
        .unwrap();
    assert!(created);
    assert_eq!(v.mountpoint, dir.path().join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    let j = v.to_json();
    assert_eq!(j["Labels"]["a"], "b");
    assert_eq!(j["Options"], Value::Null);
    assert_eq!(j["Scope"], "local");
    // same name again: the existing volume, labels untouched
    let (again, created) = s.create(Some("data"), "local", m(&[]), m(&[])).unwrap();
    assert!(!created);
    assert_eq!(again, v);
    let (anon, _) = s.create(None, "", m(&[]), m(&[])).unwrap();
    assert!(anon.anonymous());
    assert_eq!(anon.name.len(), 64);
    std::fs::write(v.mountpoint.join("f"), b"12345").unwrap();
    assert_eq!(s.size("data"), 5);

    // the metadata survives a reopen (as after a kill -9)
    let s2 = VolumeStore::open(dir.path()).unwrap();
    assert_eq!(s2.get("data").unwrap(), v);
    assert_eq!(s2.list().len(), 2);

    s2.acquire("data", "ctr1").unwrap();
    let e = s2.remove("data", false).unwrap_err();
    assert!(matches!(e, Error::InUse(_)));
    assert_eq!(e.to_string(), "remove data: volume is in use - [ctr1]");
    s2.release("data", "ctr1");
    s2.remove("data", false).unwrap();
    assert!(!dir.path().join("volumes/data").exists());
    assert!(matches!(s2.get("data"), Err(Error::NotFound(_))));
    assert!(matches!(s2.remove("data", false), Err(Error::NotFound(_))));
    s2.remove("data", true).unwrap();
}

#[test]
fn names_and_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let s = VolumeStore::open(dir.path()).unwrap();
    for bad in ["a", "-x", "a/b", "../x", ".hidden"] {
        assert!(
            matches!(
                s.create(Some(bad), "", m(&[]), m(&[])),
                Err(Error::Invalid(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        s.create(Some("ok"), "", m(&[]), m(&[("foo", "1")])),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        s.create(Some("ok"), "nfsplugin", m(&[]), m(&[])),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn a_volume_dir_without_metadata_is_still_a_volume() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("volumes/crashed/_data")).unwrap();
    std::fs::create_dir_all(dir.path().join("volumes/.trash-gone-1234/_data")).unwrap();
    let s = VolumeStore::open(dir.path()).unwrap();
    assert_eq!(s.get("crashed").unwrap().driver, "local");
    assert!(!dir.path().join("volumes/.trash-gone-1234").exists());
}

#[test]
fn tmpfs_volume_is_mounted_for_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let s = VolumeStore::open(dir.path()).unwrap();
    let opts = m(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")]);
    let (v, _) = s.create(Some("tv"), "", m(&[]), opts).unwrap();
    let p = s.mount("tv", "c1").unwrap();
    assert!(mount::is_mountpoint(&p));
    s.mount("tv", "c2").unwrap();
    s.unmount("tv", "c1");
    assert!(mount::is_mountpoint(&v.mountpoint), "still used by c2");
    s.unmount("tv", "c2");
    assert!(!mount::is_mountpoint(&v.mountpoint));
    // removal unmounts a volume left mounted
    s.mount("tv", "c3").unwrap();
    s.remove("tv", false).unwrap();
    assert!(!dir.path().join("volumes/tv").exists());
}

#[test]
fn copy_up_stays_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(rootfs.join("data/sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"host").unwrap();
    std::fs::write(rootfs.join("data/f"), b"image").unwrap();
    std::fs::write(rootfs.join("data/sub/g"), b"deep").unwrap();
    symlink("/etc/passwd", rootfs.join("data/link")).unwrap();
    // an absolute symlink on the way resolves inside the rootfs, not on the host
    symlink(&outside, rootfs.join("escape")).unwrap();
    let s = VolumeStore::open(dir.path()).unwrap();
    let (v, _) = s.create(Some("v1"), "", m(&[]), m(&[])).unwrap();
    s.populate("v1", &rootfs, "/data").unwrap();
    assert_eq!(std::fs::read(v.mountpoint.join("f")).unwrap(), b"image");
    assert_eq!(std::fs::read(v.mountpoint.join("sub/g")).unwrap(), b"deep");
    assert_eq!(
        std::fs::read_link(v.mountpoint.join("link")).unwrap(),
        Path::new("/etc/passwd")
    );
    // not empty any more: a second copy-up does nothing
    std::fs::remove_file(v.mountpoint.join("f")).unwrap();
    s.populate("v1", &rootfs, "/data").unwrap();
    assert!(!v.mountpoint.join("f").exists());

    let (w, _) = s.create(Some("v2"), "", m(&[]), m(&[])).unwrap();
    s.populate("v2", &rootfs, "/escape").unwrap();
    assert!(!w.mountpoint.join("secret").exists());
    s.populate("v2", &rootfs, "/nonexistent").unwrap();
}
