//! htpasswd Basic auth, token auth (with the crate's TokenServer, also against distribution 2.8
//! to show the tokens are the real thing), and TLS with a CA of the test's own.

mod common;

use std::sync::Arc;

use berth_distribution::{Credentials, PushOptions, RegistryConfig};
use berth_registry::TokenConfig;
use berth_registry::token_server::{TokenServer, TokenServerConfig};
use berth_types::Reference;
use common::*;
use reqwest::StatusCode;

fn registry_config() -> RegistryConfig {
    RegistryConfig {
        docker_config: None,
        certs_dirs: Vec::new(),
        ..Default::default()
    }
}

/// A small OCI layout to copy from.
fn layout() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_oci_layout(dir.path(), &[Tar::new().file("hello", b"hello\n").finish()]);
    let src = format!("oci:{}:latest", dir.path().display());
    (dir, src)
}

async fn push_with_client(
    host: &str,
    creds: Option<Credentials>,
) -> berth_distribution::Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(berth_image::ImageStore::open(dir.path()).expect("store"));
    let r = Reference::parse_tagged(&format!("{host}/client/app:v1")).expect("ref");
    let layer = Tar::new().file("a", b"a").finish();
    let mut input: &[u8] = &layer;
    store
        .create_image(
            None,
            Some(&mut input),
            Default::default(),
            Default::default(),
            Some(&r),
            &mut |_| {},
        )
        .expect("image");
    let opts = PushOptions {
        registry: registry_config(),
        credentials: creds,
    };
    berth_distribution::push(&store, &r, &opts, |_| {})
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_basic_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hp = dir.path().join("htpasswd");
    std::fs::write(
        &hp,
        format!("alice:{}\n", bcrypt::hash("s3cret", 5).expect("bcrypt")),
    )
    .expect("htpasswd");
    let reg = Reg::start_with(|c| {
        c.htpasswd = Some(hp.clone());
        c.realm = "berth-test".into();
    })
    .await;
    let r = reg.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&r, "www-authenticate").as_deref(),
        Some("Basic realm=\"berth-test\"")
    );
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let with = |u: &str, p: &str| {
        reg.http
            .get(reg.url("/v2/_catalog"))
            .basic_auth(u, Some(p))
            .send()
    };
    assert_eq!(
        with("alice", "nope").await.expect("GET").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with("bob", "s3cret").await.expect("GET").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        with("alice", "s3cret").await.expect("GET").status(),
        StatusCode::OK
    );

    // skopeo: refused without credentials, works with them.
    let (_l, src) = layout();
    let dest = format!("docker://{}/app:v1", reg.host());
    let err = skopeo_fails(&["copy", "-q", "--dest-tls-verify=false", &src, &dest]);
    assert!(
        err.contains("authentication required") || err.contains("unauthorized"),
        "{err}"
    );
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &src,
        &dest,
    ]);
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &dest,
    ]);

    // berth's client.
    assert!(push_with_client(&reg.host(), None).await.is_err());
    push_with_client(&reg.host(), Some(Credentials::new("alice", "s3cret")))
        .await
        .expect("push with credentials");
}

struct TokenSetup {
    _dir: tempfile::TempDir,
    server: TokenServer,
    bundle: std::path::PathBuf,
}

async fn token_setup() -> TokenSetup {
    let dir = tempfile::tempdir().expect("tempdir");
    make_token_cert(dir.path());
    let server = TokenServer::start(TokenServerConfig {
        key_pem: std::fs::read(dir.path().join("token.key")).expect("key"),
        cert_pem: std::fs::read(dir.path().join("token.crt")).expect("cert"),
        issuer: "berth-test-issuer".into(),
        service: "berth-registry".into(),
        credentials: Some(("alice".into(), "s3cret".into())),
    })
    .await
    .expect("token server");
    let bundle = dir.path().join("token.crt");
    TokenSetup {
        _dir: dir,
        server,
        bundle,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth() {
    let t = token_setup().await;
    let realm = t.server.realm();
    let reg = Reg::start_with(|c| {
        c.token = Some(TokenConfig {
            realm: realm.clone(),
            service: "berth-registry".into(),
            issuer: "berth-test-issuer".into(),
            rootcertbundle: t.bundle.clone(),
        });
    })
    .await;
    let r = reg.get("/v2/app/tags/list").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(format!(
            "Bearer realm=\"{realm}\",service=\"berth-registry\",scope=\"repository:app:pull\""
        ))
    );

    // Tokens straight from the token server: anonymous ones only pull.
    let token = |creds: bool, scope: &str| {
        let mut req = reg
            .http
            .get(format!("{realm}?service=berth-registry&scope={scope}"));
        if creds {
            req = req.basic_auth("alice", Some("s3cret"));
        }
        async move {
            let v: serde_json::Value = req.send().await.expect("token").json().await.expect("json");
            v["token"].as_str().expect("token").to_owned()
        }
    };
    let anon = token(false, "repository:app:pull,push").await;
    let r = reg
        .http
        .post(reg.url("/v2/app/blobs/uploads/"))
        .bearer_auth(&anon)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&r, "www-authenticate").is_some_and(|h| h.contains("error=\"insufficient_scope\"")
            && h.contains("scope=\"repository:app:pull,push\"")),
        "{:?}",
        header(&r, "www-authenticate")
    );
    let full = token(true, "repository:app:pull,push").await;
    let r = reg
        .http
        .post(reg.url("/v2/app/blobs/uploads/"))
        .bearer_auth(&full)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // A token for another repository does not open this one; the catalog needs its own scope.
    let r = reg
        .http
        .get(reg.url("/v2/other/tags/list"))
        .bearer_auth(&full)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reg
        .http
        .get(reg.url("/v2/_catalog"))
        .bearer_auth(&full)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let cat = token(true, "registry:catalog:*").await;
    let r = reg
        .http
        .get(reg.url("/v2/_catalog"))
        .bearer_auth(&cat)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    // Tampered and garbage tokens.
    let mut tampered = full.clone();
    tampered.pop();
    tampered.push(if full.ends_with('A') { 'B' } else { 'A' });
    for bad in [tampered.as_str(), "garbage", ""] {
        let r = reg
            .http
            .get(reg.url("/v2/"))
            .header("authorization", format!("Bearer {bad}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }

    // skopeo and berth's client go through the token dance.
    let (_l, src) = layout();
    let dest = format!("docker://{}/app:v1", reg.host());
    skopeo_fails(&["copy", "-q", "--dest-tls-verify=false", &src, &dest]);
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &src,
        &dest,
    ]);
    // Anonymous pull is allowed by the token server's policy.
    skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
    assert!(push_with_client(&reg.host(), None).await.is_err());
    push_with_client(&reg.host(), Some(Credentials::new("alice", "s3cret")))
        .await
        .expect("push with credentials");

    // `docker login` gets an identity token (the token server's refresh token) and later
    // requests use it instead of the password, through the OAuth2 refresh grant.
    let cfg = registry_config();
    let identity =
        berth_distribution::login(&cfg, &reg.host(), &Credentials::new("alice", "s3cret"))
            .await
            .expect("login")
            .expect("an identity token");
    push_with_client(
        &reg.host(),
        Some(Credentials::new("<token>", identity.clone())),
    )
    .await
    .expect("push with the identity token");
    assert!(
        push_with_client(&reg.host(), Some(Credentials::new("<token>", "forged")))
            .await
            .is_err()
    );
    // Login with an identity token works too; wrong passwords still fail.
    berth_distribution::login(&cfg, &reg.host(), &Credentials::new("<token>", identity))
        .await
        .expect("login with the identity token");
    assert!(
        berth_distribution::login(&cfg, &reg.host(), &Credentials::new("alice", "wrong"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_server_tokens_work_with_distribution() {
    let t = token_setup().await;
    let dist = Registry::start_token(
        &t.server.realm(),
        "berth-registry",
        "berth-test-issuer",
        &t.bundle,
    );
    let (_l, src) = layout();
    let dest = format!("docker://{}/app:v1", dist.host());
    skopeo_fails(&["copy", "-q", "--dest-tls-verify=false", &src, &dest]);
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &src,
        &dest,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_own_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let reg = Reg::start_with(|c| {
        c.tls = Some(berth_registry::TlsConfig {
            cert: certs.path().join("server.crt"),
            key: certs.path().join("server.key"),
        });
    })
    .await;
    assert!(reg.server.url().starts_with("https://"));
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.crt")).expect("ca"))
            .expect("ca");
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client");
    let r = client
        .get(reg.url("/v2/"))
        .send()
        .await
        .expect("GET over TLS");
    assert_eq!(r.status(), StatusCode::OK);
    // Without the CA the certificate is not trusted; plain HTTP gets nothing.
    assert!(
        reqwest::Client::new()
            .get(reg.url("/v2/"))
            .send()
            .await
            .is_err()
    );
    let plain = format!("http://{}/v2/", reg.host());
    assert!(
        reqwest::Client::new()
            .get(&plain)
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );
    // skopeo with the CA in a cert dir.
    let cert_dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(certs.path().join("ca.crt"), cert_dir.path().join("ca.crt")).expect("copy");
    let (_l, src) = layout();
    let dest = format!("docker://{}/tls/app:v1", reg.host());
    let cd = cert_dir.path().display().to_string();
    skopeo(&["copy", "-q", "--dest-cert-dir", &cd, &src, &dest]);
    skopeo(&["inspect", "--raw", "--cert-dir", &cd, &dest]);
}
