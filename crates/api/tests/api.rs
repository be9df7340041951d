//! The API router driven in-process (tower oneshot) against a real engine in a temp data root.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_engine::{Engine, EngineConfig};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct T {
    _dir: tempfile::TempDir,
    app: Router,
    engine: Arc<Engine>,
}

async fn setup() -> T {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EngineConfig::new(dir.path().join("data"), dir.path().join("exec"));
    // no bridge, no host-wide changes: these tests run no container
    cfg.bridge = Some("none".into());
    cfg.ip_forward = false;
    let engine = Engine::open(cfg).await.unwrap();
    let app = berth_api::app(engine.clone(), CancellationToken::new());
    T {
        _dir: dir,
        app,
        engine,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: Vec<u8>) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn ping_and_headers() {
    let t = setup().await;
    for m in ["GET", "HEAD"] {
        let r = call(&t.app, m, "/_ping", vec![]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["api-version"], "1.50");
        assert_eq!(r.headers["ostype"], "linux");
        assert_eq!(r.headers["docker-experimental"], "false");
        assert_eq!(r.headers["builder-version"], "1");
        assert_eq!(r.headers["swarm"], "inactive");
        assert_eq!(r.headers["server"], "Docker/28.2.2 (linux)");
        assert!(
            r.headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("no-cache")
        );
        if m == "GET" {
            assert_eq!(r.text(), "OK");
        }
    }
}

#[tokio::test]
async fn version_negotiation() {
    let t = setup().await;
    let r = call(&t.app, "GET", "/v1.23/version", vec![]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
    );
    let r = call(&t.app, "GET", "/v1.51/version", vec![]).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "client version 1.51 is too new. Maximum supported API version is 1.50"
    );
    let r = call(&t.app, "GET", "/v1.24/version", vec![]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["ApiVersion"], "1.50");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Components"][0]["Name"], "Engine");
    let r = call(&t.app, "GET", "/v1.50/nonsense", vec![]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "page not found");
    let r = call(&t.app, "PUT", "/_ping", vec![]).await;
    assert_eq!(r.status, 404);
    // version-dependent output: VirtualSize only before 1.44
    let old = call(&t.app, "GET", "/v1.43/images/json", vec![])
        .await
        .json();
    assert!(old[0].get("VirtualSize").is_some());
    let new = call(&t.app, "GET", "/v1.50/images/json", vec![])
        .await
        .json();
    assert!(new[0].get("VirtualSize").is_none());
}

#[tokio::test]
async fn info_has_what_docker_info_reads() {
    let t = setup().await;
    let r = call(&t.app, "GET", "/info", vec![]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    for k in [
        "ID",
        "Containers",
        "ContainersRunning",
        "Images",
        "Driver",
        "DriverStatus",
        "Plugins",
        "MemoryLimit",
        "LoggingDriver",
        "CgroupDriver",
        "CgroupVersion",
        "KernelVersion",
        "OperatingSystem",
        "OSType",
        "Architecture",
        "NCPU",
        "MemTotal",
        "DockerRootDir",
        "Name",
        "ServerVersion",
        "Runtimes",
        "DefaultRuntime",
        "LiveRestoreEnabled",
        "RegistryConfig",
        "SecurityOptions",
        "Warnings",
        "Swarm",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["Driver"], "overlay2");
    assert_eq!(v["Images"], 1, "hello-world is loaded at start");
    assert_eq!(
        v["DockerRootDir"],
        t.engine.config.data_root.display().to_string()
    );
    let df = call(&t.app, "GET", "/system/df", vec![]).await.json();
    assert_eq!(df["Images"].as_array().unwrap().len(), 1);
    assert_eq!(df["Containers"], serde_json::json!([]));
    assert!(df["LayersSize"].as_i64().unwrap() > 0);
    let ps = call(&t.app, "GET", "/v1.50/containers/json?all=1", vec![]).await;
    assert_eq!(ps.json(), serde_json::json!([]));
}

#[tokio::test]
async fn image_lifecycle_with_slashes_and_colons() {
    let t = setup().await;
    let r = call(
        &t.app,
        "POST",
        "/images/hello-world/tag?repo=example.com:5000/team/hw&tag=v1",
        vec![],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = call(
        &t.app,
        "GET",
        "/images/example.com:5000/team/hw:v1/json",
        vec![],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let img = r.json();
    let id = img["Id"].as_str().unwrap().to_owned();
    assert!(
        img["RepoTags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "example.com:5000/team/hw:v1")
    );
    assert_eq!(img["GraphDriver"]["Name"], "overlay2");
    assert_eq!(img["RootFS"]["Type"], "layers");
    assert!(img["Metadata"]["LastTagTime"].is_string());

    let h = call(
        &t.app,
        "GET",
        "/images/example.com:5000/team/hw:v1/history",
        vec![],
    )
    .await;
    assert_eq!(h.status, 200);
    assert!(h.json().as_array().is_some_and(|a| !a.is_empty()));

    // filters
    let f = call(
        &t.app,
        "GET",
        "/images/json?filters=%7B%22reference%22%3A%7B%22example.com%3A5000%2F*%2F*%22%3Atrue%7D%7D",
        vec![],
    )
    .await
    .json();
    assert_eq!(f.as_array().unwrap().len(), 1);
    assert_eq!(
        f[0]["RepoTags"],
        serde_json::json!(["example.com:5000/team/hw:v1"])
    );

    // save both names, streamed
    let saved = call(
        &t.app,
        "GET",
        "/images/get?names=hello-world&names=example.com:5000/team/hw:v1",
        vec![],
    )
    .await;
    assert_eq!(saved.status, 200);
    assert_eq!(saved.headers["content-type"], "application/x-tar");
    assert!(saved.body.len() > 1024);

    let r = call(
        &t.app,
        "DELETE",
        "/images/example.com:5000/team/hw:v1",
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!([{"Untagged": "example.com:5000/team/hw:v1"}])
    );
    let r = call(&t.app, "DELETE", &format!("/images/{id}?force=1"), vec![]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Deleted"));
    let r = call(&t.app, "GET", "/images/hello-world/json", vec![]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such image: hello-world:latest");

    // load it back
    let r = call(&t.app, "POST", "/images/load?quiet=1", saved.body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(r#"{"stream":"Loaded image: hello-world:latest\n"}"#),
        "{text}"
    );
    assert!(
        text.contains("Loaded image: example.com:5000/team/hw:v1"),
        "{text}"
    );

    // a save of an unknown name is a clean 404, not a broken tar
    let r = call(&t.app, "GET", "/images/nope/get", vec![]).await;
    assert_eq!(r.status, 404);

    // events replayed from history, stream ends at `until`
    let until = chrono::Utc::now().timestamp() + 1;
    let r = call(
        &t.app,
        "GET",
        &format!("/events?since=0&until={until}&filters=%7B%22type%22%3A%5B%22image%22%5D%7D"),
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let actions: Vec<String> = r
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for a in ["tag", "save", "untag", "delete", "load"] {
        assert!(actions.iter().any(|x| x == a), "{a} missing in {actions:?}");
    }
}

#[tokio::test]
async fn malformed_archive_is_a_400_and_store_unchanged() {
    let t = setup().await;
    let r = call(
        &t.app,
        "POST",
        "/images/load?quiet=1",
        b"this is not a tar archive at all".repeat(40),
    )
    .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
    assert!(r.json()["message"].is_string());
    let imgs = call(&t.app, "GET", "/images/json", vec![]).await.json();
    assert_eq!(imgs.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn import_with_changes_and_tag() {
    let t = setup().await;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "etc/hello", &b"hello"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let r = call(
        &t.app,
        "POST",
        "/images/create?fromSrc=-&repo=imp/test&tag=v2&message=msg&changes=CMD%20%5B%22sh%22%5D&changes=ENV%20A%3D1",
        tar,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(r#""status":"sha256:"#), "{}", r.text());
    let img = call(&t.app, "GET", "/images/imp/test:v2/json", vec![])
        .await
        .json();
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(img["Config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(img["Comment"], "msg");
    let r = call(
        &t.app,
        "POST",
        // a registry on a closed loopback port: pulls fail with a message, never go out
        "/images/create?fromImage=127.0.0.1:1/busybox&tag=latest",
        vec![],
    )
    .await;
    assert!(r.status.is_server_error() || r.status.is_client_error());
    assert!(
        !r.json()["message"].as_str().unwrap_or("").is_empty(),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn panics_become_500() {
    use axum::routing::get;
    let app = Router::new()
        .route("/boom", get(boom))
        .layer(axum::middleware::from_fn(berth_api::version::negotiate));
    let r = call(&app, "GET", "/boom", vec![]).await;
    assert_eq!(r.status, 500);
    assert!(r.json()["message"].as_str().unwrap().contains("kaboom"));
}

async fn boom() -> &'static str {
    let v: Vec<u8> = Vec::new();
    if v.is_empty() {
        panic!("kaboom");
    }
    "unreachable"
}
