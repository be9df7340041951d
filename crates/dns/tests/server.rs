//! The embedded DNS server in real network namespaces made by the test, queried over real UDP
//! and TCP; forwarding goes to a fake upstream of the test's own on 127.0.0.1.

use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_dns::{DNS_ADDR, Resolve, Server};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A fresh network namespace, alive as long as the returned file is open.
fn new_netns() -> File {
    std::thread::spawn(|| {
        // SAFETY: unshare only affects this short-lived thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        File::open("/proc/thread-self/ns/net").expect("open netns")
    })
    .join()
    .expect("netns thread")
}

/// Runs `f` on a thread inside `ns` (sockets it makes stay there).
fn in_ns<T: Send + 'static>(ns: &File, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.try_clone().expect("dup netns");
    std::thread::spawn(move || {
        // SAFETY: setns only affects this short-lived thread.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        f()
    })
    .join()
    .expect("ns thread")
}

async fn udp_client(ns: &File) -> UdpSocket {
    let s = in_ns(ns, || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind client");
        s.set_nonblocking(true).expect("nonblocking");
        s
    });
    UdpSocket::from_std(s).expect("tokio socket")
}

async fn tcp_client(ns: &File) -> TcpStream {
    let s = in_ns(ns, || {
        std::net::TcpStream::connect(DNS_ADDR).expect("connect tcp")
    });
    s.set_nonblocking(true).expect("nonblocking");
    TcpStream::from_std(s).expect("tokio stream")
}

fn question(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
    }
    m
}

async fn ask_udp(sock: &UdpSocket, q: &Message) -> Option<Message> {
    sock.send_to(&q.to_vec().expect("encode"), DNS_ADDR)
        .await
        .ok()?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(6), sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let m = Message::from_vec(&buf[..n]).expect("answer parses");
    assert_eq!(m.metadata.id, q.metadata.id);
    Some(m)
}

async fn ask_tcp(stream: &mut TcpStream, q: &Message) -> Message {
    let bytes = q.to_vec().expect("encode");
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend(bytes);
    stream.write_all(&out).await.expect("write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.expect("read len");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.expect("read");
    Message::from_vec(&buf).expect("answer parses")
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

struct Names(HashMap<String, Vec<IpAddr>>);

impl Resolve for Names {
    fn lookup(&self, name: &str) -> Vec<IpAddr> {
        self.0.get(name).cloned().unwrap_or_default()
    }
    fn reverse(&self, addr: IpAddr) -> Option<String> {
        self.0
            .iter()
            .find(|(_, v)| v.len() == 1 && v[0] == addr)
            .map(|(k, _)| k.clone())
    }
}

fn names() -> Arc<Names> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut m = HashMap::new();
    m.insert("web".to_string(), vec![ip("10.0.0.2")]);
    m.insert(
        "api".to_string(),
        vec![ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.5")],
    );
    m.insert("dual".to_string(), vec![ip("10.0.0.9"), ip("fd00::9")]);
    m.insert(
        "many".to_string(),
        (0..100u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)))
            .collect(),
    );
    Arc::new(Names(m))
}

/// A fake upstream resolver on 127.0.0.1 (UDP and TCP on one port): answers 192.0.2.1 for
/// everything, except `big.test.` whose UDP answer is truncated (the full one is over TCP).
struct Upstream {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    tcp_asked: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn upstream_answer(q: &Message, tcp: bool) -> Vec<u8> {
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    r.add_queries(q.queries.clone());
    let name = q.queries[0].name().clone();
    if name.to_ascii() == "big.test." && !tcp {
        r.metadata.truncation = true;
    } else {
        let n = if name.to_ascii() == "big.test." {
            60
        } else {
            1
        };
        for i in 0..n {
            r.add_answer(Record::from_rdata(
                name.clone(),
                30,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1 + i))),
            ));
        }
    }
    r.to_vec().unwrap()
}

async fn fake_upstream() -> Upstream {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let tcp_asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let u = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            let q = Message::from_vec(&buf[..n]).unwrap();
            a.lock().unwrap().push(q.queries[0].name().to_ascii());
            let _ = udp.send_to(&upstream_answer(&q, false), peer).await;
        }
    });
    let (a, c) = (asked.clone(), tcp_asked.clone());
    let t = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                continue;
            };
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf).unwrap();
            a.lock().unwrap().push(q.queries[0].name().to_ascii());
            c.fetch_add(1, Ordering::SeqCst);
            let r = upstream_answer(&q, true);
            let mut out = (r.len() as u16).to_be_bytes().to_vec();
            out.extend(r);
            s.write_all(&out).await.unwrap();
        }
    });
    Upstream {
        addr,
        asked,
        tcp_asked,
        tasks: vec![u, t],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_our_names_round_robin() {
    let ns = new_netns();
    let up = fake_upstream().await;
    let _server = Server::start(&ns, names(), vec![up.addr]).expect("start");
    let c = udp_client(&ns).await;

    let a = ask_udp(&c, &question("web", RecordType::A, false))
        .await
        .unwrap();
    assert_eq!(a.metadata.message_type, MessageType::Response);
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&a), vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(a.answers[0].ttl, 600);

    // Several addresses: every one comes first in turn, the set stays whole.
    let mut firsts = Vec::new();
    for _ in 0..3 {
        let a = ask_udp(&c, &question("api", RecordType::A, false))
            .await
            .unwrap();
        let mut got = addrs(&a);
        firsts.push(got[0]);
        got.sort();
        assert_eq!(got.len(), 3);
    }
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 3, "round-robin: {firsts:?}");

    // AAAA of a v4-only name of ours: empty NOERROR, not forwarded.
    let a = ask_udp(&c, &question("web", RecordType::AAAA, true))
        .await
        .unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.answers.is_empty());
    assert!(a.edns.is_some(), "EDNS query gets OPT back");
    let a = ask_udp(&c, &question("dual", RecordType::AAAA, false))
        .await
        .unwrap();
    assert_eq!(addrs(&a), vec!["fd00::9".parse::<IpAddr>().unwrap()]);
    let a = ask_udp(&c, &question("web", RecordType::MX, false))
        .await
        .unwrap();
    assert!(a.answers.is_empty());
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);

    // PTR of one of ours.
    let a = ask_udp(
        &c,
        &question("2.0.0.10.in-addr.arpa", RecordType::PTR, false),
    )
    .await
    .unwrap();
    match &a.answers[..] {
        [r] => assert_eq!(r.data.to_string(), "web."),
        other => panic!("PTR answers: {other:?}"),
    }

    // 100 addresses do not fit 512 bytes: as many as fit, TC set; over TCP all of them.
    let a = ask_udp(&c, &question("many", RecordType::A, false))
        .await
        .unwrap();
    assert!(a.metadata.truncation);
    assert!(!a.answers.is_empty() && a.answers.len() < 100);
    let mut t = tcp_client(&ns).await;
    let a = ask_tcp(&mut t, &question("many", RecordType::A, false)).await;
    assert!(!a.metadata.truncation);
    assert_eq!(a.answers.len(), 100);
    let a = ask_tcp(&mut t, &question("web", RecordType::A, false)).await;
    assert_eq!(addrs(&a), vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);

    // None of our names went upstream.
    assert!(up.asked.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_everything_else() {
    let ns = new_netns();
    let up = fake_upstream().await;
    // A dead upstream first: its ICMP refusal moves on to the next at once.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let _server = Server::start(&ns, names(), vec![dead, up.addr]).expect("start");
    let c = udp_client(&ns).await;

    let a = ask_udp(&c, &question("example.test", RecordType::A, false))
        .await
        .unwrap();
    assert_eq!(addrs(&a), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(up.asked.lock().unwrap().as_slice(), ["example.test."]);

    // Truncated upstream answer over UDP: the server asks again over TCP.
    let a = ask_udp(&c, &question("big.test", RecordType::A, true))
        .await
        .unwrap();
    assert!(!a.metadata.truncation);
    assert_eq!(a.answers.len(), 60);
    assert_eq!(up.tcp_asked.load(Ordering::SeqCst), 1);
    // Same without EDNS: too big for 512 bytes, so the client is told to use TCP.
    let a = ask_udp(&c, &question("big.test", RecordType::A, false))
        .await
        .unwrap();
    assert!(a.metadata.truncation);

    // A TCP client is forwarded over TCP.
    let mut t = tcp_client(&ns).await;
    let a = ask_tcp(&mut t, &question("other.test", RecordType::A, false)).await;
    assert_eq!(addrs(&a), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(up.tcp_asked.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_when_no_upstream_answers() {
    let ns = new_netns();
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let _a = Server::start(&ns, names(), vec![dead]).expect("start");
    let c = udp_client(&ns).await;
    let a = ask_udp(&c, &question("example.test", RecordType::A, false))
        .await
        .unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
    drop(_a);

    let ns = new_netns();
    let _b = Server::start(&ns, names(), vec![]).expect("start");
    let c = udp_client(&ns).await;
    let a = ask_udp(&c, &question("example.test", RecordType::A, false))
        .await
        .unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_does_not_hurt() {
    let ns = new_netns();
    let up = fake_upstream().await;
    let _server = Server::start(&ns, names(), vec![up.addr]).expect("start");
    let c = udp_client(&ns).await;

    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff],
        vec![0; 11],
        vec![0xff; 512],
        vec![0xab; 4096 + 100],
    ];
    // A response (QR set) is never answered.
    let mut resp = question("web", RecordType::A, false);
    resp.metadata.message_type = MessageType::Response;
    junk.push(resp.to_vec().unwrap());
    // A query cut in the middle of its question, and a label pointer loop.
    let q = question("example.test", RecordType::A, false)
        .to_vec()
        .unwrap();
    junk.push(q[..q.len() - 3].to_vec());
    let mut looped = q[..12].to_vec();
    looped[5] = 1; // QDCOUNT 1
    looped.extend([0xc0, 12, 0, 1, 0, 1]);
    junk.push(looped);
    let mut rng_state = 0x2545_f491_u32;
    for len in [13usize, 40, 300] {
        junk.push(
            (0..len)
                .map(|_| {
                    rng_state ^= rng_state << 13;
                    rng_state ^= rng_state >> 17;
                    rng_state ^= rng_state << 5;
                    rng_state as u8 & 0x7f // QR clear: looks like a query
                })
                .collect(),
        );
    }
    for j in &junk {
        c.send_to(j, DNS_ADDR).await.unwrap();
    }
    // Whatever came back for the junk is at most an error with the same id; drain it.
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), c.recv(&mut buf)).await {
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            assert_ne!(m.metadata.response_code, ResponseCode::NoError);
        }
    }

    // TCP: a length promising more than is sent, then closing; a zero length; junk bodies.
    let mut t = tcp_client(&ns).await;
    t.write_all(&[0x10, 0x00, 1, 2, 3]).await.unwrap();
    drop(t);
    let mut t = tcp_client(&ns).await;
    t.write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    drop(t);

    // Still serving, over both.
    let a = ask_udp(&c, &question("web", RecordType::A, false))
        .await
        .unwrap();
    assert_eq!(addrs(&a), vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
    let mut t = tcp_client(&ns).await;
    let a = ask_tcp(&mut t, &question("web", RecordType::A, false)).await;
    assert_eq!(addrs(&a), vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
    // Our name never went upstream, even inside junk.
    assert!(
        !up.asked
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.starts_with("web"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stops_the_server() {
    let ns = new_netns();
    let server = Server::start(&ns, names(), vec![]).expect("start");
    let c = udp_client(&ns).await;
    assert!(
        ask_udp(&c, &question("web", RecordType::A, false))
            .await
            .is_some()
    );
    // The port is taken while it runs.
    assert!(Server::start(&ns, names(), vec![]).is_err());
    drop(server);

    // The sockets close (the task is dropped on the runtime shortly after the abort): the
    // address can be bound again, and a fresh server answers.
    let mut again = None;
    for _ in 0..100 {
        if let Ok(h) = Server::start(&ns, names(), vec![]) {
            again = Some(h);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let again = again.expect("127.0.0.11:53 free again after drop");
    assert!(
        ask_udp(&c, &question("web", RecordType::A, false))
            .await
            .is_some()
    );
    drop(again);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Nobody listens any more: TCP is refused.
    let refused = in_ns(&ns, || std::net::TcpStream::connect(DNS_ADDR).is_err());
    assert!(refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_servers_are_cheap() {
    // One per container: 200 namespaces, 200 servers, all answering, no thread each.
    let threads_before = threads();
    let mut servers = Vec::new();
    for _ in 0..200 {
        let ns = new_netns();
        let h = Server::start(&ns, names(), vec![]).expect("start");
        servers.push((ns, h));
    }
    assert!(threads() <= threads_before + 2, "a thread per server?");
    for (ns, _) in servers.iter().step_by(20) {
        let c = udp_client(ns).await;
        let a = ask_udp(&c, &question("web", RecordType::A, false))
            .await
            .unwrap();
        assert_eq!(addrs(&a).len(), 1);
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}
