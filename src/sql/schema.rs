//! Declared sources: tables of rows whose shape a SQL schema gives at run time.
//!
//! The built-in source `events` is a Rust type ([`Order`](crate::ecommerce::Order)). A server
//! started with `run --schema FILE` reads other sources instead, declared in SQL DDL:
//!
//! ```sql
//! CREATE SOURCE readings (ts BIGINT, sensor BIGINT NOT NULL, celsius DOUBLE)
//!     WITH (event_time = 'ts');
//! ```
//!
//! (`CREATE TABLE` is read the same way.) Each source is a table of [`Record`]s: its rows, in
//! the order of its columns, and which source it belongs to. Column types are `BIGINT` (any
//! integer type), `DOUBLE` (any floating or decimal type), `VARCHAR`, `BOOLEAN` and
//! `TIMESTAMP` (any precision, as Flink's `TIMESTAMP(3)`), given in JSON as an integer of
//! milliseconds since the epoch; the `event_time` column is a `BIGINT` of milliseconds or a
//! `TIMESTAMP`, required. A column is
//! `NULL` when a line leaves it out or gives `null`, unless it is `NOT NULL` (then the line is
//! rejected).
//!
//! A line of JSON is read by the schema ([`Decode`]): an object with the columns by name
//! (unknown fields are ignored; a name matches exactly or, failing that, ignoring case, as
//! SQL's identifiers do). `POST /events/{source}` takes one source's rows; a line that may
//! belong to any source (a history file, `POST /events` with several sources) names its source
//! by carrying the row as the field named after it, as NEXMark's events do:
//! `{"event_type": 2, "bid": {"auction": 1000, ...}}`. With a single source, plain rows work
//! everywhere.
//!
//! The schema is stored beside the master dataset (`schema.sql`): a later start may add
//! sources at the end, but not change or reorder the ones its rows were stored with.

use std::fmt;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use smol_str::SmolStr;
use sqlparser::ast::{self, ColumnOption, CreateTableOptions, SqlOption};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::SqlError;
use super::bind::{cast_type, error_at};
use super::source::{Record, Table};
use super::types::{Column, Datum, F64, Row, Type};
use crate::engine::Pipeline;
use crate::event::{Decode, END_OF_TIME, Format, Time};
use crate::view::Views;

/// One declared source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDef {
    /// The table's name.
    pub name: String,
    /// Its columns.
    pub columns: Vec<Column>,
    /// Which columns a row must give (`NOT NULL`, and the event time).
    pub required: Vec<bool>,
    /// The column that holds the event time.
    pub event_time: usize,
}

/// The sources a server reads, as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    sources: Arc<Vec<SourceDef>>,
    text: String,
}

impl Schema {
    /// The sources `text` declares (`;`-separated `CREATE SOURCE` statements).
    pub fn parse(text: &str) -> Result<Schema, SqlError> {
        let rewritten = source_keyword(text)?;
        let statements =
            Parser::parse_sql(&DuckDbDialect {}, &rewritten).map_err(SqlError::from_parser)?;
        let mut sources: Vec<SourceDef> = Vec::new();
        for statement in statements {
            let ast::Statement::CreateTable(table) = statement else {
                return Err(error_at(
                    &statement,
                    "a schema holds CREATE SOURCE name (columns) WITH (event_time = 'column') statements",
                ));
            };
            let source = source(&table)?;
            if sources
                .iter()
                .any(|s| s.name.eq_ignore_ascii_case(&source.name))
            {
                return Err(error_at(
                    &table.name,
                    format!("the source {} is declared twice", source.name),
                ));
            }
            sources.push(source);
        }
        if sources.is_empty() {
            return Err(SqlError::new("the schema declares no source", 0, 0));
        }
        if sources.len() > usize::from(u16::MAX) {
            return Err(SqlError::new("a schema holds at most 65535 sources", 0, 0));
        }
        Ok(Schema {
            sources: Arc::new(sources),
            text: text.to_string(),
        })
    }

    /// The declared sources, in declaration order.
    pub fn sources(&self) -> &[SourceDef] {
        &self.sources
    }

    /// The statements it was read from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The sources as SQL tables.
    pub fn tables(&self) -> Vec<Table> {
        self.sources
            .iter()
            .map(|s| (s.name.clone(), s.columns.clone()))
            .collect()
    }

    /// Whether rows stored under `older` read the same under this schema: every source of
    /// `older` is here, at the same place, with the same columns (new sources may follow).
    pub fn extends(&self, older: &Schema) -> Result<(), String> {
        for (i, old) in older.sources.iter().enumerate() {
            match self.sources.get(i) {
                Some(new) if new == old => {}
                Some(new) if new.name == old.name => {
                    return Err(format!(
                        "the source {} changed since its rows were stored (a source's columns cannot change; declare a new source)",
                        old.name
                    ));
                }
                _ => {
                    return Err(format!(
                        "the source {} (number {} in the stored schema) is missing or moved: sources may only be added at the end",
                        old.name,
                        i + 1
                    ));
                }
            }
        }
        Ok(())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.sources
            .iter()
            .position(|s| s.name == name)
            .or_else(|| {
                self.sources
                    .iter()
                    .position(|s| s.name.eq_ignore_ascii_case(name))
            })
    }

    /// Reads one line as a row of source `index`.
    fn read_row(&self, index: usize, line: &[u8]) -> Result<Record, String> {
        let source = &self.sources[index];
        let mut de = serde_json::Deserializer::from_slice(line);
        let values = RowSeed(source)
            .deserialize(&mut de)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("a row of {} is an object, not null", source.name))?;
        de.end().map_err(|e| e.to_string())?;
        record(index, source, values)
    }

    /// Reads one line that names its source.
    fn read_any(&self, line: &[u8]) -> Result<Record, String> {
        if self.sources.len() == 1 {
            return self.read_row(0, line);
        }
        let mut de = serde_json::Deserializer::from_slice(line);
        let (index, values) = Envelope(self)
            .deserialize(&mut de)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                let names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
                format!(
                    "the line names no source: carry the row as a field named after its source ({}), or post it to /events/{{source}}",
                    names.join(", ")
                )
            })?;
        de.end().map_err(|e| e.to_string())?;
        record(index, &self.sources[index], values)
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A row's event time, checked, and the row as a record.
fn record(index: usize, source: &SourceDef, values: Row) -> Result<Record, String> {
    let column = &source.columns[source.event_time].name;
    let ts = match values[source.event_time] {
        Datum::Int(ms) if (0..END_OF_TIME as i64).contains(&ms) => ms as Time,
        Datum::Timestamp(us)
            if (0..END_OF_TIME as i64).contains(&(us / 1000)) && us % 1000 == 0 =>
        {
            (us / 1000) as Time
        }
        Datum::Timestamp(us) => {
            return Err(format!(
                "{column} {} is not an event time (whole milliseconds from 0 to 2^53)",
                super::time::timestamp_text(us)
            ));
        }
        Datum::Int(ms) => {
            return Err(format!(
                "{column} {ms} is not an event time (milliseconds from 0 to 2^53)"
            ));
        }
        _ => return Err(format!("{column} (the event time) is required")),
    };
    Ok(Record {
        ts,
        source: index as u16,
        values,
    })
}

impl Decode<Record> for Schema {
    fn decode(&self, line: &[u8], format: Format) -> Result<Record, String> {
        json_only(format)?;
        self.read_any(line)
    }

    fn source(&self, name: &str) -> Option<Arc<dyn Decode<Record>>> {
        let index = self.index(name)?;
        Some(Arc::new(OneSource {
            schema: self.clone(),
            index,
        }))
    }
}

fn json_only(format: Format) -> Result<(), String> {
    match format {
        Format::JsonLines => Ok(()),
        _ => Err("rows of declared sources are read from JSON Lines".into()),
    }
}

/// The decoder of `POST /events/{source}`: plain rows of one source.
struct OneSource {
    schema: Schema,
    index: usize,
}

impl Decode<Record> for OneSource {
    fn decode(&self, line: &[u8], format: Format) -> Result<Record, String> {
        json_only(format)?;
        self.schema.read_row(self.index, line)
    }
}

/// The sources, as a pipeline with no views of its own: SQL views are built over it
/// ([`WithSql`](super::WithSql)), and its lines are read by the schema.
impl Pipeline for Schema {
    type Event = Record;

    fn build<'s>(&self, _events: VecCollection<'s, Time, Record>, _views: &mut Views<'s>) {}

    fn decoder(&self) -> Arc<dyn Decode<Record>> {
        Arc::new(self.clone())
    }

    /// No views, no state: the SQL views over it have their own cuts.
    fn checkpointed(&self) -> bool {
        true
    }
}

/// One `CREATE SOURCE` statement, checked.
fn source(table: &ast::CreateTable) -> Result<SourceDef, SqlError> {
    let name = match table.name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(ident)] => ident.value.clone(),
        _ => {
            return Err(error_at(&table.name, "a source's name is one identifier"));
        }
    };
    if table.columns.is_empty() {
        return Err(error_at(
            &table.name,
            format!("the source {name} has no columns"),
        ));
    }
    let mut columns: Vec<Column> = Vec::new();
    let mut required = Vec::new();
    for def in &table.columns {
        let ty = cast_type(&def.data_type, def)?;
        if !matches!(
            ty,
            Type::BigInt | Type::Double | Type::Varchar | Type::Boolean | Type::Timestamp
        ) {
            return Err(error_at(
                def,
                format!(
                    "the column {} has type {}: a source's columns are BIGINT, DOUBLE, VARCHAR, BOOLEAN or TIMESTAMP (milliseconds since the epoch)",
                    def.name.value, def.data_type
                ),
            ));
        }
        if columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&def.name.value))
        {
            return Err(error_at(
                def,
                format!("the column {} is declared twice", def.name.value),
            ));
        }
        let not_null = def
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::NotNull));
        columns.push(Column::new(&def.name.value, ty));
        required.push(not_null);
    }
    let event_time = event_time(table, &name)?;
    let Some(at) = columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(&event_time))
    else {
        return Err(error_at(
            &table.name,
            format!("the event_time column {event_time} is not a column of {name}"),
        ));
    };
    if !matches!(columns[at].ty, Type::BigInt | Type::Timestamp) {
        return Err(error_at(
            &table.name,
            format!(
                "the event_time column {event_time} must be BIGINT or TIMESTAMP (milliseconds since the epoch)"
            ),
        ));
    }
    required[at] = true;
    Ok(SourceDef {
        name,
        columns,
        required,
        event_time: at,
    })
}

/// The `event_time` option of `WITH (...)`.
fn event_time(table: &ast::CreateTable, name: &str) -> Result<String, SqlError> {
    let options = match &table.table_options {
        CreateTableOptions::With(options) => options.as_slice(),
        _ => &[],
    };
    let mut found = None;
    for option in options {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(error_at(
                &table.name,
                format!("the option {option} is not supported"),
            ));
        };
        if !key.to_string().eq_ignore_ascii_case("event_time") {
            return Err(error_at(
                &table.name,
                format!("the option {key} is not supported (a source takes event_time = 'column')"),
            ));
        }
        let column = match value {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                _ => String::new(),
            },
            ast::Expr::Identifier(ident) => ident.value.clone(),
            _ => String::new(),
        };
        if column.is_empty() {
            return Err(error_at(
                &table.name,
                "event_time names a column: event_time = 'column'",
            ));
        }
        found = Some(column);
    }
    found.ok_or_else(|| {
        error_at(
            &table.name,
            format!("the source {name} needs WITH (event_time = 'column'): the BIGINT column of its event time in milliseconds"),
        )
    })
}

/// `CREATE SOURCE` written as the `CREATE TABLE` sqlparser reads (the same length, so
/// positions in messages stay right).
fn source_keyword(text: &str) -> Result<String, SqlError> {
    let tokens = Tokenizer::new(&DuckDbDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| {
            SqlError::new(
                format!("syntax error: {}", e.message),
                e.location.line,
                e.location.column,
            )
        })?;
    let mut out = String::with_capacity(text.len());
    let mut after_create = false;
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) => {}
            Token::Word(w)
                if after_create
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("source") =>
            {
                out.push_str("TABLE ");
                after_create = false;
                continue;
            }
            Token::Word(w) => {
                after_create = w.quote_style.is_none() && w.value.eq_ignore_ascii_case("create")
            }
            _ => after_create = false,
        }
        out.push_str(&token.token.to_string());
    }
    Ok(out)
}

/// Reads one JSON object as a row of `source` (`None` for `null`).
struct RowSeed<'a>(&'a SourceDef);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Option<Row>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Row>, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Option<Row>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object (a row of {})", self.0.name)
    }

    fn visit_none<E>(self) -> Result<Option<Row>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<Row>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Row>, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Row>, A::Error> {
        use serde::de::Error;
        let source = self.0;
        let mut row: Row = vec![Datum::Null; source.columns.len()];
        let mut seen = vec![false; source.columns.len()];
        while let Some(key) = map.next_key::<SmolStr>()? {
            let Some(i) = column_index(source, &key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(A::Error::custom(format!("the field {key} is given twice")));
            }
            let column = &source.columns[i];
            let wrong =
                |e: A::Error| A::Error::custom(format!("{} is {}: {e}", column.name, column.ty));
            row[i] = match column.ty {
                Type::BigInt => map
                    .next_value::<Option<i64>>()
                    .map_err(wrong)?
                    .map(Datum::Int),
                Type::Double => map
                    .next_value::<Option<f64>>()
                    .map_err(wrong)?
                    .map(|x| Datum::Float(F64(x))),
                Type::Varchar => map
                    .next_value::<Option<SmolStr>>()
                    .map_err(wrong)?
                    .map(Datum::Text),
                Type::Boolean => map
                    .next_value::<Option<bool>>()
                    .map_err(wrong)?
                    .map(Datum::Bool),
                // Milliseconds since the epoch, as NEXMark's times are; held in microseconds.
                Type::Timestamp => match map.next_value::<Option<i64>>().map_err(wrong)? {
                    Some(ms) => Some(Datum::Timestamp(ms.checked_mul(1000).ok_or_else(|| {
                        A::Error::custom(format!("{} {ms} is out of range", column.name))
                    })?)),
                    None => None,
                },
                _ => return Err(A::Error::custom("unsupported column type")),
            }
            .unwrap_or(Datum::Null);
        }
        for (i, column) in source.columns.iter().enumerate() {
            if source.required[i] && row[i].is_null() {
                return Err(A::Error::custom(format!(
                    "{} is required (NOT NULL)",
                    column.name
                )));
            }
        }
        Ok(Some(row))
    }
}

/// The column a JSON field names: by its exact name, else ignoring case.
fn column_index(source: &SourceDef, key: &str) -> Option<usize> {
    source
        .columns
        .iter()
        .position(|c| c.name == key)
        .or_else(|| {
            source
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(key))
        })
}

/// Reads a line that carries its row as the field named after its source (the first such
/// field that is not `null`).
struct Envelope<'a>(&'a Schema);

impl<'de> DeserializeSeed<'de> for Envelope<'_> {
    type Value = Option<(usize, Row)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Envelope<'_> {
    type Value = Option<(usize, Row)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with a field named after a source")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut found = None;
        while let Some(key) = map.next_key::<SmolStr>()? {
            match self.0.index(&key) {
                Some(i) => {
                    if let Some(row) = map.next_value_seed(RowSeed(&self.0.sources[i]))? {
                        if found.is_some() {
                            return Err(A::Error::custom(
                                "the line carries rows of two sources: one per line",
                            ));
                        }
                        found = Some((i, row));
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEXMARK: &str = "
        CREATE SOURCE person (id BIGINT, name VARCHAR, dateTime BIGINT) WITH (event_time = 'dateTime');
        CREATE SOURCE bid (auction BIGINT NOT NULL, price BIGINT, ratio DOUBLE, ok BOOLEAN, dateTime BIGINT)
            WITH (event_time = 'dateTime');";

    fn schema() -> Schema {
        Schema::parse(NEXMARK).expect("a schema")
    }

    #[test]
    fn sources_are_declared_with_their_event_time() {
        let schema = schema();
        let names: Vec<&str> = schema.sources().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["person", "bid"]);
        let bid = &schema.sources()[1];
        assert_eq!(bid.event_time, 4);
        assert_eq!(bid.required, [true, false, false, false, true]);
        assert_eq!(bid.columns[2].ty, Type::Double);
        let table = Schema::parse("CREATE TABLE r (ts BIGINT) WITH (event_time = 'ts')");
        assert!(table.is_ok(), "CREATE TABLE reads as CREATE SOURCE");
    }

    #[test]
    fn timestamps_are_read_as_milliseconds_and_may_be_the_event_time() {
        let schema = Schema::parse(
            "CREATE SOURCE r (at TIMESTAMP(3), until TIMESTAMP) WITH (event_time = 'at')",
        )
        .expect("a schema");
        let record = schema
            .decode(br#"{"at": 1500, "until": null}"#, Format::JsonLines)
            .expect("read");
        assert_eq!(record.ts, 1500);
        assert_eq!(record.values, [Datum::Timestamp(1_500_000), Datum::Null]);
        for bad in [
            r#"{"at": "noon"}"#,
            r#"{"at": -1}"#,
            r#"{"at": 9223372036854775807}"#,
        ] {
            assert!(
                schema.decode(bad.as_bytes(), Format::JsonLines).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_declarations_name_the_culprit() {
        let cases = [
            ("CREATE SOURCE r (ts BIGINT)", "needs WITH (event_time"),
            (
                "CREATE SOURCE r (ts BIGINT) WITH (event_time = 'x')",
                "not a column of r",
            ),
            (
                "CREATE SOURCE r (ts VARCHAR) WITH (event_time = 'ts')",
                "must be BIGINT",
            ),
            (
                "CREATE SOURCE r (ts BIGINT, d DATE) WITH (event_time = 'ts')",
                "the column d has type DATE",
            ),
            (
                "CREATE SOURCE r (ts BIGINT, TS BIGINT) WITH (event_time = 'ts')",
                "declared twice",
            ),
            (
                "CREATE SOURCE r (ts BIGINT) WITH (event_time = 'ts', x = 1)",
                "option x",
            ),
            ("CREATE VIEW v AS SELECT 1", "a schema holds CREATE SOURCE"),
            (
                "CREATE SOURCE r (ts BIGINT) WITH (event_time = 'ts'); CREATE SOURCE R (ts BIGINT) WITH (event_time = 'ts')",
                "declared twice",
            ),
            ("", "declares no source"),
        ];
        for (text, expected) in cases {
            let error = Schema::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn rows_are_typed_by_their_source() {
        let schema = schema();
        let bid = schema.source("bid").expect("bid");
        let line =
            br#"{"auction": 7, "price": null, "ratio": 2, "extra": {"x": [1]}, "DATETIME": 5}"#;
        let record = bid.decode(line, Format::JsonLines).expect("a bid");
        assert_eq!(record.source, 1);
        assert_eq!(record.ts, 5);
        assert_eq!(
            record.values,
            vec![
                Datum::Int(7),
                Datum::Null,
                Datum::Float(F64(2.0)),
                Datum::Null,
                Datum::Int(5)
            ]
        );
        let rejected = [
            (
                &br#"{"price": 1, "dateTime": 5}"#[..],
                "auction is required",
            ),
            (br#"{"auction": 1}"#, "dateTime is required"),
            (br#"{"auction": 1.5, "dateTime": 5}"#, "auction is BIGINT"),
            (
                br#"{"auction": 1, "ok": "yes", "dateTime": 5}"#,
                "ok is BOOLEAN",
            ),
            (br#"{"auction": 1, "dateTime": -5}"#, "not an event time"),
            (
                br#"{"auction": 1, "auction": 2, "dateTime": 5}"#,
                "given twice",
            ),
            (br#"[1]"#, "a row of bid"),
            (br#"{"auction": 1, "dateTime": 5} x"#, "trailing"),
        ];
        for (line, expected) in rejected {
            let error = bid.decode(line, Format::JsonLines).expect_err("rejected");
            assert!(
                error.contains(expected),
                "{}: {error}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_line_of_several_sources_names_its_own() {
        let schema = schema();
        let line = br#"{"event_type": 2, "person": null, "bid": {"auction": 7, "dateTime": 9}}"#;
        let record = schema.decode(line, Format::JsonLines).expect("a bid");
        assert_eq!((record.source, record.ts), (1, 9));
        let none = schema.decode(br#"{"auction": 7, "dateTime": 9}"#, Format::JsonLines);
        assert!(none.expect_err("no source").contains("names no source"));
        let two = br#"{"person": {"dateTime": 1}, "bid": {"auction": 7, "dateTime": 9}}"#;
        assert!(schema.decode(two, Format::JsonLines).is_err());
        assert!(schema.source("nope").is_none());
    }

    #[test]
    fn a_later_schema_may_only_add_sources() {
        let old = schema();
        let more = Schema::parse(&format!(
            "{NEXMARK}; CREATE SOURCE auction (id BIGINT, dateTime BIGINT) WITH (event_time = 'dateTime')"
        ))
        .expect("a schema");
        assert!(more.extends(&old).is_ok());
        assert!(old.extends(&more).is_err());
        let changed =
            Schema::parse(&NEXMARK.replace("name VARCHAR", "name BIGINT")).expect("a schema");
        let error = changed.extends(&old).expect_err("changed");
        assert!(error.contains("the source person changed"), "{error}");
    }
}
