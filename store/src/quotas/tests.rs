#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use meshtel_model::graph::UnixClock;
use meshtel_model::quota::{AdminTokenStore, Precondition, QuotaPolicySpec, QuotaPolicyStore};

use super::QuotaRepo;

fn spec(name: &str, max_amount: u64) -> QuotaPolicySpec {
    QuotaPolicySpec {
        name: name.into(),
        max_amount,
        valid_duration: "1s".into(),
        ..QuotaPolicySpec::default()
    }
}

/// A clock that advances one millisecond per reading, from 1_000 ms.
struct TickingClock(AtomicU64);

impl UnixClock for TickingClock {
    fn now_unix_nano(&self) -> u64 {
        (1_000 + self.0.fetch_add(1, Ordering::SeqCst)) * 1_000_000
    }
}

async fn repo(dir: &tempfile::TempDir) -> QuotaRepo {
    QuotaRepo::open(dir.path())
        .await
        .unwrap()
        .with_clock(Arc::new(TickingClock(AtomicU64::new(0))))
}

fn is_precondition_failed(e: &meshtel_model::Error) -> bool {
    matches!(e, meshtel_model::Error::PreconditionFailed(_))
}

/// A policy deleted and created again never takes a version its name had: a client's
/// `If-Match` of the deleted one is refused, not applied over another writer's policy.
#[tokio::test]
async fn a_policy_created_again_never_reuses_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&dir).await;
    let (first, _) = repo
        .put_policy(spec("aba", 100), Precondition::None, "alice")
        .await
        .unwrap();
    repo.delete_policy("aba", Precondition::None, "alice")
        .await
        .unwrap();
    let (again, created) = repo
        .put_policy(spec("aba", 1), Precondition::IfNoneExists, "bob")
        .await
        .unwrap();
    assert!(created);
    assert!(
        again.version > first.version,
        "{} after {}",
        again.version,
        first.version
    );
    // Alice's edit of what she read before the delete.
    let stale = repo
        .put_policy(
            spec("aba", 200),
            Precondition::IfMatch(first.version),
            "alice",
        )
        .await
        .unwrap_err();
    assert!(is_precondition_failed(&stale), "{stale}");
    let kept = repo.get_policy("aba").await.unwrap().unwrap();
    assert_eq!(kept.spec.max_amount, 1, "bob's policy stays");
    // Updates still count up by one from there.
    let (updated, _) = repo
        .put_policy(spec("aba", 3), Precondition::IfMatch(again.version), "bob")
        .await
        .unwrap();
    assert_eq!(updated.version, again.version + 1);
    // Another incarnation than the deleted one, the same through its edits, as read
    // back and as the writes answer.
    assert_ne!(again.incarnation, first.incarnation);
    assert_eq!(updated.incarnation, again.incarnation);
    let listed = repo.list_policies().await.unwrap();
    assert_eq!(listed[0].incarnation, again.incarnation);
    assert_ne!(first.incarnation, 0);
}

#[tokio::test]
async fn quotas_put_get_list_with_versions() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&dir).await;
    assert!(repo.list_policies().await.unwrap().is_empty());
    assert_eq!(repo.get_policy("a").await.unwrap(), None);

    let (stored, created) = repo
        .put_policy(spec("a", 1), Precondition::None, "alice")
        .await
        .unwrap();
    assert!(created);
    assert_eq!(stored.version, 1);
    assert_eq!(stored.updated_by, "alice");
    assert_eq!(stored.updated_at_unix_ms, 1_000);

    let (stored, created) = repo
        .put_policy(spec("a", 2), Precondition::None, "bob")
        .await
        .unwrap();
    assert!(!created);
    assert_eq!((stored.version, stored.spec.max_amount), (2, 2));
    repo.put_policy(spec("b", 5), Precondition::None, "bob")
        .await
        .unwrap();

    let got = repo.get_policy("a").await.unwrap().unwrap();
    assert_eq!(got, stored);
    let names: Vec<String> = repo
        .list_policies()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.spec.name)
        .collect();
    assert_eq!(names, ["a", "b"]);

    // An identical put changes nothing: same version, no audit row, no revision.
    let revision = repo.policies_revision().await.unwrap();
    let (same, created) = repo
        .put_policy(spec("a", 2), Precondition::IfMatch(2), "carol")
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(same, stored);
    assert_eq!(repo.policies_revision().await.unwrap(), revision);
    assert_eq!(repo.audit(Some("a"), 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn quotas_preconditions_refuse_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&dir).await;

    let e = repo
        .put_policy(spec("a", 1), Precondition::IfMatch(1), "x")
        .await
        .unwrap_err();
    assert!(is_precondition_failed(&e), "{e}");
    assert_eq!(repo.get_policy("a").await.unwrap(), None);

    repo.put_policy(spec("a", 1), Precondition::IfNoneExists, "x")
        .await
        .unwrap();
    let e = repo
        .put_policy(spec("a", 9), Precondition::IfNoneExists, "x")
        .await
        .unwrap_err();
    assert!(is_precondition_failed(&e), "{e}");
    assert!(e.to_string().contains("already exists"), "{e}");

    let e = repo
        .put_policy(spec("a", 9), Precondition::IfMatch(7), "x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("version 1, not 7"), "{e}");
    assert_eq!(
        repo.get_policy("a").await.unwrap().unwrap().spec.max_amount,
        1
    );

    let (stored, _) = repo
        .put_policy(spec("a", 9), Precondition::IfMatch(1), "x")
        .await
        .unwrap();
    assert_eq!(stored.version, 2);

    let e = repo
        .delete_policy("a", Precondition::IfMatch(1), "x")
        .await
        .unwrap_err();
    assert!(is_precondition_failed(&e), "{e}");
    let e = repo
        .delete_policy("a", Precondition::IfNoneExists, "x")
        .await
        .unwrap_err();
    assert!(is_precondition_failed(&e), "{e}");
    assert!(repo.get_policy("a").await.unwrap().is_some());
    assert!(
        repo.delete_policy("a", Precondition::IfMatch(2), "x")
            .await
            .unwrap()
    );
    assert!(
        !repo
            .delete_policy("a", Precondition::None, "x")
            .await
            .unwrap()
    );
    let e = repo
        .delete_policy("a", Precondition::IfMatch(2), "x")
        .await
        .unwrap_err();
    assert!(is_precondition_failed(&e), "{e}");
    // Only the three successful writes were audited.
    assert_eq!(repo.audit(None, 100).await.unwrap().len(), 3);
}

#[tokio::test]
async fn quotas_audit_rows_hold_before_and_after_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&dir).await;
    let (created, _) = repo
        .put_policy(spec("a", 1), Precondition::None, "alice")
        .await
        .unwrap();
    repo.put_policy(spec("b", 1), Precondition::None, "alice")
        .await
        .unwrap();
    let (updated, _) = repo
        .put_policy(spec("a", 2), Precondition::None, "bob")
        .await
        .unwrap();
    repo.delete_policy("a", Precondition::None, "carol")
        .await
        .unwrap();

    let all = repo.audit(None, 100).await.unwrap();
    let summary: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|e| (e.action.as_str(), e.name.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("delete", "a", "carol"),
            ("update", "a", "bob"),
            ("create", "b", "alice"),
            ("create", "a", "alice"),
        ]
    );
    assert!(
        all.windows(2)
            .all(|w| w[0].id > w[1].id && w[0].at_unix_ms > w[1].at_unix_ms)
    );

    let a = repo.audit(Some("a"), 100).await.unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(
        (a[0].before.clone(), a[0].after.clone()),
        (Some(spec("a", 2)), None)
    );
    assert_eq!(
        (a[1].before.clone(), a[1].after.clone()),
        (Some(spec("a", 1)), Some(spec("a", 2)))
    );
    assert_eq!(
        (a[2].before.clone(), a[2].after.clone()),
        (None, Some(spec("a", 1)))
    );
    // The version each change made (the ETag), the deleted one for a delete.
    let versions: Vec<Option<u64>> = a.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        [
            Some(updated.version),
            Some(updated.version),
            Some(created.version)
        ]
    );
    assert!(updated.version > created.version);
    assert_eq!(repo.audit(Some("a"), 1).await.unwrap()[0].action, "delete");
    assert!(repo.audit(Some("zzz"), 10).await.unwrap().is_empty());
    // Pages: entries below an id, for one policy or all.
    let older = repo
        .audit_before(Some("a"), Some(a[0].id), 100)
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|e| e.id).collect::<Vec<_>>(),
        [a[1].id, a[2].id]
    );
    let older = repo.audit_before(None, Some(all[1].id), 1).await.unwrap();
    assert_eq!(older.iter().map(|e| e.id).collect::<Vec<_>>(), [all[2].id]);
    assert!(
        repo.audit_before(None, Some(all[3].id), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn quotas_revision_bumps_on_every_write_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&dir).await;
    let r0 = repo.policies_revision().await.unwrap();
    repo.put_policy(spec("a", 1), Precondition::None, "x")
        .await
        .unwrap();
    let r1 = repo.policies_revision().await.unwrap();
    assert!(r1 > r0);
    let _ = repo
        .put_policy(spec("a", 3), Precondition::IfMatch(5), "x")
        .await;
    let _ = repo.delete_policy("nope", Precondition::None, "x").await;
    assert_eq!(repo.policies_revision().await.unwrap(), r1);
    repo.put_policy(spec("a", 3), Precondition::None, "x")
        .await
        .unwrap();
    let r2 = repo.policies_revision().await.unwrap();
    assert!(r2 > r1);
    repo.delete_policy("a", Precondition::None, "x")
        .await
        .unwrap();
    assert!(repo.policies_revision().await.unwrap() > r2);
}

#[tokio::test]
async fn quotas_persist_across_reopen_and_processes_share_them() {
    let dir = tempfile::tempdir().unwrap();
    let first = repo(&dir).await;
    first
        .put_policy(spec("a", 4), Precondition::None, "x")
        .await
        .unwrap();
    let second = QuotaRepo::open(dir.path()).await.unwrap();
    assert_eq!(
        second
            .get_policy("a")
            .await
            .unwrap()
            .unwrap()
            .spec
            .max_amount,
        4
    );
    second
        .put_policy(spec("a", 5), Precondition::IfMatch(1), "y")
        .await
        .unwrap();
    assert_eq!(first.get_policy("a").await.unwrap().unwrap().version, 2);
    first.close().await;
    second.close().await;
    let third = QuotaRepo::open(dir.path()).await.unwrap();
    assert_eq!(third.audit(None, 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_concurrent_writers_with_one_if_match_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    // Separate pools (as separate processes would have) on the same file.
    let mut repos = Vec::new();
    for _ in 0..4 {
        repos.push(QuotaRepo::open(dir.path()).await.unwrap());
    }
    repos[0]
        .put_policy(spec("a", 1), Precondition::None, "x")
        .await
        .unwrap();

    for round in 0..5u64 {
        let version = 1 + round;
        let mut tasks = Vec::new();
        for (i, repo) in repos.iter().cycle().take(8).enumerate() {
            let repo = repo.clone();
            tasks.push(tokio::spawn(async move {
                repo.put_policy(
                    // Distinct in every round: an unchanged spec would be a no-op.
                    spec("a", 100 * (round + 2) + i as u64),
                    Precondition::IfMatch(version),
                    &format!("w{i}"),
                )
                .await
            }));
        }
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok((stored, _)) => {
                    wins += 1;
                    assert_eq!(stored.version, version + 1);
                }
                Err(e) => assert!(is_precondition_failed(&e), "unexpected error: {e}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }

    // Concurrent creates: one wins, the others see it exists.
    let mut tasks = Vec::new();
    for (i, repo) in repos.iter().cycle().take(8).enumerate() {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            repo.put_policy(spec("fresh", 1 + i as u64), Precondition::IfNoneExists, "x")
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(repos[0].audit(Some("a"), 100).await.unwrap().len(), 6);
}

/// Concurrent writers, in one process or several: the time of each change is read once
/// it holds the write lock, so audit entries and versions read in time order.
#[tokio::test]
async fn change_times_follow_the_order_changes_are_made_in() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TickingClock(AtomicU64::new(0)));
    let mut repos = Vec::new();
    for _ in 0..4 {
        repos.push(
            QuotaRepo::open(dir.path())
                .await
                .unwrap()
                .with_clock(clock.clone()),
        );
    }
    for round in 0..5u64 {
        let mut tasks = Vec::new();
        for (i, repo) in repos.iter().cycle().take(8).enumerate() {
            let repo = repo.clone();
            tasks.push(tokio::spawn(async move {
                let amount = 100 * (round + 2) + i as u64;
                repo.put_policy(spec("a", amount), Precondition::None, &format!("w{i}"))
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
    let audit = repos[0].audit(Some("a"), 100).await.unwrap();
    assert_eq!(audit.len(), 40);
    // Newest first: ids and times both fall.
    for pair in audit.windows(2) {
        assert!(pair[0].id > pair[1].id);
        assert!(
            pair[0].at_unix_ms > pair[1].at_unix_ms,
            "entry {} at {} ms, after entry {} at {} ms",
            pair[0].id,
            pair[0].at_unix_ms,
            pair[1].id,
            pair[1].at_unix_ms
        );
    }
    let stored = repos[0].get_policy("a").await.unwrap().unwrap();
    assert_eq!(stored.updated_at_unix_ms, audit[0].at_unix_ms);
}

#[tokio::test]
async fn quotas_admin_token_digests() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&dir).await;
    assert!(repo.token_digests().await.unwrap().is_empty());
    let digest = "ab".repeat(32);
    repo.add_token_digest(&digest, "generated at first start")
        .await
        .unwrap();
    repo.add_token_digest(&digest, "again").await.unwrap();
    assert_eq!(repo.token_digests().await.unwrap(), [digest]);
    let e = repo
        .add_token_digest("not-a-digest", "x")
        .await
        .unwrap_err();
    assert!(matches!(e, meshtel_model::Error::BadRequest(_)), "{e}");
    let e = repo
        .add_token_digest(&"AB".repeat(32), "x")
        .await
        .unwrap_err();
    assert!(matches!(e, meshtel_model::Error::BadRequest(_)), "{e}");
}

/// A policy write after SQLite rolled a transaction back by itself (an I/O error, a full
/// disk) and after a statement failed inside one is answered done only if another
/// connection sees it: an admin's edit is never acknowledged and lost.
#[tokio::test]
async fn a_policy_write_is_done_only_once_committed() {
    use sqlx::{Connection, Row};
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&dir).await;
    sqlx::raw_sql(
        "CREATE TRIGGER injected_fault BEFORE INSERT ON quota_policies \
         WHEN NEW.name IN ('rolled-back', 'aborted') BEGIN \
           SELECT CASE NEW.name \
             WHEN 'rolled-back' THEN RAISE(ROLLBACK, 'injected rollback') \
             ELSE RAISE(ABORT, 'injected abort') END; \
         END;",
    )
    .execute(&repo.pool)
    .await
    .unwrap();
    // Every write below goes through the one connection left in the pool.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(repo.pool.acquire().await.unwrap());
    }
    for name in ["rolled-back", "aborted"] {
        let refused = repo
            .put_policy(spec(name, 1), Precondition::None, "alice")
            .await;
        assert!(refused.is_err(), "{name}: {refused:?}");
    }
    let written = repo
        .put_policy(spec("kept", 1), Precondition::None, "alice")
        .await;
    let mut other = crate::tests::other_connection(dir.path()).await;
    let names: Vec<String> = sqlx::query("SELECT name FROM quota_policies")
        .fetch_all(&mut other)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    other.close().await.unwrap();
    drop(held);
    if written.is_ok() {
        assert_eq!(names, ["kept"], "answered done, not committed");
    }
    // Whatever failed before, the next write goes through.
    repo.put_policy(spec("next", 1), Precondition::None, "alice")
        .await
        .unwrap();
    assert_eq!(
        repo.list_policies().await.unwrap().len(),
        1 + usize::from(written.is_ok())
    );
}

/// Two repositories on one database (two `meshtel query` processes in a rolling
/// restart) writing at once: the check runs in each write's transaction, so a check
/// that allows one policy only lets exactly one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checked_write_sees_every_other_writer_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let repos = [Arc::new(repo(&dir).await), Arc::new(repo(&dir).await)];
    let writes: Vec<_> = (0..8)
        .map(|i| {
            let repo = repos[i % 2].clone();
            tokio::spawn(async move {
                let only_one = |stored: &[meshtel_model::quota::StoredPolicy]| {
                    if stored.is_empty() {
                        Ok(())
                    } else {
                        Err(vec![meshtel_model::quota::FieldError {
                            field: String::new(),
                            message: "one policy only".into(),
                        }])
                    }
                };
                repo.put_policy_checked(
                    spec(&format!("p{i}"), 1),
                    Precondition::None,
                    "test",
                    &only_one,
                )
                .await
                .unwrap()
                .is_ok()
            })
        })
        .collect();
    let mut written = 0;
    for write in writes {
        written += usize::from(write.await.unwrap());
    }
    assert_eq!(written, 1);
    assert_eq!(repos[0].list_policies().await.unwrap().len(), 1);
}
