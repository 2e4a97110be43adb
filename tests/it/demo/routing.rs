//! The routing scenarios: which version answers, in what share, and what the graph
//! shows.

use super::{Demo, wait_for_requests, wl};

/// Pages as `user`: the reviews version and the stars each showed.
async fn pages(demo: &Demo, user: Option<&str>, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (page, _) = demo.page(user).await;
        out.push((
            page["reviewsVersion"]
                .as_str()
                .unwrap_or("none")
                .to_string(),
            page["ratings"].as_str().unwrap_or("none").to_string(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_route_all_v1_sends_everything_to_v1() {
    let demo = Demo::start(Some("route-all-v1")).await;
    wait_for_requests(&demo, "traffic to reviews-v1", |r| {
        (r.sent_by_productpage_to("reviews-v1") >= 50.0).then_some(())
    })
    .await;
    let requests = demo.requests().await;
    for workload in ["reviews-v2", "reviews-v3", "ratings-v1", "details-v2"] {
        assert_eq!(
            requests.sum(&[("destination_workload", workload)]),
            0.0,
            "{workload} gets nothing"
        );
    }
    for user in [None, Some("jason")] {
        for (version, stars) in pages(&demo, user, 5).await {
            assert_eq!(
                (version.as_str(), stars.as_str()),
                ("v1", "none"),
                "{user:?}"
            );
        }
    }
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_jason_to_v2_sends_only_jason_to_v2() {
    let demo = Demo::start(Some("jason-to-v2")).await;
    for (version, stars) in pages(&demo, Some("jason"), 5).await {
        assert_eq!((version.as_str(), stars.as_str()), ("v2", "black"));
    }
    for (version, stars) in pages(&demo, None, 5).await {
        assert_eq!((version.as_str(), stars.as_str()), ("v1", "none"));
    }
    // The load generator's jason (a fifth of the pages) is v2's whole traffic.
    let (v1, v2) = wait_for_requests(&demo, "200 calls to reviews", |r| {
        let (v1, v2) = (
            r.sent_by_productpage_to("reviews-v1"),
            r.sent_by_productpage_to("reviews-v2"),
        );
        (v1 + v2 >= 200.0).then_some((v1, v2))
    })
    .await;
    let share = v2 / (v1 + v2);
    eprintln!(
        "jason-to-v2: reviews-v2 took {share:.3} of {} calls",
        v1 + v2
    );
    assert!((0.08..=0.35).contains(&share), "v2 share {share:.3}");
    assert_eq!(
        demo.requests().await.sent_by_productpage_to("reviews-v3"),
        0.0
    );
    let traffic = &demo.overview().await["traffic"]["reviews"];
    let versions = |user: &str| -> Vec<String> {
        traffic[user]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(versions("jason"), ["v2"], "{traffic}");
    assert_eq!(versions("anonymous"), ["v1"], "{traffic}");
    demo.stop().await;
}

/// Runs `scenario` until `total` calls went to reviews; returns the share of each
/// version.
async fn reviews_shares(demo: &Demo, total: f64) -> [f64; 3] {
    wait_for_requests(demo, &format!("{total} calls to reviews"), |r| {
        let counts =
            ["reviews-v1", "reviews-v2", "reviews-v3"].map(|w| r.sent_by_productpage_to(w));
        let sum: f64 = counts.iter().sum();
        (sum >= total).then(|| counts.map(|c| c / sum))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_split_50_50_shares_reviews_between_v1_and_v3() {
    let demo = Demo::start(Some("split-50-50")).await;
    let [v1, v2, v3] = reviews_shares(&demo, 400.0).await;
    eprintln!("split-50-50: v1 {v1:.3}, v3 {v3:.3}");
    assert_eq!(v2, 0.0);
    assert!((0.4..=0.6).contains(&v3), "v1 {v1:.3}, v3 {v3:.3}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_split_90_10_sends_a_tenth_to_v2() {
    let demo = Demo::start(Some("split-90-10")).await;
    let [v1, v2, v3] = reviews_shares(&demo, 400.0).await;
    eprintln!("split-90-10: v1 {v1:.3}, v2 {v2:.3}");
    assert_eq!(v3, 0.0);
    assert!((0.04..=0.17).contains(&v2), "v1 {v1:.3}, v2 {v2:.3}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_all_v3_shows_red_stars_only() {
    let demo = Demo::start(Some("all-v3")).await;
    let [v1, v2, v3] = reviews_shares(&demo, 100.0).await;
    assert_eq!((v1, v2, v3), (0.0, 0.0, 1.0));
    for (version, stars) in pages(&demo, None, 5).await {
        assert_eq!((version.as_str(), stars.as_str()), ("v3", "red"));
    }
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mirror_to_v2_copies_calls_to_v2_that_no_page_sees() {
    let demo = Demo::start(Some("mirror-to-v2")).await;
    wait_for_requests(&demo, "shadow calls at reviews-v2", |r| {
        (r.received_by("reviews-v2") >= 30.0).then_some(())
    })
    .await;
    let requests = demo.requests().await;
    assert_eq!(
        requests.sent_by_productpage_to("reviews-v2"),
        0.0,
        "productpage's proxy sends live calls to v1 only"
    );
    assert!(requests.sum(&[("reporter", "source"), ("source_workload", "reviews-v2")]) > 0.0);
    for (version, _) in pages(&demo, None, 5).await {
        assert_eq!(version, "v1");
    }
    let sent = demo
        .proxy_stat(
            "productpage-v1",
            "meshtel_proxy_mirrored_requests_total",
            &[("result", "sent")],
        )
        .await;
    assert!(sent >= 30.0, "{sent} mirrored");
    let edge = demo
        .graph_edge(&wl("reviews-v2"), &wl("ratings-v1"))
        .await
        .expect("reviews-v2 calls ratings for the copies");
    assert!(edge["traffic"]["rates"]["http"].is_string(), "{edge}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_canary_v2_buggy_shows_half_errors_on_the_graph_edge() {
    let demo = Demo::start(Some("canary-v2-buggy")).await;
    wait_for_requests(&demo, "100 calls to details-v2", |r| {
        (r.sent_by_productpage_to("details-v2") >= 100.0).then_some(())
    })
    .await;
    let requests = demo.requests().await;
    let v2 = requests.sent_by_productpage_to("details-v2");
    let v1 = requests.sent_by_productpage_to("details-v1");
    let share = v2 / (v1 + v2);
    assert!((0.12..=0.28).contains(&share), "canary share {share:.3}");
    let edge = demo
        .graph_edge(&wl("productpage-v1"), &wl("details-v2"))
        .await
        .expect("an edge to details-v2");
    let errors: f64 = edge["traffic"]["rates"]["httpPercentErr"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("an error rate on {edge}"));
    eprintln!(
        "canary-v2-buggy: details-v2 took {share:.3} of the calls, {errors} % errors on its edge"
    );
    assert!((30.0..=70.0).contains(&errors), "{errors} % errors: {edge}");
    assert!(edge["traffic"]["responses"]["500"].is_object(), "{edge}");
    let healthy = demo
        .graph_edge(&wl("productpage-v1"), &wl("details-v1"))
        .await
        .expect("an edge to details-v1");
    assert!(
        healthy["traffic"]["rates"].get("httpPercentErr").is_none(),
        "{healthy}"
    );
    // The page still answers 200, with the details left out.
    let traffic = demo.overview().await["traffic"].clone();
    assert_eq!(traffic["serverErrors"], 0, "{traffic}");
    assert!(
        traffic["detailsUnavailable"].as_u64().unwrap() > 0,
        "{traffic}"
    );
    demo.stop().await;
}
