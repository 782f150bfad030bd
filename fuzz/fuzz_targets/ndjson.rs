//! `POST /api/v1/ingest/{dataset}`: newline-delimited JSON.
#![no_main]

use eventide_fuzz::{columnar, defaults, finish_columnar, limits};
use eventide_ingest::decode::ndjson_into;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut batch = columnar();
    let Ok(outcomes) = ndjson_into(data, &defaults(), &limits(), &mut batch) else {
        return;
    };
    let mut last_line = 0;
    for (line, _) in &outcomes {
        assert!(*line > last_line, "line numbers ascend");
        last_line = *line;
    }
    let accepted = outcomes.iter().filter(|(_, o)| o.is_none()).count();
    finish_columnar(batch, accepted);
});
