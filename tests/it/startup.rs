//! Starting and refusing to start: every setting is checked before anything is written
//! (the admin token among them), `meshtel query` does not invent a data directory, the
//! listeners file never names a dead process's ports, logs stay in their format, flags
//! a role ignores are named, and printing subcommands end quietly on a closed pipe.
//! Signals, a closed log pipe and the open-files limit: `process_life`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

pub(crate) fn config_file(dir: &TestDir, text: &str) -> String {
    let path = dir.path().join("meshtel.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_bad_setting_is_refused_by_name_before_an_admin_token_is_made() {
    for (text, named) in [
        ("[quota]\nmax_keys = 0\n", "[quota] max_keys"),
        (
            "[report]\nmax_records_per_batch = 0\n",
            "[report] max_records_per_batch must be",
        ),
        ("[edges]\nbucket = \"0s\"\n", "[edges] bucket"),
        (
            "[ingest]\nmax_inflight_bytes = \"1 MiB\"\n",
            "[ingest] max_inflight_bytes (1.0 MiB) must be at least twice [ingest] max_request_bytes (16.0 MiB)",
        ),
        (
            "[store]\nretention_max_age = \"0s\"\n",
            "[store] retention_max_age",
        ),
        (
            "[store]\nmax_catalog_operations = 0\n",
            "[store] max_catalog_operations",
        ),
        (
            "[store]\nmax_queued_bytes = 0\n",
            "[store] max_queued_bytes",
        ),
        (
            "[store]\nmax_queued_bytes = \"1 MiB\"\n",
            "[store] max_queued_bytes (1.0 MiB) is smaller than [ingest] max_request_bytes (16.0 MiB)",
        ),
        // Beyond what the write queue's semaphore can count: refused, not a panic.
        (
            "[store]\nmax_queued_bytes = \"4 EiB\"\n",
            "[store] max_queued_bytes must be between 1 byte and 16 GiB",
        ),
        (
            "[store]\nwal.sync_interval = \"30s\"\n",
            "[store] wal.sync_interval must be between 1ms and 10s",
        ),
    ] {
        let dir = TestDir::new();
        let config = config_file(&dir, text);
        let (status, log) =
            Meshtel::run_expecting_exit(&dir, Role::Serve, &["--config", &config]).await;
        assert!(!status.success(), "{text}: {log}");
        assert!(log.contains(named), "{text}: {log}");
        assert!(!log.contains("panicked"), "{text}: {log}");
        assert!(
            !log.contains("admin token"),
            "{text}: a token was made: {log}"
        );
        assert!(
            !dir.data_dir().join("meshtel.db").exists(),
            "{text}: the database was created"
        );
    }
}

#[tokio::test]
async fn query_refuses_a_data_directory_no_collector_made() {
    let dir = TestDir::new();
    // The directory exists but holds no meshtel.db.
    let (status, log) = Meshtel::run_expecting_exit(&dir, Role::Query, &[]).await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("meshtel.db does not exist") && log.contains("collector"),
        "{log}"
    );
    assert!(!dir.data_dir().join("meshtel.db").exists());
    // No directory at all: named, and not created.
    std::fs::remove_dir_all(dir.data_dir()).unwrap();
    let (status, log) = Meshtel::run_expecting_exit(&dir, Role::Query, &[]).await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("data directory") && log.contains("does not exist"),
        "{log}"
    );
    assert!(!dir.data_dir().exists(), "query created the data directory");
    // A file where the directory should be: said so.
    std::fs::write(dir.data_dir(), "not a directory").unwrap();
    let (status, log) = Meshtel::run_expecting_exit(&dir, Role::Query, &[]).await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("is a file, not a directory"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_address_without_a_port_says_what_is_expected() {
    for address in ["127.0.0.1", "127.0.0.1:99999"] {
        let dir = TestDir::new();
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshtel"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.data_dir())
            .args(["--grpc-listen", address])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--zipkin-listen",
                "127.0.0.1:0",
            ])
            .args(["--query-listen", "127.0.0.1:0"])
            .env_remove("MESHTEL_CONFIG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
            .await
            .expect("meshtel kept running")
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{log}");
        for needle in ["--grpc-listen", "MESHTEL_GRPC_LISTEN", "expected host:port"] {
            assert!(log.contains(needle), "{address}: {needle:?} in {log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_refused_by_the_lock_leaves_the_running_servers_listeners_file() {
    let dir = TestDir::new();
    let file = dir.data_dir().join("listeners.json");
    // A second server refused by the data directory's lock leaves the running
    // server's file alone.
    let running = Meshtel::serve(&dir).await;
    let (status, log) = Meshtel::run_expecting_exit(&dir, Role::Serve, &[]).await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("in use"), "{log}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["grpc"], running.grpc.unwrap().to_string());
    running.stop().await;
    // The file is written whole (a temporary file renamed): none is left behind.
    let m = Meshtel::serve(&dir).await;
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["grpc"], m.grpc.unwrap().to_string());
    let leftovers: Vec<_> = std::fs::read_dir(dir.data_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    m.stop().await;
    // A `serve` killed, then a `collector` on the same directory: the dead server's
    // ports are not left for scripts to find.
    std::fs::write(&file, r#"{"grpc": "127.0.0.1:1"}"#).unwrap();
    let collector = Meshtel::start(&dir, Role::Collector, &[]).await;
    assert!(
        !file.exists(),
        "the killed serve's listeners.json is still there"
    );
    assert!(dir.data_dir().join("listeners-collector.json").exists());
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_stay_json_and_carry_the_token_and_policies_load_once() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--log-format", "json"]).await;
    // The policy sync polls every 250 ms: give it two polls to load again, if it would.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = m.log_text();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let token = events
        .iter()
        .find(|e| e["level"] == "WARN" && e["fields"]["token"].is_string())
        .unwrap_or_else(|| panic!("no WARN with the token: {log}"));
    assert_eq!(token["fields"]["token"].as_str().unwrap().len(), 64);
    let loads = events
        .iter()
        .filter(|e| e["fields"]["message"] == "quota policies loaded")
        .count();
    assert_eq!(loads, 1, "{log}");
    m.stop().await;
}

pub(crate) fn meshtel(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MESHTEL_LOG_FORMAT");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn log_format_is_checked_and_a_bad_rust_log_is_named() {
    let output = meshtel(&["serve", "--log-format", "yaml"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'yaml'") && stderr.contains("json"),
        "{stderr}"
    );
    let help = String::from_utf8_lossy(&meshtel(&["serve", "--help"], &[]).stdout).into_owned();
    let log_format = help
        .split("--log-format")
        .nth(1)
        .unwrap()
        .split("\n      --")
        .next()
        .unwrap();
    assert_eq!(
        log_format.matches("[default: text]").count(),
        1,
        "{log_format}"
    );
    assert!(help.contains("max_name_bytes = \"1 KiB\""), "{help}");

    let output = meshtel(
        &["quota", "list"],
        &[
            ("RUST_LOG", "meshtel_store=dbug"),
            ("MESHTEL_QUERY_URL", "http://127.0.0.1:1"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("RUST_LOG is not a valid filter"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("meshtel_store=dbug"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_a_role_ignores_are_named_at_start() {
    let dir = TestDir::new();
    let collector = Meshtel::start(
        &dir,
        Role::Collector,
        &["--query-base-path", "/jaeger", "--admin-token", "secret"],
    )
    .await;
    let query = Meshtel::start(
        &dir,
        Role::Query,
        &[
            "--wal-sync",
            "always",
            "--max-request-bytes",
            "1KiB",
            "--flush-interval",
            "1h",
        ],
    )
    .await;
    let warned = |log: &str, flag: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("flag ignored") && l.contains(flag))
            .count()
    };
    let log = collector.log_text();
    assert_eq!(warned(&log, "--query-base-path"), 1, "{log}");
    assert_eq!(warned(&log, "--admin-token"), 1, "{log}");
    let log = query.log_text();
    for flag in ["--wal-sync ", "--max-request-bytes", "--flush-interval"] {
        assert_eq!(warned(&log, flag), 1, "{flag}: {log}");
    }
    query.stop().await;
    collector.stop().await;
}

#[test]
fn a_printing_subcommand_ends_quietly_when_its_reader_goes() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy/examples/rules");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshtel"))
        .args(["rules", "check"])
        .arg(&examples)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader closes before the first line is written, as `| head -0` would.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    let by_sigpipe = std::os::unix::process::ExitStatusExt::signal(&status) == Some(13);
    assert!(status.success() || by_sigpipe, "{status}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_a_failed_start_is_a_json_line_too() {
    let dir = TestDir::new();
    let (status, log) = Meshtel::run_expecting_exit(
        &dir,
        Role::Serve,
        &["--log-format", "json", "--retention-max-age", "0s"],
    )
    .await;
    assert!(!status.success(), "{log}");
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = events.last().expect("a line");
    assert_eq!(last["level"], "ERROR", "{log}");
    assert!(
        last["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("retention_max_age")),
        "{log}"
    );
}

/// A `--data-dir` that is a file is refused with that said, not "File exists".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_that_is_a_file_is_refused_by_name() {
    let dir = TestDir::new();
    let data = dir.path().join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::write(&data, "not a directory").unwrap();
    let (status, log) = Meshtel::run_expecting_exit(&dir, Role::Serve, &[]).await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("exists and is not a directory"), "{log}");
}

/// A refused start names its cause once: the store's message already holds the I/O
/// error it also returns as its source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_start_names_its_cause_once() {
    let dir = TestDir::new();
    let wal = dir.data_dir().join("wal");
    let _ = std::fs::remove_dir_all(&wal);
    std::fs::write(&wal, "in the way").unwrap();
    let (status, log) = Meshtel::run_expecting_exit(&dir, Role::Serve, &[]).await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("Caused by:"), "{log}");
    assert_eq!(log.matches("a file is in the way").count(), 1, "{log}");
}

/// A rolling restart of `meshtel query` (no lock: the new one starts beside the old,
/// then the old stops): the new one's listeners file stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_process_stopping_leaves_a_newer_ones_listeners_file() {
    let dir = TestDir::new();
    let collector = Meshtel::start(&dir, Role::Collector, &[]).await;
    let old = Meshtel::start(&dir, Role::Query, &[]).await;
    let new = Meshtel::start(&dir, Role::Query, &[]).await;
    let (status, log) = old.stop_with_status().await;
    assert!(status.success(), "{log}");
    let file = dir.data_dir().join("listeners-query.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["query"], new.query.unwrap().to_string());
    new.stop().await;
    assert!(!file.exists(), "the last one out removes its own file");
    collector.stop().await;
}

/// A data directory holding other files and no meshtel data (`--data-dir /var/lib` by
/// mistake) is refused, naming some of them; one holding only a volume's `lost+found`
/// and hidden files is taken.
#[tokio::test]
async fn a_data_directory_of_other_files_is_refused() {
    let dir = TestDir::new();
    let data = dir.data_dir();
    std::fs::create_dir_all(data.join("photos")).unwrap();
    std::fs::write(data.join("notes.txt"), "mine").unwrap();
    let output = meshtel(&["serve", "--data-dir", data.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("holds other files (notes.txt, photos) and no meshtel data"),
        "{stderr}"
    );
    assert!(!data.join("LOCK").exists(), "nothing written there");

    let dir = TestDir::new();
    std::fs::create_dir_all(dir.data_dir().join("lost+found")).unwrap();
    std::fs::write(dir.data_dir().join(".keep"), "").unwrap();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    m.stop().await;
    // Once it holds meshtel's files, other files beside them do not stop it.
    std::fs::write(dir.data_dir().join("notes.txt"), "mine").unwrap();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    m.stop().await;
    // A new one holding only a config file kept beside the data starts too.
    let dir = TestDir::new();
    std::fs::create_dir_all(dir.data_dir()).unwrap();
    std::fs::write(dir.data_dir().join("meshtel.toml"), "").unwrap();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    m.stop().await;
}

/// A setting refused that a flag or variable gave is named with that flag and
/// variable too, not only as the config file (there may be none) spells it.
#[test]
fn check_config_prints_the_settings_that_would_run_and_starts_nothing() {
    let dir = TestDir::new();
    let data_dir = dir.path().join("never-made");
    let file = config_file(
        &dir,
        "[store]\nflush_interval = \"5s\"\n[admin]\ntoken = \"a-secret-token\"\n",
    );
    let data = data_dir.to_str().unwrap();
    let checked = meshtel(
        &[
            "serve",
            "--check-config",
            "--config",
            &file,
            "--data-dir",
            data,
        ],
        &[("MESHTEL_RETENTION_MAX_AGE", "6h")],
    );
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        out.starts_with("# meshtel ") && out.contains("configuration OK"),
        "{out}"
    );
    let settings: toml::Value = toml::from_str(&out).expect("the settings are TOML");
    assert_eq!(
        settings["data_dir"].as_str(),
        Some(data),
        "the flag over the file: {out}"
    );
    assert_eq!(
        settings["store"]["flush_interval"].as_str(),
        Some("5s"),
        "{out}"
    );
    assert_eq!(
        settings["store"]["retention_max_age"].as_str(),
        Some("6h"),
        "the variable: {out}"
    );
    assert!(
        !out.contains("a-secret-token"),
        "the admin token is not printed: {out}"
    );
    assert!(
        !data_dir.exists(),
        "--check-config touches no data directory"
    );

    let bad = config_file(&dir, "[store]\nflush_interval = \"0s\"\n");
    let refused = meshtel(
        &[
            "collector",
            "--check-config",
            "--config",
            &bad,
            "--data-dir",
            data,
        ],
        &[],
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("flush_interval"), "{said}");
    assert!(refused.stdout.is_empty(), "nothing printed as if it held");
}

#[test]
fn blocks_commands_find_the_data_directory_the_config_file_names() {
    let dir = TestDir::new();
    let named = dir.path().join("from-the-config-file");
    let file = config_file(&dir, &format!("data_dir = {:?}\n", named.to_str().unwrap()));
    for command in ["adopt", "forget-missing"] {
        let run = meshtel(&["blocks", command, "--config", &file], &[]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            said.contains("from-the-config-file"),
            "blocks {command} works on the config file's data_dir: {said}"
        );
    }
}

/// A listen address that is not `host:port` is refused by name when the settings are
/// checked, by `--check-config` and before a start creates the data directory, not
/// when binding after it.
#[test]
fn a_listen_address_without_host_and_port_is_refused_before_anything_is_made() {
    let dir = TestDir::new();
    let data_dir = dir.path().join("never-made");
    let data = data_dir.to_str().unwrap();
    for (args, env, named) in [
        (
            vec!["--grpc-listen", "4317"],
            vec![],
            "[listen] grpc = \"4317\"",
        ),
        (
            vec!["--zipkin-listen", "banana"],
            vec![],
            "[listen] zipkin = \"banana\"",
        ),
        (
            vec!["--http-listen", "::1:4318"],
            vec![],
            "[listen] http = \"::1:4318\"",
        ),
        (
            vec!["--grpc-listen", "999.1.1.1:0"],
            vec![],
            "[listen] grpc = \"999.1.1.1:0\"",
        ),
        (
            vec!["--grpc-listen", "127.0.0.1:+80"],
            vec![],
            "[listen] grpc = \"127.0.0.1:+80\"",
        ),
        (
            vec![],
            vec![("MESHTEL_QUERY_LISTEN", "127.0.0.1:16686x")],
            "[listen] query = \"127.0.0.1:16686x\" (--query-listen, MESHTEL_QUERY_LISTEN)",
        ),
        (
            vec!["--query-listen", "127.0.0.1:99999"],
            vec![],
            "[listen] query = \"127.0.0.1:99999\" (--query-listen, MESHTEL_QUERY_LISTEN): \
             port 99999 is past 65535, the highest port; expected host:port",
        ),
    ] {
        for check in [true, false] {
            let mut full = vec!["serve", "--data-dir", data];
            if check {
                full.push("--check-config");
            }
            full.extend(&args);
            let run = meshtel(&full, &env);
            let said = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(1), "{full:?}: {said}");
            assert!(
                said.contains(named) && said.contains("expected host:port"),
                "{full:?}: {said}"
            );
            assert!(!data_dir.exists(), "{full:?} made the data directory");
        }
    }
    // Names, IPv6 in brackets and port 0 pass.
    let run = meshtel(
        &[
            "serve",
            "--check-config",
            "--data-dir",
            data,
            "--grpc-listen",
            "localhost:0",
            "--http-listen",
            "[::1]:4318",
        ],
        &[],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `meshtel quota usage/audit --limit` outside what the API takes is refused by the
/// CLI, not sent as something else (0 showed one row).
#[test]
fn quota_cli_limits_outside_the_apis_range_are_refused() {
    for (args, range) in [
        (
            &["quota", "usage", "per-user", "--limit", "0"][..],
            "1..=10000",
        ),
        (
            &["quota", "audit", "--name", "x", "--limit", "1001"][..],
            "1..=1000",
        ),
    ] {
        let run = meshtel(args, &[]);
        let said = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains(&format!("is not in {range}")),
            "{args:?}: {said}"
        );
    }
}

/// One admin token per data directory: a query process started with a configured token
/// retires the generated one for every query process on the directory, one started
/// later without a token keeps the configured one instead of generating another, and a
/// newer configured token retires the older everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_process_of_a_data_directory_takes_the_same_admin_token() {
    let dir = TestDir::new();
    let collector = Meshtel::start(&dir, Role::Collector, &[]).await;
    let unconfigured = Meshtel::start(&dir, Role::Query, &[]).await;
    let generated = eventually(
        Duration::from_secs(5),
        "the first query process prints the generated admin token",
        || async { generated_token(&unconfigured.log_text()) },
    )
    .await;
    let status = |m: &Meshtel, token: &str| {
        let (url, auth) = (m.query_url("/api/admin/token"), format!("Bearer {token}"));
        async move {
            let request = http().get(url).header("authorization", auth);
            request.send().await.expect("GET /api/admin/token").status()
        }
    };
    assert_eq!(status(&unconfigured, &generated).await, 204);

    let configured =
        Meshtel::start(&dir, Role::Query, &["--admin-token", "first-configured"]).await;
    for m in [&unconfigured, &configured] {
        assert_eq!(status(m, "first-configured").await, 204);
        assert_eq!(status(m, &generated).await, 403);
    }
    let later = Meshtel::start(&dir, Role::Query, &[]).await;
    assert_eq!(status(&later, "first-configured").await, 204);
    assert_eq!(
        generated_token(&later.log_text()),
        None,
        "{}",
        later.log_text()
    );

    let newer = Meshtel::start(&dir, Role::Query, &["--admin-token", "second-configured"]).await;
    for m in [&unconfigured, &configured, &later, &newer] {
        assert_eq!(status(m, "second-configured").await, 204);
        assert_eq!(status(m, "first-configured").await, 403);
    }
    for m in [newer, later, configured, unconfigured, collector] {
        m.stop().await;
    }
}
