//! Progress of long work (replaying history, importing files): a bar on a terminal, plain log
//! lines otherwise, so logs collected from a service stay readable.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

/// Reads how far the work is: `(bytes done, events done, finished)`.
pub type Probe = Box<dyn Fn() -> (u64, u64, bool) + Send>;

/// A running progress display; it ends when the probe says finished, or when dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Shows the progress of `what` towards `total_bytes`, sampling `probe` a few times a second.
    pub fn start(what: &str, total_bytes: u64, probe: Probe) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let what = what.to_string();
        let terminal = std::io::stderr().is_terminal();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let bar = terminal.then(|| {
                let bar = ProgressBar::new(total_bytes.max(1));
                let style = ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style.progress_chars("=> "));
                bar
            });
            let mut last_log = Instant::now();
            loop {
                let (bytes, events, finished) = probe();
                let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-3);
                match &bar {
                    Some(bar) => {
                        bar.set_position(bytes.min(total_bytes));
                        bar.set_message(format!("{what}: {events} events, {rate:.0} events/s"));
                    }
                    None if finished || last_log.elapsed() >= Duration::from_secs(2) => {
                        let percent = if total_bytes == 0 {
                            100.0
                        } else {
                            100.0 * bytes as f64 / total_bytes as f64
                        };
                        info!(%what, events, bytes, total_bytes, percent = format!("{percent:.1}"), events_per_second = format!("{rate:.0}"), "progress");
                        last_log = Instant::now();
                    }
                    None => {}
                }
                if finished || stopped.load(Ordering::Relaxed) {
                    if let Some(bar) = bar {
                        bar.finish();
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
