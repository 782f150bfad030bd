//! Size limits (docs/API.md, "Limits"). Each one protects memory or the column store from one client.

/// Configurable limits applied by ingest and the store.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body for batch endpoints, after decompression: bounds the memory one
    /// request can pin while it is decoded.
    pub max_body_bytes: usize,
    /// Largest single event (sum of field names and values).
    pub max_event_bytes: usize,
    /// Most fields in one event after flattening: wider events are almost always a bug
    /// (an id used as a key) and would explode the dataset's schema.
    pub max_fields_per_event: usize,
    /// Longest string value.
    pub max_string_bytes: usize,
    /// Most columns in one dataset: every query plans over the whole schema.
    pub max_columns_per_dataset: usize,
    /// Deepest JSON nesting accepted in a body; deeper documents are refused before parsing so
    /// that no recursive step can exhaust a stack.
    pub max_json_depth: usize,
    /// Object nesting flattened into dotted names; deeper objects are stored as JSON text.
    pub flatten_depth: usize,
    /// Largest log record: a request whose events encode to more becomes several records,
    /// appended together (all or none). Below Kafka's message limit (`max.message.bytes`).
    pub max_record_bytes: usize,
    /// A request's events may take this many times its (decompressed) body once decoded…
    pub max_decoded_ratio: usize,
    /// …or this many bytes, whichever is more (see [`crate::budget`]).
    pub min_decoded_bytes: usize,
}

impl Limits {
    /// The decoded-size budget of a request with a `body`-byte (decompressed) body.
    pub fn decoded_budget(&self, body: usize) -> usize {
        body.saturating_mul(self.max_decoded_ratio)
            .max(self.min_decoded_bytes)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 5 * 1024 * 1024,
            max_event_bytes: 1024 * 1024,
            max_fields_per_event: 2000,
            max_string_bytes: 64 * 1024,
            max_columns_per_dataset: 10_000,
            max_json_depth: 64,
            flatten_depth: 5,
            max_record_bytes: 8 * 1024 * 1024,
            max_decoded_ratio: 16,
            min_decoded_bytes: 4 * 1024 * 1024,
        }
    }
}
