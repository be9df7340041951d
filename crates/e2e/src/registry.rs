//! A real registry for the end-to-end tests: Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1 with its own storage dir and port, optionally behind htpasswd auth. Killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scratch;

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

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// `htpasswd` = Some((user, password)): distribution's htpasswd basic auth.
    pub fn start_with(htpasswd: Option<(&str, &str)>) -> Registry {
        Registry::start_cfg(
            htpasswd.map(|(u, p)| {
                // distribution 2.8 accepts only bcrypt entries.
                let hash = bcrypt::hash(p, 5).expect("bcrypt");
                (u.to_owned(), hash)
            }),
            None,
        )
    }

    /// `token` = Some((realm, service, issuer, root cert bundle path)): distribution's token
    /// auth, verifying JWTs signed by a key whose certificate is in the bundle.
    pub fn start_token(realm: &str, service: &str, issuer: &str, bundle: &Path) -> Registry {
        Registry::start_cfg(
            None,
            Some(format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                bundle.display()
            )),
        )
    }

    fn start_cfg(htpasswd: Option<(String, String)>, extra: Option<String>) -> Registry {
        let dir = scratch("reg");
        let port = free_port();
        let mut auth = extra.unwrap_or_default();
        if let Some((u, hash)) = htpasswd {
            let hp = dir.join("htpasswd");
            std::fs::write(&hp, format!("{u}:{hash}\n")).expect("htpasswd");
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                hp.display()
            );
        }
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("registry.log"))
            .expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// Run skopeo (against loopback registries only: --tls-verify=false is the caller's choice).
pub fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo")
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
    use std::io::{BufRead, BufReader, Write};
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
