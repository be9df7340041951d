//! Plain HTTP(S) GET for `docker import URL`: follows redirects, verifies TLS against the
//! system CA bundle, and hands the body to blocking code as a `Read` without buffering it.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

const MAX_REDIRECTS: usize = 10;

fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let path = std::env::var("SSL_CERT_FILE")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".to_owned());
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(f) = std::fs::File::open(&path) {
        for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(f)).flatten() {
            // Odd certificates in a system bundle are skipped, as Go does.
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

async fn get_once(url: &str, uri: &Uri) -> Result<Response<Incoming>> {
    let fail = |e: &dyn std::fmt::Display| Error::invalid(format!("Get \"{url}\": {e}"));
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(Error::invalid(format!(
                "invalid URL {url:?}: only http(s) sources can be imported"
            )));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| Error::invalid(format!("invalid URL {url:?}: no host")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|e| fail(&e))?;
    let io: Box<dyn Io> = if https {
        let name =
            rustls::pki_types::ServerName::try_from(bare.to_owned()).map_err(|e| fail(&e))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(&e))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| fail(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("download connection: {e}");
        }
    });
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "berth")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(&e))?;
    sender.send_request(req).await.map_err(|e| fail(&e))
}

/// GET `url`, following redirects; a non-2xx final answer is an error.
pub async fn get(url: &str) -> Result<Response<Incoming>> {
    let mut current: Uri = url
        .parse()
        .map_err(|e| Error::invalid(format!("invalid URL {url:?}: {e}")))?;
    for _ in 0..=MAX_REDIRECTS {
        let resp = get_once(url, &current).await?;
        if resp.status().is_redirection()
            && let Some(loc) = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
        {
            current = resolve(&current, loc)
                .ok_or_else(|| Error::invalid(format!("Get \"{url}\": bad redirect to {loc:?}")))?;
            continue;
        }
        if !resp.status().is_success() {
            return Err(Error::invalid(format!(
                "Get \"{url}\": unexpected status {}",
                resp.status()
            )));
        }
        return Ok(resp);
    }
    Err(Error::invalid(format!(
        "Get \"{url}\": stopped after {MAX_REDIRECTS} redirects"
    )))
}

/// A `Location` relative to the URL that answered with it.
fn resolve(base: &Uri, loc: &str) -> Option<Uri> {
    if loc.contains("://") {
        return loc.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    if loc.starts_with('/') {
        return format!("{scheme}://{authority}{loc}").parse().ok();
    }
    let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    format!("{scheme}://{authority}{dir}/{loc}").parse().ok()
}

/// A blocking reader over the chunks the download task sends (used from `spawn_blocking`).
struct ChunkReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0), // download finished
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// GET `url` and return its body as a blocking reader.
pub async fn get_reader(url: &str) -> Result<Box<dyn Read + Send>> {
    let resp = get(url).await?;
    let (tx, rx) = mpsc::channel(8);
    let mut body = resp.into_body();
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let item = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => Ok(d),
                    Err(_) => continue, // trailers
                },
                Err(e) => Err(std::io::Error::other(e)),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    Ok(Box::new(ChunkReader {
        rx,
        cur: Bytes::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve() {
        let base: Uri = "http://h:1/a/b.tar".parse().unwrap();
        assert_eq!(resolve(&base, "/c.tar").unwrap(), "http://h:1/c.tar");
        assert_eq!(resolve(&base, "c.tar").unwrap(), "http://h:1/a/c.tar");
        assert_eq!(resolve(&base, "https://x/y").unwrap(), "https://x/y");
    }

    #[tokio::test]
    async fn bad_urls() {
        assert!(get("ftp://x/y").await.is_err());
        assert!(get("http://127.0.0.1:1/nothing").await.is_err());
    }
}
