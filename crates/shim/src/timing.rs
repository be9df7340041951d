//! `BERTH_SHIM_TIMING=1`: a timeline of the container's creation in `shim.log`, for profiling
//! (off by default, and then this module costs nothing but one environment lookup).
//!
//! Each line: wall clock (s, µs precision), CPU time of the writing process so far (ms), pid,
//! and the event — the shim's own phases and libcontainer's `tracing` debug events, which are
//! also emitted by its intermediate and init processes (clones of the shim that inherit this
//! subscriber). The CPU column is what a phase costs regardless of the load on the machine
//! (a clone's CPU time starts at zero).

use std::fmt::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

struct Timing {
    out: OwnedFd,
}

fn clock_ms(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// One timeline line (also used for the shim's own phases).
pub fn line(text: &str) {
    if let Some(t) = TIMING.get() {
        t.write(text);
    }
}

static TIMING: std::sync::OnceLock<Timing> = std::sync::OnceLock::new();

/// Wall clock (ms) when `main` was entered: the end of exec and dynamic loading.
static MAIN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// First thing in `main`.
pub fn mark_main() {
    MAIN.store(
        (clock_ms(libc::CLOCK_REALTIME) * 1e3) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

impl Timing {
    fn write(&self, text: &str) {
        let s = format!(
            "timing {:.6} cpu {:7.3} pid {} {text}\n",
            clock_ms(libc::CLOCK_REALTIME) / 1e3,
            clock_ms(libc::CLOCK_PROCESS_CPUTIME_ID),
            std::process::id(),
        );
        // SAFETY: write(2) of a buffer we own to a descriptor we own; O_APPEND keeps the
        // lines of the three processes whole.
        unsafe { libc::write(self.out.as_raw_fd(), s.as_ptr().cast(), s.len()) };
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

struct Sub;

impl Subscriber for Sub {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= Level::DEBUG
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut f = Fields(format!("{}:", e.metadata().target()));
        e.record(&mut f);
        line(&f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Turns the timeline on when `BERTH_SHIM_TIMING` is set; `log` is where it goes.
pub fn init(log: &std::path::Path) {
    if std::env::var_os("BERTH_SHIM_TIMING").is_none() {
        return;
    }
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    else {
        return;
    };
    let t = Timing { out: f.into() };
    t.write(&format!(
        "main entered at {:.6}",
        MAIN.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
    ));
    let _ = TIMING.set(t);
    let _ = tracing::subscriber::set_global_default(Sub);
}
