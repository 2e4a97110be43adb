use super::*;

/// Records migrations 998 and 999 as applied, as a newer meshtel would have (the
/// database is at 999).
async fn record_a_newer_migration(catalog: &Catalog) {
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (998, 'from the future', TRUE, x'00', 0), (999, 'further', TRUE, x'00', 0)",
    )
    .execute(&catalog.pool)
    .await
    .unwrap();
}

/// A database a newer meshtel migrated says so, rather than naming a migration.
#[tokio::test]
async fn a_newer_schema_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path()).await.unwrap();
    record_a_newer_migration(&catalog).await;
    catalog.pool.close().await;
    let error = Catalog::open(dir.path()).await.err().unwrap().to_string();
    assert!(error.contains("newer meshtel"), "{error}");
    assert!(error.contains("999"), "{error}");
}

/// A query process opens the database as it is: it neither creates it nor changes its
/// schema, which belong to the collector holding the data directory's lock. An older
/// schema is waited for, then refused naming what to start first; a newer one as such.
#[tokio::test]
async fn a_reader_never_creates_nor_upgrades_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let wait = std::time::Duration::from_millis(300);
    assert!(Catalog::open_existing(dir.path(), wait).await.is_err());
    assert!(
        !dir.path().join("meshtel.db").exists(),
        "a reader created the database"
    );

    let catalog = Catalog::open(dir.path()).await.unwrap();
    let latest = SQLITE_MIGRATIONS.last().unwrap().0;
    Catalog::open_existing(dir.path(), wait)
        .await
        .unwrap()
        .close()
        .await;
    // As if the newest migration had not run yet (its record kept aside).
    for statement in [
        "CREATE TABLE kept AS SELECT * FROM _sqlx_migrations WHERE version = ?",
        "DELETE FROM _sqlx_migrations WHERE version = ?",
    ] {
        sqlx::query(statement)
            .bind(latest)
            .execute(&catalog.pool)
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    let error = Catalog::open_existing(dir.path(), wait)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(started.elapsed() >= wait, "it did not wait for an upgrade");
    assert!(error.contains("older than this meshtel's"), "{error}");
    assert!(error.contains("start `meshtel collector`"), "{error}");
    assert!(error.contains("meshtel.db"), "{error}");
    let versions: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&catalog.pool)
        .await
        .unwrap();
    assert_eq!(versions, latest - 1, "a reader ran a migration");

    // A migration recorded as failed part-way is named as such once the wait is over.
    sqlx::query("INSERT INTO _sqlx_migrations SELECT * FROM kept")
        .execute(&catalog.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET success = FALSE WHERE version = ?")
        .bind(latest)
        .execute(&catalog.pool)
        .await
        .unwrap();
    let error = Catalog::open_existing(dir.path(), wait)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains(&format!(
            "migration {latest} is recorded as failed part-way"
        )),
        "{error}"
    );
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?")
        .bind(latest)
        .execute(&catalog.pool)
        .await
        .unwrap();

    // The upgrade done while a reader waits: the reader then opens it.
    let reader = tokio::spawn({
        let dir = dir.path().to_path_buf();
        async move { Catalog::open_existing(&dir, std::time::Duration::from_secs(20)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!reader.is_finished(), "the reader did not wait");
    sqlx::query("INSERT INTO _sqlx_migrations SELECT * FROM kept")
        .execute(&catalog.pool)
        .await
        .unwrap();
    reader.await.unwrap().unwrap().close().await;

    record_a_newer_migration(&catalog).await;
    catalog.close().await;
    let error = Catalog::open_existing(dir.path(), wait)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("newer meshtel"), "{error}");
}

fn op(name: &str) -> Operation {
    Operation {
        name: name.into(),
        span_kind: SpanKind::Server,
    }
}

/// Adds, later sightings (never moving back) and forgetting, as SQL keeps them.
#[tokio::test]
async fn catalog_changes_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path()).await.unwrap();
    catalog
        .apply(&[CatalogChange::Add {
            services: vec!["quiet".into()],
            operations: vec![("svc".into(), op("a")), ("svc".into(), op("b"))],
        }])
        .await
        .unwrap();
    let added = now_unix_ms();
    let later = added + 60_000;
    catalog
        .apply(&[
            CatalogChange::Seen {
                services: vec![("svc".into(), later), ("quiet".into(), 1)],
                operations: vec![("svc".into(), op("a"), later)],
            },
            CatalogChange::Forget {
                services: vec![],
                operations: vec![("svc".into(), op("b"))],
            },
        ])
        .await
        .unwrap();
    let mut services = catalog.load_services().await.unwrap();
    services.sort();
    assert_eq!(services[0].0, "quiet");
    assert!(
        services[0].1 >= added - 1_000,
        "an older sighting moves nothing"
    );
    assert_eq!(services[1], ("svc".into(), later));
    assert_eq!(
        catalog.load_operations().await.unwrap(),
        vec![("svc".into(), op("a"), later)]
    );
    catalog
        .apply(&[CatalogChange::Forget {
            services: vec!["svc".into()],
            operations: vec![],
        }])
        .await
        .unwrap();
    assert_eq!(catalog.load_services().await.unwrap().len(), 1);
    assert!(catalog.load_operations().await.unwrap().is_empty());
    catalog.close().await;
}

/// A database an older build left: its migrations up to `version`, and edge rollups
/// from `productpage-v1` to `details-v1` (which never calls anything) and to `rev-v1`
/// (which calls `ratings-v1` as app `reviews-app`), with no destination app, in a
/// bucket `bucket_ms`.
async fn older_database(dir: &Path, version: usize, bucket_ms: i64) {
    let pool = Catalog::connect(&dir.join("meshtel.db"), true)
        .await
        .unwrap();
    migrator_of(&SQLITE_MIGRATIONS[..version])
        .run(&pool)
        .await
        .unwrap();
    for (source, source_app, service, destination) in [
        (
            "productpage-v1",
            "productpage",
            "details.default.svc.cluster.local",
            "details-v1",
        ),
        (
            "productpage-v1",
            "productpage",
            "reviews.default.svc.cluster.local",
            "rev-v1",
        ),
        (
            "rev-v1",
            "reviews-app",
            "ratings.default.svc.cluster.local",
            "ratings-v1",
        ),
        ("unknown", "", "outside.example.com", ""),
    ] {
        sqlx::query(
            "INSERT INTO edge_rollups (bucket_start_unix_ms, bucket_seconds, source_workload, \
             source_namespace, source_app, source_version, destination_service, \
             destination_workload, destination_namespace, destination_version, protocol, \
             response_code, response_flags, reporter, request_count, error_count, \
             duration_sum_ms, latency_buckets, request_bytes, response_bytes) \
             VALUES (?, 10, ?, 'default', ?, 'v1', ?, ?, 'default', 'v1', 'http', 200, '-', \
             'source', 1, 0, 1.0, '1', 0, 0)",
        )
        .bind(bucket_ms)
        .bind(source)
        .bind(source_app)
        .bind(service)
        .bind(destination)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

async fn destination_apps(catalog: &Catalog) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT destination_workload, destination_app FROM edge_rollups \
         ORDER BY destination_workload",
    )
    .fetch_all(&catalog.pool)
    .await
    .unwrap()
}

/// Rollups written before destinations kept their app are given the app the builds of
/// then drew (the workload's app as a caller, else its service's name), so an upgrade
/// does not draw them as unknown; rows written since, with no app, keep none.
#[tokio::test]
async fn rollups_from_before_destination_apps_get_the_app_older_builds_drew() {
    let dir = tempfile::tempdir().unwrap();
    older_database(dir.path(), 8, now_unix_ms() - 3_600_000).await;
    let catalog = Catalog::open(dir.path()).await.unwrap();
    let expected = [
        ("", ""),
        ("details-v1", "details"),
        ("ratings-v1", "ratings"),
        ("rev-v1", "reviews-app"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(w, a)| (w.to_string(), a.to_string()))
        .collect();
    assert_eq!(destination_apps(&catalog).await, expected);

    // Written after migration 9, by a build that kept destination apps: left alone.
    let dir = tempfile::tempdir().unwrap();
    older_database(dir.path(), 10, now_unix_ms() + 60_000).await;
    let catalog = Catalog::open(dir.path()).await.unwrap();
    let none: Vec<(String, String)> = ["", "details-v1", "ratings-v1", "rev-v1"]
        .iter()
        .map(|w| (w.to_string(), String::new()))
        .collect();
    assert_eq!(destination_apps(&catalog).await, none);
}
