//! Reading request bodies: size limits before and after decompression, gzip and zstd.

use std::io::Read;

use futures::StreamExt;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;

use crate::error::ApiError;

/// A body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

/// Reads `Content-Encoding` (415 for anything but gzip, zstd or identity).
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let value = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "zstd" => Ok(Encoding::Zstd),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported content-encoding {other:?}: use gzip or zstd"
        ))),
    }
}

/// After a body passes its limit, up to this much more is read and discarded before the 413
/// is sent, so a client still writing its body receives the answer instead of a broken pipe.
const LINGER_BYTES: usize = 32 * 1024 * 1024;

/// Reads the raw (possibly compressed) body, refusing more than `limit` bytes with 413.
pub async fn read_raw(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    // Content-Length (when given, and within the limit) sizes the buffer once.
    let hint = axum::body::HttpBody::size_hint(&body);
    let capacity = hint.exact().unwrap_or(hint.lower()).min(limit as u64) as usize;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::with_capacity(capacity);
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("could not read request body: {e}")))?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > limit + LINGER_BYTES {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::TooLarge(format!(
            "request body exceeds the limit of {limit} bytes"
        )));
    }
    Ok(buf.freeze())
}

/// Decompresses a raw body (CPU work: call it off the async threads for large bodies),
/// refusing more than `limit` bytes after decompression (413) and an empty body (400).
pub fn decode_body(raw: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, ApiError> {
    let body = decompress_body(raw, encoding, limit)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("request body is empty".into()));
    }
    Ok(body)
}

/// Like [`decode_body`] but an empty body is fine (an empty protobuf message is valid).
pub fn decompress_body(raw: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, ApiError> {
    Ok(match encoding {
        Encoding::Identity => raw,
        Encoding::Gzip => decompress(flate2::read::MultiGzDecoder::new(&raw[..]), limit, "gzip")?,
        Encoding::Zstd => {
            let d = zstd::stream::read::Decoder::new(&raw[..])
                .map_err(|e| ApiError::BadRequest(format!("body is not valid zstd: {e}")))?;
            decompress(d, limit, "zstd")?
        }
    })
}

/// Reads, checks and decompresses a whole body.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let enc = encoding(headers)?;
    let raw = read_raw(body, limit).await?;
    decode_body(raw, enc, limit)
}

fn decompress(reader: impl Read, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid {what}: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(format!(
            "decompressed request body exceeds the limit of {limit} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

/// Whether JSON text nests deeper than `max` (objects and arrays), ignoring brackets inside
/// strings. Checked before parsing so no recursive step can exhaust a stack.
pub fn json_too_deep(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn depth() {
        assert!(!json_too_deep(br#"{"a":[{"b":"[[[[[["}]}"#, 3));
        assert!(json_too_deep(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!json_too_deep(br#"{"a":"\"{{{{"}"#, 1));
    }

    #[tokio::test]
    async fn decompresses_and_limits() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![b'x'; 1000]).unwrap();
        let gz = gz.finish().unwrap();
        let mut h = HeaderMap::new();
        h.insert("content-encoding", "gzip".parse().unwrap());
        let b = read_body(Body::from(gz.clone()), &h, 2000).await.unwrap();
        assert_eq!(b.len(), 1000);
        assert!(matches!(
            read_body(Body::from(gz), &h, 500).await,
            Err(ApiError::TooLarge(_))
        ));
        assert!(matches!(
            read_body(Body::from("garbage"), &h, 500).await,
            Err(ApiError::BadRequest(_))
        ));
        let z = zstd::encode_all(&b"{}"[..], 1).unwrap();
        h.insert("content-encoding", "zstd".parse().unwrap());
        assert_eq!(&read_body(Body::from(z), &h, 500).await.unwrap()[..], b"{}");
        let h = HeaderMap::new();
        assert!(matches!(
            read_body(Body::from(vec![b' '; 600]), &h, 500).await,
            Err(ApiError::TooLarge(_))
        ));
        assert!(matches!(
            read_body(Body::from(""), &h, 500).await,
            Err(ApiError::BadRequest(_))
        ));
    }
}
