//! Registry test support, shared by the e2e tests and the test suites of crates/distribution
//! and crates/registry (as a dev-dependency): Debian's `docker-registry` (distribution 2.8) and
//! `berth registry serve` on 127.0.0.1 with their own storage dir and port (killed on drop),
//! skopeo, openssl test PKI, layer tars, OCI layouts and a small token server.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_types::Digest;

use crate::scratch;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A docker-registry process with its own storage; killed (and its storage removed) on drop,
/// even when a test panics.
pub struct Registry {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn have_registry() -> bool {
    let ok = Path::new("/usr/bin/docker-registry").exists();
    if !ok {
        eprintln!("SKIP: docker-registry is not installed (apt-get install docker-registry)");
    }
    ok
}

/// Start `cmd` with its output appended to `log` and wait until it listens on
/// 127.0.0.1:`port` (panicking with the log if it exits first).
fn spawn_listening(mut cmd: Command, log: &Path, port: u16, what: &str) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// `htpasswd` = Some((user, password)): distribution's htpasswd basic auth.
    pub fn start_with(htpasswd: Option<(&str, &str)>) -> Registry {
        Registry::start_full(htpasswd, None)
    }

    /// With `tls` = a dir holding server.crt/server.key/ca.crt (see [`make_certs`]): HTTPS that
    /// requires a client certificate signed by ca.crt.
    pub fn start_full(htpasswd: Option<(&str, &str)>, tls: Option<&Path>) -> Registry {
        let dir = scratch("reg");
        let mut auth = String::new();
        if let Some((u, p)) = htpasswd {
            // distribution 2.8 accepts only bcrypt entries.
            let hash = bcrypt::hash(p, 5).expect("bcrypt");
            let hp = dir.join("htpasswd");
            std::fs::write(&hp, format!("{u}:{hash}\n")).expect("htpasswd");
            auth = format!(
                "  htpasswd:\n    realm: berth-test\n    path: {}\n",
                hp.display()
            );
        }
        let tls = tls
            .map(|d| {
                format!(
                    "  tls:\n    certificate: {0}/server.crt\n    key: {0}/server.key\n    clientcas:\n      - {0}/ca.crt\n",
                    d.display()
                )
            })
            .unwrap_or_default();
        Registry::start_in(dir, &tls, &auth)
    }

    /// Token auth: JWTs signed by a key whose certificate is in `bundle`.
    pub fn start_token(realm: &str, service: &str, issuer: &str, bundle: &Path) -> Registry {
        Registry::start_auth(&format!(
            "  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
            bundle.display()
        ))
    }

    /// `auth` is a YAML fragment for under `auth:` (indented by 2), or empty.
    pub fn start_auth(auth: &str) -> Registry {
        Registry::start_in(scratch("reg"), "", auth)
    }

    fn start_in(dir: PathBuf, http_extra: &str, auth: &str) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed (apt-get install docker-registry)"
        );
        let port = free_port();
        let auth = if auth.is_empty() {
            String::new()
        } else {
            format!("auth:\n{auth}")
        };
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}{auth}",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), cfg).expect("config");
        let mut r = Registry {
            dir,
            port,
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("/usr/bin/docker-registry");
        cmd.arg("serve").arg(self.dir.join("config.yml"));
        let log = self.dir.join("registry.log");
        self.child = Some(spawn_listening(cmd, &log, self.port, "docker-registry"));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `127.0.0.1:<port>`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file a blob lives in, in distribution's filesystem layout.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }

    /// All blob data files, largest first.
    pub fn blobs(&self) -> Vec<(PathBuf, u64)> {
        let storage = self.dir.join("storage/docker/registry/v2/blobs/sha256");
        let mut out = Vec::new();
        for d1 in std::fs::read_dir(&storage).into_iter().flatten().flatten() {
            for d2 in std::fs::read_dir(d1.path()).into_iter().flatten().flatten() {
                let p = d2.path().join("data");
                if let Ok(m) = std::fs::metadata(&p) {
                    out.push((p, m.len()));
                }
            }
        }
        out.sort_by_key(|(_, l)| std::cmp::Reverse(*l));
        out
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `berth registry serve` as a process of its own (the CLI as users run it), killed on drop.
pub struct BerthServe {
    pub port: u16,
    pub root: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    /// A scratch dir of our own, removed on drop.
    owned: Option<PathBuf>,
}

/// The built `berth` binary.
pub fn berth_bin() -> PathBuf {
    let b = crate::bin_dir().join("berth");
    assert!(
        b.exists(),
        "{} is missing: cargo build --bins first",
        b.display()
    );
    b
}

impl BerthServe {
    /// Serve `root` (created if missing) with `extra` flags (`--htpasswd f`, `--read-only`...).
    pub fn start(root: &Path, extra: &[&str]) -> BerthServe {
        let mut s = BerthServe {
            port: free_port(),
            root: root.to_owned(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: root.with_extension("log"),
            owned: None,
        };
        s.spawn();
        s
    }

    /// Serve a fresh scratch directory (removed on drop).
    pub fn start_scratch(extra: &[&str]) -> BerthServe {
        let dir = scratch("berth-registry");
        let mut s = BerthServe::start(&dir.join("storage"), extra);
        s.owned = Some(dir);
        s
    }

    pub fn spawn(&mut self) {
        let mut cmd = Command::new(berth_bin());
        cmd.args(["registry", "serve", "--addr"])
            .arg(self.host())
            .arg("--root")
            .arg(&self.root)
            .args(&self.args);
        self.child = Some(spawn_listening(
            cmd,
            &self.log,
            self.port,
            "berth registry serve",
        ));
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:<port>`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for BerthServe {
    fn drop(&mut self) {
        self.kill9();
        if let Some(d) = &self.owned {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Run skopeo (against loopback registries only: --tls-verify=false is the caller's choice).
pub fn skopeo_output(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo")
}

/// Run skopeo, which must succeed; its stdout.
pub fn skopeo(args: &[&str]) -> String {
    let out = skopeo_output(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run skopeo, which must fail; its stderr.
pub fn skopeo_fails(args: &[&str]) -> String {
    let out = skopeo_output(args);
    assert!(!out.status.success(), "skopeo {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The manifest digest skopeo sees at `image` (a `docker://` reference).
pub fn skopeo_digest(image: &str, extra: &[&str]) -> String {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(image);
    let raw = skopeo(&args);
    Digest::of(raw.as_bytes()).to_string()
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn self_signed(dir: &Path, name: &str, cn: &str) {
    let (key, crt, subj) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN={cn}"),
    );
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &crt,
            "-days", "2", "-subj", &subj,
        ],
    );
}

/// A test CA (ca.crt/ca.key), a server certificate for 127.0.0.1 (server.crt/server.key) and
/// a client certificate (client.crt/client.key), made with openssl.
pub fn make_certs(dir: &Path) {
    self_signed(dir, "ca", "berth-test-ca");
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, cn) in [("server", "127.0.0.1"), ("client", "berth-client")] {
        let (key, csr, crt, ext, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
            format!("/CN={cn}"),
        );
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subj,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

/// A self-signed signing certificate for a token issuer (token.crt/token.key).
pub fn make_token_cert(dir: &Path) {
    self_signed(dir, "token", "berth-token-issuer");
}

/// A tar builder for image layers (root-owned entries, a fixed mtime).
pub struct Tar(tar::Builder<Vec<u8>>);

impl Default for Tar {
    fn default() -> Self {
        Tar::new()
    }
}

impl Tar {
    pub fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    pub fn dir(mut self, path: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Directory, 0o755, 0);
        self.0
            .append_data(&mut h, path, std::io::empty())
            .expect("tar");
        self
    }
    pub fn file(mut self, path: &str, data: &[u8]) -> Tar {
        let mut h = Tar::header(tar::EntryType::Regular, 0o755, data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("tar");
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Tar {
        let mut h = Tar::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).expect("tar");
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

/// A busybox rootfs (Debian's busybox-static) as one layer tar.
pub fn busybox_layer() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let mut t = Tar::new()
        .dir("bin/")
        .dir("etc/")
        .dir("tmp/")
        .file("bin/busybox", &bb);
    for app in ["sh", "ls", "cat", "echo", "true"] {
        t = t.symlink(&format!("bin/{app}"), "busybox");
    }
    t.file("etc/hostname", b"busybox\n").finish()
}

/// Pseudo-random bytes (xorshift): incompressible for gzip, cheap to make.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // Distinct odd states for distinct seeds.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gz");
    gz.finish().expect("gz")
}

/// Write an OCI image layout with one image (tag `latest`, linux/amd64, `Cmd ["sh"]`) made of
/// `layers` (media type, blob bytes) and a config listing `diff_ids`; returns the manifest
/// digest.
pub fn write_oci_layout(dir: &Path, layers: &[(&str, Vec<u8>)], diff_ids: &[Digest]) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |data: &[u8]| -> (Digest, usize) {
        let d = Digest::of(data);
        std::fs::write(blobs.join(d.hex()), data).expect("blob");
        (d, data.len())
    };
    let mut descs = Vec::new();
    for (mt, blob) in layers {
        let (d, n) = put(blob);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": n}));
    }
    let diff_ids: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = put(&serde_json::to_vec(&cfg).expect("cfg"));
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cd.to_string(), "size": cs},
        "layers": descs,
    });
    let (md, ms) = put(&serde_json::to_vec(&m).expect("manifest"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    md
}

/// [`write_oci_layout`] of plain layer tars, gzipped.
pub fn write_oci_layout_gz(dir: &Path, layers: &[Vec<u8>]) -> Digest {
    let blobs: Vec<(&str, Vec<u8>)> = layers.iter().map(|l| (OCI_LAYER_GZIP, gzip(l))).collect();
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    write_oci_layout(dir, &blobs, &diff_ids)
}

/// A small token server for distribution's token auth (the flow Docker Hub uses): it signs
/// RS256 JWTs with a throwaway key (openssl) whose self-signed certificate is the registry's
/// root bundle. Anonymous requests get `pull` only; with the right Basic credentials every
/// action asked for. Serves on 127.0.0.1 until dropped.
pub struct TokenServer {
    pub port: u16,
    pub dir: PathBuf,
    pub service: String,
    pub issuer: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        use base64::Engine as _;
        let dir = scratch("tok");
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=berth-token",
            ])
            .args(["-days", "2", "-keyout"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl req failed");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(dir.join("cert.pem"))
            .output()
            .expect("openssl x509");
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (service, issuer) = ("berth-registry".to_owned(), "berth-token-issuer".to_owned());
        let key = dir.join("key.pem");
        let (svc, iss, stop2) = (service.clone(), issuer.clone(), stop.clone());
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let (key, x5c, basic, svc, iss) = (
                            key.clone(),
                            x5c.clone(),
                            basic.clone(),
                            svc.clone(),
                            iss.clone(),
                        );
                        std::thread::spawn(move || {
                            serve_token(conn, &key, &x5c, &basic, &svc, &iss)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TokenServer {
            port,
            dir,
            service,
            issuer,
            stop,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_token(conn: TcpStream, key: &Path, x5c: &str, basic: &str, service: &str, issuer: &str) {
    use base64::Engine as _;
    use std::io::{BufRead, BufReader};
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut authorized = false;
        let mut presented = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("authorization")
            {
                presented = true;
                authorized = v.trim() == basic;
            }
        }
        let target = request_line.split(' ').nth(1).unwrap_or("");
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut access = Vec::new();
        let mut account = String::new();
        for kv in query.split('&') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = url_decode(v);
            match k {
                "account" => account = v,
                "scope" => {
                    for scope in v.split(' ') {
                        // repository:name:pull,push (names may hold ':' only in the last part)
                        let mut parts = scope.splitn(2, ':');
                        let typ = parts.next().unwrap_or("");
                        let rest = parts.next().unwrap_or("");
                        let Some((name, actions)) = rest.rsplit_once(':') else {
                            continue;
                        };
                        let granted: Vec<&str> = actions
                            .split(',')
                            .filter(|a| authorized || *a == "pull")
                            .collect();
                        access.push(serde_json::json!({
                            "type": typ, "name": name, "actions": granted,
                        }));
                    }
                }
                _ => {}
            }
        }
        // Wrong credentials are an error (what `login` checks); none at all: anonymous.
        let bad_creds = presented && !authorized;
        let (status, body) = if bad_creds {
            (
                "401 Unauthorized",
                r#"{"details":"incorrect username or password"}"#.to_owned(),
            )
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let b64 = |v: &serde_json::Value| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
            };
            let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
            let claims = serde_json::json!({
                "iss": issuer, "sub": account, "aud": service,
                "exp": now + 600, "nbf": now - 60, "iat": now,
                "jti": format!("{now}-{}", std::process::id()),
                "access": access,
            });
            let signing_input = format!("{}.{}", b64(&header), b64(&claims));
            let mut child = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("openssl dgst");
            if let Some(mut i) = child.stdin.take() {
                let _ = i.write_all(signing_input.as_bytes());
            }
            let sig = child.wait_with_output().expect("openssl dgst").stdout;
            let jwt = format!(
                "{signing_input}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
            );
            (
                "200 OK",
                serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 600})
                    .to_string(),
            )
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
