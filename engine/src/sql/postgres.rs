//! The SQL of PostgreSQL clients: what psql, DBeaver, DataGrip, Metabase and Grafana send.
//!
//! A query from the PostgreSQL endpoint is parsed in PostgreSQL's dialect and put through
//! `datafusion-pg-catalog`'s rewrites (`OPERATOR(pg_catalog.~)`, `COLLATE`, `::regclass`, …),
//! and its session gets a `pg_catalog` schema and the catalog functions those clients call
//! (`pg_table_is_visible`, `format_type`, `pg_get_expr`, `current_schema`, …). Everything else
//! is the engine's own: the same tables of the caller's view, the same read-only check, limits
//! and masks. `pg_catalog` and `information_schema` list the tables and columns every SQL
//! caller has (a scope narrows rows, never the tables); neither holds a row count.
//!
//! One `pg_catalog` serves the whole process, so that an object's oid is the same from one
//! query to the next (psql looks a table's oid up, then asks about that oid).

use crate::error::{Error, Result};
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::SchemaProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    self as pg, PgCatalogSchemaProvider, PgCatalogStaticTables,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use std::sync::{Arc, OnceLock};
use tokio::sync::OnceCell;

/// The database name clients connect to and `current_database()` answers.
pub const DATABASE: &str = "gridlens";

/// The settings `SHOW` and `current_setting()` answer, as PostgreSQL 16 would for this server.
const SETTINGS: [(&str, &str); 17] = [
    ("server_version", "16.0"),
    ("server_version_num", "160000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("timezone", "Asia/Shanghai"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("transaction_isolation", "read committed"),
    ("transaction isolation level", "read committed"),
    ("time zone", "Asia/Shanghai"),
    ("application_name", ""),
    ("default_transaction_read_only", "on"),
    ("search_path", "public"),
    ("max_identifier_length", "63"),
    ("is_superuser", "off"),
];

/// What `version()` answers: PostgreSQL's form first, as clients parse it.
pub const VERSION: &str = concat!(
    "PostgreSQL 16.0 (gridlens ",
    env!("CARGO_PKG_VERSION"),
    ", Apache DataFusion) on x86_64-pc-linux-gnu, 64-bit"
);

/// The value of a setting (lower-case name), as `SHOW` answers it.
pub fn setting(name: &str) -> Option<&'static str> {
    SETTINGS.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// The schemas PostgreSQL clients see in `pg_catalog` (besides `pg_catalog` itself).
const SCHEMAS: [&str; 2] = ["public", "information_schema"];

/// The process's one `pg_catalog`.
struct Catalog {
    schema: Arc<dyn SchemaProvider>,
    statics: Arc<PgCatalogStaticTables>,
}

static CATALOG: OnceCell<Catalog> = OnceCell::const_new();
static PARSER: OnceLock<PostgresCompatibilityParser> = OnceLock::new();

/// The type planner that lets `regclass`, `regtype`, `oid` … casts plan.
pub(crate) fn type_planner() -> Arc<dyn TypePlanner> {
    Arc::new(pg::oid_type_planner::PgOidTypePlanner)
}

/// Adds the state PostgreSQL's SQL needs to a session's builder.
pub(crate) fn with_types(builder: SessionStateBuilder) -> SessionStateBuilder {
    builder.with_type_planner(type_planner())
}

/// Parses one client's SQL in PostgreSQL's dialect, with the rewrites that let DataFusion plan
/// what those clients send.
pub(crate) fn parse(sql: &str) -> Result<Vec<Statement>> {
    PARSER
        .get_or_init(PostgresCompatibilityParser::new)
        .parse(sql)
        .map_err(|e| super::parse_error(&DataFusionError::SQL(Box::new(e), None)))
}

/// Gives a session (whose tables are registered) `pg_catalog` and the catalog functions.
pub(crate) async fn install(ctx: &SessionContext) -> Result<()> {
    let catalog = CATALOG
        .get_or_try_init(|| async {
            let tables = Tables::of(ctx).await?;
            let statics = Arc::new(PgCatalogStaticTables::try_new().map_err(internal)?);
            let schema =
                PgCatalogSchemaProvider::try_new(tables, statics.clone(), EmptyContextProvider)
                    .map_err(internal)?;
            Ok::<_, Error>(Catalog {
                schema: Arc::new(schema),
                statics,
            })
        })
        .await?;
    let default = ctx
        .catalog("datafusion")
        .ok_or_else(|| Error::Internal("the session has no default catalog".into()))?;
    default
        .register_schema("pg_catalog", catalog.schema.clone())
        .map_err(internal)?;
    register_functions(ctx, &catalog.statics);
    Ok(())
}

/// The functions PostgreSQL clients call on the catalog (as `setup_pg_catalog` registers them).
fn register_functions(ctx: &SessionContext, statics: &PgCatalogStaticTables) {
    for udf in [
        pg::create_current_database_udf(DATABASE),
        pg::create_current_schema_udf(),
        pg::create_current_schemas_udf(),
        pg::create_pg_get_userbyid_udf(),
        pg::has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
        pg::has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
        pg::has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
        pg::has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
        pg::create_pg_table_is_visible(),
        pg::format_type::create_format_type_udf(),
        pg::create_session_user_udf(),
        pg::pg_get_expr_udf::create_pg_get_expr_udf(),
        pg::create_pg_get_partkeydef_udf(),
        pg::create_pg_relation_is_publishable_udf(),
        pg::create_pg_get_statisticsobjdef_columns_udf(),
        pg::create_pg_encoding_to_char_udf(),
        pg::create_pg_backend_pid_udf(),
        pg::create_pg_relation_size_udf(),
        pg::create_pg_total_relation_size_udf(),
        pg::create_pg_stat_get_numscans(),
        pg::create_pg_get_constraintdef(),
        pg::create_pg_get_partition_ancestors_udf(),
        pg::quote_ident_udf::create_quote_ident_udf(),
        pg::quote_ident_udf::create_parse_ident_udf(),
        pg::array_bounds_udf::create_array_upper_udf(),
        pg::array_bounds_udf::create_array_lower_udf(),
    ] {
        ctx.register_udf(udf);
    }
    for name in [
        "pg_function_is_visible",
        "pg_type_is_visible",
        "pg_opclass_is_visible",
    ] {
        let yes = ScalarValue::Boolean(Some(true));
        ctx.register_udf(ScalarUDF::new_from_impl(ByOid::new(name, yes)));
    }
    // The functions psql's \df lists are PostgreSQL's own, in pg_catalog, which it leaves out;
    // gridlens's SQL functions are DataFusion's, described in information_schema.routines.
    for name in [
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(ByOid::new(
            name,
            ScalarValue::Utf8(None),
        )));
    }
    ctx.register_udf(version_udf());
    ctx.register_udf(current_setting_udf());
    ctx.register_udtf("pg_get_keywords", statics.pg_get_keywords.clone());
    pg::generate_series_arg_coercion::CoerceIntArgsToBigInt::widen(ctx);
}

/// A catalog function of one oid with the same answer for every object: `pg_*_is_visible`
/// (every object a client can name is on the search path: there is one schema of tables, and
/// `pg_catalog`), and the descriptions of PostgreSQL's own functions (none kept).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ByOid {
    name: &'static str,
    value: ScalarValue,
    signature: Signature,
}

impl ByOid {
    fn new(name: &'static str, value: ScalarValue) -> ByOid {
        ByOid {
            name,
            value,
            signature: Signature::any(1, Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for ByOid {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(self.value.data_type())
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Ok(match args.args.first() {
            Some(ColumnarValue::Array(a)) => {
                ColumnarValue::Array(self.value.to_array_of_size(a.len())?)
            }
            _ => ColumnarValue::Scalar(self.value.clone()),
        })
    }
}

/// `version()`: [`VERSION`].
fn version_udf() -> ScalarUDF {
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                VERSION.into(),
            ))))
        }),
    )
}

/// `current_setting(name)`: a setting's value, as `SHOW` gives it; an unknown name is an error.
fn current_setting_udf() -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let name = match args.first() {
                Some(ColumnarValue::Scalar(v)) => v.to_string(),
                _ => {
                    return Err(DataFusionError::Plan(
                        "current_setting() takes a setting's name, as a constant".into(),
                    ));
                }
            };
            let lower = name.to_ascii_lowercase();
            let value = setting(&lower).ok_or_else(|| {
                DataFusionError::Plan(format!("unrecognized configuration parameter \"{name}\""))
            })?;
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value.into()))))
        }),
    )
}

/// The tables and columns `pg_catalog` describes: those of [`SCHEMAS`] in a session, taken
/// once, in name order (so that oids are handed out in the same order every time).
#[derive(Debug, Clone)]
struct Tables(Arc<Vec<(String, Vec<Table>)>>);

/// A table's name, columns and kind.
type Table = (String, SchemaRef, TableType);

impl Tables {
    async fn of(ctx: &SessionContext) -> Result<Tables> {
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Internal("the session has no default catalog".into()))?;
        let mut schemas = Vec::new();
        for name in SCHEMAS {
            let Some(schema) = catalog.schema(name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            let mut tables = Vec::new();
            for t in names {
                if let Some(table) = schema.table(&t).await.map_err(internal)? {
                    tables.push((t, table.schema(), table.table_type()));
                }
            }
            schemas.push((name.to_string(), tables));
        }
        Ok(Tables(Arc::new(schemas)))
    }

    fn schema(&self, catalog: &str, schema: &str) -> Option<&[Table]> {
        if catalog != DATABASE {
            return None;
        }
        self.0
            .iter()
            .find(|(s, _)| s == schema)
            .map(|(_, t)| t.as_slice())
    }

    fn table(&self, catalog: &str, schema: &str, table: &str) -> Option<&Table> {
        self.schema(catalog, schema)?
            .iter()
            .find(|(t, _, _)| t == table)
    }
}

#[async_trait]
impl CatalogInfo for Tables {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        Ok(vec![DATABASE.to_string()])
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok((catalog == DATABASE).then(|| self.0.iter().map(|(s, _)| s.clone()).collect()))
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok(self
            .schema(catalog, schema)
            .map(|t| t.iter().map(|(n, _, _)| n.clone()).collect()))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        Ok(self
            .table(catalog, schema, table)
            .map(|(_, s, _)| s.clone()))
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>, DataFusionError> {
        Ok(self.table(catalog, schema, table).map(|(_, _, t)| *t))
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("setting up pg_catalog: {e}"))
}
