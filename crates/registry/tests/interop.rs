//! Interop with real peers: skopeo both ways and through Debian's `docker-registry`
//! (distribution 2.8), berth's own registry client (crates/distribution), and the real docker
//! CLI through a private reference dockerd (pull from us, push to us).

mod common;

use std::sync::Arc;

use berth_distribution::{PullOptions, PushOptions, RegistryConfig};
use berth_image::ImageStore;
use berth_types::image_config::{ContainerConfig, History, ImageConfig};
use berth_types::{Digest, Reference};
use common::*;
use reqwest::StatusCode;

fn registry_config() -> RegistryConfig {
    RegistryConfig {
        docker_config: None,
        certs_dirs: Vec::new(),
        ..Default::default()
    }
}

fn store() -> (tempfile::TempDir, Arc<ImageStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(ImageStore::open(dir.path()).expect("store"));
    (dir, s)
}

/// A one-layer busybox image in `store`, tagged `r`.
fn make_image(store: &ImageStore, r: &Reference) -> Digest {
    let layer = busybox_layer();
    let mut input: &[u8] = &layer;
    store
        .create_image(
            None,
            Some(&mut input),
            ImageConfig {
                architecture: "amd64".into(),
                os: "linux".into(),
                config: Some(ContainerConfig {
                    cmd: Some(vec!["sh".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            History {
                created_by: Some("busybox".into()),
                ..Default::default()
            },
            Some(r),
            &mut |_| {},
        )
        .expect("create_image")
}

#[test]
fn skopeo_copies_both_ways_with_distribution_same_digests() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let reg = rt.block_on(Reg::start());
    let dist = Registry::start();
    let layout = tempfile::tempdir().expect("tempdir");
    let md = write_oci_layout(
        layout.path(),
        &[
            busybox_layer(),
            Tar::new().file("etc/motd", b"hi\n").finish(),
        ],
    );
    let ours = reg.host();
    let theirs = dist.host();
    let src = format!("oci:{}:latest", layout.path().display());
    let no_tls = "--dest-tls-verify=false";

    // Layout -> berth (OCI manifest kept as is).
    skopeo(&[
        "copy",
        "-q",
        no_tls,
        &src,
        &format!("docker://{ours}/oci/app:v1"),
    ]);
    assert_eq!(
        skopeo_digest(&format!("docker://{ours}/oci/app:v1"), &[]),
        md.to_string()
    );
    // berth -> distribution -> berth: byte-identical manifests.
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        no_tls,
        &format!("docker://{ours}/oci/app:v1"),
        &format!("docker://{theirs}/copied:v1"),
    ]);
    assert_eq!(
        skopeo_digest(&format!("docker://{theirs}/copied:v1"), &[]),
        md.to_string()
    );
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        no_tls,
        &format!("docker://{theirs}/copied:v1"),
        &format!("docker://{ours}/back:v1"),
    ]);
    assert_eq!(
        skopeo_digest(&format!("docker://{ours}/back:v1"), &[]),
        md.to_string()
    );

    // Docker schema2 (converted by skopeo on the way in), then out to a fresh layout.
    skopeo(&[
        "copy",
        "-q",
        "--format",
        "v2s2",
        no_tls,
        &src,
        &format!("docker://{ours}/docker/app:v2"),
    ]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{ours}/docker/app:v2"),
    ]);
    assert!(raw.contains("application/vnd.docker.distribution.manifest.v2+json"));
    let d2 = skopeo_digest(&format!("docker://{ours}/docker/app:v2"), &[]);
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        no_tls,
        &format!("docker://{ours}/docker/app:v2"),
        &format!("docker://{theirs}/docker/app:v2"),
    ]);
    assert_eq!(
        skopeo_digest(&format!("docker://{theirs}/docker/app:v2"), &[]),
        d2
    );
    let out = tempfile::tempdir().expect("tempdir");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{ours}/oci/app:v1"),
        &format!("oci:{}:x", out.path().display()),
    ]);
    for e in std::fs::read_dir(layout.path().join("blobs/sha256")).expect("blobs") {
        let name = e.expect("entry").file_name();
        assert_eq!(
            std::fs::read(out.path().join("blobs/sha256").join(&name)).expect("copied blob"),
            std::fs::read(layout.path().join("blobs/sha256").join(&name)).expect("blob"),
        );
    }
    // Tags and catalog as skopeo reads them.
    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{ours}/oci/app"),
    ]);
    assert!(tags.contains("\"v1\""), "{tags}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_client_push_pull() {
    let reg = Reg::start().await;
    let (_d1, src) = store();
    let r = Reference::parse_tagged(&format!("{}/busybox:latest", reg.host())).expect("ref");
    let id = make_image(&src, &r);
    let opts = PushOptions {
        registry: registry_config(),
        credentials: None,
    };
    let digest = berth_distribution::push(&src, &r, &opts, |_| {})
        .await
        .expect("push");
    let r2 = reg.head(&format!("/v2/busybox/manifests/{digest}")).await;
    assert_eq!(r2.status(), StatusCode::OK);
    // Again, into a sibling repository: the layer is mounted, the digest the same.
    let other = Reference::parse_tagged(&format!("{}/other:v1", reg.host())).expect("ref");
    src.tag(&id, &other).expect("tag");
    let mut mounted = false;
    let d2 = berth_distribution::push(&src, &other, &opts, |p| {
        mounted |= matches!(p, berth_distribution::PushProgress::MountedFrom { .. });
    })
    .await
    .expect("push other");
    assert_eq!(d2, digest);
    assert!(mounted, "layer was not mounted from busybox");

    let (_d2, dst) = store();
    let pull = PullOptions {
        registry: registry_config(),
        ..Default::default()
    };
    let res = berth_distribution::pull(&dst, &r, &pull, |_| {})
        .await
        .expect("pull");
    assert_eq!(res.id, id);
    assert_eq!(res.manifest_digest, digest);
    let dirs = dst.layer_dirs(&id).expect("layer dirs");
    assert_eq!(
        std::fs::read(dirs[0].join("bin/busybox")).expect("busybox"),
        std::fs::read("/bin/busybox").expect("busybox")
    );
    let tags = berth_distribution::list_tags(&registry_config(), &r.repository(), None)
        .await
        .expect("tags");
    assert_eq!(tags, vec!["latest".to_owned()]);
    // skopeo agrees on the digest.
    assert_eq!(
        skopeo_digest(&format!("docker://{}/busybox:latest", reg.host()), &[]),
        digest.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_cli_pulls_from_and_pushes_to_berth_registry() {
    let Some(docker) = berth_e2e::RefDocker::start() else {
        return;
    };
    let reg = Reg::start().await;
    let host = reg.host();
    let (_d1, src) = store();
    let r = Reference::parse_tagged(&format!("{host}/busybox:latest")).expect("ref");
    let id = make_image(&src, &r);
    let opts = PushOptions {
        registry: registry_config(),
        credentials: None,
    };
    let digest = berth_distribution::push(&src, &r, &opts, |_| {})
        .await
        .expect("push");

    // docker pull from us (127.0.0.0/8 is an insecure registry for dockerd by default).
    let image = format!("{host}/busybox:latest");
    let out = docker.docker(&["pull", &image]);
    assert!(
        out.status.success(),
        "docker pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("Digest: {digest}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let inspect = docker.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{json .RepoDigests}}",
        &image,
    ]);
    let inspect = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(inspect.starts_with(&id.to_string()), "{inspect} vs {id}");
    assert!(
        inspect.contains(&format!("{host}/busybox@{digest}")),
        "{inspect}"
    );

    // docker push to us, pulled back with berth's client: same image.
    let pushed = format!("{host}/from-docker/bb:v1");
    assert!(docker.docker(&["tag", &image, &pushed]).status.success());
    let out = docker.docker(&["push", &pushed]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "docker push: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = reg.head("/v2/from-docker/bb/manifests/v1").await;
    let pushed_digest = header(&head, "docker-content-digest").expect("digest");
    assert!(
        stdout.contains(&format!("v1: digest: {pushed_digest}")),
        "{stdout}"
    );
    let (_d2, dst) = store();
    let pull = PullOptions {
        registry: registry_config(),
        ..Default::default()
    };
    let res = berth_distribution::pull(
        &dst,
        &Reference::parse_tagged(&pushed).expect("ref"),
        &pull,
        |_| {},
    )
    .await
    .expect("pull what docker pushed");
    assert_eq!(res.id, id);
    assert_eq!(res.manifest_digest.to_string(), pushed_digest);
}
