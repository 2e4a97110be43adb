//! Putting blocks set aside in `blocks/orphaned/` back into the index
//! (`meshtel blocks adopt`).
//!
//! Startup sets aside every block file the index does not name: after `meshtel.db` was
//! restored from a backup (the blocks written since), after the index was lost, or
//! after a blocks volume came back once its blocks had been taken out of the index.
//! Their spans are then on disk but not searchable. Adopting reads each one whole
//! (one whose pages do not decode stays where it is), gives it a new id, moves it back
//! into `blocks/`, lists it in the index with its span count and time range, and lists
//! its services and operations in the catalog. Its trace id set is rebuilt at the next
//! start.
//!
//! It runs with the store closed: it takes the data directory's lock, so a running
//! `serve` or `collector` refuses it. A block whose spans are also in the WAL or in
//! another block (a flush that crashed before its index row was written, whose spans
//! the WAL replayed) comes back as a second copy of them: the Jaeger API folds
//! identical copies of a span in a trace it shows.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int8Type, Int64Type};
use meshtel_model::{Operation, SpanKind};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tracing::{info, warn};

use crate::block::{BlockMeta, block_file_name};
use crate::block_files::{CORRUPT_DIR, ORPHANED_DIR, highest_id_in, verify_pages};
use crate::catalog::{Catalog, CatalogChange};
use crate::lock::DataDirLock;
use crate::schema::{col, span_schema};
use crate::trace_index::{TraceIdSet, sidecar_path};
use crate::{Error, Result};

/// What [`adopt_orphaned_blocks`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// Blocks put back in the index, by their new file names.
    pub blocks: Vec<String>,
    /// Spans in them.
    pub spans: u64,
    /// Files left in `orphaned/` because they do not read, with why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Takes out of the index every block whose file is not in `<data_dir>/blocks/` and
/// returns their file names: for blocks gone for good (a lost volume, files deleted by
/// hand), when startup refuses to begin without any of them (`meshtel blocks
/// forget-missing`). Their spans are lost; a file that comes back later is set aside
/// in `orphaned/` at the next start, from where `adopt` takes it back. Runs with the
/// store closed, as [`adopt_orphaned_blocks`] does.
pub async fn forget_missing_blocks(data_dir: &Path) -> Result<Vec<String>> {
    let data_dir =
        std::fs::canonicalize(data_dir).map_err(Error::at("data directory", data_dir))?;
    let blocks_dir = check_data_dir(&data_dir)?;
    let db = data_dir.join(crate::disk::DATABASE_FILE);
    if !db.exists() {
        return Err(Error::DataDir {
            what: "database",
            path: db,
            source: std::io::Error::other("is missing: there is no index to take blocks out of"),
        });
    }
    let _lock = DataDirLock::acquire(&data_dir)?;
    let catalog = Catalog::open(&data_dir).await?;
    let missing: Vec<BlockMeta> = catalog
        .load_blocks()
        .await?
        .into_iter()
        .filter(|b| !b.path(&blocks_dir).exists())
        .collect();
    if !missing.is_empty() {
        let ids: Vec<u64> = missing.iter().map(|b| b.id).collect();
        catalog.drop_blocks(&ids).await?;
        for block in &missing {
            warn!(block = %block.file_name, spans = block.rows, "missing block taken out of the index");
        }
    }
    catalog.close().await;
    Ok(missing.into_iter().map(|b| b.file_name).collect())
}

/// Refuses, before anything is created in it, a directory that is not a store's data
/// directory (no `blocks/`: `--data-dir` pointing elsewhere), and one whose index is
/// missing while `blocks/` holds blocks, as startup refuses it. Returns `blocks/`.
fn check_data_dir(data_dir: &Path) -> Result<PathBuf> {
    let blocks_dir = data_dir.join("blocks");
    if !blocks_dir.is_dir() {
        return Err(Error::DataDir {
            what: "data directory",
            path: data_dir.to_path_buf(),
            source: std::io::Error::other(
                "holds no blocks/ directory: it is not the data directory of a meshtel store \
                 (check --data-dir, or the config file's data_dir)",
            ),
        });
    }
    crate::disk::check_index_beside_blocks(data_dir, &blocks_dir)?;
    Ok(blocks_dir)
}

/// What one orphaned block holds, read before it is moved.
struct Contents {
    rows: u64,
    min_start: i64,
    max_start: i64,
    operations: HashSet<(String, Operation)>,
}

/// Adopts every readable block of `<data_dir>/blocks/orphaned/` (see the module's doc).
/// Fails with [`Error::Locked`] while a writer runs on `data_dir`.
pub async fn adopt_orphaned_blocks(data_dir: &Path) -> Result<Adopted> {
    let data_dir =
        std::fs::canonicalize(data_dir).map_err(Error::at("data directory", data_dir))?;
    let blocks_dir = check_data_dir(&data_dir)?;
    let _lock = DataDirLock::acquire(&data_dir)?;
    let orphaned_dir = blocks_dir.join(ORPHANED_DIR);
    let mut adopted = Adopted::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&orphaned_dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(adopted),
        Err(e) => return Err(Error::at("orphaned blocks directory", &orphaned_dir)(e)),
    };
    files.sort();
    if files.is_empty() {
        return Ok(adopted);
    }
    let catalog = Catalog::open(&data_dir).await?;
    let listed = catalog.load_blocks().await?;
    // Above every id in the index and in any file name, set aside or not.
    let mut next_id = listed
        .iter()
        .map(|b| b.id)
        .chain([
            highest_id_in(&blocks_dir),
            highest_id_in(&orphaned_dir),
            highest_id_in(&blocks_dir.join(CORRUPT_DIR)),
        ])
        .max()
        .unwrap_or(0)
        + 1;
    for file in files {
        let checked = file.clone();
        let read = tokio::task::spawn_blocking(move || read_contents(&checked)).await?;
        let contents = match read {
            Ok(contents) => contents,
            Err(e) => {
                warn!(block = %file.display(), error = %e, "orphaned block does not read; left where it is");
                adopted.unreadable.push((file, e.to_string()));
                continue;
            }
        };
        let file_name = block_file_name(next_id);
        let target = blocks_dir.join(&file_name);
        std::fs::rename(&file, &target).map_err(Error::at("orphaned block", &file))?;
        // Its trace id set went by its old name; the next start builds it again.
        let _ = std::fs::remove_file(sidecar_path(&file));
        let meta = BlockMeta {
            id: next_id,
            file_name: file_name.clone(),
            min_start: contents.min_start,
            max_start: contents.max_start,
            rows: contents.rows,
            bytes: std::fs::metadata(&target)
                .map_err(Error::at("block", &target))?
                .len(),
            // Not a flush of this WAL: compaction may merge it like any merged block.
            level: 1,
            wal_seq: 0,
            trace_ids: Arc::new(TraceIdSet::from_keys(Vec::new())),
        };
        catalog.replace_blocks(&[meta], &[], None).await?;
        let services: BTreeSet<String> =
            contents.operations.iter().map(|(s, _)| s.clone()).collect();
        catalog
            .apply(&[CatalogChange::Add {
                services: services.into_iter().collect(),
                operations: contents.operations.into_iter().collect(),
            }])
            .await?;
        info!(from = %file.display(), block = %target.display(), spans = contents.rows, "orphaned block adopted");
        adopted.blocks.push(file_name);
        adopted.spans += contents.rows;
        next_id += 1;
    }
    catalog.close().await;
    Ok(adopted)
}

/// Reads the whole block (every page must decode), then its span count, start range,
/// services and operations.
fn read_contents(path: &Path) -> Result<Contents> {
    if let Some(cause) = verify_pages(path).map_err(Error::at("block", path))? {
        return Err(cause);
    }
    let file = std::fs::File::open(path).map_err(Error::at("block", path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = span_schema();
    let wanted = [col::SERVICE, col::NAME, col::KIND, col::START];
    let mut indices = Vec::with_capacity(wanted.len());
    for name in wanted {
        indices.push(schema.index_of(name)?);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder.with_projection(mask).build()?;
    let mut contents = Contents {
        rows: 0,
        min_start: i64::MAX,
        max_start: i64::MIN,
        operations: HashSet::new(),
    };
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| -> Result<&dyn Array> {
            batch
                .column_by_name(name)
                .map(|c| c.as_ref())
                .ok_or_else(|| {
                    Error::Corrupt(format!("block {} has no column {name}", path.display()))
                })
        };
        let services = column(col::SERVICE)?.as_string_opt::<i32>();
        let names = column(col::NAME)?.as_string_opt::<i32>();
        let kinds = column(col::KIND)?.as_primitive_opt::<Int8Type>();
        let starts = column(col::START)?.as_primitive_opt::<Int64Type>();
        let (Some(services), Some(names), Some(kinds), Some(starts)) =
            (services, names, kinds, starts)
        else {
            return Err(Error::Corrupt(format!(
                "block {} has columns of other types than meshtel writes",
                path.display()
            )));
        };
        for row in 0..batch.num_rows() {
            let start = starts.value(row);
            contents.min_start = contents.min_start.min(start);
            contents.max_start = contents.max_start.max(start);
            contents.operations.insert((
                services.value(row).to_owned(),
                Operation {
                    name: names.value(row).to_owned(),
                    span_kind: SpanKind::from_otlp(i32::from(kinds.value(row))),
                },
            ));
        }
        contents.rows += batch.num_rows() as u64;
    }
    if contents.rows == 0 {
        return Err(Error::Corrupt(format!(
            "block {} holds no span",
            path.display()
        )));
    }
    Ok(contents)
}
