//! Request bodies with `Content-Encoding: gzip` or `zstd` (the first byte picks it): the limit
//! on the decompressed size always holds (no decompression bombs).
#![no_main]

use bytes::Bytes;
use eventide_ingest::body::{Encoding, decompress_body};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let encoding = if which & 1 == 0 {
        Encoding::Gzip
    } else {
        Encoding::Zstd
    };
    if let Ok(out) = decompress_body(Bytes::copy_from_slice(body), encoding, LIMIT) {
        assert!(out.len() <= LIMIT, "{} bytes past the limit", out.len());
    }
});
