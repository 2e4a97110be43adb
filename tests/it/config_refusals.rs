//! Settings refused before anything starts, by name: the flag or variable that gave
//! them, values that would delete data or could never hold (a retention size without
//! a unit, a disk reserve the disk cannot hold, a blank admin token).

use crate::startup::{config_file, meshtel};
use crate::support::*;

#[test]
fn a_disk_reserve_larger_than_the_disk_is_refused_before_anything_is_made() {
    let dir = TestDir::new();
    let data = dir.path().join("not-yet").join("data");
    let data = data.to_str().unwrap();
    for check in [true, false] {
        let mut args = vec!["serve", "--data-dir", data, "--min-free-disk", "16EiB"];
        if check {
            args.push("--check-config");
        }
        let output = meshtel(&args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("[store] min_free_disk (16.0 EiB) is not below the size of the disk")
                && stderr.contains("--min-free-disk (MESHTEL_MIN_FREE_DISK)"),
            "{stderr}"
        );
        assert!(
            !dir.path().join("not-yet").exists(),
            "check_config {check}: a directory was made"
        );
    }
    // The query role does not write: not its setting to check.
    let output = meshtel(
        &[
            "query",
            "--data-dir",
            data,
            "--min-free-disk",
            "16EiB",
            "--check-config",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `meshtel ARGS --check-config` with `env`: its exit code and what it wrote to stderr.
fn check_config(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut args = args.to_vec();
    args.push("--check-config");
    let output = meshtel(&args, env);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn a_size_that_does_not_parse_is_refused_naming_the_forms_sizes_take() {
    let dir = TestDir::new();
    let data = dir.data_dir();
    let data = data.to_str().unwrap();
    let (code, stderr) = check_config(
        &["serve", "--data-dir", data, "--max-request-bytes", "5XB"],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-request-bytes")
            && stderr.contains("\"5XB\" is not a size: write a number with a unit"),
        "{stderr}"
    );
    for (text, value) in [
        ("[store]\nmin_free_disk = \"5 ZB\"\n", "\"5 ZB\""),
        ("[ingest]\nmax_request_bytes = \"lots\"\n", "\"lots\""),
        ("[report]\nmax_message_bytes = \"4 MiBs\"\n", "\"4 MiBs\""),
    ] {
        let config = config_file(&dir, text);
        let (code, stderr) = check_config(&["serve", "--config", &config], &[]);
        assert_ne!(code, Some(0), "{text}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{value} is not a size: write a number with a unit"
            )),
            "{text}: {stderr}"
        );
    }
    // Durations say the same about themselves.
    let (code, stderr) = check_config(&["serve", "--data-dir", data, "--flush-interval", "abc"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--flush-interval")
            && stderr.contains("\"abc\" is not a duration (expected number at 0): write a number with a unit"),
        "{stderr}"
    );
    let config = config_file(&dir, "[store]\nflush_interval = \"2 secs please\"\n");
    let (code, stderr) = check_config(&["serve", "--config", &config], &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("flush_interval") && stderr.contains("\"2 secs please\" is not a duration"),
        "{stderr}"
    );
    // A TOML integer is bytes, as before.
    let config = config_file(&dir, "[store]\nmin_free_disk = 1048576\n");
    let (code, stderr) = check_config(&["serve", "--data-dir", data, "--config", &config], &[]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_retention_size_without_a_unit_and_an_empty_admin_token_are_refused() {
    let dir = TestDir::new();
    let data = dir.data_dir();
    let data = data.to_str().unwrap();
    let output = meshtel(
        &["serve", "--data-dir", data, "--check-config"],
        &[("MESHTEL_RETENTION_MAX_BYTES", "50")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"50\" has no unit") && stderr.contains("50GiB"),
        "{stderr}"
    );
    for text in [
        "[store]\nretention_max_bytes = 50\n",
        "[admin]\ntoken = \"\"\n",
    ] {
        let config = config_file(&dir, text);
        let output = meshtel(&["serve", "--config", &config, "--check-config"], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text}: {stderr}");
        assert!(
            stderr.contains("has no unit") || stderr.contains("[admin] token is empty"),
            "{text}: {stderr}"
        );
    }
}

#[test]
fn a_refused_setting_given_by_flag_or_variable_names_it() {
    let dir = TestDir::new();
    let data = dir.data_dir();
    let data = data.to_str().unwrap();
    let output = meshtel(
        &["serve", "--data-dir", data],
        &[("MESHTEL_RETENTION_MAX_AGE", "0s")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("[store] retention_max_age")
            && stderr.contains("--retention-max-age (MESHTEL_RETENTION_MAX_AGE)"),
        "{stderr}"
    );
    // A value the parser refuses, from a variable: clap names the flag, and a note the
    // variable the operator set; from the flag itself, no note.
    let output = meshtel(
        &["serve", "--data-dir", data],
        &[("MESHTEL_FLUSH_INTERVAL", "abc")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'abc' for '--flush-interval")
            && stderr.contains("the environment variable MESHTEL_FLUSH_INTERVAL"),
        "{stderr}"
    );
    let output = meshtel(
        &["serve", "--data-dir", data, "--flush-interval", "abc"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("environment variable"), "{stderr}");
    // The longer key is not taken for the shorter one.
    let output = meshtel(
        &[
            "serve",
            "--data-dir",
            data,
            "--wal-sync",
            "interval",
            "--wal-sync-interval",
            "0s",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--wal-sync-interval (MESHTEL_WAL_SYNC_INTERVAL)")
            && !stderr.contains("--wal-sync (MESHTEL_WAL_SYNC)"),
        "{stderr}"
    );
}
