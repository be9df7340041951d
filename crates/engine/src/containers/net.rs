//! The container's own network namespace until real networking exists: only `lo`, brought up
//! like Docker's `none` network does (libcontainer creates the namespace with `lo` down).

/// Set `lo` up inside the network namespace of `pid`. Runs on a short-lived thread: setns(2)
/// with CLONE_NEWNET changes only the calling thread's namespace.
pub fn loopback_up(pid: i32) -> std::io::Result<()> {
    std::thread::spawn(move || -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        // SAFETY: plain syscalls with valid fds and a zeroed, NUL-terminated ifreq.
        unsafe {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if s < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            for (i, b) in b"lo".iter().enumerate() {
                req.ifr_name[i] = *b as libc::c_char;
            }
            let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req);
            if r == 0 {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                r = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
            }
            let err = std::io::Error::last_os_error();
            libc::close(s);
            if r != 0 {
                return Err(err);
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| std::io::Error::other("loopback thread panicked"))?
}
