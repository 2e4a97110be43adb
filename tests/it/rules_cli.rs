//! `meshtel rules check`: the shipped example rules explain themselves and exit 0; a
//! broken directory lists every problem with file, object and field, and exits 1.

use std::path::Path;
use std::process::Command;

use crate::support::TestDir;

fn rules_check(path: &Path) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_meshtel")).args(["rules", "check"]).arg(path).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_example_rules_check_out_and_say_what_they_do() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy/examples/rules");
    let (code, stdout, stderr) = rules_check(&examples);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("VirtualService default/reviews"), "{stdout}");
    assert!(stdout.contains("when header end-user = \"jason\""), "{stdout}");
    assert!(stdout.contains("subset v1 (80%)") && stdout.contains("subset v2 (20%)"), "{stdout}");
    assert!(stdout.contains("delay 7s on 100% of requests"), "{stdout}");
    assert!(stdout.contains("2 virtual services, 2 destination rules: OK"), "{stdout}");
}

#[test]
fn a_broken_rules_directory_lists_every_problem_and_exits_1() {
    let dir = TestDir::new();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("reviews.yaml"),
        r#"apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - corsPolicy: {allowOrigins: []}
    route:
    - destination: {host: reviews, subset: v9}
    fault: {abort: {httpStatus: 700}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gateway}
spec: {}
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = rules_check(&rules);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    for expected in [
        "reviews.yaml#1: VirtualService shop/reviews: spec.http[0].corsPolicy: corsPolicy is not supported by meshtel",
        "spec.http[0].route[0].destination.subset: subset v9 of reviews.shop.svc.cluster.local is not defined",
        "spec.http[0].fault.abort.httpStatus",
        "reviews.yaml#2",
        "Gateway is not supported",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}
