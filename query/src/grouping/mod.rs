//! Grouping by interned keys: Eventide's partial stage of `GROUP BY`.
//!
//! The questions developers ask most often break down by a few low-cardinality fields
//! (`service.name`, `endpoint`, `region`, status codes), and DataFusion's hash aggregation
//! hashes and compares every key string of every row. Eventide's segments store such columns
//! dictionary-encoded, and the Parquet reader hands each row of a dictionary page the very same
//! 16-byte string view. [`InternedAggregateExec`] exploits that: it turns each key column into
//! small integer ids (one lookup of the raw view per row, and a string hash only the first time
//! a view is seen in a batch), combines the ids into a group index, and feeds DataFusion's own
//! accumulators. Its output is exactly the partial aggregate state DataFusion's `AggregateExec`
//! would produce, so the final stage, every aggregate function and every answer stay
//! DataFusion's.
//!
//! [`InternedGroupingRule`] swaps it in for `AggregateExec` in `Partial` mode when that is safe
//! (plain `GROUP BY` of at most [`MAX_KEYS`] columns of string, integer, time or boolean type,
//! unordered input, no limit pushed into the aggregation). Keys that turn out mostly distinct
//! (`GROUP BY trace.trace_id`, `COUNT(DISTINCT user_id)`) are detected in the first rows and
//! handed back to DataFusion's hash aggregation; memory is bounded by emitting the partial
//! state whenever [`MAX_GROUPS`] groups accumulate (the final stage merges the pieces).
//!
//! # Layout
//! - `rule`: [`InternedGroupingRule`], the physical optimizer rule that swaps the exec in;
//! - `exec`: [`InternedAggregateExec`], the plan node, and when it can replace an
//!   `AggregateExec`;
//! - `run`: one partition's execution: the probe for mostly distinct keys, the hand-over to
//!   DataFusion's hash aggregation, the memory reservation and the [`MAX_GROUPS`] bound;
//! - `state`: a partition's accumulating state (groups and DataFusion's accumulators), and
//!   the partial state batches it emits;
//! - `group_index`: the group of each combination of key ids;
//! - `key_column`: one key column's values interned as ids;
//! - `rest_of_input`: the plan node that hands the rest of an input over to DataFusion.

mod exec;
mod group_index;
mod key_column;
mod rest_of_input;
mod rule;
mod run;
mod state;
#[cfg(test)]
mod tests;

pub use exec::InternedAggregateExec;
pub use rule::InternedGroupingRule;

/// Most key columns one interned grouping handles (their ids pack into 128 bits).
pub const MAX_KEYS: usize = 4;

/// Groups held before the partial state is emitted and started afresh (memory bound).
pub const MAX_GROUPS: usize = 256 * 1024;
