//! `POST /v1/traces` and `POST /v1/logs` with OTLP/Protobuf bodies (the first byte picks the
//! signal).
#![no_main]

use eventide_ingest::otlp::Encoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventide_fuzz::check_otlp(data, Encoding::Protobuf));
