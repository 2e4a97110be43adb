//! Old rollups summed into coarser buckets, so that long windows read few rows and
//! the table stays small: once a `coarse_bucket`-long period (5 min by default) has
//! ended `coarse_after` ago (1 h), its `bucket`-long rows (10 s) are replaced by one
//! row per edge, in one transaction.
//!
//! ```text
//!  every prune_interval, then each second until none is left (≤ COARSEN_SLICE of work):
//!    oldest fine row before the cutoff ─► its coarse period: SUMS_PER_PERIOD (fine rows
//!    only, with their count) ─► BEGIN IMMEDIATE ─► DELETE fine rows (as many as summed,
//!    or ROLLBACK and start over) ─► INSERT coarse rows ─► COMMIT
//! ```
//!
//! Readers need no gate: a read transaction sees the period either before or after.
//! They read a window that reaches before the cutoff ([`EdgeRollups::read_buckets`]) in
//! whole coarse periods, whether a period is summed yet or not, so the answer does not
//! change when it is. A fine row that still reaches a summed period (a second collector
//! with a slow clock) is summed into another coarse row at the next pass; readers add
//! rows up.

use std::time::{Duration, Instant};

use meshtel_model::graph::{Buckets, bucket_ceil, bucket_floor};
use sqlx::sqlite::SqliteRow;
use sqlx::{Connection, Row, SqliteConnection};
use tracing::{debug, info};

use super::{EdgeRollups, SUMS_PER_PERIOD, insert_row, sum_row};
use crate::{Result, to_i64};

/// Time after which one turn of the background task starts no further period, so that
/// flushes of new buckets (the same task) are not held up for long behind a backlog:
/// one period of a 6,000-edge mesh takes about 2 s on its own.
pub(super) const COARSEN_SLICE: Duration = Duration::from_millis(200);

/// What [`EdgeRollups::coarsen_oldest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coarsened {
    /// Start of the coarse period summed, Unix ms.
    pub period_start_ms: i64,
    /// Fine rows replaced.
    pub fine_rows: u64,
    /// Coarse rows written: one per edge.
    pub coarse_rows: u64,
}

/// One coarse period's fine rows summed per edge ([`SUMS_PER_PERIOD`] rows), not yet
/// written.
pub(super) struct PeriodSums {
    from: i64,
    to: i64,
    /// Length of the coarse bucket.
    seconds: i64,
    rows: Vec<SqliteRow>,
    /// Fine rows the sums hold.
    summed: i64,
}

/// Work of a backlog of coarse periods, logged as it goes.
#[derive(Debug, Default)]
pub(super) struct CoarsenRun {
    periods: u64,
    fine_rows: u64,
    coarse_rows: u64,
    started: Option<Instant>,
    last_report: Option<Instant>,
}

impl EdgeRollups {
    /// The buckets readers see at `now`: `[edges] bucket`-long ones, and before the
    /// start of the coarse period holding `now - coarse_after`, coarse ones.
    pub fn buckets_at(&self, now_unix_nano: u64) -> Buckets {
        let config = &self.inner.config;
        if !config.is_coarsened() {
            return Buckets::uniform(config.bucket);
        }
        let after = u64::try_from(config.coarse_after.as_nanos()).unwrap_or(u64::MAX);
        Buckets {
            fine: config.bucket,
            coarse: config.coarse_len(),
            coarse_before: bucket_floor(now_unix_nano.saturating_sub(after), config.coarse_len()),
        }
    }

    /// The buckets to read in at `now`: [`Self::buckets_at`], and where rows summed
    /// under earlier settings say coarse buckets reach further (a longer
    /// `coarse_after` then, another collector, coarse buckets since turned off: read in
    /// their length), up to the end of the newest such bucket still kept.
    pub async fn read_buckets(&self, now_unix_nano: u64) -> Result<Buckets> {
        let config = &self.inner.config;
        let mut buckets = self.buckets_at(now_unix_nano);
        let retention = u64::try_from(config.retention.as_nanos()).unwrap_or(u64::MAX);
        let kept_ms = to_i64(now_unix_nano.saturating_sub(retention) / 1_000_000);
        let written: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT bucket_seconds, until_unix_ms FROM edge_rollup_coarse \
             WHERE bucket_seconds > $1 AND until_unix_ms > $2",
        )
        .bind(to_i64(config.bucket.as_secs()))
        .bind(kept_ms)
        .fetch_all(&self.inner.pool)
        .await?;
        if !config.is_coarsened() {
            for &(seconds, _) in &written {
                let seconds = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
                buckets.coarse = buckets.coarse.max(seconds);
            }
        }
        for &(_, until_ms) in &written {
            // Never past now: rows summed while the clock ran ahead would otherwise make
            // every window read coarse buckets until they aged out.
            let until = u64::try_from(until_ms)
                .unwrap_or(0)
                .saturating_mul(1_000_000)
                .min(now_unix_nano);
            let until = bucket_ceil(until, buckets.coarse);
            buckets.coarse_before = buckets.coarse_before.max(until);
        }
        Ok(buckets)
    }

    /// Sums the fine rows of the oldest coarse period past `coarse_after` into one row
    /// per edge, written in one transaction; `None` when no such row is left, no rows
    /// when the period changed while it was summed (to be tried again).
    pub async fn coarsen_oldest(&self) -> Result<Option<Coarsened>> {
        let mut conn = self.inner.pool.acquire().await?;
        let done: Result<Option<Coarsened>> = async {
            match self.sum_oldest(&mut conn).await? {
                Some(sums) => Ok(Some(self.write_sums(&mut conn, sums).await?)),
                None => Ok(None),
            }
        }
        .await;
        crate::catalog::close_if_read_only(&mut conn, &done);
        if matches!(done, Ok(Some(c)) if c.fine_rows > 0) {
            crate::catalog::confirm_committed(&mut conn).await?;
        }
        done
    }

    /// The sums of the oldest coarse period past `coarse_after` that has fine rows,
    /// read outside any write lock.
    pub(super) async fn sum_oldest(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<Option<PeriodSums>> {
        let config = &self.inner.config;
        if !config.is_coarsened() {
            return Ok(None);
        }
        let now = self.inner.clock.now_unix_nano();
        // One coarse period behind where readers begin coarse buckets: a reader that
        // took its buckets a moment before the boundary moved (its `read_buckets`
        // and its read are apart) still reads every summed period as coarse.
        let buckets = self.buckets_at(now);
        let coarse_nanos = u64::try_from(buckets.coarse.as_nanos()).unwrap_or(u64::MAX);
        let cutoff_ms = to_i64(buckets.coarse_before.saturating_sub(coarse_nanos) / 1_000_000);
        let seconds = to_i64(config.coarse_len().as_secs());
        let coarse_ms = seconds.saturating_mul(1000).max(1);
        // The oldest fine row of any length shorter than the coarse one: rows written
        // before `bucket` was changed are summed too, the period holding them whole.
        // Each length is found, and its oldest row, by a seek in
        // `edge_rollups_by_length`, without reading the rows between.
        let mut oldest: Option<i64> = None;
        let mut length = 0i64;
        while let Some(next) = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(bucket_seconds) FROM edge_rollups \
             WHERE bucket_seconds > $1 AND bucket_seconds < $2",
        )
        .bind(length)
        .bind(seconds)
        .fetch_one(&mut *conn)
        .await?
        {
            let start: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(bucket_start_unix_ms) FROM edge_rollups \
                 WHERE bucket_seconds = $1 AND bucket_start_unix_ms < $2",
            )
            .bind(next)
            .bind(cutoff_ms)
            .fetch_one(&mut *conn)
            .await?;
            oldest = match (oldest, start) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            length = next;
        }
        let Some(oldest) = oldest else {
            return Ok(None);
        };
        let from = oldest - oldest.rem_euclid(coarse_ms);
        let to = from.saturating_add(coarse_ms);
        let rows = sqlx::query(SUMS_PER_PERIOD)
            .bind(from)
            .bind(to)
            .bind(coarse_ms)
            .bind(seconds)
            .fetch_all(&mut *conn)
            .await?;
        let summed = rows
            .iter()
            .map(|row| row.try_get::<i64, _>(22))
            .sum::<std::result::Result<i64, _>>()?;
        Ok(Some(PeriodSums {
            from,
            to,
            seconds,
            rows,
            summed,
        }))
    }

    /// Replaces the fine rows `sums` summed by the sums, under the write lock, which is
    /// held only for that: the fine rows are deleted first and counted, and when the
    /// count is not what was summed (a row landed in the period meanwhile, or another
    /// process summed it first), nothing is written and the next pass starts over.
    pub(super) async fn write_sums(
        &self,
        conn: &mut SqliteConnection,
        sums: PeriodSums,
    ) -> Result<Coarsened> {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let fine_rows = sqlx::query(
            "DELETE FROM edge_rollups WHERE bucket_start_unix_ms >= $1 \
             AND bucket_start_unix_ms < $2 AND bucket_seconds < $3",
        )
        .bind(sums.from)
        .bind(sums.to)
        .bind(sums.seconds)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if i64::try_from(fine_rows).ok() != Some(sums.summed) {
            tx.rollback().await?;
            debug!(
                from = sums.from,
                summed = sums.summed,
                fine_rows,
                "edge rollups changed while summed; summed again"
            );
            return Ok(Coarsened {
                period_start_ms: sums.from,
                fine_rows: 0,
                coarse_rows: 0,
            });
        }
        let mut coarse_rows = 0;
        for row in &sums.rows {
            let (period_ms, key, stats) = sum_row(row)?;
            insert_row(&mut tx, to_i64(period_ms), sums.seconds, &key, &stats).await?;
            coarse_rows += 1;
        }
        sqlx::query(
            "INSERT INTO edge_rollup_coarse (bucket_seconds, until_unix_ms) VALUES ($1, $2) \
             ON CONFLICT (bucket_seconds) DO UPDATE SET until_unix_ms = CASE \
             WHEN excluded.until_unix_ms > edge_rollup_coarse.until_unix_ms \
             THEN excluded.until_unix_ms ELSE edge_rollup_coarse.until_unix_ms END",
        )
        .bind(sums.seconds)
        .bind(sums.to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Coarsened {
            period_start_ms: sums.from,
            fine_rows,
            coarse_rows,
        })
    }

    /// Sums coarse periods for up to [`COARSEN_SLICE`]; returns whether some are left.
    pub(super) async fn coarsen_slice(&self, run: &mut CoarsenRun) -> Result<bool> {
        let started = Instant::now();
        while started.elapsed() < COARSEN_SLICE {
            let Some(done) = self.coarsen_oldest().await? else {
                run.finish();
                return Ok(false);
            };
            run.add(done);
        }
        Ok(true)
    }
}

impl CoarsenRun {
    fn add(&mut self, done: Coarsened) {
        debug!(
            period_start_ms = done.period_start_ms,
            fine_rows = done.fine_rows,
            coarse_rows = done.coarse_rows,
            "edge rollups summed into a coarse bucket"
        );
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        self.periods += 1;
        self.fine_rows += done.fine_rows;
        self.coarse_rows += done.coarse_rows;
        // A backlog (the first start after an upgrade, or after coarse_after was
        // shortened) can take minutes: say how far it got.
        if now.duration_since(*self.last_report.get_or_insert(started)) >= Duration::from_secs(30) {
            self.last_report = Some(now);
            info!(
                periods = self.periods,
                fine_rows = self.fine_rows,
                coarse_rows = self.coarse_rows,
                reached_unix_ms = done.period_start_ms,
                "summing old edge rollups into coarse buckets"
            );
        }
    }

    fn finish(&mut self) {
        if self.periods > 0 {
            info!(
                periods = self.periods,
                fine_rows = self.fine_rows,
                coarse_rows = self.coarse_rows,
                seconds = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
                "old edge rollups summed into coarse buckets"
            );
        }
        *self = CoarsenRun::default();
    }
}
