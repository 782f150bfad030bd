//! SQL identifiers and literals: quoted names and strings, and finite numbers, for the SQL
//! that specs, filters and bubble-up build (and that other crates build around spec filters).

use crate::{QueryError, Result};

/// Quotes an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub fn string_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) fn float_lit(f: f64) -> Result<String> {
    if !f.is_finite() {
        return Err(QueryError::bad("numbers in a query must be finite"));
    }
    Ok(format!("CAST({f:?} AS DOUBLE)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(string_lit("it's"), "'it''s'");
    }
}
