//! A time bound on graph reads: `[edges] max_read_time`. SQLite is asked to stop the
//! read's statements once it is past (a progress handler, called every
//! [`PROGRESS_OPS`] virtual-machine steps), so that a window too long for the mesh
//! frees its connection instead of holding it for minutes; a read whose caller went
//! away (a closed HTTP connection drops the future) is stopped the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqlitePool};

use crate::{Error, Result};

/// SQLite virtual-machine steps between two looks at the clock: well under a
/// millisecond of work.
const PROGRESS_OPS: i32 = 10_000;

/// SQLite's primary result code for an interrupted statement.
const SQLITE_INTERRUPT: i64 = 9;

/// A pooled connection whose statements stop at a deadline. [`TimedConn::finish`]
/// hands it back to the pool as it was; dropped unfinished (an error, or the reader's
/// future dropped), its statements stop at once and the connection is closed, not
/// reused.
pub(super) struct TimedConn {
    pub(super) conn: PoolConnection<Sqlite>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    limit: Duration,
    finished: bool,
}

impl TimedConn {
    /// A connection of `pool` whose statements stop `limit` from now.
    pub(super) async fn acquire(pool: &SqlitePool, limit: Duration) -> Result<TimedConn> {
        let mut conn = pool.acquire().await?;
        let deadline = Instant::now() + limit;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        conn.lock_handle()
            .await?
            .set_progress_handler(PROGRESS_OPS, move || {
                !flag.load(Ordering::Relaxed) && Instant::now() < deadline
            });
        Ok(TimedConn {
            conn,
            stop,
            deadline,
            limit,
            finished: false,
        })
    }

    /// `error`, or when it is SQLite stopping a statement past the deadline, an
    /// [`Error::ReadTimeLimit`] naming the setting.
    pub(super) fn classify(&self, error: Error) -> Error {
        let interrupted = matches!(
            &error,
            Error::Sql(sqlx::Error::Database(db)) if db
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .is_some_and(|code| code & 0xff == SQLITE_INTERRUPT)
        );
        if interrupted && Instant::now() >= self.deadline {
            return Error::ReadTimeLimit { limit: self.limit };
        }
        error
    }

    /// Removes the deadline and returns the connection to the pool.
    pub(super) async fn finish(mut self) -> Result<()> {
        self.conn.lock_handle().await?.remove_progress_handler();
        self.finished = true;
        Ok(())
    }
}

impl Drop for TimedConn {
    fn drop(&mut self) {
        if !self.finished {
            self.stop.store(true, Ordering::Relaxed);
            self.conn.close_on_drop();
        }
    }
}
