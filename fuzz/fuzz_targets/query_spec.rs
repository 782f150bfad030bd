//! `POST /api/v1/query/{dataset}`: a JSON query spec. Every spec the planner accepts must give
//! SQL that parses as exactly one query, whatever names and values it holds (no injection
//! through column names, string values or numbers).
#![no_main]

use std::sync::OnceLock;

use arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use eventide_model::{ColumnType, DatasetSchema};
use eventide_query::QuerySpec;
use eventide_query::spec::spec_sql;
use libfuzzer_sys::fuzz_target;

fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            DatasetSchema::from_columns([
                ("service.name".to_owned(), ColumnType::String),
                ("duration_ms".to_owned(), ColumnType::Float),
                ("status".to_owned(), ColumnType::Int),
                ("error".to_owned(), ColumnType::Bool),
                ("we\"ird'; --".to_owned(), ColumnType::String),
            ])
            .arrow_schema()
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<QuerySpec>(data) else {
        return;
    };
    let Ok(statements) = spec_sql("fuzz-set", &schema(), &spec, 1_700_000_000_000_000) else {
        return;
    };
    for sql in statements {
        let parsed = Parser::parse_sql(&GenericDialect {}, &sql)
            .unwrap_or_else(|e| panic!("generated SQL does not parse: {e}\n{sql}"));
        assert_eq!(parsed.len(), 1, "one statement: {sql}");
        assert!(matches!(parsed[0], Statement::Query(_)), "a query: {sql}");
    }
});
