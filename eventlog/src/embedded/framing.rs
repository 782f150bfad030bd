//! Record framing: `len: u32 LE | crc32: u32 LE | body`, body = `offset: u64 LE |
//! dataset_len: u16 LE | dataset | payload`; the CRC covers the body.

use std::io::{self, Read};

use crate::Offset;

/// Bytes of a record's header (length and checksum).
pub(super) const HEADER: usize = 8;
/// Largest record body a reader accepts.
pub(super) const MAX_RECORD: usize = 256 * 1024 * 1024;

/// A record as read from a segment file, with its framed size.
pub(super) struct RawRecord {
    pub(super) offset: Offset,
    pub(super) dataset: String,
    pub(super) payload: Vec<u8>,
    pub(super) framed_len: usize,
}

/// Reads one record at the reader's position. `Ok(None)` = clean end of file; `Err` with
/// kind `InvalidData`/`UnexpectedEof` = torn or corrupt.
pub(super) fn read_record(r: &mut impl Read) -> io::Result<Option<RawRecord>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "torn header"));
        }
        got += n;
    }
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
    if !(10..=MAX_RECORD).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad record length",
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    if crc32fast::hash(&body) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    let offset = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
    let dlen = u16::from_le_bytes(body[8..10].try_into().unwrap_or_default()) as usize;
    if 10 + dlen > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad dataset length",
        ));
    }
    let dataset = String::from_utf8(body[10..10 + dlen].to_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "dataset not utf-8"))?;
    let payload = body.split_off(10 + dlen);
    Ok(Some(RawRecord {
        offset,
        dataset,
        payload,
        framed_len: HEADER + len,
    }))
}

/// A record read by [`scan_records`]: offset, dataset, payload.
pub type ScannedRecord = (Offset, String, Vec<u8>);

/// Reads the records framed in `bytes` the way recovery reads a segment file: the records
/// before the first torn or corrupt one, and the error that ended the scan (`None` at a clean
/// end). Used by the fuzz target `log_records`.
pub fn scan_records(bytes: &[u8]) -> (Vec<ScannedRecord>, Option<io::Error>) {
    let mut r = bytes;
    let mut out = Vec::new();
    loop {
        match read_record(&mut r) {
            Ok(Some(rec)) => out.push((rec.offset, rec.dataset, rec.payload)),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Frames one record as the log writes it (fuzz seeds and tests).
pub fn frame_record(offset: Offset, dataset: &str, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    frame(&mut buf, offset, dataset, payload);
    buf
}

pub(super) fn frame(buf: &mut Vec<u8>, offset: Offset, dataset: &str, payload: &[u8]) {
    let len = 8 + 2 + dataset.len() + payload.len();
    let start = buf.len();
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&(dataset.len() as u16).to_le_bytes());
    buf.extend_from_slice(dataset.as_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Property tests of the record framing.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn records() -> impl Strategy<Value = Vec<(u64, String, Vec<u8>)>> {
        proptest::collection::vec(
            (
                any::<u64>(),
                "[a-z0-9._-]{1,20}",
                proptest::collection::vec(any::<u8>(), 0..300),
            ),
            1..20,
        )
    }

    fn read_all(bytes: &[u8]) -> (Vec<(u64, String, Vec<u8>)>, bool) {
        let mut r = std::io::Cursor::new(bytes);
        let mut out = Vec::new();
        loop {
            match read_record(&mut r) {
                Ok(Some(rec)) => out.push((rec.offset, rec.dataset, rec.payload)),
                Ok(None) => return (out, true),
                Err(_) => return (out, false),
            }
        }
    }

    proptest! {
        /// Framed records read back as written.
        #[test]
        fn records_round_trip(recs in records()) {
            let mut buf = Vec::new();
            for (o, d, p) in &recs {
                frame(&mut buf, *o, d, p);
            }
            let (back, clean) = read_all(&buf);
            prop_assert!(clean);
            prop_assert_eq!(back, recs);
        }

        /// A file cut anywhere reads as the whole records before the cut, then a torn tail
        /// (never a record that was not written).
        #[test]
        fn a_torn_tail_loses_only_the_torn_record(recs in records(), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            let mut ends = Vec::new();
            for (o, d, p) in &recs {
                frame(&mut buf, *o, d, p);
                ends.push(buf.len());
            }
            let at = cut.index(buf.len() + 1);
            let (back, clean) = read_all(&buf[..at]);
            let whole = ends.iter().filter(|e| **e <= at).count();
            prop_assert_eq!(&back[..], &recs[..whole]);
            prop_assert_eq!(clean, ends.contains(&at) || at == 0);
        }

        /// A flipped bit is caught: the records before it read back, the damaged one does not.
        #[test]
        fn a_flipped_bit_is_detected(recs in records(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut buf = Vec::new();
            let mut ends = Vec::new();
            for (o, d, p) in &recs {
                frame(&mut buf, *o, d, p);
                ends.push(buf.len());
            }
            let at = pos.index(buf.len());
            buf[at] ^= 1 << bit;
            let (back, _) = read_all(&buf);
            let damaged = ends.iter().filter(|e| **e <= at).count();
            prop_assert_eq!(&back[..], &recs[..damaged.min(back.len())]);
            prop_assert!(back.len() <= damaged, "the damaged record was returned");
        }
    }
}
