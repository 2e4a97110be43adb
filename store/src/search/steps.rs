//! How a search walks the blocks: which of them each step reads, newest first, and
//! when a block's spans need no test against the query's window.

use meshtel_model::TraceQuery;

use super::Source;
use crate::to_i64;

/// Whether every span started between `min_start` and `max_start` lies in the
/// query's window.
pub(super) fn within(min_start: i64, max_start: i64, query: &TraceQuery) -> bool {
    min_start <= max_start
        && min_start >= to_i64(query.start_min_unix_nano)
        && max_start <= to_i64(query.start_max_unix_nano)
}

/// The next search step: the first of `rest`'s block sources, `take` of them or as
/// many more as hold `least_rows` spans together (at most [`SCAN_GROUP`]), merged into
/// one source; and how many it took.
pub(super) fn next_step(rest: &[Source], take: usize, least_rows: u64) -> (Source, usize) {
    let mut paths = Vec::new();
    let (mut oldest, mut newest, mut step_rows) = (i64::MAX, i64::MIN, 0);
    let mut taken = 0;
    while (taken < take.max(1) || step_rows < least_rows)
        && taken < SCAN_GROUP
        && let Some(Source::Blocks {
            paths: p,
            min_start,
            max_start,
            rows,
        }) = rest.get(taken)
    {
        paths.extend(p.iter().cloned());
        oldest = oldest.min(*min_start);
        newest = newest.max(*max_start);
        step_rows += rows;
        taken += 1;
    }
    let step = Source::Blocks {
        paths,
        min_start: oldest,
        max_start: newest,
        rows: step_rows,
    };
    (step, taken)
}

/// Most blocks one search step scans at once.
pub(super) const SCAN_GROUP: usize = 8;

/// Spans the first step of a search for more than a service reads at least (see
/// `selective` in [`super::Searcher::find_trace_ids`]): half a compacted block. The newest
/// block, which the flushes since the last merge keep small, then shares the step with
/// the one after it.
pub(super) const FIRST_STEP_ROWS: u64 = 1 << 17;

/// Blocks the next search step scans, after `scanned` blocks gave `found` of `limit`
/// traces: the estimate of what the missing ones need at the rate so far, between one
/// and `scanned` (so steps at most double) and at most [`SCAN_GROUP`].
pub(super) fn step_blocks(scanned: usize, found: usize, limit: usize) -> usize {
    let most = scanned.clamp(1, SCAN_GROUP);
    if found == 0 || found >= limit {
        return most;
    }
    let missing = limit - found;
    (scanned * missing).div_ceil(found).clamp(1, most)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn search_steps_double_while_nothing_is_found_and_follow_the_rate_after() {
        // Nothing found yet: 1, 1, 2, 4, 8, 8 blocks.
        let mut scanned = 0;
        let mut steps = Vec::new();
        for _ in 0..6 {
            let step = step_blocks(scanned, 0, 20);
            steps.push(step);
            scanned += step;
        }
        assert_eq!(steps, [1, 1, 2, 4, 8, 8]);
        // 4 of 20 in 1 block: 4 more needed, but at most as many as scanned.
        assert_eq!(step_blocks(1, 4, 20), 1);
        // 9 of 20 in 2 blocks: about 2.4 more; 2 allowed.
        assert_eq!(step_blocks(2, 9, 20), 2);
        // 18 of 20 in 4 blocks: one more.
        assert_eq!(step_blocks(4, 18, 20), 1);
        // 1 of 20 in 16 blocks: as many as allowed.
        assert_eq!(step_blocks(16, 1, 20), SCAN_GROUP);
        // Enough found but older blocks overlap in time: keep stepping.
        assert_eq!(step_blocks(4, 20, 20), 4);
    }

    fn blocks(rows: &[u64]) -> Vec<Source> {
        rows.iter()
            .enumerate()
            .map(|(i, &rows)| Source::Blocks {
                paths: vec![PathBuf::from(format!("{i}.parquet"))],
                min_start: 100 - i as i64 * 10,
                max_start: 110 - i as i64 * 10,
                rows,
            })
            .collect()
    }

    fn summary(step: &Source) -> (usize, u64, i64, i64) {
        match step {
            Source::Blocks {
                paths,
                rows,
                min_start,
                max_start,
            } => (paths.len(), *rows, *min_start, *max_start),
            Source::Head(_) => panic!("a step of blocks came out as the head"),
        }
    }

    #[test]
    fn a_first_step_with_a_row_floor_takes_the_blocks_after_a_small_newest_one() {
        let sources = blocks(&[44_500, 248_000, 251_000, 250_000]);
        // A search for a service alone: the newest block only.
        let (step, taken) = next_step(&sources, 1, 0);
        assert_eq!((taken, summary(&step)), (1, (1, 44_500, 100, 110)));
        // For more than a service: up to half a compacted block, so the next one too,
        // with the time range of both.
        let (step, taken) = next_step(&sources, 1, FIRST_STEP_ROWS);
        assert_eq!((taken, summary(&step)), (2, (2, 292_500, 90, 110)));
        // A large newest block holds the floor alone.
        let (_, taken) = next_step(&sources[1..], 1, FIRST_STEP_ROWS);
        assert_eq!(taken, 1);
        // Never past the sources there are, nor past SCAN_GROUP, nor fewer than one.
        let small = blocks(&[10; 12]);
        assert_eq!(next_step(&small[..3], 1, FIRST_STEP_ROWS).1, 3);
        assert_eq!(next_step(&small, 1, FIRST_STEP_ROWS).1, SCAN_GROUP);
        assert_eq!(next_step(&small, 0, 0).1, 1);
    }
}
