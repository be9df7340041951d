//! Sockets inside another network namespace. A socket stays in the namespace it was created in,
//! so a short-lived thread setns(2)s into the container's namespace, creates them and exits;
//! the daemon's threads never change namespace.

use std::ffi::CString;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;

/// Brings `lo` up and binds UDP and TCP on `addr` inside `netns`.
pub(crate) fn bind_in(
    netns: &std::fs::File,
    addr: SocketAddr,
) -> io::Result<(UdpSocket, TcpListener)> {
    let ns = netns.try_clone()?;
    std::thread::Builder::new()
        .name("berth-dns-setns".into())
        .spawn(move || -> io::Result<(UdpSocket, TcpListener)> {
            // SAFETY: setns on a valid fd we own; it only changes this (throw-away) thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            lo_up()?;
            let udp = UdpSocket::bind(addr)?;
            udp.set_nonblocking(true)?;
            // std sets SO_REUSEADDR, so a restarted server can bind while old connections linger.
            let tcp = TcpListener::bind(addr)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })?
        .join()
        .map_err(|_| io::Error::other("berth-dns: namespace thread panicked"))?
}

/// 127.0.0.0/8 is local on `lo` once it is up; a fresh namespace has it down.
fn lo_up() -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh valid descriptor that nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read/write the ifreq we pass.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = req.ifr_ifru.ifru_flags;
        if flags & libc::IFF_UP as libc::c_short == 0 {
            req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The index of a network interface of the daemon's namespace (IPv6 zone of a nameserver).
pub(crate) fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}
