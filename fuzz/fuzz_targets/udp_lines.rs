//! UDP datagrams of JSON lines.
#![no_main]

use eventide_fuzz::{admit_and_roundtrip, limits};
use eventide_ingest::decode::udp_lines;
use eventide_model::DatasetName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (groups, _bad) = udp_lines(data, 1_700_000_000_000_000, &limits());
    for (dataset, group) in groups {
        assert!(
            DatasetName::new(&dataset).is_ok(),
            "dataset {dataset:?} is valid"
        );
        admit_and_roundtrip(group.items);
    }
});
