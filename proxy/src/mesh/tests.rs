use std::io::Write;

use super::*;

fn example() -> MeshFile {
    let text = include_str!("../../examples/mesh.yaml");
    yaml_serde::from_str(text).expect("the example mesh file parses")
}

#[test]
fn example_mesh_file_parses_and_resolves_every_host_form() {
    let mesh = Mesh::build(example(), "default").expect("valid mesh");
    for host in ["reviews", "reviews:9080", "reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local", "REVIEWS.default:80"] {
        let service = mesh.resolve(host).unwrap_or_else(|| panic!("{host} resolves"));
        assert_eq!(service.fqdn, "reviews.default.svc.cluster.local");
        assert_eq!(service.name, "reviews");
    }
    assert!(mesh.resolve("nope").is_none());
    assert!(mesh.resolve("").is_none());
}

#[test]
fn endpoints_are_picked_round_robin_with_labels() {
    let mesh = Mesh::build(example(), "default").expect("valid mesh");
    let reviews = mesh.resolve("reviews").expect("reviews");
    let picked: Vec<String> = (0..4).map(|_| reviews.pick_endpoint().expect("endpoint").workload.name.clone()).collect();
    assert_eq!(picked, ["reviews-v1", "reviews-v2", "reviews-v1", "reviews-v2"]);
    let v2 = &reviews.endpoints[1].workload;
    assert_eq!((v2.app.as_str(), v2.version.as_str(), v2.namespace.as_str()), ("reviews", "v2", "default"));
}

#[test]
fn an_endpoint_names_its_cluster_or_is_in_the_readers_own() {
    let file: MeshFile = yaml_serde::from_str(
        "services:\n  - {name: db, endpoints: [{address: '127.0.0.1:1', cluster: east}, {address: '127.0.0.1:2'}]}\n",
    )
    .expect("parses");
    let mesh = Mesh::build(file, "default").expect("valid");
    let clusters: Vec<Option<&str>> = mesh.resolve("db").expect("db").endpoints.iter().map(|e| e.cluster.as_deref()).collect();
    assert_eq!(clusters, [Some("east"), None]);
}

#[test]
fn bare_names_prefer_the_own_namespace() {
    let file: MeshFile = yaml_serde::from_str(
        "services:\n  - {name: db, namespace: a, endpoints: [{address: '127.0.0.1:1'}]}\n  - {name: db, namespace: b, endpoints: [{address: '127.0.0.1:2'}]}\n",
    )
    .expect("parses");
    let mesh = Mesh::build(file.clone(), "b").expect("valid");
    assert_eq!(mesh.resolve("db").expect("db").namespace, "b");
    assert_eq!(mesh.resolve("db.a").expect("db.a").namespace, "a");
    let elsewhere = Mesh::build(file, "c").expect("valid");
    assert!(elsewhere.resolve("db").is_none(), "ambiguous bare name");
}

#[test]
fn invalid_meshes_are_rejected() {
    for text in [
        "services:\n  - {name: a, endpoints: [{address: 'nope'}]}\n",
        "services:\n  - {name: a.b}\n",
        "services:\n  - {name: a}\n  - {name: a}\n",
        "services:\n  - {name: a, colour: red}\n",
        "services:\n  - {name: a, endpoints: [{address: '127.0.0.1:1', cluster: ''}]}\n",
    ] {
        let parsed: std::result::Result<MeshFile, _> = yaml_serde::from_str(text);
        if let Ok(file) = parsed {
            assert!(Mesh::build(file, "default").is_err(), "{text}");
        }
    }
}

#[test]
fn a_bad_edit_keeps_the_last_good_mesh() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    write!(file, "services:\n  - {{name: a, endpoints: [{{address: '127.0.0.1:1'}}]}}\n").expect("write");
    let mut watcher = MeshWatcher::start(file.path().to_owned(), "default".to_owned()).expect("loads");
    let mesh = watcher.mesh();
    assert_eq!(watcher.poll_once(), None, "unchanged");
    assert_eq!(watcher.poll_once(), None, "still unchanged");
    std::fs::write(file.path(), "services: [ this is not yaml").expect("write");
    assert_eq!(settle(&mut watcher), Some(false));
    assert!(mesh.current().resolve("a").is_some(), "last good mesh kept");
    // An editor's truncate before its write: not a mesh without services.
    for empty in ["", " \n\n", "# mesh\n  # services below\n", "services:\n", "services: ~\n"] {
        std::fs::write(file.path(), empty).expect("write");
        assert_eq!(settle(&mut watcher), Some(false), "{empty:?}");
        assert!(mesh.current().resolve("a").is_some(), "last good mesh kept after {empty:?}");
    }
    for empty in ["", "# only a comment\n", "services:\n"] {
        std::fs::write(file.path(), empty).expect("write");
        let error = load_mesh_file(file.path(), "default").expect_err("an empty file is refused");
        assert!(error_chain(&error).contains("services: []"), "{empty:?}: {}", error_chain(&error));
    }
    // An unquoted IPv6 address is a YAML list: the error says to quote it.
    std::fs::write(file.path(), "services:\n  - name: a\n    endpoints:\n    - address: [::1]:9080\n").expect("write");
    let error = error_chain(&load_mesh_file(file.path(), "default").expect_err("a list is no address"));
    assert!(error.contains("address: \"[::1]:9080\"") && error.contains("endpoints[0].address"), "{error}");
    // Past 4 MiB (services of a few hundred bytes each, forty times that once parsed):
    // refused with its size, the mesh in force kept.
    let entry = "  - {name: svc, endpoints: [{address: \"127.0.0.1:9080\"}]}\n";
    let huge = format!("services:\n{}", entry.repeat((4 << 20) / entry.len() + 1));
    std::fs::write(file.path(), &huge).expect("write");
    let error = error_chain(&load_mesh_file(file.path(), "default").expect_err("too large"));
    assert!(error.contains(&format!("{} bytes, more than the 4194304", huge.len())), "{error}");
    assert_eq!(settle(&mut watcher), Some(false));
    assert!(mesh.current().resolve("a").is_some(), "last good mesh kept after a file too large");
    std::fs::write(file.path(), "# no services key\n{}\n").expect("write");
    let error = load_mesh_file(file.path(), "default").expect_err("a file without `services` is refused");
    assert!(error_chain(&error).contains("missing field `services`"), "{}", error_chain(&error));
    std::fs::write(file.path(), "services: []\n").expect("write");
    assert_eq!(settle(&mut watcher), Some(true), "an explicitly empty mesh is taken");
    assert!(mesh.current().resolve("a").is_none());
    std::fs::write(file.path(), "services:\n  - {name: bb, endpoints: []}\n").expect("write");
    assert_eq!(settle(&mut watcher), Some(true));
    assert!(mesh.current().resolve("a").is_none());
    assert!(mesh.current().resolve("bb").is_some());
    file.flush().expect("flush");
}

#[test]
fn endpoint_ports_outside_0_to_65535_are_refused_at_load_and_reload() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    write!(file, "services:\n  - {{name: a, endpoints: [{{address: '127.0.0.1:65535'}}, {{address: '[::1]:0'}}]}}\n").expect("write");
    file.flush().expect("flush");
    let mut watcher = MeshWatcher::start(file.path().to_owned(), "default".to_owned()).expect("ports 0 and 65535 load");
    let mesh = watcher.mesh();
    for (i, address) in ["127.0.0.1:99999", "127.0.0.1:-5", "127.0.0.1:65536", "[::1]:70000", "reviews:+80", "127.0.0.1:"].into_iter().enumerate() {
        // A comment of another length each time: the watcher sees a change even within
        // one modification-time tick.
        let text = format!("services:\n  - {{name: b, endpoints: [{{address: '{address}'}}]}}\n#{}\n", "#".repeat(i * 20));
        std::fs::write(file.path(), text).expect("write");
        let error = error_chain(&load_mesh_file(file.path(), "default").expect_err(address));
        let path = file.path().display().to_string();
        assert!(error.contains(&path) && error.contains(&format!("{address:?} of b")), "{address}: {error}");
        assert!(error.contains("port from 0 to 65535"), "{address}: {error}");
        assert_eq!(settle(&mut watcher), Some(false), "{address}: a reload refuses it too");
        assert!(mesh.current().resolve("a").is_some() && mesh.current().resolve("b").is_none(), "{address}: last good mesh kept");
    }
}

#[test]
fn strip_port_handles_ipv6() {
    assert_eq!(strip_port("reviews:9080"), "reviews");
    assert_eq!(strip_port("[::1]:80"), "[::1]");
    assert_eq!(strip_port("[::1]"), "[::1]");
    assert_eq!(strip_port("reviews"), "reviews");
}

/// Polls twice: a change is read once it has stayed the same for a poll.
fn settle(watcher: &mut MeshWatcher) -> Option<bool> {
    assert_eq!(watcher.poll_once(), None, "a change waits for the next poll");
    watcher.poll_once()
}

/// A file written in several writes, a poll apart: read once it stops changing, not
/// half-written; a rejected edit is kept for `/config_dump` until a good one.
#[test]
fn a_file_still_being_written_is_read_once_it_stays_the_same() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), "services:\n  - {name: a, endpoints: []}\n").expect("write");
    let mut watcher = MeshWatcher::start(file.path().to_owned(), "default".to_owned()).expect("loads");
    let mesh = watcher.mesh();
    let mut text = String::from("services:\n  - {name: a, endpoints: []}\n");
    for name in ["b", "c", "d"] {
        text.push_str(&format!("  - {{name: {name}, endpoints: []}}\n"));
        std::fs::write(file.path(), &text).expect("write");
        assert_eq!(watcher.poll_once(), None, "{name}: still changing");
    }
    assert!(mesh.current().resolve("b").is_none(), "nothing of the half-written file");
    assert_eq!(watcher.poll_once(), Some(true));
    assert!(mesh.current().resolve("d").is_some());
    std::fs::write(file.path(), "services: [ not yaml").expect("write");
    assert_eq!(settle(&mut watcher), Some(false));
    assert!(watcher.last_error.as_deref().is_some_and(|e| e.contains(&file.path().display().to_string())), "{:?}", watcher.last_error);
    std::fs::write(file.path(), "services: []\n").expect("write");
    assert_eq!(settle(&mut watcher), Some(true));
    assert_eq!(watcher.last_error, None);
}
