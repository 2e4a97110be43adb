//! A table over block files that reads, of each, only the row groups and rows its
//! [`ParquetAccessPlan`] names: how a tag search's query reads the rows that
//! [`super::entry_scan`] found. Filters are still pushed into the Parquet scan (row
//! groups and pages pruned by their statistics, a row filter on what is left), and the
//! query applies its whole filter to the rows it reads.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

/// One block file to read and what of it.
#[derive(Debug)]
pub(super) struct SelectedFile {
    /// Absolute path.
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// The row groups and rows to read; one entry per row group of the file.
    pub plan: ParquetAccessPlan,
}

/// The table; see the module documentation.
#[derive(Debug)]
pub(super) struct SelectedBlocks {
    schema: SchemaRef,
    files: Vec<SelectedFile>,
}

impl SelectedBlocks {
    /// Blocks read as `schema` ([`crate::schema::search_schema`]).
    pub(super) fn new(schema: SchemaRef, files: Vec<SelectedFile>) -> Self {
        SelectedBlocks { schema, files }
    }
}

#[async_trait]
impl TableProvider for SelectedBlocks {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        // Pushed into the scan to prune and filter early; the plan keeps them too.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..TableParquetOptions::default()
        };
        let mut source =
            ParquetSource::new(self.schema.clone()).with_table_parquet_options(options);
        if let Some(filter) = conjunction(filters.iter().cloned()) {
            let schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(filter, &schema)?);
        }
        // One group per file: the session's partitions read the blocks in parallel.
        let groups = self
            .files
            .iter()
            .map(|file| {
                FileGroup::new(vec![
                    PartitionedFile::new(file.path.clone(), file.size)
                        .with_extension(file.plan.clone()),
                ])
            })
            .collect();
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
