//! The data directory's disk and files as startup and shutdown find them: an index lost
//! beside its blocks, an index that cannot be written, a head that cannot be flushed,
//! the head's size after a replay.

use std::path::Path;

use super::*;

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The memory of replayed spans is counted as that of spans written live, not once per
/// column of the WAL record they share.
#[tokio::test]
async fn replayed_spans_count_their_memory_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    for seed in 0..50u8 {
        store
            .write_spans(vec![trace(seed, "svc", 20, *T0, 1000)])
            .await
            .unwrap();
    }
    let live = store.stats();
    assert_eq!(live.head_spans, 1000);
    // Copy the data directory while the store runs, as a crash would leave it.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    store.shutdown().await.unwrap();
    let reopened = TraceStore::open(config(copy.path())).await.unwrap();
    let replayed = reopened.stats();
    assert_eq!(replayed.head_spans, 1000);
    assert!(
        replayed.head_bytes <= live.head_bytes * 3 / 2 && replayed.head_bytes > 0,
        "replayed {} bytes against {} live",
        replayed.head_bytes,
        live.head_bytes
    );
    reopened.shutdown().await.unwrap();
}

/// A `meshtel.db` moved away or emptied beside blocks it indexed: startup stops with
/// what to do, and moves no block.
#[tokio::test]
async fn a_lost_or_empty_index_beside_blocks_stops_startup_and_moves_nothing() {
    for (emptied, with_header, stray_wal) in [
        (false, false, false),
        (true, false, false),
        (true, true, false),
        (true, false, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let backup = tempfile::tempdir().unwrap();
        let store = TraceStore::open(config(dir.path())).await.unwrap();
        flush_trace(&store, 1, "kept").await;
        flush_trace(&store, 2, "kept").await;
        store.shutdown().await.unwrap();
        let blocks_dir = dir.path().join("blocks");
        let blocks_before = names_in(&blocks_dir);
        copy_dir(dir.path(), backup.path());
        remove_database(dir.path());
        if emptied {
            std::fs::write(dir.path().join("meshtel.db"), b"").unwrap();
        }
        if stray_wal {
            // The -wal of a checkpointed database beside its emptied main file: frames,
            // none of them the schema page, which SQLite would ignore.
            let mut wal = vec![0u8; 32];
            wal[..4].copy_from_slice(&0x377f_0682_u32.to_be_bytes());
            wal[8..12].copy_from_slice(&4096_u32.to_be_bytes());
            for page in [2_u32, 3] {
                wal.extend_from_slice(&page.to_be_bytes());
                wal.extend_from_slice(&[0u8; 20 + 4096]);
            }
            std::fs::write(dir.path().join("meshtel.db-wal"), wal).unwrap();
        }
        if with_header {
            // What is left when the -wal file of a database that was never
            // checkpointed is deleted: a header, and no table.
            let path = dir.path().join("meshtel.db");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
            let conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
            sqlx::Connection::close(conn).await.unwrap();
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(dir.path().join(format!("meshtel.db{suffix}")));
            }
            assert!(std::fs::metadata(&path).unwrap().len() > 0);
        }

        let message = TraceStore::open(config(dir.path()))
            .await
            .err()
            .unwrap()
            .to_string();
        // Nor does a reader create the new index.
        let read_only = TraceStore::open_read_only(config(dir.path()), Duration::from_secs(1))
            .await
            .err()
            .unwrap()
            .to_string();
        assert_eq!(read_only, message);
        let data_dir = std::fs::canonicalize(dir.path()).unwrap();
        for needle in [
            data_dir.join("meshtel.db").display().to_string(),
            data_dir.join("blocks").display().to_string(),
            "2 block files".to_string(),
            "restore meshtel.db from a backup".to_string(),
            "move".to_string(),
        ] {
            assert!(message.contains(&needle), "{needle:?} in {message}");
        }
        assert_eq!(names_in(&blocks_dir), blocks_before, "nothing set aside");
        assert_eq!(
            dir.path().join("meshtel.db").exists(),
            emptied,
            "no database created"
        );

        // The backup restored, everything is there again.
        remove_database(dir.path());
        for name in names_in(backup.path()) {
            if name.starts_with("meshtel.db") {
                std::fs::copy(backup.path().join(&name), dir.path().join(&name)).unwrap();
            }
        }
        let store = TraceStore::open(config(dir.path())).await.unwrap();
        assert_eq!(ids(&store, &query("kept")).await.len(), 2);
        assert_eq!(store.stats().blocks, 2);
        store.shutdown().await.unwrap();
    }
}

/// A new data directory whose `blocks/` holds no block file starts as before.
#[tokio::test]
async fn a_new_index_beside_a_blocks_directory_without_blocks_starts() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    std::fs::create_dir_all(blocks.join("orphaned")).unwrap();
    std::fs::write(blocks.join("README.txt"), b"ours").unwrap();
    std::fs::write(blocks.join("orphaned/0000000000000001.parquet"), b"x").unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "new").await;
    store.shutdown().await.unwrap();
}

/// The error opening a store whose `meshtel.db` (one flushed trace in it) `damage`
/// changed.
async fn opening_a_damaged_index(damage: impl FnOnce(&Path)) -> [String; 2] {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "kept").await;
    store.shutdown().await.unwrap();
    damage(&dir.path().join("meshtel.db"));
    // A reader (`meshtel query`) says the same as a writer.
    let read_only = TraceStore::open_read_only(config(dir.path()), Duration::from_secs(1))
        .await
        .err()
        .unwrap()
        .to_string();
    let writer = TraceStore::open(config(dir.path()))
        .await
        .err()
        .unwrap()
        .to_string();
    [writer, read_only]
}

/// A `meshtel.db` whose header is garbled, or that opens but whose pages do not read
/// (a truncated file), says what to do, naming the file, rather than a bare SQL error.
#[tokio::test]
async fn a_garbled_or_truncated_index_says_what_to_do() {
    let garbled = opening_a_damaged_index(|db| {
        let mut bytes = std::fs::read(db).unwrap();
        bytes[..16].copy_from_slice(b"garbage garbage!");
        std::fs::write(db, bytes).unwrap();
    })
    .await;
    let truncated = opening_a_damaged_index(|db| {
        let len = std::fs::metadata(db).unwrap().len();
        assert!(len > 8192, "an index of {len} bytes");
        let file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
        file.set_len(len / 2).unwrap();
    })
    .await;
    // Pages overwritten past the header: found damaged while the migrations run.
    let overwritten = opening_a_damaged_index(|db| {
        let mut bytes = std::fs::read(db).unwrap();
        let mut state = 0x2545_f491_u32;
        for byte in &mut bytes[4096..8192] {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *byte = state as u8;
        }
        std::fs::write(db, bytes).unwrap();
    })
    .await;
    for (messages, cause) in [
        (garbled, "file is not a database"),
        (truncated, "malformed"),
        (overwritten, "malformed"),
    ] {
        for message in messages {
            for needle in ["meshtel.db", cause, "restore meshtel.db from a backup"] {
                assert!(message.contains(needle), "{needle:?} in {message}");
            }
        }
    }
}

/// A `blocks/` directory meshtel cannot create files in is refused at start, naming
/// it, rather than failing every flush.
#[tokio::test]
async fn a_blocks_directory_that_cannot_be_written_stops_startup() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    store.shutdown().await.unwrap();
    let blocks = std::fs::canonicalize(dir.path()).unwrap().join("blocks");
    let can_create = || {
        let probe = blocks.join("probe");
        let created = std::fs::File::create(&probe).is_ok();
        let _ = std::fs::remove_file(&probe);
        created
    };
    std::fs::set_permissions(&blocks, std::fs::Permissions::from_mode(0o555)).unwrap();
    if can_create() {
        // Root: permissions do not stop it; the immutable attribute does.
        let _ = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&blocks)
            .status();
    }
    let unwritable = !can_create();
    let opened = if unwritable {
        Some(TraceStore::open(config(dir.path())).await)
    } else {
        None
    };
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(&blocks)
        .status();
    std::fs::set_permissions(&blocks, std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(opened) = opened else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot make a directory unwritable here (needs chattr as root)"
        );
        eprintln!(
            "SKIPPED a_blocks_directory_that_cannot_be_written_stops_startup: no way to make a directory unwritable here"
        );
        return;
    };
    let message = match opened {
        Ok(store) => {
            store.shutdown().await.unwrap();
            panic!("started with an unwritable blocks directory");
        }
        Err(e) => e.to_string(),
    };
    let name = blocks.display().to_string();
    for needle in [name.as_str(), "cannot be written", "permissions"] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    store.shutdown().await.unwrap();
}

/// Makes `path` unwritable for this process: read-only permissions, or (as root, whom
/// permissions do not stop) the immutable attribute. `false` when neither works here.
fn make_unwritable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
    if std::fs::OpenOptions::new().write(true).open(path).is_err() {
        return true;
    }
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(path)
        .status();
    matches!(chattr, Ok(s) if s.success())
        && std::fs::OpenOptions::new().write(true).open(path).is_err()
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(path)
        .status();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// A `meshtel.db` meshtel cannot write is refused at start, naming it, rather than
/// failing every flush.
#[tokio::test]
async fn an_index_that_cannot_be_written_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    flush_trace(&store, 1, "kept").await;
    store.shutdown().await.unwrap();
    let db = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("meshtel.db");
    if !make_unwritable(&db) {
        make_writable(&db);
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot make a file unwritable here (needs chattr as root)"
        );
        eprintln!(
            "SKIPPED an_index_that_cannot_be_written_stops_startup: no way to make a file unwritable here"
        );
        return;
    }
    let opened = TraceStore::open(config(dir.path())).await;
    make_writable(&db);
    let message = match opened {
        Ok(store) => {
            store.shutdown().await.unwrap();
            panic!("started with an unwritable index");
        }
        Err(e) => e.to_string(),
    };
    let db_name = db.display().to_string();
    for needle in [db_name.as_str(), "readonly", "permissions"] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    // Writable again, it starts.
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(ids(&store, &query("kept")).await.len(), 1);
    store.shutdown().await.unwrap();
}

/// Below `store.min_free_disk` the store starts, refuses new spans as an overload
/// counted on its own, and still flushes the head it replayed and answers from it.
#[tokio::test]
async fn below_the_free_space_reserve_new_spans_are_refused_and_the_head_still_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    store
        .write_spans(vec![trace(1, "before", 2, *T0, 1000)])
        .await
        .unwrap();
    assert_eq!(store.stats().rejected_disk_full, 0);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    store.shutdown().await.unwrap();

    let disk = crate::disk::usage(copy.path()).unwrap();
    let mut cfg = config(copy.path());
    // As large as the disk: no span could ever be written.
    cfg.min_free_disk = bytesize::ByteSize::b(disk.total);
    let message = TraceStore::open(cfg.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("[store] min_free_disk"), "{message}");
    // Just below it: more than is free.
    cfg.min_free_disk = bytesize::ByteSize::b(disk.total - 1);
    let store = TraceStore::open(cfg).await.unwrap();
    assert!(store.stats().disk_free_bytes > 0);
    for _ in 0..2 {
        match store
            .write_spans(vec![trace(2, "refused", 2, *T0, 1000)])
            .await
        {
            Err(ModelError::DiskFull {
                message,
                retry_after,
            }) => {
                assert_eq!(retry_after, Duration::from_secs(5));
                assert!(message.contains("store.min_free_disk"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    let stats = store.stats();
    assert_eq!((stats.rejected_disk_full, stats.rejected_overload), (2, 0));
    // What readiness probes report meanwhile.
    let refusal = store.refuses_writes();
    assert!(
        refusal
            .as_deref()
            .is_some_and(|r| r.contains("store.min_free_disk")),
        "{refusal:?}"
    );
    assert_eq!(stats.head_spans, 2);
    store.flush().await.unwrap();
    let stats = store.stats();
    assert_eq!((stats.blocks, stats.head_spans), (1, 0));
    assert_eq!(ids(&store, &query("before")).await.len(), 1);
    assert!(ids(&store, &query("refused")).await.is_empty());
    store.shutdown().await.unwrap();
    // The reserve off: accepted.
    let mut cfg = config(copy.path());
    cfg.min_free_disk = bytesize::ByteSize::b(0);
    let store = TraceStore::open(cfg).await.unwrap();
    store
        .write_spans(vec![trace(3, "accepted", 2, *T0, 1000)])
        .await
        .unwrap();
    assert_eq!(store.refuses_writes(), None);
    store.shutdown().await.unwrap();
}

/// Log lines at INFO and above, as text, while it lives.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Callsites another test's thread registered while no subscriber was set may have
    /// cached that none wants them: asks again, before the lines a test looks for.
    fn refresh(&self) {
        tracing::callsite::rebuild_interest_cache();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// A shutdown whose head cannot be flushed says how many spans the WAL keeps for the
/// next start, and does not claim a clean stop; the next start replays them.
#[tokio::test]
async fn a_shutdown_that_cannot_flush_says_what_stays_in_the_wal() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    for seed in 1..=2 {
        store
            .write_spans(vec![trace(seed, "kept", 2, *T0, 1000)])
            .await
            .unwrap();
    }
    // The blocks directory becomes a file: no block can be written.
    let blocks = dir.path().join("blocks");
    std::fs::remove_dir_all(&blocks).unwrap();
    std::fs::write(&blocks, b"not a directory").unwrap();
    logs.refresh();
    store
        .shutdown_within(Duration::from_millis(500))
        .await
        .unwrap();
    let text = logs.text();
    assert!(text.contains("spans_in_wal=4"), "{text}");
    assert!(text.contains("replayed at the next start"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.contains("store shut down spans_written=")),
        "{text}"
    );

    std::fs::remove_file(&blocks).unwrap();
    std::fs::create_dir(&blocks).unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.stats().head_spans, 4);
    assert_eq!(ids(&store, &query("kept")).await.len(), 2);
    logs.refresh();
    store.shutdown().await.unwrap();
    let text = logs.text();
    // The last line says what the run kept: the 4 replayed spans flushed into a block.
    let last = text.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("store shut down spans_written=0 flushes=1 blocks_in_index=1"),
        "{text}"
    );
}

/// A failed WAL append makes the store report that it refuses writes for a while, then
/// not (so that traffic finds out whether the log is writable again); an append that
/// succeeds ends it at once.
#[tokio::test]
async fn a_failed_wal_append_is_reported_for_a_while_and_until_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(config(dir.path())).await.unwrap();
    assert_eq!(store.refuses_writes(), None);
    let failed = |ago: Duration| {
        let at = std::time::Instant::now().checked_sub(ago).unwrap();
        *store.inner.wal_failing.lock() = Some(("No space left on device".into(), at));
    };
    failed(Duration::ZERO);
    let refusal = store.refuses_writes();
    assert!(
        refusal
            .as_deref()
            .is_some_and(|r| r.contains("write-ahead log") && r.contains("No space left")),
        "{refusal:?}"
    );
    failed(Duration::from_secs(6));
    assert_eq!(store.refuses_writes(), None, "ready again after 5 s");
    failed(Duration::ZERO);
    store
        .write_spans(vec![trace(1, "after", 2, *T0, 1000)])
        .await
        .unwrap();
    assert_eq!(store.refuses_writes(), None, "a good append ends it");
    store.shutdown().await.unwrap();
}
