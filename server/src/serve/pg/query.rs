//! Statements over PostgreSQL: queries (simple and extended protocol), `COPY (…) TO STDOUT`, and
//! the session noise clients send (`SET`, `SHOW`, `BEGIN`, `COMMIT`, …).
//!
//! A query runs exactly as `POST /v1/sql` runs it: the caller's engine ([`App::engine`]), one
//! of the token's query slots, a turn among the server's queries, the query time limit, and an
//! audit line. It is planned and run on the query runtime; its batches come back through a
//! small channel and are encoded row by row as the client reads them, so a large answer is
//! never held whole. An answer longer than `--max-rows` ends with an error instead of being cut
//! short without a word. Session statements change nothing: SQL stays read-only, and the
//! server's own limits stay in force whatever a client `SET`s.

use super::session::caller_now;
use super::{Running, pg_error};
use crate::serve::App;
use crate::serve::observe::{self, ApiError, Audit, AuditGuard};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use arrow_pg::encoder::encode_value;
use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser as SqlParser;
use futures::{Sink, Stream, StreamExt};
use gridlens_engine::sql::control::{QueryControl, Stop, StopOnDrop};
use gridlens_engine::sql::{Dialect, postgres};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use std::fmt::Debug;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a client sent, once understood.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// A query, with what it returns and the parameters it takes.
    Query {
        /// Its text.
        sql: String,
        /// Its rows' schema.
        schema: SchemaRef,
        /// The types of `$1`, `$2`, …
        params: Vec<Option<DataType>>,
    },
    /// `COPY (query) TO STDOUT`.
    Copy {
        /// The query's text.
        sql: String,
        /// How the rows are written.
        format: CopyFormat,
    },
    /// A session statement answered without running anything.
    Noise(Noise),
}

/// The formats of `COPY … TO STDOUT`.
#[derive(Debug, Clone)]
pub enum CopyFormat {
    /// PostgreSQL's text format (tab-separated, `\N` for null).
    Text {
        /// The delimiter.
        delimiter: char,
        /// What a null is written as.
        null: String,
    },
    /// CSV.
    Csv {
        /// The delimiter.
        delimiter: char,
        /// What a null is written as.
        null: String,
        /// Whether a header line comes first.
        header: bool,
    },
}

/// Session statements, and the answer each gets.
#[derive(Debug, Clone)]
pub enum Noise {
    /// `SET …`, `RESET …`, `DISCARD …`, `DEALLOCATE …`, `CLOSE …`: accepted, nothing changes.
    Tag(&'static str),
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`.
    End(&'static str),
    /// `SHOW name`.
    Show(String),
}

/// Understands one statement: a session statement, a `COPY`, or a query for the engine
/// (anything that does not parse goes to the engine too, whose error names the fault).
pub fn classify(sql: &str) -> Result<Parsed, ApiError> {
    let Ok(mut statements) = SqlParser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Ok(query(sql));
    };
    if statements.len() != 1 {
        return Ok(query(sql));
    }
    let s = statements.remove(0);
    Ok(match s {
        Statement::Set(_) => Parsed::Noise(Noise::Tag("SET")),
        Statement::Reset(_) => Parsed::Noise(Noise::Tag("RESET")),
        Statement::Discard { .. } => Parsed::Noise(Noise::Tag("DISCARD ALL")),
        Statement::Deallocate { .. } => Parsed::Noise(Noise::Tag("DEALLOCATE")),
        Statement::Close { .. } => Parsed::Noise(Noise::Tag("CLOSE CURSOR")),
        Statement::StartTransaction { .. } => Parsed::Noise(Noise::Begin),
        Statement::Commit { .. } => Parsed::Noise(Noise::End("COMMIT")),
        Statement::Rollback { .. } => Parsed::Noise(Noise::End("ROLLBACK")),
        Statement::ShowVariable { variable } => Parsed::Noise(Noise::Show(
            variable
                .iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join(" "),
        )),
        Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => copy(source, to, target, &options, &legacy_options)?,
        _ => query(sql),
    })
}

fn query(sql: &str) -> Parsed {
    Parsed::Query {
        sql: sql.to_string(),
        schema: Arc::new(Schema::empty()),
        params: Vec::new(),
    }
}

/// `COPY (query) TO STDOUT [WITH (…)]`: the only `COPY` there is (a table is named by a query,
/// nothing is read from clients, and the server writes no files).
fn copy(
    source: CopySource,
    to: bool,
    target: CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<Parsed, ApiError> {
    let refuse = |m: &str| ApiError::forbidden(m.to_string());
    if !to || !matches!(target, CopyTarget::Stdout) {
        return Err(refuse(
            "only COPY (SELECT …) TO STDOUT is accepted: the data is read-only and the server \
             writes no files",
        ));
    }
    let sql = match source {
        CopySource::Query(q) => q.to_string(),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {cols} FROM {table_name}")
        }
    };
    let (mut csv, mut header, mut delimiter, mut null) = (false, false, None, None);
    for o in options {
        match o {
            CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                "csv" => csv = true,
                "text" => csv = false,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "COPY format {other} is not offered; use text or csv"
                    )));
                }
            },
            CopyOption::Header(h) => header = *h,
            CopyOption::Delimiter(d) => delimiter = Some(*d),
            CopyOption::Null(n) => null = Some(n.clone()),
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "COPY option {other} is not offered"
                )));
            }
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(more) => {
                csv = true;
                header |= more
                    .iter()
                    .any(|m| matches!(m, CopyLegacyCsvOption::Header));
            }
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Delimiter(d) => delimiter = Some(*d),
            CopyLegacyOption::Null(n) => null = Some(n.clone()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "COPY option {other} is not offered"
                )));
            }
        }
    }
    let format = if csv {
        CopyFormat::Csv {
            delimiter: delimiter.unwrap_or(','),
            null: null.unwrap_or_default(),
            header,
        }
    } else {
        CopyFormat::Text {
            delimiter: delimiter.unwrap_or('\t'),
            null: null.unwrap_or_else(|| "\\N".into()),
        }
    };
    Ok(Parsed::Copy { sql, format })
}

/// The simple and extended query handlers.
pub struct Queries {
    app: Arc<App>,
    running: Arc<Running>,
    parser: Arc<Prepare>,
}

impl Queries {
    /// Over the server's shared state and the registry of running queries.
    pub fn new(app: Arc<App>, running: Arc<Running>) -> Queries {
        Queries {
            parser: Arc::new(Prepare { app: app.clone() }),
            app,
            running,
        }
    }

    /// Answers one understood statement.
    async fn answer<C: ClientInfo>(
        &self,
        client: &C,
        parsed: &Parsed,
        params: Vec<ScalarValue>,
        format: &Format,
    ) -> PgWireResult<Response> {
        match parsed {
            Parsed::Noise(n) => noise(n),
            Parsed::Query { sql, .. } => {
                let run = self.start(client, sql, params).await?;
                let fields = Arc::new(arrow_schema_to_pg_fields(&run.schema, format, None)?);
                Ok(Response::Query(QueryResponse::new(
                    fields.clone(),
                    run.rows(fields, &self.app.query_rt),
                )))
            }
            Parsed::Copy { sql, format } => {
                let run = self.start(client, sql, params).await?;
                Ok(Response::CopyOut(run.copy(format)))
            }
        }
    }

    /// Starts a query for the connection's caller, as `POST /v1/sql` does.
    async fn start<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> PgWireResult<Run> {
        let (audit, written) = observe::begin(self.app.clone(), "PG", "pg query");
        audit.sql(sql);
        let fail = |e: ApiError| {
            audit.finish(Err(&e));
            pg_error(&e)
        };
        let caller = caller_now(&self.app, client, Some(&audit)).map_err(fail)?;
        let crate::serve::SqlTurn {
            engine,
            held,
            control,
        } = self.app.sql_turn(&caller).await.map_err(fail)?;
        let engine = engine.with_dialect(Dialect::Postgres);
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes().to_vec());
        self.running.start(key.clone(), control.clone());
        let (tx, mut rx) = mpsc::channel::<Result<RecordBatch, ApiError>>(4);
        let (c, sql, running) = (control.clone(), sql.to_string(), self.running.clone());
        let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
        self.app.query_rt.spawn(async move {
            let stream = if params.is_empty() {
                engine.stream(&sql, &c).await
            } else {
                engine.stream_with(&sql, params, &c).await
            };
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    let _ = schema_tx.send(Err(ApiError::from_engine(e)));
                    running.end(&key, &c);
                    return;
                }
            };
            let _ = schema_tx.send(Ok(stream.schema()));
            loop {
                let next = tokio::select! {
                    biased;
                    _ = tx.closed() => break,
                    n = stream.next() => n,
                };
                let item = match next {
                    None => break,
                    Some(Ok(b)) => Ok(b),
                    Some(Err(e)) => {
                        Err(ApiError::from_engine(gridlens_engine::sql::query_error(e)))
                    }
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
            running.end(&key, &c);
        });
        let schema = match schema_rx.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => return Err(fail(ApiError::internal("the query task ended early"))),
        };
        // The first batch before the answer starts: an error there is the statement's error.
        let first = rx.recv().await;
        if let Some(Err(e)) = first {
            return Err(fail(e));
        }
        Ok(Run {
            schema,
            held,
            first: first.and_then(Result::ok),
            rx,
            audit,
            written,
            control,
            max_rows: self.app.limits.max_rows,
        })
    }
}

fn noise(n: &Noise) -> PgWireResult<Response> {
    Ok(match n {
        Noise::Tag(t) => Response::Execution(Tag::new(t)),
        Noise::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Noise::End(t) => Response::TransactionEnd(Tag::new(t)),
        Noise::Show(name) => {
            let lower = name.to_ascii_lowercase();
            let value = postgres::setting(&lower).ok_or_else(|| {
                PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    "42704".into(),
                    format!("unrecognized configuration parameter \"{name}\""),
                )))
            })?;
            let fields = Arc::new(vec![FieldInfo::new(
                lower,
                None,
                None,
                Type::TEXT,
                FieldFormat::Text,
            )]);
            let mut enc = pgwire::api::results::DataRowEncoder::new(fields.clone());
            enc.encode_field(&value)?;
            let row = enc.take_row();
            Response::Query(QueryResponse::new(fields, futures::stream::iter([Ok(row)])))
        }
    })
}

/// A query started for a client: its schema, and its batches as they come.
struct Run {
    schema: SchemaRef,
    /// The token's query slot and the server's permit: given back as soon as the last batch
    /// has been taken (before the client hears the answer is complete), so that the client's
    /// next statement finds them free.
    held: (crate::serve::TokenSlot, tokio::sync::OwnedSemaphorePermit),
    first: Option<RecordBatch>,
    rx: mpsc::Receiver<Result<RecordBatch, ApiError>>,
    audit: Arc<Audit>,
    written: AuditGuard,
    control: Arc<QueryControl>,
    max_rows: usize,
}

impl Run {
    /// The batches, each checked against the row limit; the audit line is written once the
    /// last has gone, with its outcome.
    fn batches(self) -> impl Stream<Item = Result<RecordBatch, ApiError>> + Send {
        let Run {
            first,
            rx,
            audit,
            written,
            control,
            max_rows,
            held,
            ..
        } = self;
        let state = (
            first,
            rx,
            audit,
            written,
            StopOnDrop(Some(control)),
            0usize,
            Some(held),
        );
        futures::stream::unfold(state, move |mut s| async move {
            s.6.as_ref()?;
            let next = match s.0.take() {
                Some(b) => Some(Ok(b)),
                None => s.1.recv().await,
            };
            let item = match next {
                None => {
                    let why = s.4.0.as_ref().and_then(|c| c.stopped());
                    match why {
                        Some(Stop::Timeout) | Some(Stop::Memory) => {
                            let e = ApiError::from_engine(match why {
                                Some(Stop::Timeout) => gridlens_engine::Error::Timeout,
                                _ => gridlens_engine::Error::ResourcesExhausted(
                                    "the query needs more memory than it may use and was \
                                     stopped"
                                        .into(),
                                ),
                            });
                            Err(e)
                        }
                        Some(Stop::Cancelled) => {
                            Err(ApiError::from_engine(gridlens_engine::Error::Cancelled))
                        }
                        None => {
                            s.2.finish(Ok(()));
                            drop(s);
                            return None;
                        }
                    }
                }
                Some(Ok(b)) => {
                    s.5 += b.num_rows();
                    s.2.rows(s.5.min(max_rows) as u64);
                    if s.5 > max_rows {
                        Err(ApiError::new(
                            axum::http::StatusCode::BAD_REQUEST,
                            "too_many_rows",
                            format!(
                                "the answer has more than {max_rows} rows, the most one query \
                                 returns (--max-rows); add a LIMIT or narrow it"
                            ),
                        ))
                    } else {
                        Ok(b)
                    }
                }
                Some(Err(e)) => Err(e),
            };
            if let Err(e) = &item {
                s.2.finish(Err(e));
                s.6 = None;
            }
            Some((item, s))
        })
    }

    /// The rows as data rows, encoded as the client asked for each column. Encoding runs on
    /// the query runtime, a batch ahead of the connection sending the last one, so that the
    /// two overlap; the query stops when the client goes away.
    fn rows(
        self,
        fields: Arc<Vec<FieldInfo>>,
        rt: &tokio::runtime::Handle,
    ) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
        let (tx, rx) = mpsc::channel::<Vec<PgWireResult<DataRow>>>(2);
        let batches = self.batches();
        rt.spawn(async move {
            let mut batches = Box::pin(batches);
            while let Some(b) = batches.next().await {
                let rows: Vec<PgWireResult<DataRow>> = match b {
                    Ok(b) => arrow_pg::datatypes::encode_recordbatch(fields.clone(), b).collect(),
                    Err(e) => vec![Err(pg_error(&e))],
                };
                if tx.send(rows).await.is_err() {
                    break;
                }
            }
            // The slot and the audit line go before the client hears the rows have ended.
            drop(batches);
            drop(tx);
        });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|rows| (futures::stream::iter(rows), rx))
        })
        .flatten()
    }

    /// The rows as `COPY` data, one message per row.
    fn copy(self, format: &CopyFormat) -> CopyResponse {
        let schema = self.schema.clone();
        let fields = match arrow_schema_to_pg_fields(&schema, &Format::UnifiedText, None) {
            Ok(f) => Arc::new(f),
            Err(_) => Arc::new(Vec::new()),
        };
        let columns = schema.fields().len();
        let (mut enc, header) = match format {
            CopyFormat::Text { delimiter, null } => (
                CopyEncoder::new_text(
                    fields.clone(),
                    CopyTextOptions {
                        delimiter: delimiter.to_string().into(),
                        null_string: null.as_str().into(),
                    },
                ),
                None,
            ),
            CopyFormat::Csv {
                delimiter,
                null,
                header,
            } => {
                let names: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| csv_quote(f.name(), *delimiter))
                    .collect();
                let line = format!("{}\n", names.join(&delimiter.to_string()));
                (
                    CopyEncoder::new_csv(
                        fields.clone(),
                        CopyCsvOptions {
                            delimiter: delimiter.to_string().into(),
                            null_string: null.as_str().into(),
                            ..CopyCsvOptions::default()
                        },
                    ),
                    header.then_some(line),
                )
            }
        };
        let head = futures::stream::iter(header.map(|h| Ok(CopyData::new(bytes::Bytes::from(h)))));
        let body = self.batches().flat_map(move |b| {
            let out: Vec<PgWireResult<CopyData>> = match b {
                Ok(b) => copy_rows(&mut enc, &b, &fields),
                Err(e) => vec![Err(pg_error(&e))],
            };
            futures::stream::iter(out)
        });
        CopyResponse::new(0, columns, head.chain(body))
    }
}

fn copy_rows(
    enc: &mut CopyEncoder,
    b: &RecordBatch,
    fields: &[FieldInfo],
) -> Vec<PgWireResult<CopyData>> {
    let schema = b.schema();
    let mut out = Vec::with_capacity(b.num_rows());
    for row in 0..b.num_rows() {
        for (c, f) in fields.iter().enumerate() {
            if let Err(e) = encode_value(enc, b.column(c), row, schema.field(c), f) {
                out.push(Err(e));
                return out;
            }
        }
        out.push(Ok(enc.take_copy()));
    }
    out
}

fn csv_quote(s: &str, delimiter: char) -> String {
    if s.contains([delimiter, '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements: Vec<String> = match SqlParser::parse_sql(&PostgreSqlDialect {}, query) {
            Ok(s) if s.len() > 1 => s.iter().map(|s| s.to_string()).collect(),
            Ok(s) if s.is_empty() => return Ok(vec![Response::EmptyQuery]),
            _ => vec![query.to_string()],
        };
        let mut out = Vec::with_capacity(statements.len());
        for sql in &statements {
            let parsed = classify(sql).map_err(|e| pg_error(&e))?;
            out.push(
                self.answer(client, &parsed, Vec::new(), &Format::UnifiedText)
                    .await?,
            );
        }
        Ok(out)
    }
}

/// Prepares statements for the extended protocol: planned for the caller (without running),
/// so that clients learn the result's columns and the parameters' types.
pub struct Prepare {
    app: Arc<App>,
}

#[async_trait]
impl QueryParser for Prepare {
    type Statement = Parsed;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Parsed>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if sql.trim().is_empty() {
            return Ok(None);
        }
        let parsed = classify(sql).map_err(|e| pg_error(&e))?;
        let Parsed::Query { sql, .. } = &parsed else {
            return Ok(Some(parsed));
        };
        let caller = caller_now(&self.app, client, None).map_err(|e| pg_error(&e))?;
        let engine = self
            .app
            .sql_engine(&caller)
            .map_err(|e| pg_error(&e))?
            .with_dialect(Dialect::Postgres);
        let text = sql.clone();
        // Planned on the query runtime, whose stacks are deep enough for any SQL accepted.
        let prepared = self
            .app
            .query_rt
            .spawn(async move { engine.prepare(&text).await })
            .await
            .map_err(|e| pg_error(&ApiError::internal(e)))?
            .map_err(|e| pg_error(&ApiError::from_engine(e)))?;
        Ok(Some(Parsed::Query {
            sql: sql.clone(),
            schema: prepared.schema,
            params: prepared.params,
        }))
    }

    fn get_parameter_types(&self, stmt: &Parsed) -> PgWireResult<Vec<Type>> {
        match stmt {
            Parsed::Query { params, .. } => params
                .iter()
                .map(|p| match p {
                    Some(t) => into_pg_type(t),
                    None => Ok(Type::UNKNOWN),
                })
                .collect(),
            _ => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Parsed,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            Parsed::Query { schema, .. } => arrow_schema_to_pg_fields(
                schema,
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            Parsed::Noise(Noise::Show(name)) => Ok(vec![FieldInfo::new(
                name.to_ascii_lowercase(),
                None,
                None,
                Type::TEXT,
                FieldFormat::Text,
            )]),
            _ => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Parsed;
    type QueryParser = Prepare;

    fn query_parser(&self) -> Arc<Prepare> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Parsed>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params = parameters(portal)?;
        self.answer(
            client,
            &portal.statement.statement,
            params,
            &portal.result_column_format,
        )
        .await
    }
}

/// The values bound to a portal's parameters, each of the type the client declared or, where
/// it declared none, the type the query gives it.
fn parameters(portal: &Portal<Parsed>) -> PgWireResult<Vec<ScalarValue>> {
    let stmt: &StoredStatement<Parsed> = &portal.statement;
    let inferred: &[Option<DataType>] = match &stmt.statement {
        Parsed::Query { params, .. } => params,
        _ => &[],
    };
    (0..portal.parameter_len())
        .map(|i| {
            let declared = stmt.parameter_types.get(i).cloned().flatten();
            let want = inferred.get(i).cloned().flatten();
            let ty = match (&declared, &want) {
                (Some(t), _) if *t != Type::UNKNOWN => t.clone(),
                (_, Some(dt)) => into_pg_type(dt).unwrap_or(Type::TEXT),
                _ => Type::TEXT,
            };
            let v = decode(portal, i, &ty)?;
            match want {
                Some(dt) if v.data_type() != dt => v
                    .cast_to(&dt)
                    .map_err(|_| bad_param(i, &format!("{v} cannot be read as {dt}"))),
                _ => Ok(v),
            }
        })
        .collect()
}

fn bad_param(i: usize, why: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "22P02".into(),
        format!("parameter ${}: {why}", i + 1),
    )))
}

/// One parameter, read as its wire type says.
fn decode(portal: &Portal<Parsed>, i: usize, ty: &Type) -> PgWireResult<ScalarValue> {
    let bad = |e: PgWireError| bad_param(i, &e.to_string());
    Ok(match ty {
        t if *t == Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, t).map_err(bad)?),
        t if *t == Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, t).map_err(bad)?),
        t if *t == Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, t).map_err(bad)?),
        t if *t == Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, t).map_err(bad)?),
        t if *t == Type::FLOAT4 => {
            ScalarValue::Float32(portal.parameter::<f32>(i, t).map_err(bad)?)
        }
        t if *t == Type::FLOAT8 => {
            ScalarValue::Float64(portal.parameter::<f64>(i, t).map_err(bad)?)
        }
        t if *t == Type::DATE => {
            let d = portal.parameter::<chrono::NaiveDate>(i, t).map_err(bad)?;
            ScalarValue::Date32(d.map(|d| {
                (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days()
                    as i32
            }))
        }
        t if *t == Type::TIMESTAMP => {
            let v = portal
                .parameter::<chrono::NaiveDateTime>(i, t)
                .map_err(bad)?;
            ScalarValue::TimestampMicrosecond(v.map(|v| v.and_utc().timestamp_micros()), None)
        }
        t if *t == Type::TIMESTAMPTZ => {
            let v = portal
                .parameter::<chrono::DateTime<chrono::FixedOffset>>(i, t)
                .map_err(bad)?;
            ScalarValue::TimestampMicrosecond(
                v.map(|v| v.timestamp_micros()),
                Some(gridlens_engine::contract::TZ.into()),
            )
        }
        t if *t == Type::NUMERIC => {
            let v = portal
                .parameter::<rust_decimal::Decimal>(i, t)
                .map_err(bad)?;
            ScalarValue::Utf8(v.map(|v| v.to_string()))
        }
        t => {
            // Text, and anything else a client sends as text.
            let t = if portal.parameter_format.is_binary(i) {
                t.clone()
            } else {
                Type::TEXT
            };
            ScalarValue::Utf8(portal.parameter::<String>(i, &t).map_err(bad)?)
        }
    })
}
