//! One key column's values interned as small integer ids (0 is null): one lookup of the raw
//! string view or value bits per row, behind direct-mapped caches of recent ones, and a string
//! hash only the first time a view is seen in a batch.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue, internal_datafusion_err};

/// Entries of the per-batch direct-mapped caches of string views and fixed-width values.
const RECENT_VIEWS: usize = 256;

/// One key column's ids: 0 is null, values are numbered as first seen.
pub(super) struct KeyColumn {
    data_type: DataType,
    /// The value of each id.
    pub(super) values: Vec<ScalarValue>,
    /// Strings: the id of each value.
    strings: foldhash::HashMap<Box<[u8]>, u32>,
    /// Fixed-width values (their bits): the id of each value.
    bits: foldhash::HashMap<u64, u32>,
    /// String views: the id of each raw view seen in the current batch.
    views: foldhash::HashMap<u128, u32>,
    /// Heap bytes of `values` and of the keys of `strings`.
    value_bytes: usize,
}

impl KeyColumn {
    pub(super) fn new(data_type: DataType) -> Self {
        let mut key = Self {
            values: Vec::new(),
            strings: Default::default(),
            bits: Default::default(),
            views: Default::default(),
            value_bytes: 0,
            data_type,
        };
        key.reset();
        key
    }

    pub(super) fn reset(&mut self) {
        self.values.clear();
        self.values
            .push(ScalarValue::try_from(&self.data_type).unwrap_or(ScalarValue::Null));
        self.strings.clear();
        self.bits.clear();
        self.views.clear();
        self.value_bytes = 0;
    }

    /// Bytes held (hash map entries estimated from their capacity).
    pub(super) fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<ScalarValue>()
            + self.value_bytes
            + self.strings.capacity() * (16 + 4 + 1)
            + self.bits.capacity() * (8 + 4 + 1)
            + self.views.capacity() * (16 + 4 + 1)
    }

    fn next_id(&mut self, array: &dyn Array, row: usize) -> DfResult<u32> {
        let value = ScalarValue::try_from_array(array, row)?;
        self.value_bytes += value
            .size()
            .saturating_sub(std::mem::size_of::<ScalarValue>());
        self.values.push(value);
        Ok((self.values.len() - 1) as u32)
    }

    fn string_id(&mut self, bytes: &[u8], array: &dyn Array, row: usize) -> DfResult<u32> {
        if let Some(&id) = self.strings.get(bytes) {
            return Ok(id);
        }
        let id = self.next_id(array, row)?;
        self.value_bytes += bytes.len();
        self.strings.insert(bytes.into(), id);
        Ok(id)
    }

    /// Writes the id of each row of `array` to `ids`.
    pub(super) fn intern(&mut self, array: &ArrayRef, ids: &mut Vec<u32>) -> DfResult<()> {
        ids.clear();
        let n = array.len();
        let nulls = array.logical_nulls();
        let valid = |r: usize| nulls.as_ref().is_none_or(|x| x.is_valid(r));
        match array.data_type() {
            DataType::Utf8View => {
                let a = array.as_string_view();
                // Views of long strings point into this batch's buffers: the caches are per
                // batch. A direct-mapped cache of recent views answers most rows without a
                // hash table probe.
                self.views.clear();
                let mut recent = [(u128::MAX, 0u32); RECENT_VIEWS];
                let raw = a.views();
                for r in 0..n {
                    if !valid(r) {
                        ids.push(0);
                        continue;
                    }
                    let v = raw[r];
                    let slot = ((((v >> 64) as u64) ^ (v as u64))
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        >> 56) as usize
                        % RECENT_VIEWS;
                    let (seen, id) = recent[slot];
                    if seen == v {
                        ids.push(id);
                        continue;
                    }
                    let id = match self.views.get(&v) {
                        Some(&id) => id,
                        None => {
                            let id = self.string_id(a.value(r).as_bytes(), array, r)?;
                            self.views.insert(v, id);
                            id
                        }
                    };
                    recent[slot] = (v, id);
                    ids.push(id);
                }
            }
            DataType::Utf8 | DataType::LargeUtf8 => {
                let (small, large) = (array.as_string_opt::<i32>(), array.as_string_opt::<i64>());
                let value = |r: usize| match (small, large) {
                    (Some(a), _) => a.value(r),
                    (_, Some(a)) => a.value(r),
                    _ => "",
                };
                let mut last: Option<(&str, u32)> = None;
                for r in 0..n {
                    if !valid(r) {
                        ids.push(0);
                        continue;
                    }
                    let s = value(r);
                    let id = match last {
                        Some((l, id)) if l == s => id,
                        _ => {
                            let id = self.string_id(s.as_bytes(), array, r)?;
                            last = Some((s, id));
                            id
                        }
                    };
                    ids.push(id);
                }
            }
            DataType::Boolean => {
                let a = array.as_boolean();
                for r in 0..n {
                    ids.push(if !valid(r) {
                        0
                    } else {
                        let bits = a.value(r) as u64;
                        self.bits_id(bits, array, r)?
                    });
                }
            }
            t => {
                let width = t
                    .primitive_width()
                    .filter(|w| *w <= 8)
                    .ok_or_else(|| internal_datafusion_err!("unsupported group key type {t}"))?;
                let data = array.to_data();
                let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
                // A direct-mapped cache of recent values answers most rows of a key with few
                // values (status codes, heatmap buckets) without a hash table probe.
                let mut recent = [(0u64, u32::MAX); RECENT_VIEWS];
                for r in 0..n {
                    if !valid(r) {
                        ids.push(0);
                        continue;
                    }
                    let mut buf = [0u8; 8];
                    buf[..width].copy_from_slice(&bytes[r * width..(r + 1) * width]);
                    let bits = u64::from_le_bytes(buf);
                    let slot =
                        (bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % RECENT_VIEWS;
                    let (seen, id) = recent[slot];
                    if seen == bits && id != u32::MAX {
                        ids.push(id);
                        continue;
                    }
                    let id = self.bits_id(bits, array, r)?;
                    recent[slot] = (bits, id);
                    ids.push(id);
                }
            }
        }
        Ok(())
    }

    fn bits_id(&mut self, bits: u64, array: &dyn Array, row: usize) -> DfResult<u32> {
        if let Some(&id) = self.bits.get(&bits) {
            return Ok(id);
        }
        let id = self.next_id(array, row)?;
        self.bits.insert(bits, id);
        Ok(id)
    }
}
