//! Execution on keys (`engine/src/sql/keys`) is invisible: every query answers the same rows,
//! with the same names and types, on keys as on values — for the full city and for a
//! street-scoped caller without `pii` (whose personal columns are masked, so never keys) — and
//! `EXPLAIN` shows where keys were used.
//!
//! The queries: the bench's analyst queries (`benches/queries/*.sql`), and hand-written ones
//! for the edges of the rewrite (literals no row holds, nulls, `NOT IN`, `IS DISTINCT FROM`,
//! keys compared across spaces, unions, sorts and functions on key columns).

mod common;

use gridlens_datasets::OutputFormat;
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::scope::Scope;
use gridlens_engine::sql::{QueryResult, SqlEngine};
use std::sync::{Arc, OnceLock};

/// The engines a query is compared on.
struct Engines {
    /// The full city on keys, and on values.
    full_keys: SqlEngine,
    full_values: SqlEngine,
    /// The full city on keys, planned as a large city's queries are: three partitions, every
    /// join hashed into them on both sides (the small city's sides would be built once).
    full_large: SqlEngine,
    /// A street-scoped caller without `pii`, on keys and on values.
    street_keys: SqlEngine,
    street_values: SqlEngine,
    /// That street's code.
    street: String,
}

fn engines() -> &'static Engines {
    static E: OnceLock<Engines> = OnceLock::new();
    E.get_or_init(|| {
        let data = common::city(OutputFormat::Parquet, false);
        let store = Arc::new(load(&data, &LoadOptions::default()).expect("load"));
        let full = SqlEngine::new(store);
        let street = common::text(&full, "SELECT min(street_code) FROM grids");
        let scoped = full
            .clone()
            .scoped(Scope::parse(&street, false).unwrap())
            .unwrap();
        Engines {
            full_keys: full.clone(),
            full_values: full.clone().on_keys(false),
            full_large: full.with_plan_sizes(3, 0),
            street_keys: scoped.clone(),
            street_values: scoped.on_keys(false),
            street,
        }
    })
}

/// Rows as text, in order when the query orders them, else sorted.
fn rows(r: &QueryResult, ordered: bool) -> Vec<String> {
    let mut out = common::row_lines(r);
    if !ordered {
        out.sort();
    }
    out
}

/// Runs `sql` on keys and on values and checks both answers agree exactly; returns the rows.
fn same(keys: &SqlEngine, values: &SqlEngine, sql: &str) -> Vec<String> {
    let a = keys
        .query_blocking(sql)
        .unwrap_or_else(|e| panic!("on keys: {sql}: {e}"));
    let b = values
        .query_blocking(sql)
        .unwrap_or_else(|e| panic!("on values: {sql}: {e}"));
    let shape = |r: &QueryResult| -> Vec<(String, arrow::datatypes::DataType)> {
        r.schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    assert_eq!(shape(&a), shape(&b), "names and types differ: {sql}");
    let ordered = sql.to_uppercase().contains("ORDER BY");
    let (ra, rb) = (rows(&a, ordered), rows(&b, ordered));
    assert_eq!(ra, rb, "answers differ: {sql}");
    ra
}

const EDGES: &[&str] = &[
    // Literals no row holds, in every kind of space.
    "SELECT count(*) FROM people WHERE status = 'no_such_status'",
    "SELECT count(*) FROM people WHERE room_id = 'no-such-room'",
    "SELECT count(*) FROM people WHERE room_id <> 'no-such-room'",
    "SELECT count(*) FROM buildings WHERE grid_code IN ('x', 'y')",
    "SELECT count(*) FROM access_events WHERE device_id = 'no-such-device'",
    "SELECT count(*) FROM grids WHERE street_name = 'nowhere'",
    // Nulls: in the data, in literals, in NOT IN.
    "SELECT count(*), count(household_id), count(DISTINCT household_id) FROM people",
    "SELECT count(*) FROM people WHERE household_id IS NULL",
    "SELECT count(*) FROM people WHERE household_id IS NOT NULL AND status <> 'active'",
    "SELECT count(*) FROM people WHERE status NOT IN ('active', NULL)",
    "SELECT count(*) FROM people WHERE status IN ('active', NULL)",
    "SELECT count(*) FROM access_events WHERE id_number IS NULL",
    "SELECT count(*) FROM people p JOIN rooms r ON p.room_id = r.room_id WHERE p.household_id IS DISTINCT FROM NULL",
    // Keys of one space compared; keys of different spaces compared (as values).
    "SELECT count(*) FROM leases l JOIN people p ON p.id_number = l.tenant_id_number WHERE p.room_id <> l.room_id",
    "SELECT count(*) FROM rooms r JOIN households h ON h.room_id = r.room_id AND h.head_id_number = r.owner_id_number",
    "SELECT count(*) FROM workers w JOIN grids g ON w.partner_grid_code = g.grid_code",
    "SELECT count(*) FROM people p JOIN visits v ON p.person_id = v.visit_id",
    "SELECT count(*) FROM people p JOIN workers w ON p.sex = w.employment",
    // Group-bys and distinct on keys, then sorted, cut, and passed to functions.
    "SELECT room_id, count(*) AS n FROM people GROUP BY room_id ORDER BY n DESC, room_id LIMIT 7",
    "SELECT DISTINCT status, residence_kind FROM people ORDER BY 1, 2",
    "SELECT min(room_id), max(building_id), count(DISTINCT id_number) FROM people p JOIN rooms r USING (room_id)",
    "SELECT upper(status) AS s, length(room_id) AS l, count(*) FROM people GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT substr(grid_code, 1, 9) AS street, count(*) FROM people GROUP BY 1 ORDER BY 1",
    "SELECT room_id FROM people WHERE room_id LIKE '%1' ORDER BY room_id LIMIT 5",
    "SELECT status FROM people UNION SELECT kind FROM visits ORDER BY 1",
    "SELECT room_id FROM people UNION ALL SELECT room_id FROM leases ORDER BY 1 LIMIT 9",
    "SELECT CASE WHEN status = 'active' THEN room_id ELSE 'gone' END AS r, count(*) FROM people GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT coalesce(household_id, room_id) AS h, count(*) FROM people GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT room_id, row_number() OVER (PARTITION BY building_id ORDER BY room_id) AS k FROM rooms ORDER BY room_id LIMIT 20",
    "SELECT building_id, count(*) OVER (PARTITION BY grid_code) AS n FROM buildings ORDER BY building_id LIMIT 20",
    "SELECT g.district_code, count(DISTINCT p.id_number), count(DISTINCT r.building_id) FROM people p JOIN rooms r ON p.room_id = r.room_id JOIN buildings b ON r.building_id = b.building_id JOIN grids g ON b.grid_code = g.grid_code GROUP BY 1 ORDER BY 1",
    "SELECT p.name, p.id_number, p.phone, p.room_id FROM people p ORDER BY p.person_id LIMIT 5",
    "SELECT id_number, count(*) FROM deaths GROUP BY id_number HAVING count(*) > 1 ORDER BY 1",
    "SELECT * FROM people ORDER BY person_id LIMIT 3",
    "SELECT * FROM access_events ORDER BY ts, building_id, id_number LIMIT 3",
    "SELECT r.*, b.* FROM rooms r JOIN buildings b USING (building_id) ORDER BY r.room_id LIMIT 3",
    "SELECT count(*) FROM people WHERE room_id IN (SELECT room_id FROM leases)",
    "SELECT count(*) FROM people p WHERE EXISTS (SELECT 1 FROM deaths d WHERE d.id_number = p.id_number)",
    "SELECT (SELECT count(*) FROM rooms r WHERE r.building_id = b.building_id) AS n FROM buildings b ORDER BY b.building_id LIMIT 5",
    "WITH x AS (SELECT building_id, count(*) AS n FROM rooms GROUP BY building_id) SELECT b.grid_code, sum(x.n) FROM x JOIN buildings b ON b.building_id = x.building_id GROUP BY 1 ORDER BY 1",
    "SELECT a.room_id, a.month, b.month FROM utility_readings a JOIN utility_readings b ON a.room_id = b.room_id AND a.month < b.month ORDER BY 1, 2, 3 LIMIT 5",
    // Parts of expressions that read one key column, worked out once per key: in a
    // projection, a filter, a group-by, an aggregate's argument, a sort, a join's condition;
    // over nulls (a worker without a partner grid), enums, pools, dictionaries and rows.
    "SELECT CAST(substr(month, 1, 4) AS INTEGER) * 12 + CAST(substr(month, 6, 2) AS INTEGER) AS m, count(*) FROM utility_readings GROUP BY 1 ORDER BY 1",
    "SELECT month, sum(electricity_kwh) FROM utility_readings WHERE substr(month, 6, 2) IN ('01', '07') GROUP BY month ORDER BY month",
    "SELECT coalesce(partner_grid_code, 'none') AS g, count(*) FROM workers GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT CASE WHEN partner_grid_code IS NULL THEN 'alone' ELSE substr(partner_grid_code, 1, 6) END AS d, count(*) FROM workers GROUP BY 1 ORDER BY 1",
    "SELECT partner_grid_code || '-' || grid_code AS pair, count(*) FROM workers GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT length(status) + 1 AS l, upper(residence_kind) AS k, count(*) FROM people GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT g.district_code, count(*) FROM buildings b JOIN grids g ON b.grid_code = g.grid_code WHERE g.street_name LIKE '%1%' OR length(g.street_name) > 3 GROUP BY 1 ORDER BY 1",
    "SELECT direction, count(DISTINCT substr(device_id, 1, 4)), max(length(device_id)) FROM access_events GROUP BY direction ORDER BY direction",
    "SELECT month FROM utility_readings GROUP BY month ORDER BY substr(month, 6, 2) DESC, month LIMIT 7",
    "SELECT count(*) FROM utility_readings a JOIN utility_readings b ON a.room_id = b.room_id AND CAST(substr(b.month, 6, 2) AS INTEGER) = CAST(substr(a.month, 6, 2) AS INTEGER) + 1 AND substr(a.month, 1, 4) = substr(b.month, 1, 4)",
    "SELECT substr(b.grid_code, 1, 9) AS street, count(*) FROM rooms r JOIN buildings b ON r.building_id = b.building_id WHERE substr(r.room_id, 1, 1) <> 'x' GROUP BY 1 ORDER BY 1",
    "SELECT grid_code, rule, count(*) FROM anomalies GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 10",
    // Group-bys counted in arrays indexed by key: null keys, several key columns, counts of
    // nullable columns, sums of integers and floats with nulls, groups with no value to sum,
    // and their groups joined, filtered and grouped again.
    "SELECT household_id, count(*) AS n, count(room_id) AS r FROM people GROUP BY household_id ORDER BY n DESC, household_id NULLS FIRST LIMIT 7",
    "SELECT status, residence_kind, count(*), count(household_id) FROM people GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT building_id, usage, sum(floor) AS f, count(floor) AS c, sum(area_m2) AS a, count(*) FROM rooms GROUP BY 1, 2 ORDER BY 3 DESC NULLS FIRST, 1, 2 LIMIT 9",
    "SELECT grid_code, urgency, sum(satisfaction), count(satisfaction), sum(reopened), count(*) FROM incidents GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 40",
    "SELECT reporter_worker_id, sum(satisfaction) AS s FROM incidents GROUP BY 1 HAVING sum(satisfaction) IS NULL OR count(*) > 3 ORDER BY 2 DESC NULLS FIRST, 1 NULLS FIRST LIMIT 9",
    "SELECT n, count(*) FROM (SELECT room_id, count(*) AS n FROM people GROUP BY room_id) t GROUP BY n ORDER BY n",
    "WITH x AS (SELECT room_id, count(*) AS n, sum(floor) AS f FROM people JOIN rooms USING (room_id) GROUP BY room_id) SELECT r.usage, count(*), sum(x.n), sum(x.f) FROM x JOIN rooms r ON r.room_id = x.room_id GROUP BY 1 ORDER BY 1",
    "WITH x AS (SELECT tenant_id_number AS id_number, count(*) AS n FROM leases GROUP BY 1) SELECT count(*), sum(n) FROM x JOIN people p ON p.id_number = x.id_number",
    "SELECT tenant_id_number, room_id, count(*) FROM leases GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 3 DESC, 1, 2 LIMIT 9",
    "SELECT room_id, count(*) FROM people WHERE room_id IS NULL OR status = 'moved_out' GROUP BY room_id ORDER BY 2 DESC, 1 NULLS FIRST LIMIT 5",
    // A join's side of few keys: the other side's rows found from them (own keys, identity
    // numbers, references), inside the caller's scope.
    "SELECT r.room_id, r.building_id, r.floor FROM (SELECT room_id FROM people ORDER BY person_id LIMIT 5) p JOIN rooms r ON r.room_id = p.room_id ORDER BY 1",
    "SELECT p.person_id, p.room_id FROM deaths d JOIN people p ON p.id_number = d.id_number ORDER BY 1",
    "SELECT count(*), count(DISTINCT v.visit_id) FROM (SELECT worker_id FROM workers ORDER BY worker_id LIMIT 2) w JOIN visits v ON v.worker_id = w.worker_id",
    "SELECT b.building_id, count(*) FROM (SELECT room_id FROM leases ORDER BY lease_id LIMIT 40) l JOIN rooms r ON r.room_id = l.room_id JOIN buildings b ON b.building_id = r.building_id GROUP BY 1 ORDER BY 1",
    "SELECT g.street_name, count(*) FROM anomalies a JOIN grids g ON a.grid_code = g.grid_code GROUP BY 1 ORDER BY 1",
    // Scalar subqueries that read nothing of the query around them, beside keys; and one that
    // does (run on values).
    "SELECT room_id, sum(electricity_kwh) AS kwh, count(*) FROM utility_readings WHERE month = (SELECT max(month) FROM utility_readings) GROUP BY room_id ORDER BY 2 DESC, 1 LIMIT 9",
    "SELECT room_id, (SELECT count(*) FROM grids) AS g FROM rooms WHERE building_id = (SELECT min(building_id) FROM rooms) ORDER BY 1",
    "SELECT b.grid_code, count(*) FROM rooms r JOIN buildings b ON b.building_id = r.building_id WHERE r.floor > (SELECT avg(floor) FROM rooms WHERE room_id LIKE 'R44%') GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 9",
    "SELECT count(*) FROM people WHERE room_id = (SELECT room_id FROM rooms WHERE room_id > 'R4' ORDER BY room_id LIMIT 1)",
    "SELECT count(*) FROM people WHERE household_id = (SELECT household_id FROM households WHERE household_id = 'no-such-household')",
    "SELECT r.building_id, (SELECT count(*) FROM people p WHERE p.room_id = r.room_id) AS n FROM rooms r ORDER BY 2 DESC, 1 LIMIT 5",
    // Unions: a column that is a key of one space in every input (cast by type coercion or
    // not), joined and grouped on keys; columns of different spaces, of keys beside values,
    // and literals beside keys, as values; `UNION` without `ALL`.
    "SELECT g.street_code, t.kind, count(*) FROM (SELECT room_id, 'household' AS kind FROM households UNION ALL SELECT room_id, 'lease' FROM leases UNION ALL SELECT room_id, 'visit' FROM visits) t JOIN rooms r ON t.room_id = r.room_id JOIN buildings b ON r.building_id = b.building_id JOIN grids g ON b.grid_code = g.grid_code GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT count(*), count(DISTINCT id_number) FROM (SELECT id_number FROM people UNION SELECT id_number FROM deaths) t",
    "SELECT t.id, count(*) FROM (SELECT room_id AS id FROM households UNION ALL SELECT id_number FROM deaths) t GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 7",
    "SELECT t.r, count(*) FROM (SELECT room_id AS r FROM leases UNION ALL SELECT 'no-such-room' UNION ALL SELECT CAST(NULL AS VARCHAR)) t GROUP BY 1 ORDER BY 2 DESC, 1 NULLS FIRST LIMIT 5",
    "SELECT r.usage, count(*) FROM (SELECT CAST(room_id AS VARCHAR) AS room_id FROM households UNION ALL SELECT room_id FROM people WHERE status = 'active') t JOIN rooms r ON r.room_id = t.room_id GROUP BY 1 ORDER BY 1",
    "SELECT k, count(*) FROM (SELECT status AS k FROM people UNION ALL SELECT residence_kind FROM people) t GROUP BY 1 ORDER BY 1",
    "SELECT b.grid_code, count(*) FROM (SELECT building_id FROM rooms WHERE floor > 20 UNION SELECT building_id FROM access_events) t JOIN buildings b ON b.building_id = t.building_id GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 9",
    // Filters on a column null in most rows, which the scan reads only where it holds values.
    "SELECT room_id, care_tags FROM people WHERE care_tags LIKE '%elderly_alone%' ORDER BY 1, 2 LIMIT 20",
    "SELECT b.grid_code, count(*) FROM people p JOIN rooms r ON p.room_id = r.room_id JOIN buildings b ON r.building_id = b.building_id WHERE p.care_tags IS NOT NULL AND p.care_tags <> 'housebound' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 9",
];

#[test]
fn edges_answer_the_same_on_keys() {
    let e = engines();
    for sql in EDGES {
        same(&e.full_keys, &e.full_values, sql);
        same(&e.full_large, &e.full_values, sql);
        same(&e.street_keys, &e.street_values, sql);
    }
}

#[test]
fn bench_queries_answer_the_same_on_keys() {
    let e = engines();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/queries");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("benches/queries")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "{} queries", files.len());
    let mut answered = 0;
    for f in &files {
        let sql = std::fs::read_to_string(f).expect("read");
        if !same(&e.full_keys, &e.full_values, &sql).is_empty() {
            answered += 1;
        }
        same(&e.full_large, &e.full_values, &sql);
        same(&e.street_keys, &e.street_values, &sql);
    }
    // The test city answers most of them with rows (a check that the comparison compares).
    assert!(
        answered >= files.len() * 2 / 3,
        "{answered} of {}",
        files.len()
    );
}

/// A function worked out per key meets every value of its space, other streets' too: one that
/// fails only on values outside the caller's street answers the street caller as it does
/// without keys, and no error tells the other streets' values.
#[test]
fn per_key_failures_outside_the_scope_tell_nothing() {
    let e = engines();
    let (fk, sk, sv, street) = (&e.full_keys, &e.street_keys, &e.street_values, &e.street);
    let sql = format!(
        "SELECT count(*) FROM buildings b JOIN grids g ON b.grid_code = g.grid_code \
         WHERE CAST(CASE WHEN g.street_code = '{street}' THEN '1' ELSE g.street_code || 'x' END AS INT) = 1"
    );
    let rows = same(sk, sv, &sql);
    let want = common::count(
        sk,
        &format!(
            "SELECT count(*) FROM buildings b JOIN grids g ON b.grid_code = g.grid_code \
             WHERE g.street_code = '{street}'"
        ),
    );
    assert_eq!(rows, vec![want.to_string()]);
    // The whole city holds other streets: there the cast fails, for a value it sees.
    let e = fk.query_blocking(&sql).unwrap_err().to_string();
    assert!(e.contains('x'), "{e}");
}

#[test]
fn planted_answers_on_keys() {
    let e = engines();
    let (fk, sk, street) = (&e.full_keys, &e.street_keys, &e.street);
    // Counts against the store's own figures, on keys.
    let active = common::count(fk, "SELECT count(*) FROM people WHERE status = 'active'");
    let by_street: i64 = fk
        .query_blocking(
            "SELECT g.street_code, count(*) AS n FROM people p JOIN rooms r ON p.room_id = r.room_id \
             JOIN buildings b ON r.building_id = b.building_id JOIN grids g ON b.grid_code = g.grid_code \
             WHERE p.status = 'active' GROUP BY 1",
        )
        .unwrap()
        .batches
        .iter()
        .map(|b| {
            arrow::compute::sum(arrow::array::cast::as_primitive_array::<
                arrow::datatypes::Int64Type,
            >(b.column(1)))
            .unwrap_or(0)
        })
        .sum();
    assert_eq!(active, by_street);
    // A street caller sees only its street, on keys too.
    let streets = sk
        .query_blocking(
            "SELECT DISTINCT g.street_code FROM people p JOIN grids g ON p.grid_code = g.grid_code",
        )
        .unwrap();
    assert_eq!(rows(&streets, false), vec![street.clone()]);
    // Masked columns stay masked when joined and grouped.
    let ids = sk
        .query_blocking(
            "SELECT p.id_number FROM people p JOIN leases l ON l.room_id = p.room_id LIMIT 3",
        )
        .unwrap();
    for r in rows(&ids, false) {
        assert!(r.contains('*'), "unmasked identity {r}");
    }
}

#[test]
fn distinct_counts_beside_other_aggregates() {
    // Split into two group-bys (engine/src/sql/distinct.rs): the same as counting the
    // distinct pairs by hand.
    let e = engines();
    let (fk, sk) = (&e.full_keys, &e.street_keys);
    for e in [fk, sk] {
        let split = e
            .query_blocking(
                "SELECT building_id, count(DISTINCT id_number) AS n, count(*) AS events, \
                 min(ts) AS first, max(direction) AS d FROM access_events GROUP BY building_id \
                 ORDER BY building_id",
            )
            .unwrap();
        let by_hand = e
            .query_blocking(
                "SELECT a.building_id, coalesce(d.n, 0) AS n, a.events, a.first, a.d FROM \
                 (SELECT building_id, count(*) AS events, min(ts) AS first, max(direction) AS d \
                  FROM access_events GROUP BY building_id) a LEFT JOIN \
                 (SELECT building_id, count(*) AS n FROM (SELECT DISTINCT building_id, id_number \
                  FROM access_events WHERE id_number IS NOT NULL) t GROUP BY building_id) d \
                 ON a.building_id = d.building_id ORDER BY a.building_id",
            )
            .unwrap();
        assert!(split.rows() > 10);
        assert_eq!(rows(&split, true), rows(&by_hand, true));
        let plan = rows(
            &e.query_blocking(
                "EXPLAIN SELECT building_id, count(DISTINCT id_number), count(*) FROM access_events \
                 GROUP BY building_id",
            )
            .unwrap(),
            true,
        )
        .join("\n");
        assert!(plan.contains("__gridlens_distinct"), "{plan}");
    }
}

#[test]
fn explain_shows_keys() {
    let e = engines();
    let (fk, sk) = (&e.full_keys, &e.street_keys);
    let sql = "EXPLAIN SELECT g.street_code, count(*) FROM people p JOIN rooms r ON p.room_id = r.room_id \
               JOIN buildings b ON r.building_id = b.building_id JOIN grids g ON b.grid_code = g.grid_code \
               GROUP BY g.street_code ORDER BY 1";
    let plan = rows(&fk.query_blocking(sql).unwrap(), true).join("\n");
    assert!(plan.contains("keys=[room_id"), "{plan}");
    assert!(plan.contains("key_text("), "{plan}");
    // A function of one key column is worked out per key.
    let plan = rows(
        &fk.query_blocking(
            "EXPLAIN SELECT substr(month, 1, 4) AS y, count(*) FROM utility_readings GROUP BY 1",
        )
        .unwrap(),
        true,
    )
    .join("\n");
    assert!(plan.contains("per_key[substr(value"), "{plan}");
    // Identity numbers masked for this caller are not read as keys.
    let plan = rows(
        &sk.query_blocking("EXPLAIN SELECT count(DISTINCT id_number) FROM people")
            .unwrap(),
        true,
    )
    .join("\n");
    assert!(!plan.contains("keys=[id_number"), "{plan}");
    // A group-by on keys is counted in arrays indexed by key; one on values is hashed.
    let explain =
        |engine: &SqlEngine, sql: &str| rows(&engine.query_blocking(sql).unwrap(), true).join("\n");
    let sql =
        "EXPLAIN SELECT building_id, count(*), sum(floor) FROM rooms GROUP BY building_id, usage";
    let plan = explain(fk, sql);
    assert!(
        plan.contains("DenseGroupsExec: gby=[building_id@"),
        "{plan}"
    );
    assert!(!plan.contains("AggregateExec"), "{plan}");
    let plan = explain(
        fk,
        "EXPLAIN SELECT area_m2, count(*) FROM rooms GROUP BY area_m2",
    );
    assert!(!plan.contains("DenseGroupsExec"), "{plan}");
    assert!(plan.contains("AggregateExec"), "{plan}");
    // A union of one key space's columns is joined on keys: no key is turned into text below
    // the join, and its rows are counted by street in arrays.
    let plan = explain(
        fk,
        "EXPLAIN SELECT g.street_code, count(*) FROM (SELECT room_id FROM households \
         UNION ALL SELECT room_id FROM leases) t JOIN rooms r ON t.room_id = r.room_id \
         JOIN buildings b ON r.building_id = b.building_id JOIN grids g ON b.grid_code = g.grid_code \
         GROUP BY 1",
    );
    assert!(plan.contains("UnionExec"), "{plan}");
    assert!(!plan.contains("key_text(room_id"), "{plan}");
    assert!(plan.contains("DenseGroupsExec"), "{plan}");
    // A join's side of few keys gives the other side's scan the rows holding them: by an
    // index of identity numbers, and by a table's own key.
    let found = |engine: &SqlEngine, sql: &str| -> u64 {
        let plan = explain(engine, &format!("EXPLAIN ANALYZE {sql}"));
        plan.split("rows_from_keys=")
            .skip(1)
            .filter_map(|t| {
                t.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let deaths = "SELECT count(*) FROM deaths d JOIN people p ON p.id_number = d.id_number";
    assert!(
        found(fk, deaths) > 0,
        "{}",
        explain(fk, &format!("EXPLAIN ANALYZE {deaths}"))
    );
    let rooms = "SELECT count(*) FROM deaths d JOIN people p ON p.id_number = d.id_number \
                 JOIN rooms r ON r.room_id = p.room_id JOIN buildings b ON b.building_id = r.building_id";
    assert!(
        found(fk, rooms) > 0,
        "{}",
        explain(fk, &format!("EXPLAIN ANALYZE {rooms}"))
    );
    // … and the same for a street's caller (its rooms only).
    let few = "SELECT count(*) FROM (SELECT room_id FROM people ORDER BY person_id LIMIT 5) p \
               JOIN rooms r ON r.room_id = p.room_id";
    assert!(
        found(sk, few) > 0,
        "{}",
        explain(sk, &format!("EXPLAIN ANALYZE {few}"))
    );
    // A scalar subquery that reads nothing around it leaves the query on keys.
    let plan = explain(
        fk,
        "EXPLAIN SELECT room_id, sum(electricity_kwh) FROM utility_readings \
         WHERE month = (SELECT max(month) FROM utility_readings) GROUP BY room_id",
    );
    assert!(plan.contains("DenseGroupsExec: gby=[room_id@"), "{plan}");
    // … and so is one whose aggregate the arrays do not add up.
    let plan = explain(
        fk,
        "EXPLAIN SELECT room_id, max(floor) FROM rooms GROUP BY room_id",
    );
    assert!(!plan.contains("DenseGroupsExec"), "{plan}");
}
