//! Recovery at open: every segment is scanned and checked.

use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::path::Path;

use tracing::{error, warn};

use super::framing::read_record;
use super::{Segment, io_err, segment_path};
use crate::{Offset, Result};

/// Scans the segments, cutting off any torn or corrupt tail. Returns the surviving segments,
/// the next offset and the active segment's valid length.
pub(super) fn recover(dir: &Path) -> Result<(Vec<Segment>, Offset, u64)> {
    let mut bases: Vec<Offset> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let mut segments = Vec::new();
    let mut next: Option<Offset> = None;
    let mut active_len = 0u64;
    let mut cut = false;
    for base in bases {
        let path = segment_path(dir, base);
        if cut || next.is_some_and(|n| n != base) {
            if !cut {
                error!(segment = %path.display(), "log segment does not follow the previous one; removing it and later segments");
            }
            cut = true;
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            continue;
        }
        let file = File::open(&path).map_err(|e| io_err(&path, e))?;
        let size = file.metadata().map_err(|e| io_err(&path, e))?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut pos = 0u64;
        let mut expect = base;
        loop {
            match read_record(&mut r) {
                Ok(None) => break,
                Ok(Some(rec)) if rec.offset == expect => {
                    pos += rec.framed_len as u64;
                    expect += 1;
                }
                Ok(Some(_)) | Err(_) => {
                    warn!(segment = %path.display(), valid_bytes = pos, dropped_bytes = size - pos,
                        "log segment has a torn or corrupt tail; cutting it off");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| io_err(&path, e))?;
                    f.set_len(pos).map_err(|e| io_err(&path, e))?;
                    f.sync_all().map_err(|e| io_err(&path, e))?;
                    cut = true;
                    break;
                }
            }
        }
        segments.push(Segment { base, path });
        next = Some(expect);
        active_len = pos;
    }
    Ok((segments, next.unwrap_or(0), active_len))
}
