//! The schema of a server's declared sources, kept beside its master dataset.
//!
//! Rows of declared sources ([`Record`]s) are stored by their position in the schema, so the
//! schema is part of the data: `schema.sql` in the data directory holds the statements they
//! were stored with. A server started on that directory reads its rows with it (with or
//! without `--schema`); a new `--schema` must keep every stored source as it is and may add
//! sources at the end ([`Schema::extends`]). A data directory whose master dataset holds
//! events of the built-in source takes no schema.

use std::path::Path;

use crate::master::{Entry, MasterDataset, MasterOptions};
use crate::sql::{Record, Schema};

/// The file that keeps the schema in the data directory.
const FILE: &str = "schema.sql";

/// The schema the rows of `data_dir` are stored with, if any.
pub fn stored(data_dir: &Path) -> Result<Option<Schema>, String> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Schema::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The schema a server on `data_dir` runs with: `given` (checked against the stored one, and
/// stored), or the stored one; `None` when neither is (the built-in source).
pub fn settle(data_dir: &Path, given: Option<&Schema>) -> Result<Option<Schema>, String> {
    let stored = stored(data_dir)?;
    let Some(given) = given else {
        return Ok(stored);
    };
    match &stored {
        Some(old) if old == given => return Ok(stored),
        Some(old) => given
            .extends(old)
            .map_err(|e| format!("--schema does not fit {}: {e}", data_dir.display()))?,
        None => refuse_events(data_dir)?,
    }
    std::fs::create_dir_all(data_dir)
        .and_then(|()| super::write_durably(data_dir, FILE, given.text().as_bytes()))
        .map_err(|e| format!("cannot store the schema in {}: {e}", data_dir.display()))?;
    Ok(Some(given.clone()))
}

/// A data directory with a master dataset and no schema holds events of the built-in source.
fn refuse_events(data_dir: &Path) -> Result<(), String> {
    let segments = std::fs::read_dir(data_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .unwrap_or(false);
    if !segments {
        return Ok(());
    }
    let options = MasterOptions {
        schema_version: <Record as crate::event::Event>::SCHEMA_VERSION,
        ..MasterOptions::default()
    };
    let refuse = |why: String| {
        Err(format!(
            "{} holds events of the built-in source, not rows of declared sources ({why}): use another data directory for --schema",
            data_dir.display()
        ))
    };
    match MasterDataset::<Entry<Record>>::open(data_dir, options) {
        Ok((master, _)) if master.is_empty() => Ok(()),
        Ok(_) => refuse("its master dataset is not empty".into()),
        Err(e) => refuse(e.to_string()),
    }
}
