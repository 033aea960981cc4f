//! Progress on stderr for long runs, so a user never stares at a silent
//! terminal for minutes. Two forms, one mechanism:
//! - `update` for a continuous fraction (a tensor, a network
//!   pass): nothing for the first two seconds, then the fraction done, the
//!   elapsed time and an estimate of what is left, at most once a second on a
//!   terminal (redrawn in place) and every ten seconds otherwise;
//! - `step` for counted steps (the runs of a demo or a sweep): a
//!   bar with the step's label and an estimate of the time left, at every
//!   step; `note` for stages that are not counted ahead (bench).
//!
//! On a terminal a line is redrawn in place; otherwise each report is its own
//! line, so logs stay readable.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Quiet for this long.
const GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct State {
    label: String,
    start: Instant,
    last: Option<Instant>,
    printed: bool,
}

/// One task's progress (shareable; updates from any thread).
#[derive(Debug)]
pub struct Progress {
    state: Mutex<State>,
    tty: bool,
}

impl Progress {
    /// A task called `label`, starting now.
    pub fn new(label: &str) -> Progress {
        Progress {
            state: Mutex::new(State {
                label: label.to_string(),
                start: Instant::now(),
                last: None,
                printed: false,
            }),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Starts the next stage under a new label (the clock restarts).
    pub fn stage(&self, label: &str) {
        self.finish();
        if let Ok(mut s) = self.state.lock() {
            s.label = label.to_string();
            s.start = Instant::now();
            s.last = None;
        }
    }

    /// Reports `done` of `total` (any unit).
    pub fn update(&self, done: f64, total: f64) {
        self.fraction(done, total, |_| String::new());
    }

    /// Reports `done` of `total` bytes, with the rate so far.
    pub fn update_bytes(&self, done: u64, total: u64) {
        let mb = |b: u64| b as f64 / 1e6;
        self.fraction(done as f64, total as f64, |secs| {
            format!(
                " ({:.0} of {:.0} MB, {:.0} MB/s)",
                mb(done),
                mb(total),
                mb(done) / secs.max(1e-9)
            )
        });
    }

    fn fraction(&self, done: f64, total: f64, detail: impl FnOnce(f64) -> String) {
        let Ok(mut s) = self.state.lock() else { return };
        let now = Instant::now();
        let elapsed = now.duration_since(s.start);
        let every = if self.tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if elapsed < GRACE || s.last.is_some_and(|t| now.duration_since(t) < every) {
            return;
        }
        s.last = Some(now);
        s.printed = true;
        let frac = if total > 0.0 {
            (done / total).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let secs = elapsed.as_secs_f64();
        let left = if frac > 0.0 {
            format!(", about {:.0} s left", secs * (1.0 - frac) / frac)
        } else {
            String::new()
        };
        let line = format!(
            "deepinit: {}: {:.0}%{} after {:.0} s{left}",
            s.label,
            100.0 * frac,
            detail(secs),
            secs
        );
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r{line:<79}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Reports that step `done` of `total` begins (`done == total`: all done).
    pub fn step(&self, done: usize, total: usize, label: &str) {
        let Ok(s) = self.state.lock() else { return };
        let width = 30;
        let filled = (done * width)
            .checked_div(total)
            .unwrap_or(width)
            .min(width);
        let secs = s.start.elapsed().as_secs_f64();
        let left = if done > 0 && done < total {
            format!(", ~{:.0}s left", secs / done as f64 * (total - done) as f64)
        } else {
            String::new()
        };
        let line = format!(
            "[{}{}] {done}/{total} {secs:>5.1}s{left}  {label}",
            "#".repeat(filled),
            ".".repeat(width - filled),
        );
        drop(s);
        self.show(&line, done >= total);
    }

    /// Reports the start of a stage whose count is not known ahead (the
    /// benchmark's stages): its label and the time so far.
    pub fn note(&self, label: &str) {
        let secs = match self.state.lock() {
            Ok(s) => s.start.elapsed().as_secs_f64(),
            Err(_) => return,
        };
        self.show(&format!("[{secs:>6.1}s] {label}"), false);
    }

    /// Writes `line`: redrawn in place on a terminal (ended when `last`),
    /// else one line of its own.
    fn show(&self, line: &str, last: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r{line:<80}");
            s.printed = !last;
            if last {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Ends the current line (on a terminal) if anything was printed.
    pub fn finish(&self) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.printed && self.tty {
            let _ = writeln!(std::io::stderr());
        }
        s.printed = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
