//! Pure decoding of a request frame: the fixed head (API key, version,
//! correlation id) checked against the handler table, the request header,
//! and the body of any served API.
//!
//! No I/O and no state: callable from any thread. `dispatch` uses
//! `frame_head` for its routing decision; `decode_request` decodes the
//! header and body exactly as dispatch does (same kafka-protocol decoders,
//! same versions) and exists for the fuzz targets and tests, which must not
//! need a running shard. Decoding untrusted bytes must never panic.

use bytes::Bytes;
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use super::handlers::handler_for;

/// Bytes every request frame starts with: key (2), version (2), correlation id (4).
pub const FRAME_HEAD_BYTES: usize = 8;

/// The routing facts of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Why a frame is not decoded further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameRejection {
    /// Fewer than `FRAME_HEAD_BYTES` (the connection refuses such frames earlier).
    TooShort(usize),
    UnknownApiKey(i16),
    NotServed(ApiKey),
    /// A served API at a version outside its range (ApiVersions answers it, KIP-511).
    UnsupportedVersion(FrameHead),
    BadHeader(String),
    BadBody(String),
}

impl std::fmt::Display for FrameRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameRejection::TooShort(n) => write!(f, "frame of {n} bytes is shorter than a request head"),
            FrameRejection::UnknownApiKey(k) => write!(f, "unknown API key {k}"),
            FrameRejection::NotServed(k) => write!(f, "API {k:?} is not served"),
            FrameRejection::UnsupportedVersion(h) => write!(f, "{:?} v{} is not supported", h.key, h.api_version),
            FrameRejection::BadHeader(e) => write!(f, "bad request header: {e}"),
            FrameRejection::BadBody(e) => write!(f, "bad request body: {e}"),
        }
    }
}

/// Reads the head of a frame and checks it against the handler table.
pub fn frame_head(frame: &[u8]) -> Result<FrameHead, FrameRejection> {
    if frame.len() < FRAME_HEAD_BYTES {
        return Err(FrameRejection::TooShort(frame.len()));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(api_key_raw).map_err(|_| FrameRejection::UnknownApiKey(api_key_raw))?;
    let def = handler_for(key).ok_or(FrameRejection::NotServed(key))?;
    let head = FrameHead {
        key,
        api_version,
        correlation_id,
    };
    if api_version < def.min_version || api_version > def.max_version {
        return Err(FrameRejection::UnsupportedVersion(head));
    }
    Ok(head)
}

/// Decodes a whole frame (without its length prefix) as dispatch would:
/// head, request header, body. The body is decoded and dropped; what
/// matters to callers is that it decodes (or why not).
pub fn decode_request(frame: Bytes) -> Result<(FrameHead, RequestHeader), FrameRejection> {
    let head = frame_head(&frame)?;
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, head.key.request_header_version(head.api_version))
        .map_err(|e| FrameRejection::BadHeader(e.to_string()))?;
    let v = head.api_version;
    macro_rules! body {
        ($($key:ident => $req:ident, $module:ident;)*) => {
            match head.key {
                ApiKey::Produce => m::ProduceRequest::decode(&mut buf, v).map(drop),
                ApiKey::Fetch => m::FetchRequest::decode(&mut buf, v).map(drop),
                $(ApiKey::$key => m::$req::decode(&mut buf, v).map(drop),)*
                other => return Err(FrameRejection::NotServed(other)),
            }
        };
    }
    let decoded = crate::protocol::handlers::with_request_response_apis!(body);
    decoded.map_err(|e| FrameRejection::BadBody(e.to_string()))?;
    Ok((head, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_api_decodes_and_garbage_is_rejected() {
        // Proves the table of bodies covers every served API and that short or unknown frames are errors, not panics.
        for def in crate::protocol::handlers::HANDLERS {
            let mut frame = Vec::new();
            frame.extend_from_slice(&(def.key as i16).to_be_bytes());
            frame.extend_from_slice(&def.min_version.to_be_bytes());
            frame.extend_from_slice(&7i32.to_be_bytes());
            frame.extend_from_slice(&[0u8; 64]);
            match decode_request(Bytes::from(frame)) {
                Err(FrameRejection::NotServed(k)) => panic!("{k:?} is served but has no body decoder"),
                Ok((h, _)) => assert_eq!(h.correlation_id, 7),
                Err(_) => {}
            }
        }
        assert_eq!(frame_head(&[0, 1]), Err(FrameRejection::TooShort(2)));
        assert!(matches!(frame_head(&[0x7f, 0, 0, 0, 0, 0, 0, 0]), Err(FrameRejection::UnknownApiKey(_))));
        let v = frame_head(&[0, 18, 0x7f, 0, 0, 0, 0, 9]);
        assert!(matches!(v, Err(FrameRejection::UnsupportedVersion(h)) if h.correlation_id == 9));
    }
}
