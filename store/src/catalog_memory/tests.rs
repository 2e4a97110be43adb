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
    );
    assert_eq!(first.added.services, vec!["noisy"]);
    assert_eq!(first.added.operations.len(), 3);
    let later = catalog.register(seen("checkout", &["POST /pay"]), &overflow, now);
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
    let noisy = catalog.register(seen("noisy", &["a", "b", "c", "d"]), &overflow, now);
    assert_eq!(noisy.added.operations.len(), 2);
    assert_eq!(noisy.logged.len(), 1);
    assert_eq!(noisy.logged[0].bound, CatalogBound::OperationsPerService);
    assert_eq!(noisy.logged[0].service, "noisy");
    assert_eq!(
        noisy.logged[0].bound.setting(),
        "[store] max_catalog_operations_per_service"
    );
    // Room is left for the others, up to the total.
    let other = catalog.register(seen("cart", &["add", "remove", "list"]), &overflow, now);
    assert_eq!(other.added.operations.len(), 2, "2 per service");
    let third = catalog.register(seen("pay", &["charge", "refund"]), &overflow, now);
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
        catalog.register(seen(service, &["op"]), &overflow, now);
    }
    assert_eq!(catalog.services(), vec!["a", "b"]);
    assert_eq!(overflow.load(Ordering::Relaxed), 2);
    // A listed service still gets new operations.
    let more = catalog.register(seen("a", &["op2"]), &overflow, now);
    assert_eq!(more.added.operations, seen("a", &["op2"]));
    assert!(more.added.services.is_empty());
}

#[test]
fn refusals_are_logged_once_per_interval_per_bound_with_a_count() {
    let overflow = AtomicU64::new(0);
    let catalog = catalog(1, 1, 100);
    let t0 = Instant::now();
    catalog.register(seen("a", &["op"]), &overflow, t0);
    let first = catalog.register(seen("a", &["x", "y"]), &overflow, t0);
    assert_eq!(
        first.logged.len(),
        1,
        "one line for two refusals: {:?}",
        first.logged
    );
    assert_eq!(first.logged[0].refused, 1);
    let quiet = catalog.register(seen("a", &["z"]), &overflow, t0 + Duration::from_secs(1));
    assert!(quiet.logged.is_empty());
    // Another bound has its own window.
    let service = catalog.register(seen("b", &["op"]), &overflow, t0 + Duration::from_secs(1));
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
        vec!["quiet".into(), "busy".into()],
        seen("busy", &["a", "b"]),
    );
    assert_eq!(catalog.services(), vec!["busy", "quiet"]);
    assert_eq!(catalog.operations("busy", Some(SpanKind::Server)).len(), 2);
    assert!(
        catalog
            .operations("busy", Some(SpanKind::Client))
            .is_empty()
    );
    let overflow = AtomicU64::new(0);
    let again = catalog.register(seen("busy", &["a", "c"]), &overflow, Instant::now());
    assert_eq!(again.added.operations, seen("busy", &["c"]));
}
