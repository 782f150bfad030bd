//! UDP datagrams: JSON lines that each name their dataset, decoded into events grouped by
//! dataset.

use eventide_model::Limits;
use simd_json::BorrowedValue;

use super::json::{batch_item, get, parse_json};
use super::{Defaults, Groups, over_budget};

/// UDP datagrams: one JSON object per line, `{"dataset": "...", "data": {...}, "time"?: ...,
/// "samplerate"?: N}`. Returns the events by dataset and the errors of lines that named no
/// valid dataset or were not JSON objects.
pub fn udp_lines(chunk: &[u8], receive_us: i64, limits: &Limits) -> (Groups, Vec<String>) {
    let d = Defaults {
        time_us: None,
        samplerate: 1,
        receive_us,
        decoded_budget: limits.decoded_budget(chunk.len()),
    };
    let mut groups = Groups::new();
    let mut bad = Vec::new();
    for line in chunk.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v = match parse_json(line, limits) {
            Ok(v) => v,
            Err(e) => {
                bad.push(e);
                continue;
            }
        };
        let dataset = match get(&v, "dataset") {
            Some(BorrowedValue::String(s)) => match eventide_model::DatasetName::new(s) {
                Ok(_) => s.to_string(),
                Err(e) => {
                    bad.push(e.to_string());
                    continue;
                }
            },
            _ => {
                bad.push("udp line has no \"dataset\" string".into());
                continue;
            }
        };
        groups
            .entry(dataset)
            .or_default()
            .push(batch_item(&v, &d, limits), true);
    }
    let used: usize = groups
        .values()
        .flat_map(|g| g.items.iter().filter_map(|i| i.as_ref().ok()))
        .map(eventide_model::budget::event_cost)
        .sum();
    if used > d.decoded_budget {
        // Refused whole, as an HTTP request would be.
        let why = over_budget(d.decoded_budget, chunk.len(), limits, "").to_string();
        let lines: usize = groups.values().map(|g| g.items.len()).sum();
        bad.extend(std::iter::repeat_n(why, lines));
        groups.clear();
    }
    (groups, bad)
}
