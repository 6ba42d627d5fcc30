//! `--sink-dir`: every keyed view's changelog written as JSON Lines, `DIR/{view}.jsonl`, one
//! change per line (`{"key", "value", "time", "diff"}`), in time order.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tracing::error;

use crate::changelog::Changelog;
use crate::engine::Client;
use crate::view::ViewKind;

/// Starts one writer thread per keyed view.
pub fn start(dir: &Path, client: &Client, changelog: Arc<Changelog>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for view in client
        .catalog()
        .iter()
        .filter(|v| v.kind == ViewKind::Keyed)
    {
        let path = dir.join(format!("{}.jsonl", view.name));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut changes = changelog
            .subscribe(&view.name)
            .ok_or("the changelog is unavailable")?;
        std::thread::spawn(move || {
            let mut out = BufWriter::new(file);
            loop {
                match changes.blocking_recv() {
                    Ok(batch) => {
                        let written = batch
                            .changes
                            .iter()
                            .try_for_each(|c| {
                                serde_json::to_writer(&mut out, c)
                                    .map_err(std::io::Error::from)
                                    .and_then(|()| out.write_all(b"\n"))
                            })
                            .and_then(|()| out.flush());
                        if let Err(e) = written {
                            error!(file = %path.display(), "cannot write the changelog: {e}");
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        error!(file = %path.display(), missed = n, "the changelog sink fell behind; changes were lost");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
    Ok(())
}
