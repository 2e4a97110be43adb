//! The data directory's files beside the store's own: the check that a directory is
//! meshtel's to write in, the role each process may take in it, the generated admin
//! token's notice, and the listeners file that publishes the bound addresses.

use std::path::Path;

use anyhow::Context;

use super::Listeners;

/// Files of other kinds a new data directory may hold (a config file beside the data).
pub(super) const FOREIGN_FILES_TOLERATED: usize = 2;

/// What meshtel keeps in a data directory.
pub(super) const DATA_DIR_ENTRIES: &[&str] = &[
    "meshtel.db",
    "meshtel.db-wal",
    "meshtel.db-shm",
    "wal",
    "blocks",
    "LOCK",
    SERVE_LISTENERS_FILE,
    COLLECTOR_LISTENERS_FILE,
    "listeners-query.json",
];

/// A directory that holds other directories or several files, and none of meshtel's
/// (`--data-dir /var/lib`, or `$HOME` for `$HOME/meshtel`), would get meshtel's files
/// strewn among them: refused, naming a few of them. A file or two (a config file kept
/// beside the data), hidden entries and `lost+found` do not count; the demo's
/// directory is its own.
pub(super) fn refuse_a_foreign_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    // The demo's, which writes its mesh file and rules there before starting.
    if data_dir.join(crate::demo::MARKER_FILE).exists() {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return Ok(()); // missing: created next; unreadable: the store says so
    };
    let mut foreign = Vec::new();
    let mut directories = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "lost+found" || name.starts_with('.') {
            continue;
        }
        if DATA_DIR_ENTRIES.contains(&name.as_str()) {
            return Ok(());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            directories += 1;
        }
        foreign.push(name);
    }
    if directories == 0 && foreign.len() <= FOREIGN_FILES_TOLERATED {
        return Ok(());
    }
    foreign.sort();
    let more = foreign.len().saturating_sub(3);
    let mut shown = foreign
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        shown.push_str(&format!(" and {more} more"));
    }
    anyhow::bail!(
        "data directory {} holds other files ({shown}) and no meshtel data: point --data-dir \
         at a new or empty directory, such as a subdirectory of it (meshtel creates it)",
        data_dir.display()
    )
}

/// `meshtel query` only reads what a collector writes: on a data directory that does
/// not exist (a typo, an unmounted volume) it would create an empty one and answer
/// every search with nothing. Refuses to start instead, naming the path.
pub(super) fn require_data_dir_of_a_collector(data_dir: &Path) -> anyhow::Result<()> {
    let database = data_dir.join("meshtel.db");
    if data_dir.exists() && !data_dir.is_dir() {
        anyhow::bail!(
            "data directory {} is a file, not a directory: check --data-dir",
            data_dir.display()
        );
    }
    if !data_dir.is_dir() {
        anyhow::bail!(
            "data directory {} does not exist; `meshtel query` only reads a data directory \
             that a collector (`meshtel collector` or `meshtel serve`) creates: check \
             --data-dir, or start the collector first",
            data_dir.display()
        );
    }
    if !database.is_file() {
        anyhow::bail!(
            "{} does not exist; `meshtel query` only reads a data directory that a \
             collector (`meshtel collector` or `meshtel serve`) creates: check --data-dir, \
             or start the collector first",
            database.display()
        );
    }
    // It reads the spans, but writes beside them: its listeners file, and SQLite's
    // shared-memory file of the database. A read-only mount fails there, later and
    // less clearly ("unable to open database file").
    let probe = data_dir.join(format!(".meshtel-query-write-check.{}", std::process::id()));
    if let Err(error) = std::fs::write(&probe, b"") {
        anyhow::bail!(
            "data directory {} cannot be written ({error}): `meshtel query` writes its \
             listeners file and SQLite's shared-memory file there, so a read-only mount \
             is not supported; mount it read-write",
            data_dir.display()
        );
    }
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Shows a generated admin token once, through the log so that JSON logs stay JSON:
/// a WARN event with the token as a field. Only its SHA-256 is kept (in `database`).
/// When WARN events are filtered out (`RUST_LOG=error`), it goes to stderr instead:
/// the token is never lost.
pub(super) fn show_generated_admin_token(token: &str, database: &Path) {
    const USE: &str = "use it as MESHTEL_ADMIN_TOKEN for `meshtel quota` or as \
                       `Authorization: Bearer` on /api/quotas";
    if tracing::enabled!(tracing::Level::WARN) {
        tracing::warn!(
            token,
            digest_stored_in = %database.display(),
            usage = USE,
            "generated admin token, shown once: only its SHA-256 is stored"
        );
    } else {
        eprintln!(
            "meshtel: generated admin token (shown once, only its SHA-256 is stored in {}): \
             {token}\nmeshtel: {USE}",
            database.display()
        );
    }
}

/// The listeners file of `serve`, in the data directory.
pub(super) const SERVE_LISTENERS_FILE: &str = "listeners.json";
/// The listeners file of `collector`.
pub(super) const COLLECTOR_LISTENERS_FILE: &str = "listeners-collector.json";

/// Removes a listeners file left behind by an earlier process.
pub(super) fn remove_stale_listeners_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "removed a stale listeners file");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing the stale {}", path.display())),
    }
}

/// Removes the listeners file at exit if it is still this process's: a query process
/// started beside this one since (a rolling restart) wrote its own over it, which
/// stays.
pub(super) fn remove_own_listeners_file(path: &Path, listeners: &Listeners) {
    let ours = listeners_text(listeners).ok();
    if ours.is_some() && std::fs::read(path).ok() == ours {
        let _ = std::fs::remove_file(path);
    }
}

/// The listeners file's text: pretty JSON and a final newline, so `cat` ends its line.
pub(super) fn listeners_text(listeners: &Listeners) -> serde_json::Result<Vec<u8>> {
    let mut text = serde_json::to_vec_pretty(listeners)?;
    text.push(b'\n');
    Ok(text)
}

/// Writes the listeners file atomically: a temporary file in the same directory,
/// renamed over the target, so a reader sees either no file or the whole of it.
pub(super) fn write_listeners_file(path: &Path, listeners: &Listeners) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    if let Err(e) = std::fs::write(&temporary, listeners_text(listeners)?) {
        let _ = std::fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("writing {}", temporary.display()));
    }
    if let Err(e) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        return Err(e)
            .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()));
    }
    Ok(())
}

/// Whether `error` comes from a full disk (or quota).
pub(super) fn disk_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::disk_full;

    #[test]
    fn a_full_disk_is_told_apart_from_other_write_errors() {
        // /dev/full answers every write with ENOSPC.
        let full = std::fs::write("/dev/full", b"{}").context("writing listeners.json.1.tmp");
        assert!(disk_full(&full.unwrap_err()));
        let missing = std::fs::write("/nonexistent-meshtel-dir/listeners.json", b"{}")
            .context("writing listeners.json.1.tmp");
        assert!(!disk_full(&missing.unwrap_err()));
    }
}
