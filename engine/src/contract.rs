//! The data contract: every table a city hands in, its columns, types, keys and references
//! (`spec/data-contract.md`), written down once and used by the loader, the generator and the tests.
//!
//! A [`TableDef`] lists its [`ColumnDef`]s in the contract's order. The loader reads columns by
//! name (order in a CSV file is free), the generator writes them in this order, and the store keeps
//! them in this order, followed by any extra columns the file carried.

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use std::sync::Arc;

/// The time zone every timestamp is held in: China Standard Time.
pub const TZ: &str = "+08:00";

/// The tables of the data contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    /// 基础网格
    Grids,
    /// 网格员
    Workers,
    /// 标准地址 / 楼栋
    Buildings,
    /// 实有房屋
    Rooms,
    /// 户
    Households,
    /// 实有人口
    People,
    /// 租赁合同
    Leases,
    /// 智慧门禁
    AccessEvents,
    /// 水电读数
    UtilityReadings,
    /// 死亡登记
    Deaths,
    /// 巡查走访记录
    Visits,
    /// 网格事件
    Incidents,
    /// 处置时限
    SlaRules,
    /// 工作日历
    Calendar,
}

impl TableId {
    /// Every table, in load order: a table comes after every table it references.
    pub const ALL: [TableId; 14] = [
        TableId::Grids,
        TableId::Workers,
        TableId::Buildings,
        TableId::Rooms,
        TableId::Households,
        TableId::People,
        TableId::Leases,
        TableId::AccessEvents,
        TableId::UtilityReadings,
        TableId::Deaths,
        TableId::Visits,
        TableId::Incidents,
        TableId::SlaRules,
        TableId::Calendar,
    ];

    /// The table's definition.
    pub fn def(self) -> &'static TableDef {
        match self {
            TableId::Grids => &GRIDS,
            TableId::Workers => &WORKERS,
            TableId::Buildings => &BUILDINGS,
            TableId::Rooms => &ROOMS,
            TableId::Households => &HOUSEHOLDS,
            TableId::People => &PEOPLE,
            TableId::Leases => &LEASES,
            TableId::AccessEvents => &ACCESS_EVENTS,
            TableId::UtilityReadings => &UTILITY_READINGS,
            TableId::Deaths => &DEATHS,
            TableId::Visits => &VISITS,
            TableId::Incidents => &INCIDENTS,
            TableId::SlaRules => &SLA_RULES,
            TableId::Calendar => &CALENDAR,
        }
    }

    /// The table's name, as in file names and SQL.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// Looks a table up by its name.
    pub fn from_name(name: &str) -> Option<TableId> {
        TableId::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The type of a column, as the contract states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnType {
    /// Free text (UTF-8).
    Text,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// `true/false`, `1/0`, `Y/N`, any case.
    Bool,
    /// `YYYY-MM-DD`.
    Date,
    /// An instant, held as microseconds since the Unix epoch and shown in China Standard Time.
    Timestamp,
    /// `YYYY-MM`.
    Month,
    /// One of a fixed list of values; held as the value's position in the list.
    Enum(&'static [&'static str]),
}

/// A range or pattern a value must satisfy; a value outside it is rejected as out of range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// No check.
    None,
    /// A number strictly greater than the bound.
    GreaterThan(f64),
    /// A number at least the bound.
    AtLeast(f64),
    /// A number within the inclusive bounds.
    Between(f64, f64),
    /// Text made of exactly this many ASCII digits.
    Digits(usize),
    /// An SLA rule's category: 4 digits, 2 digits, or `*`.
    CategoryPattern,
}

/// How a personal column is masked for a caller without the `pii` permission
/// (`spec/interfaces.md`, "Who may see what"). Applied by [`crate::scope::mask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// An identity document number keeps only its 6-digit region code: `440104************`.
    Identity,
    /// A name keeps its first character: `张*`.
    Name,
    /// A phone number keeps its first 3 and last 4 digits: `138****5678`.
    Phone,
    /// A birth date keeps only its year, shown as January 1 of that year.
    BirthDate,
    /// Free text that may hold identity numbers (a subject `<identity>@<place>`): each masked
    /// as [`Mask::Identity`].
    IdentitiesInText,
    /// A column the contract does not declare (an extra column of a city's file): withheld
    /// (null) unless the caller has `pii`, since nothing says it is not personal.
    Withheld,
}

/// One column of the contract.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    /// Column name.
    pub name: &'static str,
    /// Type.
    pub ty: ColumnType,
    /// Must not be null.
    pub required: bool,
    /// The table this column references (its single-column key), if any.
    pub references: Option<TableId>,
    /// Range or pattern check.
    pub check: Check,
    /// Personal data: how it is masked for callers without the `pii` permission (`None`: not
    /// personal). This is the one declaration of what is personal; SQL, evidence and every
    /// protocol read it through [`crate::scope`].
    pub mask: Option<Mask>,
    /// An identity document number, interned in the shared identity pool (the cross-source key).
    pub identity: bool,
    /// Text that repeats a lot (a door's device id): held as keys into the column's own
    /// dictionary of distinct values rather than one string per row.
    pub pooled: bool,
    /// What the column means.
    pub doc: &'static str,
}

impl ColumnDef {
    const fn new(name: &'static str, ty: ColumnType, doc: &'static str) -> ColumnDef {
        ColumnDef {
            name,
            ty,
            required: false,
            references: None,
            check: Check::None,
            mask: None,
            identity: false,
            pooled: false,
            doc,
        }
    }
    const fn req(mut self) -> Self {
        self.required = true;
        self
    }
    const fn refs(mut self, table: TableId) -> Self {
        self.references = Some(table);
        self
    }
    const fn check(mut self, check: Check) -> Self {
        self.check = check;
        self
    }
    const fn personal(mut self, mask: Mask) -> Self {
        self.mask = Some(mask);
        self
    }
    const fn pooled(mut self) -> Self {
        self.pooled = true;
        self
    }
    const fn identity(mut self) -> Self {
        self.identity = true;
        self.mask = Some(Mask::Identity);
        self
    }

    /// Whether the column holds personal data.
    pub fn is_personal(&self) -> bool {
        self.mask.is_some()
    }

    /// The Arrow type this column has in the store and in SQL.
    pub fn arrow_type(&self) -> DataType {
        match self.ty {
            ColumnType::Text | ColumnType::Month => DataType::Utf8,
            ColumnType::Int => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(TZ.into())),
            ColumnType::Enum(_) => {
                DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
            }
        }
    }

    /// The Arrow type this column has in a Parquet file written by the generator: enums as text.
    pub fn file_type(&self) -> DataType {
        match self.ty {
            ColumnType::Enum(_) => DataType::Utf8,
            _ => self.arrow_type(),
        }
    }

    /// The enum's values, if the column is an enum.
    pub fn enum_values(&self) -> Option<&'static [&'static str]> {
        match self.ty {
            ColumnType::Enum(v) => Some(v),
            _ => None,
        }
    }
}

/// One table of the contract.
#[derive(Debug)]
pub struct TableDef {
    /// Table name (file name without extension).
    pub name: &'static str,
    /// The Chinese term.
    pub chinese: &'static str,
    /// A dataset must provide this table.
    pub required: bool,
    /// Columns, in the contract's order.
    pub columns: &'static [ColumnDef],
    /// The columns of the unique key (empty: none). A single-column key can be referenced.
    pub key: &'static [&'static str],
    /// What the table holds.
    pub doc: &'static str,
}

impl TableDef {
    /// The table's id.
    pub fn id(&self) -> TableId {
        TableId::from_name(self.name).unwrap_or(TableId::Grids)
    }

    /// The position of a column in the contract order.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&'static ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The single-column key, if the table has one.
    pub fn single_key(&self) -> Option<&'static str> {
        match self.key {
            [k] => Some(k),
            _ => None,
        }
    }

    /// The Arrow schema of the contract columns, as held in the store and seen in SQL.
    pub fn arrow_schema(&self) -> Schema {
        Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.arrow_type(), !c.required))
                .collect::<Vec<_>>(),
        )
    }

    /// The Arrow schema the generator writes (enums as plain text).
    pub fn file_schema(&self) -> Arc<Schema> {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.file_type(), !c.required))
                .collect::<Vec<_>>(),
        ))
    }
}

use Check::{AtLeast, Between, CategoryPattern, Digits, GreaterThan};
use ColumnType::*;

/// `workers.employment`
pub const EMPLOYMENT: &[&str] = &["full_time", "part_time"];
/// `rooms.usage`
pub const USAGE: &[&str] = &["residential", "commercial", "mixed", "other"];
/// `rooms.tenure`
pub const TENURE: &[&str] = &["owner_occupied", "rental", "vacant", "public", "other"];
/// `households.kind`
pub const HOUSEHOLD_KIND: &[&str] = &["hukou", "non_local", "collective"];
/// `people.doc_type`
pub const DOC_TYPE: &[&str] = &["resident_id", "passport", "hk_macao_taiwan", "other"];
/// `people.sex`
pub const SEX: &[&str] = &["M", "F"];
/// `people.residence_kind`
pub const RESIDENCE_KIND: &[&str] = &["hukou", "floating", "overseas"];
/// `people.status`
pub const PERSON_STATUS: &[&str] = &["active", "moved_out", "deceased"];
/// `access_events.direction`
pub const DIRECTION: &[&str] = &["in", "out"];
/// `visits.kind`
pub const VISIT_KIND: &[&str] = &["patrol", "household_visit", "verification", "care_visit"];
/// `incidents.urgency`
pub const URGENCY: &[&str] = &["urgent", "normal"];
/// `incidents.source`
pub const INCIDENT_SOURCE: &[&str] = &["patrol", "hotline", "resident_app", "camera", "other"];
/// `incidents.status`
pub const INCIDENT_STATUS: &[&str] = &[
    "reported",
    "accepted",
    "dispatched",
    "handled",
    "verified",
    "closed",
    "rejected",
    "parked",
];
/// `sla_rules.urgency`
pub const SLA_URGENCY: &[&str] = &["urgent", "normal", "*"];
/// `sla_rules.stage`
pub const SLA_STAGE: &[&str] = &["accept", "dispatch", "handle", "close"];
/// `sla_rules.unit`
pub const SLA_UNIT: &[&str] = &[
    "working_hours",
    "working_days",
    "natural_hours",
    "natural_days",
];

/// Positions of enum values, so that code reads `status == PersonStatus::ACTIVE`.
pub mod codes {
    /// `rooms.usage`
    pub mod usage {
        /// residential
        pub const RESIDENTIAL: i8 = 0;
    }
    /// `rooms.tenure`
    pub mod tenure {
        /// owner_occupied
        pub const OWNER_OCCUPIED: i8 = 0;
        /// rental
        pub const RENTAL: i8 = 1;
        /// vacant
        pub const VACANT: i8 = 2;
    }
    /// `people.doc_type`
    pub mod doc_type {
        /// resident_id
        pub const RESIDENT_ID: i8 = 0;
    }
    /// `people.sex`
    pub mod sex {
        /// M
        pub const M: i8 = 0;
        /// F
        pub const F: i8 = 1;
    }
    /// `people.residence_kind`
    pub mod residence {
        /// hukou
        pub const HUKOU: i8 = 0;
        /// floating
        pub const FLOATING: i8 = 1;
        /// overseas
        pub const OVERSEAS: i8 = 2;
    }
    /// `people.status`
    pub mod status {
        /// active
        pub const ACTIVE: i8 = 0;
        /// moved_out
        pub const MOVED_OUT: i8 = 1;
        /// deceased
        pub const DECEASED: i8 = 2;
    }
    /// `visits.kind`
    pub mod visit {
        /// patrol
        pub const PATROL: i8 = 0;
        /// household_visit
        pub const HOUSEHOLD_VISIT: i8 = 1;
        /// verification
        pub const VERIFICATION: i8 = 2;
        /// care_visit
        pub const CARE_VISIT: i8 = 3;
    }
    /// `incidents.urgency`
    pub mod urgency {
        /// urgent
        pub const URGENT: i8 = 0;
        /// normal
        pub const NORMAL: i8 = 1;
    }
    /// `incidents.status`
    pub mod incident_status {
        /// rejected (不予立案)
        pub const REJECTED: i8 = 6;
        /// parked (挂账)
        pub const PARKED: i8 = 7;
    }
}

/// 基础网格
pub static GRIDS: TableDef = TableDef {
    name: "grids",
    chinese: "基础网格",
    required: true,
    key: &["grid_code"],
    doc: "the grids a grid worker looks after; district ⊃ street ⊃ community ⊃ grid",
    columns: &[
        ColumnDef::new(
            "grid_code",
            Text,
            "12-digit community code + 3-digit sequence",
        )
        .req()
        .check(Digits(15)),
        ColumnDef::new("grid_name", Text, "display name"),
        ColumnDef::new("community_code", Text, "must equal grid_code[0..12]")
            .req()
            .check(Digits(12)),
        ColumnDef::new("community_name", Text, ""),
        ColumnDef::new("street_code", Text, "must equal grid_code[0..9]")
            .req()
            .check(Digits(9)),
        ColumnDef::new("street_name", Text, ""),
        ColumnDef::new("district_code", Text, "must equal grid_code[0..6]")
            .req()
            .check(Digits(6)),
        ColumnDef::new("district_name", Text, ""),
    ],
};

/// 网格员
pub static WORKERS: TableDef = TableDef {
    name: "workers",
    chinese: "网格员",
    required: true,
    key: &["worker_id"],
    doc: "grid workers",
    columns: &[
        ColumnDef::new("worker_id", Text, "").req(),
        ColumnDef::new("name", Text, "").req().personal(Mask::Name),
        ColumnDef::new("grid_code", Text, "the grid the worker is responsible for")
            .req()
            .refs(TableId::Grids),
        ColumnDef::new(
            "partner_grid_code",
            Text,
            "the neighbouring grid covered as B role when its own worker is absent",
        )
        .refs(TableId::Grids),
        ColumnDef::new("employment", Enum(EMPLOYMENT), "").req(),
        ColumnDef::new("active", Bool, "").req(),
        ColumnDef::new("hired_on", Date, ""),
    ],
};

/// 标准地址 / 楼栋
pub static BUILDINGS: TableDef = TableDef {
    name: "buildings",
    chinese: "标准地址/楼栋",
    required: true,
    key: &["building_id"],
    doc: "standard addresses (buildings)",
    columns: &[
        ColumnDef::new("building_id", Text, "standard address code").req(),
        ColumnDef::new("grid_code", Text, "")
            .req()
            .refs(TableId::Grids),
        ColumnDef::new("address", Text, "standard address string").req(),
        ColumnDef::new("floors", Int, "").check(AtLeast(0.0)),
        ColumnDef::new(
            "access_control",
            Bool,
            "a face-recognition door system (智慧门禁) reports entries",
        )
        .req(),
        ColumnDef::new(
            "access_control_since",
            Date,
            "when that system started reporting",
        ),
        ColumnDef::new("lon", Float, "").check(Between(-180.0, 180.0)),
        ColumnDef::new("lat", Float, "").check(Between(-90.0, 90.0)),
    ],
};

/// 实有房屋
pub static ROOMS: TableDef = TableDef {
    name: "rooms",
    chinese: "实有房屋",
    required: true,
    key: &["room_id"],
    doc: "the real houses",
    columns: &[
        ColumnDef::new("room_id", Text, "").req(),
        ColumnDef::new("building_id", Text, "")
            .req()
            .refs(TableId::Buildings),
        ColumnDef::new("unit_no", Text, "door number, e.g. 3-1202"),
        ColumnDef::new("floor", Int, ""),
        ColumnDef::new("area_m2", Float, "usable floor area")
            .req()
            .check(GreaterThan(0.0)),
        ColumnDef::new("usage", Enum(USAGE), "").req(),
        ColumnDef::new("tenure", Enum(TENURE), "").req(),
        ColumnDef::new(
            "rental_registered_on",
            Date,
            "date the rental was filed (出租屋登记); null = not filed",
        ),
        ColumnDef::new("owner_id_number", Text, "").identity(),
    ],
};

/// 户
pub static HOUSEHOLDS: TableDef = TableDef {
    name: "households",
    chinese: "户",
    required: true,
    key: &["household_id"],
    doc: "households",
    columns: &[
        ColumnDef::new("household_id", Text, "").req(),
        ColumnDef::new("room_id", Text, "")
            .req()
            .refs(TableId::Rooms),
        ColumnDef::new("kind", Enum(HOUSEHOLD_KIND), "户籍户 / 来穗 / 集体户").req(),
        ColumnDef::new("head_id_number", Text, "").identity(),
        ColumnDef::new("registered_on", Date, ""),
    ],
};

/// 实有人口
pub static PEOPLE: TableDef = TableDef {
    name: "people",
    chinese: "实有人口",
    required: true,
    key: &["person_id"],
    doc: "one row per registration record",
    columns: &[
        ColumnDef::new("person_id", Text, "record id").req(),
        ColumnDef::new("id_number", Text, "identity document number")
            .req()
            .identity(),
        ColumnDef::new("doc_type", Enum(DOC_TYPE), "").req(),
        ColumnDef::new("name", Text, "").req().personal(Mask::Name),
        ColumnDef::new("sex", Enum(SEX), "").req(),
        ColumnDef::new("birth_date", Date, "")
            .req()
            .personal(Mask::BirthDate),
        ColumnDef::new("household_id", Text, "").refs(TableId::Households),
        ColumnDef::new("room_id", Text, "registered residence")
            .req()
            .refs(TableId::Rooms),
        ColumnDef::new("residence_kind", Enum(RESIDENCE_KIND), "户籍 / 流动 / 境外").req(),
        ColumnDef::new("registered_on", Date, "date of this registration").req(),
        ColumnDef::new("last_verified_on", Date, "last in-person verification"),
        ColumnDef::new("status", Enum(PERSON_STATUS), "").req(),
        ColumnDef::new("phone", Text, "").personal(Mask::Phone),
        ColumnDef::new(
            "care_tags",
            Text,
            "`;`-separated tags: elderly_alone, housebound, …",
        ),
    ],
};

/// 租赁合同
pub static LEASES: TableDef = TableDef {
    name: "leases",
    chinese: "租赁合同",
    required: false,
    key: &["lease_id"],
    doc: "housing-rental contract registry (网签备案)",
    columns: &[
        ColumnDef::new("lease_id", Text, "").req(),
        ColumnDef::new("room_id", Text, "")
            .req()
            .refs(TableId::Rooms),
        ColumnDef::new("tenant_id_number", Text, "")
            .req()
            .identity(),
        ColumnDef::new("start_date", Date, "").req(),
        ColumnDef::new("end_date", Date, "inclusive last day; null = open-ended"),
        ColumnDef::new("filed_on", Date, ""),
    ],
};

/// 智慧门禁
pub static ACCESS_EVENTS: TableDef = TableDef {
    name: "access_events",
    chinese: "智慧门禁",
    required: false,
    key: &[],
    doc: "door-access events",
    columns: &[
        ColumnDef::new("ts", Timestamp, "").req(),
        ColumnDef::new("building_id", Text, "")
            .req()
            .refs(TableId::Buildings),
        ColumnDef::new(
            "id_number",
            Text,
            "identity the face was matched to; null = stranger",
        )
        .identity(),
        ColumnDef::new("direction", Enum(DIRECTION), "").req(),
        ColumnDef::new("device_id", Text, "").pooled(),
    ],
};

/// 水电读数
pub static UTILITY_READINGS: TableDef = TableDef {
    name: "utility_readings",
    chinese: "水电读数",
    required: false,
    key: &["room_id", "month"],
    doc: "monthly utility readings",
    columns: &[
        ColumnDef::new("room_id", Text, "")
            .req()
            .refs(TableId::Rooms),
        ColumnDef::new("month", Month, "billing month")
            .req()
            .pooled(),
        ColumnDef::new("electricity_kwh", Float, "").check(AtLeast(0.0)),
        ColumnDef::new("water_m3", Float, "").check(AtLeast(0.0)),
    ],
};

/// 死亡登记
pub static DEATHS: TableDef = TableDef {
    name: "deaths",
    chinese: "死亡登记",
    required: false,
    key: &[],
    doc: "death registry",
    columns: &[
        ColumnDef::new("id_number", Text, "").req().identity(),
        ColumnDef::new("died_on", Date, "").req(),
        ColumnDef::new("source", Text, "civil_affairs, hospital, funeral, …"),
    ],
};

/// 巡查走访记录
pub static VISITS: TableDef = TableDef {
    name: "visits",
    chinese: "巡查走访记录",
    required: false,
    key: &["visit_id"],
    doc: "grid workers' patrols and visits",
    columns: &[
        ColumnDef::new("visit_id", Text, "").req(),
        ColumnDef::new("worker_id", Text, "")
            .req()
            .refs(TableId::Workers),
        ColumnDef::new("visited_at", Timestamp, "").req(),
        ColumnDef::new("kind", Enum(VISIT_KIND), "").req(),
        ColumnDef::new("room_id", Text, "room visited, if any").refs(TableId::Rooms),
        ColumnDef::new("id_number", Text, "person seen, if any").identity(),
    ],
};

/// 网格事件
pub static INCIDENTS: TableDef = TableDef {
    name: "incidents",
    chinese: "网格事件",
    required: false,
    key: &["incident_id"],
    doc: "one row per case in the closed loop 上报 → 立案 → 派遣 → 处置 → 核查 → 结案",
    columns: &[
        ColumnDef::new("incident_id", Text, "").req(),
        ColumnDef::new("grid_code", Text, "")
            .req()
            .refs(TableId::Grids),
        ColumnDef::new("category_code", Text, "2-digit major + 2-digit minor class")
            .req()
            .check(Digits(4)),
        ColumnDef::new("category_name", Text, ""),
        ColumnDef::new("urgency", Enum(URGENCY), "").req(),
        ColumnDef::new("source", Enum(INCIDENT_SOURCE), "").req(),
        ColumnDef::new("reporter_worker_id", Text, "").refs(TableId::Workers),
        ColumnDef::new("department", Text, "department the case was dispatched to"),
        ColumnDef::new("reported_at", Timestamp, "上报").req(),
        ColumnDef::new("accepted_at", Timestamp, "立案"),
        ColumnDef::new("dispatched_at", Timestamp, "派遣"),
        ColumnDef::new("handled_at", Timestamp, "处置完成"),
        ColumnDef::new("verified_at", Timestamp, "核查"),
        ColumnDef::new("closed_at", Timestamp, "结案"),
        ColumnDef::new("status", Enum(INCIDENT_STATUS), "").req(),
        ColumnDef::new("reopened", Int, "times sent back for rework (返工)").check(AtLeast(0.0)),
        ColumnDef::new("satisfaction", Int, "1–5 from the follow-up call (回访)")
            .check(Between(1.0, 5.0)),
    ],
};

/// 处置时限
pub static SLA_RULES: TableDef = TableDef {
    name: "sla_rules",
    chinese: "处置时限",
    required: false,
    key: &["category_code", "urgency", "stage"],
    doc: "stage time limits; the most specific match wins",
    columns: &[
        ColumnDef::new(
            "category_code",
            Text,
            "a 4-digit code, a 2-digit major class, or *",
        )
        .req()
        .check(CategoryPattern),
        ColumnDef::new("urgency", Enum(SLA_URGENCY), "").req(),
        ColumnDef::new("stage", Enum(SLA_STAGE), "").req(),
        ColumnDef::new("limit", Int, "")
            .req()
            .check(GreaterThan(0.0)),
        ColumnDef::new("unit", Enum(SLA_UNIT), "").req(),
    ],
};

/// 工作日历
pub static CALENDAR: TableDef = TableDef {
    name: "calendar",
    chinese: "工作日历",
    required: false,
    key: &["date"],
    doc: "overrides of the default working calendar",
    columns: &[
        ColumnDef::new("date", Date, "").req(),
        ColumnDef::new("is_workday", Bool, "").req(),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_points_to_a_single_column_key_loaded_earlier() {
        for (i, t) in TableId::ALL.iter().enumerate() {
            for c in t.def().columns {
                if let Some(target) = c.references {
                    assert!(
                        target.def().single_key().is_some(),
                        "{}.{}",
                        t.name(),
                        c.name
                    );
                    let j = TableId::ALL.iter().position(|x| *x == target).unwrap();
                    assert!(j < i, "{} must load after {}", t.name(), target.name());
                }
            }
            for k in t.def().key {
                assert!(
                    t.def().column(k).is_some_and(|c| c.required),
                    "{}.{k}",
                    t.name()
                );
            }
        }
    }

    #[test]
    fn enum_codes_match_the_lists() {
        assert_eq!(PERSON_STATUS[codes::status::ACTIVE as usize], "active");
        assert_eq!(TENURE[codes::tenure::VACANT as usize], "vacant");
        assert_eq!(TENURE[codes::tenure::RENTAL as usize], "rental");
        assert_eq!(USAGE[codes::usage::RESIDENTIAL as usize], "residential");
        assert_eq!(VISIT_KIND[codes::visit::CARE_VISIT as usize], "care_visit");
        assert_eq!(
            INCIDENT_STATUS[codes::incident_status::PARKED as usize],
            "parked"
        );
        assert_eq!(
            INCIDENT_STATUS[codes::incident_status::REJECTED as usize],
            "rejected"
        );
        assert_eq!(
            RESIDENCE_KIND[codes::residence::OVERSEAS as usize],
            "overseas"
        );
        assert_eq!(SEX[codes::sex::F as usize], "F");
        assert_eq!(URGENCY[codes::urgency::NORMAL as usize], "normal");
    }
}
