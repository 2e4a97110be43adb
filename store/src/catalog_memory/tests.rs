use std::time::Duration;

use meshtel_model::log_window::LOG_INTERVAL;

use super::*;

fn op(name: &str) -> Operation {
    Operation {
        name: name.into(),
        span_kind: SpanKind::Server,
    }
}

fn seen(service: &str, names: &[&str]) -> Vec<(String, Operation)> {
    names.iter().map(|n| (service.to_owned(), op(n))).collect()
}

fn catalog(services: usize, per_service: usize, operations: usize) -> MemoryCatalog {
    MemoryCatalog::new(&StoreConfig {
        max_catalog_services: services,
        max_catalog_operations_per_service: per_service,
        max_catalog_operations: operations,
        ..Default::default()
    })
}

/// The review's case: three operations of one noisy service fill
/// `max_catalog_operations = 3`; a service seen later is still listed.
#[test]
fn a_noisy_service_filling_the_operations_does_not_keep_a_new_service_out() {
    let overflow = AtomicU64::new(0);
    let catalog = catalog(10_000, 1_000, 3);
    let now = Instant::now();
    let first = catalog.register(
        seen("noisy", &["GET /u/1", "GET /u/2", "GET /u/3"]),
        &overflow,
        now,
        0,
    );
    assert_eq!(first.added.services, vec!["noisy"]);
    assert_eq!(first.added.operations.len(), 3);
    let later = catalog.register(seen("checkout", &["POST /pay"]), &overflow, now, 0);
    assert_eq!(
        later.added.services,
        vec!["checkout"],
        "listed although the operations are full"
    );
    assert!(
        later.added.operations.is_empty(),
        "the operation bound stays a bound"
    );
    assert_eq!(catalog.services(), vec!["checkout", "noisy"]);
    assert!(catalog.operations("checkout", None).is_empty());
    assert_eq!(overflow.load(Ordering::Relaxed), 1);
    assert_eq!(
        later.logged,
        vec![OverflowLine {
            bound: CatalogBound::Operations,
            service: "checkout".into(),
            refused: 1,
        }]
    );
}

#[test]
fn one_service_takes_at_most_its_share_of_the_operations() {
    let overflow = AtomicU64::new(0);
    let catalog = catalog(10, 2, 5);
    let now = Instant::now();
    let noisy = catalog.register(seen("noisy", &["a", "b", "c", "d"]), &overflow, now, 0);
    assert_eq!(noisy.added.operations.len(), 2);
    assert_eq!(noisy.logged.len(), 1);
    assert_eq!(noisy.logged[0].bound, CatalogBound::OperationsPerService);
    assert_eq!(noisy.logged[0].service, "noisy");
    assert_eq!(
        noisy.logged[0].bound.setting(),
        "[store] max_catalog_operations_per_service"
    );
    // Room is left for the others, up to the total.
    let other = catalog.register(seen("cart", &["add", "remove", "list"]), &overflow, now, 0);
    assert_eq!(other.added.operations.len(), 2, "2 per service");
    let third = catalog.register(seen("pay", &["charge", "refund"]), &overflow, now, 0);
    assert_eq!(third.added.operations.len(), 1, "5 in all");
    assert_eq!(overflow.load(Ordering::Relaxed), 2 + 1 + 1);
    assert_eq!(catalog.operations("pay", None), vec![op("charge")]);
}

#[test]
fn services_are_bounded_by_their_own_setting() {
    let overflow = AtomicU64::new(0);
    let catalog = catalog(2, 10, 100);
    let now = Instant::now();
    for service in ["a", "b", "c", "d"] {
        catalog.register(seen(service, &["op"]), &overflow, now, 0);
    }
    assert_eq!(catalog.services(), vec!["a", "b"]);
    assert_eq!(overflow.load(Ordering::Relaxed), 2);
    // A service left out counts once per write, however many operations it names.
    let refused = catalog.register(seen("e", &["x", "y", "z"]), &overflow, now, 0);
    assert!(refused.added.services.is_empty());
    assert_eq!(overflow.load(Ordering::Relaxed), 3);
    // A listed service still gets new operations.
    let more = catalog.register(seen("a", &["op2"]), &overflow, now, 0);
    assert_eq!(more.added.operations, seen("a", &["op2"]));
    assert!(more.added.services.is_empty());
}

#[test]
fn writes_replayed_from_the_wal_are_listed_but_their_refusals_not_told_again() {
    let overflow = AtomicU64::new(0);
    let catalog = catalog(2, 1, 100);
    let t0 = Instant::now();
    catalog.register(seen("a", &["op"]), &overflow, t0, 0);
    // Replayed at start: what fits is listed, what the bounds refuse was counted and
    // logged by the process that took the write.
    let replayed = catalog.register_replayed(seen("a", &["x"]), t0, 0);
    assert!(replayed.logged.is_empty());
    let replayed = catalog.register_replayed(seen("b", &["op"]), t0, 0);
    assert_eq!(replayed.added.services, vec!["b".to_string()]);
    let replayed = catalog.register_replayed(seen("c", &["op"]), t0, 0);
    assert!(replayed.added.services.is_empty() && replayed.logged.is_empty());
    assert_eq!(overflow.load(Ordering::Relaxed), 0);
    assert!(catalog.log_untold(t0 + LOG_INTERVAL).is_empty());
    // New writes are counted and told as ever.
    let refused = catalog.register(seen("c", &["op"]), &overflow, t0, 0);
    assert_eq!(refused.logged.len(), 1);
    assert_eq!(overflow.load(Ordering::Relaxed), 1);
}

#[test]
fn refusals_are_logged_once_per_interval_per_bound_with_a_count() {
    let overflow = AtomicU64::new(0);
    let catalog = catalog(1, 1, 100);
    let t0 = Instant::now();
    catalog.register(seen("a", &["op"]), &overflow, t0, 0);
    let first = catalog.register(seen("a", &["x", "y"]), &overflow, t0, 0);
    assert_eq!(
        first.logged.len(),
        1,
        "one line for two refusals: {:?}",
        first.logged
    );
    assert_eq!(first.logged[0].refused, 1);
    let quiet = catalog.register(seen("a", &["z"]), &overflow, t0 + Duration::from_secs(1), 0);
    assert!(quiet.logged.is_empty());
    // Another bound has its own window.
    let service = catalog.register(
        seen("b", &["op"]),
        &overflow,
        t0 + Duration::from_secs(1),
        0,
    );
    assert_eq!(service.logged.len(), 1);
    assert_eq!(service.logged[0].bound, CatalogBound::Services);
    assert_eq!(service.logged[0].service, "b");
    // The timer tells what no line told once the interval has passed.
    assert!(catalog.log_untold(t0 + Duration::from_secs(2)).is_empty());
    let told = catalog.log_untold(t0 + LOG_INTERVAL);
    assert_eq!(
        told,
        vec![OverflowLine {
            bound: CatalogBound::OperationsPerService,
            service: "a".into(),
            refused: 2,
        }]
    );
    assert_eq!(overflow.load(Ordering::Relaxed), 4);
}

#[test]
fn replace_lists_services_without_operations() {
    let catalog = catalog(10, 10, 10);
    catalog.replace(
        vec![("quiet".into(), 0), ("busy".into(), 0)],
        seen("busy", &["a", "b"])
            .into_iter()
            .map(|(service, op)| (service, op, 0))
            .collect(),
    );
    assert_eq!(catalog.services(), vec!["busy", "quiet"]);
    assert_eq!(catalog.operations("busy", Some(SpanKind::Server)).len(), 2);
    assert!(
        catalog
            .operations("busy", Some(SpanKind::Client))
            .is_empty()
    );
    let overflow = AtomicU64::new(0);
    let again = catalog.register(seen("busy", &["a", "c"]), &overflow, Instant::now(), 0);
    assert_eq!(again.added.operations, seen("busy", &["c"]));
}

/// Sends the changes of one upkeep pass to a vector.
fn upkeep(catalog: &MemoryCatalog, cutoff: i64, granularity: i64) -> Vec<CatalogChange> {
    let mut sent = Vec::new();
    catalog.upkeep(cutoff, granularity, |changes| sent = changes);
    sent
}

#[test]
fn entries_last_seen_before_the_cutoff_are_forgotten_and_free_their_room() {
    let overflow = AtomicU64::new(0);
    let catalog = catalog(2, 10, 4);
    let now = Instant::now();
    catalog.register(seen("gone", &["a", "b"]), &overflow, now, 1_000);
    catalog.register(seen("live", &["a", "old"]), &overflow, now, 1_000);
    // Seen again later: "live" and its "a", not its "old"; "gone" not at all.
    catalog.register(seen("live", &["a"]), &overflow, now, 5_000);
    let refused = catalog.register(seen("new", &["x"]), &overflow, now, 5_000);
    assert!(refused.added.services.is_empty(), "two services at most");

    assert_eq!(
        upkeep(&catalog, 3_000, 1_000_000),
        vec![CatalogChange::Forget {
            services: vec!["gone".into()],
            operations: vec![("live".into(), op("old"))],
        }]
    );
    assert_eq!(catalog.services(), vec!["live"]);
    assert_eq!(catalog.operations("live", None), vec![op("a")]);
    assert!(catalog.operations("gone", None).is_empty());
    // Their room is free: a new service and its operation are listed again.
    let listed = catalog.register(seen("new", &["x", "y"]), &overflow, now, 6_000);
    assert_eq!(listed.added.services, vec!["new"]);
    assert_eq!(listed.added.operations, seen("new", &["x", "y"]));
    // Nothing else is old: the next pass forgets nothing and has nothing to say.
    assert!(upkeep(&catalog, 3_000, 1_000_000).is_empty());
}

#[test]
fn sightings_reach_sql_once_they_are_a_granularity_past_its_copy() {
    let overflow = AtomicU64::new(0);
    let catalog = catalog(10, 10, 10);
    catalog.replace(
        vec![("svc".into(), 1_000)],
        vec![("svc".into(), op("a"), 1_000)],
    );
    catalog.register(seen("svc", &["a"]), &overflow, Instant::now(), 1_500);
    assert!(
        upkeep(&catalog, 0, 1_000).is_empty(),
        "half a granularity later: not yet"
    );
    catalog.register(seen("svc", &["a"]), &overflow, Instant::now(), 2_200);
    assert_eq!(
        upkeep(&catalog, 0, 1_000),
        vec![CatalogChange::Seen {
            services: vec![("svc".into(), 2_200)],
            operations: vec![("svc".into(), op("a"), 2_200)],
        }]
    );
    assert!(upkeep(&catalog, 0, 1_000).is_empty(), "told once");
    // An older sighting never moves an entry back.
    catalog.register(seen("svc", &["a"]), &overflow, Instant::now(), 100);
    assert!(upkeep(&catalog, 2_000, 1_000).is_empty());
    assert_eq!(catalog.services(), vec!["svc"]);
}
