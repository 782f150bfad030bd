//! `exact_percentile(value, q)`: the exact percentile with linear interpolation, as the
//! query spec's P001 … P999 and the deploy checks promise.
//!
//! DataFusion's own `percentile_cont` rounds the interpolation weight to six decimals, so its
//! answer can be off by a millionth of the gap between the two neighbouring values: P95 of
//! `[-900000, -900000, 100000]` came out as -1 instead of 0. This one keeps every value
//! (as `percentile_cont` does) and interpolates in full precision: for the sorted values
//! `v[0..n]` and `h = q × (n − 1)`, it is `v[⌊h⌋] + (h − ⌊h⌋) × (v[⌊h⌋ + 1] − v[⌊h⌋])`.
//! SQL users can call it too.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::{Accumulator, AggregateUDF, Volatility, create_udaf};

/// The name it is called by in SQL.
pub const NAME: &str = "exact_percentile";

/// The aggregate function, to register with a session.
pub fn udaf() -> AggregateUDF {
    create_udaf(
        NAME,
        vec![DataType::Float64, DataType::Float64],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<ExactPercentile>::default())),
        Arc::new(vec![
            DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
            DataType::Float64,
        ]),
    )
}

/// Every value of one group, and the percentile asked for.
#[derive(Debug, Default)]
struct ExactPercentile {
    values: Vec<f64>,
    q: Option<f64>,
}

impl ExactPercentile {
    fn take_q(&mut self, q: &ArrayRef) -> DfResult<()> {
        if self.q.is_some() {
            return Ok(());
        }
        let q = q.as_primitive::<Float64Type>();
        if let Some(v) = q.iter().flatten().next() {
            if !(0.0..=1.0).contains(&v) {
                return exec_err!("{NAME}: the percentile must be between 0 and 1, not {v}");
            }
            self.q = Some(v);
        }
        Ok(())
    }
}

impl Accumulator for ExactPercentile {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.take_q(&values[1])?;
        let v = values[0].as_primitive::<Float64Type>();
        self.values
            .extend(v.iter().flatten().filter(|x| !x.is_nan()));
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let (Some(q), false) = (self.q, self.values.is_empty()) else {
            return Ok(ScalarValue::Float64(None));
        };
        let v = &mut self.values;
        v.sort_unstable_by(f64::total_cmp);
        let h = q * (v.len() - 1) as f64;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(v.len() - 1);
        let frac = h - lo as f64;
        Ok(ScalarValue::Float64(Some(if frac == 0.0 {
            v[lo]
        } else {
            v[lo] + frac * (v[hi] - v[lo])
        })))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.values.capacity() * std::mem::size_of::<f64>()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let list = ListArray::from_iter_primitive::<Float64Type, _, _>(std::iter::once(Some(
            self.values.iter().map(|v| Some(*v)).collect::<Vec<_>>(),
        )));
        Ok(vec![
            ScalarValue::List(Arc::new(list)),
            ScalarValue::Float64(self.q),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.take_q(&states[1])?;
        let lists = states[0].as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                let part = lists.value(i);
                let part: &Float64Array = part.as_primitive::<Float64Type>();
                self.values.extend(part.iter().flatten());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn one(ctx: &SessionContext, sql: &str) -> f64 {
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        b[0].column(0).as_primitive::<Float64Type>().value(0)
    }

    #[tokio::test]
    async fn interpolates_exactly() {
        let ctx = SessionContext::new();
        ctx.register_udaf(udaf());
        let t = "(VALUES (-900000.0), (-900000.0), (100000.0)) AS t(x)";
        // percentile_cont rounds the weight 0.9 to 0.899999 here and answers -1; what is left
        // is the rounding of 0.95 × 2 itself.
        let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        let p = one(&ctx, &format!("SELECT exact_percentile(x, 0.95) FROM {t}")).await;
        assert!(near(p, 0.0), "{p}");
        let t = "(VALUES (1.0), (2.0), (3.0), (4.0), (10.0)) AS t(x)";
        let p = one(&ctx, &format!("SELECT exact_percentile(x, 0.3) FROM {t}")).await;
        assert!(near(p, 2.2), "{p}");
        assert_eq!(
            one(&ctx, &format!("SELECT exact_percentile(x, 0.0) FROM {t}")).await,
            1.0
        );
        assert_eq!(
            one(&ctx, &format!("SELECT exact_percentile(x, 1.0) FROM {t}")).await,
            10.0
        );
        assert_eq!(
            one(&ctx, &format!("SELECT exact_percentile(x, 0.5) FROM {t}")).await,
            3.0
        );
        let nothing = ctx
            .sql("SELECT exact_percentile(x, 0.5) FROM (VALUES (CAST(NULL AS DOUBLE))) AS t(x)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert!(nothing[0].column(0).is_null(0));
    }
}
