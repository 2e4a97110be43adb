use clap::{CommandFactory, Parser};

use super::*;

#[derive(Debug, Parser)]
#[command(disable_version_flag = true)]
struct Cli {
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[test]
fn the_flags_form_a_valid_command() {
    Cli::command().debug_assert();
}

#[test]
fn the_documented_command_line_parses_with_defaults() {
    let cli = Cli::try_parse_from([
        "meshtel-proxy", "--mesh", "mesh.yaml", "--service", "reviews", "--version", "v2",
        "--inbound", "127.0.0.1:15006=127.0.0.1:9080", "--outbound", "127.0.0.1:15001",
    ])
    .expect("parses");
    let config = cli.proxy.into_config().expect("valid");
    assert_eq!(config.identity.name, "reviews-v2");
    assert_eq!(config.identity.app, "reviews");
    assert_eq!(config.identity.namespace, "default");
    assert_eq!(config.inbound, Some(InboundSpec { listen: "127.0.0.1:15006".parse().expect("addr"), app: "127.0.0.1:9080".into() }));
    assert_eq!(config.admin.to_string(), DEFAULT_ADMIN);
    assert_eq!(config.collector, DEFAULT_COLLECTOR);
    assert!((config.sample_percent - 1.0).abs() < f64::EPSILON);
    assert_eq!(config.report_queue, 10_000);
    assert_eq!(config.request_timeout, Some(Duration::from_secs(15)));
    assert_eq!(config.body_idle_timeout, Some(DEFAULT_BODY_IDLE_TIMEOUT));
    assert!(config.proxy_id.starts_with("reviews-v2.default-"));
    assert_eq!(config.cluster, "Kubernetes", "Istio's default cluster id");
}

#[test]
fn bad_values_are_rejected() {
    assert!("127.0.0.1:15006".parse::<InboundSpec>().is_err());
    assert!("127.0.0.1:15006=nohost".parse::<InboundSpec>().is_err());
    for app in ["127.0.0.1:99999", "127.0.0.1:abc", "127.0.0.1:", ":80", "127.0.0.1:80=1"] {
        let error = format!("127.0.0.1:0={app}").parse::<InboundSpec>().expect_err(app);
        assert!(error.contains("port from 0 to 65535"), "{app}: {error}");
    }
    assert!("127.0.0.1:0=localhost:9080".parse::<InboundSpec>().is_ok());
    let sampling = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--sampling", "150"]).expect("parses");
    assert!(sampling.proxy.into_config().is_err());
    let dotted = Cli::try_parse_from(["p", "--mesh", "m", "--service", "a.b"]).expect("parses");
    assert!(dotted.proxy.into_config().is_err());
    let no_timeout = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--request-timeout", "0s"]).expect("parses");
    assert_eq!(no_timeout.proxy.into_config().expect("valid").request_timeout, None);
    let no_idle = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--body-idle-timeout", "0s"]).expect("parses");
    assert_eq!(no_idle.proxy.into_config().expect("valid").body_idle_timeout, None);
    let cluster = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--cluster", "east-1"]).expect("parses");
    assert_eq!(cluster.proxy.into_config().expect("valid").cluster, "east-1");
    for bad in ["", "caf\u{e9}"] {
        let cluster = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--cluster", bad]).expect("parses");
        assert!(cluster.proxy.into_config().is_err(), "--cluster {bad:?}");
    }
    // A bad service is named as such, not as the workload or app that default to it.
    for bad in ["a b", "caf\u{e9}"] {
        let cli = Cli::try_parse_from(["p", "--mesh", "m", "--service", bad]).expect("parses");
        let error = cli.proxy.into_config().expect_err(bad).to_string();
        assert!(error.contains("--service") && !error.contains("--workload"), "{bad:?}: {error}");
    }
    for flag in ["--workload", "--namespace", "--app", "--version"] {
        let bad: &[&str] = if flag == "--version" { &["v 2", "v\u{e9}"] } else { &["", "w\u{e9}", "a\nb"] };
        for value in bad {
            let cli = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", flag, value]).expect("parses");
            let error = cli.proxy.into_config().expect_err(&format!("{flag} {value:?}")).to_string();
            assert!(error.contains(flag), "{flag} {value:?}: {error}");
        }
    }
    for (collector, why) in [
        ("https://127.0.0.1:4317", "has no TLS"),
        ("127.0.0.1:4317", "must be an http://host:port URI"),
        ("grpc://127.0.0.1:4317", "must be an http://host:port URI"),
        ("http://127.0.0.1:4317/otlp", "has a path, query or fragment"),
        ("http://127.0.0.1:4317#f", "has a path, query or fragment"),
        ("http://", "is not a valid http://host:port URI"),
        ("http://u:p@127.0.0.1:4317", "no user name or password"),
        ("http://127.0.0.1", "needs a port"),
        ("http://127.0.0.1:99999", "needs a port"),
        ("http://127.0.0.1:0", "needs a port"),
    ] {
        let cli = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--collector", collector]).expect("parses");
        let error = cli.proxy.into_config().expect_err(collector).to_string();
        assert!(error.contains("--collector") && error.contains(why), "{collector}: {error}");
    }
    for collector in ["http://127.0.0.1:4317", "http://localhost:4317/", "http://[::1]:4317"] {
        let cli = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--collector", collector]).expect("parses");
        assert!(cli.proxy.into_config().is_ok(), "{collector}");
    }
    let unversioned = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--version", ""]).expect("parses");
    assert_eq!(unversioned.proxy.into_config().expect("valid").identity.version, "");
}

#[test]
fn quota_flags_default_to_prefetching_fail_open_and_parse() {
    let defaults = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s"]).expect("parses").proxy.into_config().expect("valid");
    assert_eq!(defaults.quota, crate::quota::QuotaSettings::default());
    assert!(defaults.quota.prefetch && !defaults.quota.fail_closed);
    assert_eq!(defaults.quota.timeout, Duration::from_millis(20));
    assert_eq!((defaults.quota.min_prefetch, defaults.quota.predict_window), (10, Duration::from_secs(1)));
    let set = Cli::try_parse_from([
        "p", "--mesh", "m", "--service", "s", "--quota-prefetch=false", "--quota-timeout", "50ms", "--quota-fail-closed",
        "--quota-min-prefetch", "5", "--quota-predict-window", "2s",
    ])
    .expect("parses")
    .proxy
    .into_config()
    .expect("valid");
    assert!(!set.quota.prefetch && set.quota.fail_closed);
    assert_eq!((set.quota.timeout, set.quota.min_prefetch, set.quota.predict_window), (Duration::from_millis(50), 5, Duration::from_secs(2)));
    let zero = Cli::try_parse_from(["p", "--mesh", "m", "--service", "s", "--quota-timeout", "0s"]).expect("parses");
    assert!(zero.proxy.into_config().is_err());
}

#[test]
fn concurrency_defaults_to_two_workers_capped_by_the_cpus_available() {
    let parse = |extra: &[&str]| {
        let mut args = vec!["meshtel-proxy", "--mesh", "mesh.yaml", "--service", "reviews"];
        args.extend_from_slice(extra);
        Cli::try_parse_from(args).expect("parses").proxy.into_config()
    };
    let available = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(parse(&[]).expect("valid").concurrency, DEFAULT_CONCURRENCY.min(available));
    assert_eq!(parse(&["--concurrency", "0"]).expect("valid").concurrency, available);
    assert_eq!(parse(&["--concurrency", "3"]).expect("valid").concurrency, 3);
    let error = parse(&["--concurrency", "1000"]).expect_err("too many").to_string();
    assert!(error.contains("--concurrency 1000"), "{error}");
}

#[test]
fn queue_capacities_are_refused_outside_their_range_by_flag() {
    let parse = |flag: &str, value: &str| {
        Cli::try_parse_from(["meshtel-proxy", "--mesh", "m", "--service", "s", flag, value]).expect("parses").proxy.into_config()
    };
    for (flag, max) in [("--report-queue", MAX_REPORT_QUEUE), ("--span-queue", MAX_SPAN_QUEUE)] {
        // What used to panic at start: more permits than a semaphore can count.
        for bad in ["0", "18446744073709551615", &(max + 1).to_string()] {
            let error = parse(flag, bad).expect_err("out of range").to_string();
            assert!(error.contains(&format!("{flag} {bad} must be between 1 and {max}")), "{error}");
        }
        assert!(parse(flag, &max.to_string()).is_ok(), "{flag} {max}");
        assert!(parse(flag, "1").is_ok(), "{flag} 1");
    }
    let error = parse("--connect-timeout", "0s").expect_err("zero").to_string();
    assert!(error.contains("--connect-timeout (MESHTEL_PROXY_CONNECT_TIMEOUT) must be more than 0s"), "{error}");
    assert!(parse("--connect-timeout", "1ms").is_ok());
}

#[test]
fn quota_durations_are_refused_outside_their_range_by_flag() {
    let parse = |flag: &str, value: &str| {
        Cli::try_parse_from(["meshtel-proxy", "--mesh", "m", "--service", "s", flag, value]).expect("parses").proxy.into_config()
    };
    for flag in ["--quota-timeout", "--quota-predict-window"] {
        // A deadline that far out could not be computed: it panicked at the first request.
        for bad in ["0s", "61s", "100000000years"] {
            let error = parse(flag, bad).expect_err("out of range").to_string();
            assert!(error.contains(flag) && error.contains("at most 60s"), "{flag} {bad}: {error}");
        }
        assert!(parse(flag, "60s").is_ok(), "{flag} 60s");
        assert!(parse(flag, "1ms").is_ok(), "{flag} 1ms");
    }
}

#[test]
fn identity_flags_past_a_kubernetes_names_length_are_refused() {
    // With a workload name of its own: it defaults to `<service>-<version>`.
    let parse = |flag: &str, value: &str| {
        let mut args = vec!["meshtel-proxy", "--mesh", "m", "--service", "s", flag, value];
        if flag != "--workload" {
            args.extend(["--workload", "w"]);
        }
        Cli::try_parse_from(args).expect("parses").proxy.into_config()
    };
    let service = Cli::try_parse_from(["p", "--mesh", "m", "--service", &"s".repeat(MAX_IDENTITY_BYTES + 1)]).expect("parses");
    let error = service.proxy.into_config().expect_err("too long").to_string();
    assert!(error.contains("--service is") && !error.contains("--workload"), "{error}");
    for flag in ["--workload", "--namespace", "--app", "--version", "--cluster"] {
        let error = parse(flag, &"x".repeat(MAX_IDENTITY_BYTES + 1)).expect_err("too long").to_string();
        assert!(error.contains(&format!("{flag} is {} bytes long; at most {MAX_IDENTITY_BYTES}", MAX_IDENTITY_BYTES + 1)), "{error}");
        assert!(parse(flag, &"x".repeat(MAX_IDENTITY_BYTES)).is_ok(), "{flag}");
    }
}
