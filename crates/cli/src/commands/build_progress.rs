//! `berth build`'s compact live view on a terminal (`--progress=auto` on a tty, or `tty`):
//! the steps stay on screen one line each (`CACHED` or how long they took), while the running
//! step's last few output lines are redrawn in place below them; the legacy stream's
//! bookkeeping lines (` ---> Running in`, ` ---> <id>`, `Removing intermediate container`) are
//! left out. A failed step's whole output is printed before the error. `plain` (and any
//! non-terminal) prints the daemon's stream as `docker build` does; that path is not here.
//!
//! [`Compact`] folds stream lines into what to show and is tested on its own; [`LiveView`]
//! draws it with indicatif, which handles the redraw, the terminal width and the refresh rate.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How many lines of the running step's output stay visible.
pub const TAIL_LINES: usize = 6;

/// What the view shows after a line of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    /// A line that stays (a finished step, `Successfully built`, a warning).
    Print(String),
    /// The running step changed: its header.
    Step(String),
    /// The running step's last output lines.
    Tail(Vec<String>),
}

struct Running {
    header: String,
    started: Instant,
    cached: bool,
    output: Vec<String>,
}

/// The legacy build stream, folded step by step.
#[derive(Default)]
pub struct Compact {
    current: Option<Running>,
}

/// ` ---> 0123456789ab`: a step's resulting image.
fn is_image_line(l: &str) -> bool {
    l.strip_prefix(" ---> ")
        .is_some_and(|id| id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Control characters (colours, `\r` progress redraws) would break the in-place redraw.
fn printable(l: &str) -> String {
    l.chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect()
}

impl Compact {
    /// One complete line of the stream (without its newline).
    pub fn line(&mut self, line: &str) -> Vec<Show> {
        let mut show = Vec::new();
        if line.starts_with("Step ") && line.contains(" : ") {
            show.extend(self.finish());
            self.current = Some(Running {
                header: printable(line),
                started: Instant::now(),
                cached: false,
                output: Vec::new(),
            });
            show.push(Show::Step(printable(line)));
            show.push(Show::Tail(Vec::new()));
            return show;
        }
        if line == " ---> Using cache" {
            if let Some(c) = &mut self.current {
                c.cached = true;
            }
            return show;
        }
        if line.starts_with(" ---> Running in ")
            || line.starts_with("Removing intermediate container ")
            || is_image_line(line)
        {
            return show;
        }
        let ends_build = line.starts_with("Successfully built ")
            || line.starts_with("Successfully tagged ")
            || line.starts_with("[Warning]");
        match &mut self.current {
            Some(c) if !ends_build => {
                c.output.push(printable(line));
                let from = c.output.len().saturating_sub(TAIL_LINES);
                show.push(Show::Tail(c.output[from..].to_vec()));
            }
            _ => {
                show.extend(self.finish());
                show.push(Show::Print(line.to_owned()));
            }
        }
        show
    }

    /// The running step as a finished line (the build moved on or ended).
    pub fn finish(&mut self) -> Option<Show> {
        let c = self.current.take()?;
        let how = if c.cached {
            "CACHED".to_owned()
        } else {
            format!("{:.1}s", c.started.elapsed().as_secs_f64())
        };
        Some(Show::Print(format!("{}  {how}", c.header)))
    }

    /// The running step's whole output (shown when the build fails in it).
    pub fn failed_output(&self) -> Vec<String> {
        self.current
            .as_ref()
            .map(|c| c.output.clone())
            .unwrap_or_default()
    }
}

/// The terminal's width in columns (80 when stdout is no terminal).
fn term_width() -> usize {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes a winsize into the struct we pass, which we own.
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// [`Compact`] on the terminal.
pub struct LiveView {
    compact: Compact,
    mp: MultiProgress,
    step: ProgressBar,
    /// The running step's last lines: one multi-line bar, so a redraw never shows them half
    /// updated; absent while there are none.
    tail: Option<ProgressBar>,
    /// A stream line not finished yet (stream chunks need not end at a newline).
    partial: String,
}

impl Default for LiveView {
    fn default() -> Self {
        LiveView::new()
    }
}

impl LiveView {
    pub fn new() -> LiveView {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10));
        let step = mp.add(ProgressBar::new_spinner());
        step.set_style(style("{spinner:.cyan} {wide_msg} {elapsed:.dim}"));
        step.enable_steady_tick(Duration::from_millis(100));
        LiveView {
            compact: Compact::default(),
            mp,
            step,
            tail: None,
            partial: String::new(),
        }
    }

    /// A line that stays above the live area (printed directly when nothing is drawn, e.g.
    /// `--progress=tty` on a pipe).
    fn print(&self, s: &str) {
        if self.mp.is_hidden() {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{s}");
            let _ = o.flush();
        } else {
            let _ = self.mp.println(s);
        }
    }

    fn apply(&mut self, show: Vec<Show>) {
        for s in show {
            match s {
                Show::Print(l) => self.print(&l),
                Show::Step(h) => {
                    self.step.set_message(h);
                    self.step.reset_elapsed();
                }
                Show::Tail(lines) if lines.is_empty() => {
                    if let Some(b) = self.tail.take() {
                        b.finish_and_clear();
                        self.mp.remove(&b);
                    }
                }
                Show::Tail(lines) => {
                    // cut to the width: a wrapped line would throw the redraw's count off
                    let width = term_width().saturating_sub(5).max(10);
                    let text = lines
                        .iter()
                        .map(|l| {
                            let l: String = l.chars().take(width).collect();
                            format!("    \x1b[2m{l}\x1b[0m")
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    let b = self.tail.get_or_insert_with(|| {
                        let b = self.mp.add(ProgressBar::new_spinner());
                        b.set_style(style("{msg}"));
                        b
                    });
                    b.set_message(text);
                }
            }
        }
    }

    /// Text of a `stream` message.
    pub fn text(&mut self, s: &str) {
        self.partial.push_str(s);
        while let Some(at) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=at).collect();
            let line = line.trim_end_matches(['\n', '\r']).to_owned();
            let show = self.compact.line(&line);
            self.apply(show);
        }
    }

    /// Clears the live area; on failure prints the failed step's output first.
    pub fn end(mut self, failed: bool) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.text(&format!("{rest}\n"));
        }
        if failed {
            let header = self.compact.current.as_ref().map(|c| c.header.clone());
            let output = self.compact.failed_output();
            self.apply(vec![Show::Tail(Vec::new())]);
            if let Some(h) = header {
                self.print(&format!("{h}  ERROR"));
            }
            for l in output {
                self.print(&format!("    {l}"));
            }
            self.compact.current = None;
        } else if let Some(s) = self.compact.finish() {
            self.apply(vec![s]);
        }
        self.apply(vec![Show::Tail(Vec::new())]);
        self.step.finish_and_clear();
        let _ = self.mp.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(c: &mut Compact, lines: &[&str]) -> Vec<Show> {
        lines.iter().flat_map(|l| c.line(l)).collect()
    }

    #[test]
    fn steps_collapse_and_bookkeeping_is_hidden() {
        let mut c = Compact::default();
        let shown = feed(
            &mut c,
            &[
                "Sending build context to Docker daemon  2.048kB",
                "Step 1/3 : FROM busybox",
                " ---> 0123456789ab",
                "Step 2/3 : RUN echo hi",
                " ---> Using cache",
                " ---> 0123456789ac",
                "Step 3/3 : RUN make",
                " ---> Running in 0123456789ad",
                "compiling a",
                "compiling b",
                "Removing intermediate container 0123456789ad",
                " ---> 0123456789ae",
                "Successfully built 0123456789ae",
            ],
        );
        let prints: Vec<&str> = shown
            .iter()
            .filter_map(|s| match s {
                Show::Print(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(prints[0], "Sending build context to Docker daemon  2.048kB");
        assert!(
            prints[1].starts_with("Step 1/3 : FROM busybox  "),
            "{prints:?}"
        );
        assert_eq!(prints[2], "Step 2/3 : RUN echo hi  CACHED");
        assert!(prints[3].starts_with("Step 3/3 : RUN make  ") && prints[3].ends_with('s'));
        assert_eq!(prints[4], "Successfully built 0123456789ae");
        assert_eq!(prints.len(), 5);
        assert!(shown.contains(&Show::Tail(vec![
            "compiling a".into(),
            "compiling b".into()
        ])));
        assert!(
            !shown
                .iter()
                .any(|s| format!("{s:?}").contains("Running in"))
        );
    }

    #[test]
    fn the_tail_keeps_the_last_lines_and_a_failure_keeps_all() {
        let mut c = Compact::default();
        c.line("Step 1/1 : RUN long");
        let mut last = Vec::new();
        for i in 0..20 {
            last = c.line(&format!("line {i}\x1b[0m\r"));
        }
        let want: Vec<String> = (14..20).map(|i| format!("line {i}[0m")).collect();
        assert_eq!(last, vec![Show::Tail(want)]);
        assert_eq!(c.failed_output().len(), 20);
    }
}
