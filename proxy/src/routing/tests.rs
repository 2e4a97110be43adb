#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshtel_model::routing::{ConnectionPool, LoadBalancer, OutlierDetection, TrafficPolicy};

use super::cluster::{Cluster, Outcome, Overflow};
use crate::mesh::{Endpoint, WorkloadIdentity};
use crate::stats::Stats;

fn endpoint(address: &str, version: &str) -> Endpoint {
    Endpoint {
        address: address.to_owned(),
        workload: Arc::new(WorkloadIdentity {
            name: format!("ratings-{version}"),
            namespace: "default".to_owned(),
            app: "ratings".to_owned(),
            version: version.to_owned(),
        }),
        cluster: None,
        labels: BTreeMap::from([("app".to_owned(), "ratings".to_owned()), ("version".to_owned(), version.to_owned())]),
    }
}

fn make_cluster(policy: TrafficPolicy, endpoints: &[Endpoint]) -> Arc<Cluster> {
    let stats = Stats::new().unwrap();
    let refs: Vec<&Endpoint> = endpoints.iter().collect();
    let service = ("ratings.default.svc.cluster.local".to_owned(), "ratings".to_owned(), "default".to_owned());
    Arc::new(Cluster::new("ratings".to_owned(), service, None, policy, &refs, stats.routing))
}

fn two_endpoints() -> Vec<Endpoint> {
    vec![endpoint("127.0.0.1:1", "v1"), endpoint("127.0.0.1:2", "v2")]
}

#[tokio::test]
async fn max_connections_queue_at_most_the_pending_limit_and_overflow_the_rest() {
    let policy = TrafficPolicy {
        connection_pool: ConnectionPool { max_connections: Some(1), http1_max_pending_requests: Some(1), ..Default::default() },
        ..Default::default()
    };
    let cluster = make_cluster(policy, &two_endpoints());
    let first = cluster.admit(false, None).await.expect("first is admitted");
    let waiting = {
        let cluster = cluster.clone();
        tokio::spawn(async move { cluster.admit(false, None).await.map(|_| ()) })
    };
    // Let the second request start waiting for the connection.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(cluster.admit(false, None).await.err(), Some(Overflow::MaxPending), "third overflows");
    drop(first);
    waiting.await.unwrap().expect("the pending request gets the connection once it is free");
    // A pending request whose time runs out while it waits has timed out (504 `UT`).
    let _held = cluster.admit(false, None).await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(30);
    assert_eq!(cluster.admit(false, Some(deadline)).await.err(), Some(Overflow::TimedOut), "a timeout, not an overflow");
}

#[tokio::test]
async fn http2_max_requests_bounds_requests_in_flight_over_any_protocol() {
    let policy = TrafficPolicy {
        connection_pool: ConnectionPool { http2_max_requests: Some(2), ..Default::default() },
        ..Default::default()
    };
    let cluster = make_cluster(policy, &two_endpoints());
    let a = cluster.admit(true, None).await.unwrap();
    let _b = cluster.admit(false, None).await.unwrap();
    assert_eq!(cluster.admit(true, None).await.err(), Some(Overflow::MaxRequests));
    drop(a);
    assert!(cluster.admit(true, None).await.is_ok(), "a finished request frees its slot");
}

#[tokio::test]
async fn max_retries_is_a_budget_of_retries_in_flight() {
    let policy = TrafficPolicy {
        connection_pool: ConnectionPool { max_retries: Some(1), ..Default::default() },
        ..Default::default()
    };
    let cluster = make_cluster(policy, &two_endpoints());
    let retry = cluster.try_retry().expect("one retry may be in flight");
    assert!(cluster.try_retry().is_none());
    drop(retry);
    assert!(cluster.try_retry().is_some());
}

fn ejecting(consecutive_5xx: u32, max_percent: u32, base: Duration) -> TrafficPolicy {
    TrafficPolicy {
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx_errors: consecutive_5xx,
            consecutive_gateway_errors: 0,
            interval: Duration::from_secs(1),
            base_ejection_time: base,
            max_ejection_percent: max_percent,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_endpoint_failing_in_a_row_is_ejected_for_the_base_time_then_comes_back() {
    let cluster = make_cluster(ejecting(2, 100, Duration::from_millis(200)), &two_endpoints());
    let broken = |lease: &super::cluster::EndpointLease| &*lease.endpoint().address == "127.0.0.1:2";
    // One 500 then a 200 resets the streak; two in a row eject.
    for status in [500, 200, 500, 500] {
        let lease = loop {
            let lease = cluster.pick().unwrap();
            if broken(&lease) {
                break lease;
            }
        };
        lease.record(Outcome::Status(status));
    }
    assert_eq!(cluster.ejected_count(), 1);
    for _ in 0..50 {
        assert!(!broken(&cluster.pick().unwrap()), "an ejected endpoint gets no traffic");
    }
    tokio::time::sleep(Duration::from_millis(220)).await;
    let picked: Vec<bool> = (0..10).map(|_| broken(&cluster.pick().unwrap())).collect();
    assert!(picked.contains(&true), "back after the ejection time: {picked:?}");
    assert_eq!(cluster.ejected_count(), 0);
}

#[tokio::test]
async fn ejection_stops_at_max_ejection_percent_but_one_endpoint_always_may_go() {
    let cluster = make_cluster(ejecting(1, 10, Duration::from_secs(30)), &two_endpoints());
    for _ in 0..4 {
        cluster.pick().unwrap().record(Outcome::Status(503));
    }
    assert_eq!(cluster.ejected_count(), 1, "10 % of two endpoints still ejects one, and only one");
    assert!(cluster.pick().is_some(), "the other endpoint still serves");
    let all = make_cluster(ejecting(1, 100, Duration::from_secs(30)), &two_endpoints());
    for _ in 0..4 {
        if let Some(lease) = all.pick() {
            lease.record(Outcome::LocalFailure);
        }
    }
    assert_eq!(all.ejected_count(), 2);
    assert!(all.pick().is_none(), "everything ejected: no healthy upstream");
    // Half of three: a second ejection would take two thirds out.
    let three = [endpoint("127.0.0.1:1", "v1"), endpoint("127.0.0.1:2", "v1"), endpoint("127.0.0.1:3", "v1")];
    let half = make_cluster(ejecting(1, 50, Duration::from_secs(30)), &three);
    for _ in 0..6 {
        if let Some(lease) = half.pick() {
            lease.record(Outcome::Status(500));
        }
    }
    assert_eq!(half.ejected_count(), 1, "at most 50 % of three endpoints: one");
}

#[tokio::test]
async fn gateway_errors_count_connect_failures_and_502_to_504_only() {
    let policy = TrafficPolicy {
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx_errors: 0,
            consecutive_gateway_errors: 2,
            ..OutlierDetection::default()
        }),
        ..Default::default()
    };
    let cluster = make_cluster(policy, &[endpoint("127.0.0.1:1", "v1")]);
    let record = |outcome| cluster.pick().unwrap().record(outcome);
    record(Outcome::Status(500));
    record(Outcome::Status(500));
    assert_eq!(cluster.ejected_count(), 0, "500 is not a gateway error");
    record(Outcome::Status(502));
    record(Outcome::LocalFailure);
    assert_eq!(cluster.ejected_count(), 1);
}

#[tokio::test]
async fn round_robin_alternates_and_least_request_prefers_the_idle_endpoint() {
    let rr = make_cluster(TrafficPolicy::default(), &two_endpoints());
    let picks: Vec<String> = (0..4).map(|_| rr.pick().unwrap().endpoint().address.to_string()).collect();
    assert_eq!(picks[0], picks[2]);
    assert_ne!(picks[0], picks[1]);

    let lr = make_cluster(TrafficPolicy { load_balancer: LoadBalancer::LeastRequest, ..Default::default() }, &two_endpoints());
    // Hold many requests on whichever endpoint comes first; new picks then go to the
    // other one (both candidates are drawn at random, so the idle one wins whenever
    // it is among them: at least 3 in 4).
    let busy = lr.pick().unwrap();
    let busy_address = busy.endpoint().address.clone();
    let mut held = vec![busy];
    for _ in 0..20 {
        let lease = lr.pick().unwrap();
        if lease.endpoint().address == busy_address {
            held.push(lease);
        }
    }
    let idle = (0..200).filter(|_| lr.pick().unwrap().endpoint().address != busy_address).count();
    assert!(idle >= 120, "least request sent {idle} of 200 to the idle endpoint");
}

#[test]
fn max_requests_per_connection_closes_every_nth_request() {
    let policy = |n| TrafficPolicy {
        connection_pool: ConnectionPool { max_requests_per_connection: Some(n), ..Default::default() },
        ..Default::default()
    };
    let one = make_cluster(policy(1), &two_endpoints());
    assert!((0..5).all(|_| one.close_connection_after()));
    let three = make_cluster(policy(3), &two_endpoints());
    let closes: Vec<bool> = (0..6).map(|_| three.close_connection_after()).collect();
    assert_eq!(closes, [false, false, true, false, false, true]);
    let unlimited = make_cluster(TrafficPolicy::default(), &two_endpoints());
    assert!(!unlimited.close_connection_after());
}

fn example_table() -> super::RoutingTable {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mesh = crate::mesh::load_mesh_file(&root.join("mesh.yaml"), "default").expect("example mesh loads");
    let rules = meshtel_model::routing::RuleSet::load_dir(&root.join("rules")).expect("example rules load");
    let identity = WorkloadIdentity {
        name: "productpage-v1".to_owned(),
        namespace: "default".to_owned(),
        app: "productpage".to_owned(),
        version: "v1".to_owned(),
    };
    super::RoutingTable::build(Arc::new(mesh), Arc::new(rules), &identity, None, &Stats::new().unwrap().routing)
}

fn decide_cluster(table: &super::RoutingTable, host: &str, headers: &[(&str, &str)], roll: u32) -> Result<String, String> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    let attrs = meshtel_model::routing::RequestAttrs {
        method: "GET",
        scheme: "http",
        authority: host,
        path: "/reviews/0",
        query: "",
        port: None,
        headers: &map,
    };
    table.decide(&attrs, roll).map(|d| d.cluster.name.clone()).map_err(|e| format!("{} {}", e.status().as_u16(), e.response_flag()))
}

#[test]
fn the_example_rules_route_jason_to_v2_and_split_the_rest_80_20() {
    let table = example_table();
    let reviews = "reviews.default.svc.cluster.local";
    assert_eq!(decide_cluster(&table, "reviews:9080", &[("end-user", "jason")], 99), Ok(format!("{reviews}|v2")));
    let v2 = (0..100).filter(|roll| decide_cluster(&table, "reviews", &[], *roll).unwrap().ends_with("|v2")).count();
    assert_eq!(v2, 20, "rolls 80..100 of the 80/20 split go to v2");
    let cluster = table.cluster(reviews, Some("v2")).unwrap();
    assert_eq!(cluster.endpoints.len(), 1);
    assert_eq!(&*cluster.endpoints[0].address, "127.0.0.1:15206");
    // Services without a virtual service go to the whole service.
    assert_eq!(decide_cluster(&table, "details", &[], 0), Ok("details.default.svc.cluster.local".to_owned()));
    assert_eq!(decide_cluster(&table, "nowhere.example", &[], 0), Err("503 UH".to_owned()));
    // ratings: the destination rule's pool limits apply to the subset too.
    let ratings = table.cluster("ratings.default.svc.cluster.local", Some("v1")).unwrap();
    assert_eq!(ratings.policy.connection_pool.max_connections, Some(1));
    assert!(ratings.policy.outlier_detection.is_some());
}

#[test]
fn a_request_no_route_matches_is_404_nr() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews}}]
"#;
    let rules = meshtel_model::routing::RuleSet::from_sources(&[("r.yaml".to_owned(), yaml.to_owned())]).unwrap();
    let mut table = example_table();
    table = super::RoutingTable::build(table.mesh.clone(), Arc::new(rules), &WorkloadIdentity::default(), Some(&table), &Stats::new().unwrap().routing);
    assert_eq!(decide_cluster(&table, "reviews", &[], 0), Err("404 NR".to_owned()));
    assert_eq!(decide_cluster(&table, "reviews", &[("end-user", "jason")], 0), Ok("reviews.default.svc.cluster.local".to_owned()));
    assert!(table.cluster("reviews.default.svc.cluster.local", Some("v1")).is_none(), "no destination rule, no subsets");
}

#[test]
fn a_rule_exported_to_its_own_namespace_applies_only_to_callers_there() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  exportTo: ["."]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews}}]
"#;
    let rules = Arc::new(meshtel_model::routing::RuleSet::from_sources(&[("r.yaml".to_owned(), yaml.to_owned())]).unwrap());
    let base = example_table();
    let caller = |namespace: &str| WorkloadIdentity { namespace: namespace.to_owned(), ..WorkloadIdentity::default() };
    let stats = Stats::new().unwrap().routing;
    let same = super::RoutingTable::build(base.mesh.clone(), rules.clone(), &caller("default"), Some(&base), &stats);
    assert_eq!(decide_cluster(&same, "reviews.default", &[], 0), Err("404 NR".to_owned()), "the rule applies in its namespace");
    let other = super::RoutingTable::build(base.mesh.clone(), rules, &caller("shop"), Some(&base), &stats);
    assert_eq!(
        decide_cluster(&other, "reviews.default", &[], 0),
        Ok("reviews.default.svc.cluster.local".to_owned()),
        "a caller in another namespace does not see it"
    );
}

#[test]
fn a_retry_picks_an_endpoint_it_has_not_tried_when_there_is_one() {
    let cluster = make_cluster(TrafficPolicy::default(), &two_endpoints());
    // Round robin alone hands every other request the endpoint just tried when other
    // requests pick in between: avoided here whatever the counter says.
    for _ in 0..10 {
        let first = cluster.pick().unwrap().index();
        // Another request's pick moves the round-robin counter on.
        drop(cluster.pick());
        assert_ne!(cluster.pick_avoiding(&[first]).unwrap().index(), first);
    }
    // A cluster of one endpoint retries it.
    let one = make_cluster(TrafficPolicy::default(), &two_endpoints()[..1]);
    assert_eq!(one.pick_avoiding(&[0]).unwrap().index(), 0);
}

/// An instance that answers for two services reports a call under the one its caller
/// named; one that answers for one never looks.
#[test]
fn an_instance_of_two_services_knows_which_one_a_call_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.yaml");
    std::fs::write(
        &path,
        "services:\n\
         - name: backend\n  endpoints:\n  - address: 127.0.0.1:1\n    workload: be-v1\n    labels: {app: be, version: v1}\n\
         - name: backend-alt\n  endpoints:\n  - address: 127.0.0.1:1\n    workload: be-v1\n    labels: {app: be-alt, version: v1}\n\
         - name: other\n  endpoints:\n  - address: 127.0.0.1:2\n    labels: {app: other, version: v1}\n",
    )
    .unwrap();
    let mesh = crate::mesh::load_mesh_file(&path, "default").unwrap();
    let identity = WorkloadIdentity { name: "be-v1".into(), namespace: "default".into(), app: "be".into(), version: "v1".into() };
    let table = super::RoutingTable::build(Arc::new(mesh), Arc::default(), &identity, None, &Stats::new().unwrap().routing);
    assert_eq!(table.own_services.len(), 2);
    let named = |authority: &str| table.own_service_for(authority).map(|s| s.1.clone());
    assert_eq!(named("backend-alt").as_deref(), Some("backend-alt"));
    assert_eq!(named("backend-alt.default.svc.cluster.local:9080").as_deref(), Some("backend-alt"));
    assert_eq!(named("backend").as_deref(), Some("backend"));
    assert_eq!(named("other"), None, "not one of this instance's services");
    assert_eq!(named("nowhere"), None);
    // Listed under backend-alt with another app label: still this instance, whose
    // own labels are those of the entry that matches it whole.
    assert_eq!(table.source_labels.get("app").map(String::as_str), Some("be"));
    let shared = super::SharedRouting::new(table, super::RoutingStatus::default());
    assert!(shared.serves_several());
}
