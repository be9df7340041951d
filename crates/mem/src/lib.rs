//! berth-mem: keeping idle processes small, for berthd and berth-shim alike.
//!
//! A shim runs a lot of libcontainer code once, to create its container, and the daemon a lot of
//! code once at start-up or per request; those pages (fault-around maps 64 KiB per touch) stay in
//! the process's page tables for its whole life. Dropping the page-table entries of read-only,
//! never-written file mappings (our binary's text and rodata, libc's) returns that RSS: the pages
//! stay in the page cache, and whatever runs again comes back as a cheap minor fault. Free heap
//! pages go back to the kernel with glibc's `malloc_trim`.
//!
//! Only files that were mapped when the process called [`init`] (first thing in `main`: the
//! executable and the libraries it links against) are trimmed: those were mapped at exec and
//! never change, whereas a library another thread is `dlopen`ing later (glibc's NSS modules)
//! passes through read-only mappings that are about to be written (relocations), and dropping
//! those pages would lose the writes.
//!
//! Must not: touch a writable mapping, one with modified (anonymous) pages or one that is not
//! fixed since exec, depend on more than libc (the shim links it), or be called on a latency-critical path (a few ms of work,
//! and faults afterwards).

use std::collections::HashSet;
use std::io::Read;
use std::sync::OnceLock;

/// The files mapped at [`init`].
static AT_START: OnceLock<HashSet<String>> = OnceLock::new();

/// One mapping line of /proc/self/smaps: address range, permissions, and whether any page of
/// it is anonymous (COW-written, e.g. relocated GOT) — those must never be dropped.
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    file_backed: bool,
    path: String,
    anonymous_kb: u64,
}

fn parse(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = parts.next().unwrap_or("");
            let _offset = parts.next();
            let _dev = parts.next();
            let inode = parts.next().unwrap_or("0");
            let path = parts.next().unwrap_or("");
            out.push(Mapping {
                start,
                end,
                writable: perms.contains('w'),
                file_backed: inode != "0" && path.starts_with('/'),
                path: path.to_owned(),
                // unknown until the Anonymous: line; assume written
                anonymous_kb: u64::MAX,
            });
            continue;
        }
        if first == "Anonymous:"
            && let Some(m) = out.last_mut()
        {
            m.anonymous_kb = parts
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
        }
    }
    out
}

fn read_smaps() -> Option<String> {
    let mut s = String::new();
    std::fs::File::open("/proc/self/smaps")
        .ok()?
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Remembers which files are mapped now, before any thread can `dlopen`: the only ones
/// [`trim_rss`] will touch. Call it first thing in `main`; without it nothing is trimmed.
/// A single-threaded process (berth-shim) may call it later, just before its first trim:
/// with no other thread, no `dlopen` can be half done at that point. Only the first call
/// reads /proc/self/smaps.
pub fn init() {
    if AT_START.get().is_some() {
        return;
    }
    let files = read_smaps()
        .map(|s| {
            parse(&s)
                .into_iter()
                .filter(|m| m.file_backed)
                .map(|m| m.path)
                .collect()
        })
        .unwrap_or_default();
    let _ = AT_START.set(files);
}

/// Drops resident pages of clean read-only file mappings and returns free heap pages to the
/// kernel. Best effort: errors are ignored.
pub fn trim_rss() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory glibc's allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
    let (Some(fixed), Some(s)) = (AT_START.get(), read_smaps()) else {
        return;
    };
    for m in parse(&s) {
        if m.writable || !m.file_backed || m.anonymous_kb != 0 || !fixed.contains(&m.path) {
            continue;
        }
        // SAFETY: the range is a read-only file mapping, there since exec, with no anonymous
        // (modified) pages, so MADV_DONTNEED only drops PTEs; content is re-read from the file on access.
        unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smaps() {
        let s = "\
5600-5700 r-xp 00001000 fe:00 123 /usr/bin/berth-shim
Size: 4 kB
Anonymous: 0 kB
5700-5800 r--p 00002000 fe:00 123 /usr/bin/berth-shim
Anonymous: 8 kB
5800-5900 rw-p 00000000 00:00 0 [heap]
Anonymous: 12 kB
";
        let m = parse(s);
        assert_eq!(m.len(), 3);
        assert!(m[0].file_backed && !m[0].writable && m[0].anonymous_kb == 0);
        assert_eq!(m[1].anonymous_kb, 8);
        assert!(!m[2].file_backed && m[2].writable);
        assert_eq!(m[0].path, "/usr/bin/berth-shim");
        trim_rss(); // before init: touches nothing
        init();
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let exe = exe.to_string_lossy();
        assert!(AT_START.get().is_some_and(|f| f.contains(exe.as_ref())));
        trim_rss(); // must not crash the test process
    }
}
