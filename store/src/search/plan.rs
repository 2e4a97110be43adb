//! The DataFusion plans searches run: a scan of the head's batches or of block files,
//! with the search's filter pushed into the Parquet reader (row groups and pages pruned
//! by their statistics and bloom filters, a row filter on what is left), and the filter
//! applied again to every row the scan hands out. Each partition's rows are folded by
//! the caller ([`super::Searcher::fold`]): trace search keeps a top-k or the newest
//! start per trace, dependency links the few columns of a call.
//!
//! Plans are built as physical plans, without DataFusion's SQL front end, logical
//! optimizer or catalogs: a search's plan is the same few operators every time, and
//! those parts of DataFusion were a fifth of a cold release build.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion_common::config::TableParquetOptions;
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{DFSchema, ScalarValue};
use datafusion_datasource::PartitionedFile;
use datafusion_datasource::file_groups::FileGroup;
use datafusion_datasource::file_scan_config::FileScanConfigBuilder;
use datafusion_datasource::memory::MemorySourceConfig;
use datafusion_datasource::source::DataSourceExec;
use datafusion_datasource_parquet::source::ParquetSource;
use datafusion_datasource_parquet::{CachedParquetFileReaderFactory, ParquetAccessPlan};
use datafusion_execution::TaskContext;
use datafusion_execution::memory_pool::MemoryPool;
use datafusion_execution::object_store::ObjectStoreUrl;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{BinaryExpr, Expr};
use datafusion_physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion_physical_plan::ExecutionPlan;
use datafusion_physical_plan::filter::FilterExec;

use crate::Result;
use crate::schema::span_schema;

/// Where a plan's rows come from.
#[derive(Clone)]
pub(super) enum Input<'a> {
    /// Head batches, in [`span_schema`].
    Head(&'a [RecordBatch]),
    /// Block files, read in `partitions` parallel partitions.
    Blocks {
        files: Vec<BlockFile>,
        partitions: usize,
    },
}

/// One block file a plan reads.
#[derive(Clone, Debug)]
pub(super) struct BlockFile {
    /// Absolute path.
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// The row groups and rows to read (one entry per row group); all without one.
    pub access: Option<ParquetAccessPlan>,
}

/// What every plan shares: the task context (the session's settings, the memory pool
/// queries take from, the cache of Parquet footers and page indexes) and the Parquet
/// reader's options.
pub(super) struct Planner {
    task: Arc<TaskContext>,
    parquet: TableParquetOptions,
}

impl Planner {
    pub(super) fn new(task: Arc<TaskContext>) -> Self {
        let parquet = TableParquetOptions {
            global: task.session_config().options().execution.parquet.clone(),
            ..TableParquetOptions::default()
        };
        Planner { task, parquet }
    }

    /// The context plans execute in.
    pub(super) fn task(&self) -> Arc<TaskContext> {
        self.task.clone()
    }

    /// The pool of the queries' memory bound.
    pub(super) fn memory_pool(&self) -> Arc<dyn MemoryPool> {
        self.task.runtime_env().memory_pool.clone()
    }

    /// A plan reading `input` as `schema` (blocks; the head is always [`span_schema`])
    /// and keeping the rows that pass `filter`. Its batches hold the columns of
    /// `output` and those the filter reads, in the schema's order; `None` when there is
    /// nothing to read.
    pub(super) fn plan(
        &self,
        input: Input<'_>,
        schema: &SchemaRef,
        filter: Option<&Expr>,
        output: &[&str],
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let schema = match input {
            Input::Head(_) => span_schema(),
            Input::Blocks { .. } => schema.clone(),
        };
        let mut wanted: Vec<&str> = output.to_vec();
        if let Some(filter) = filter {
            wanted.extend(filter.column_refs().iter().map(|c| c.name.as_str()));
        }
        let projection: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| wanted.contains(&field.name().as_str()))
            .map(|(index, _)| index)
            .collect();
        let scan: Arc<dyn ExecutionPlan> = match input {
            Input::Head(batches) => {
                if batches.iter().all(|b| b.num_rows() == 0) {
                    return Ok(None);
                }
                MemorySourceConfig::try_new_exec(&[batches.to_vec()], schema, Some(projection))?
            }
            Input::Blocks { files, partitions } => {
                if files.is_empty() {
                    return Ok(None);
                }
                self.parquet_scan(files, partitions, &schema, filter, projection)?
            }
        };
        Ok(Some(match filter {
            Some(filter) => {
                let predicate = physical(filter, &scan.schema())?;
                Arc::new(FilterExec::try_new(predicate, scan)?)
            }
            None => scan,
        }))
    }

    /// A scan of block files with `filter` pushed into the reader, each file read
    /// whole by one of `partitions` partitions (a block is one row group, which one
    /// partition reads whole: cutting files into byte ranges for more partitions only
    /// opened them again).
    fn parquet_scan(
        &self,
        files: Vec<BlockFile>,
        partitions: usize,
        schema: &SchemaRef,
        filter: Option<&Expr>,
        projection: Vec<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let runtime = self.task.runtime_env();
        let url = ObjectStoreUrl::local_filesystem();
        let reader = CachedParquetFileReaderFactory::new(
            runtime.object_store(&url)?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let mut source = ParquetSource::new(schema.clone())
            .with_table_parquet_options(self.parquet.clone())
            .with_parquet_file_reader_factory(Arc::new(reader));
        if let Some(filter) = filter {
            source = source.with_predicate(physical(filter, schema)?);
        }
        let files: Vec<PartitionedFile> = files
            .into_iter()
            .map(|file| {
                let read = PartitionedFile::new(file.path, file.size);
                match file.access {
                    Some(access) => read.with_extension(access),
                    None => read,
                }
            })
            .collect();
        let per_group = files.len().div_ceil(partitions.max(1)).max(1);
        let groups = files
            .chunks(per_group)
            .map(|chunk| FileGroup::new(chunk.to_vec()))
            .collect();
        let config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(Some(projection))?
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// `filter` as a physical expression over `schema`. A literal compared with a column
/// (`column op literal`, the one comparison [`super::filter`] writes) is first cast to
/// the column's type: a service name to a string view where blocks are read as such,
/// where DataFusion's analyzer would have coerced it. Other shapes are taken as they
/// are, and must already agree in type.
pub(super) fn physical(filter: &Expr, schema: &SchemaRef) -> Result<Arc<dyn PhysicalExpr>> {
    let coerced = filter
        .clone()
        .transform(|e| {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
                return Ok(Transformed::no(e));
            };
            let (Expr::Column(column), Expr::Literal(value, metadata)) = (&**left, &**right) else {
                return Ok(Transformed::no(e));
            };
            let Ok(field) = schema.field_with_name(&column.name) else {
                return Ok(Transformed::no(e));
            };
            if value.data_type() == *field.data_type() {
                return Ok(Transformed::no(e));
            }
            let value: ScalarValue = value.cast_to(field.data_type())?;
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                left.clone(),
                *op,
                Box::new(Expr::Literal(value, metadata.clone())),
            ))))
        })?
        .data;
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    Ok(create_physical_expr(
        &coerced,
        &df_schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?)
}

/// Bytes a hash table of `entries` entries of `size` bytes takes once grown to hold
/// them (buckets a power of two, at most 7/8 full, a control byte each): what a fold
/// takes from the queries' memory bound before its table grows.
pub(super) fn table_bytes(entries: usize, size: usize) -> usize {
    let buckets = entries
        .saturating_mul(8)
        .div_ceil(7)
        .max(4)
        .next_power_of_two();
    buckets.saturating_mul(size + 1)
}
