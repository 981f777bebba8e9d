//! ApiVersions (key 18): what Fjord serves, straight from the handler table.
//! An unknown version gets a v0 body with UNSUPPORTED_VERSION and the table
//! (KIP-511), so the client can retry with a version we know.

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::error::ResponseError;
use crate::protocol::handlers::{encode_frame, Dispatch, HANDLERS};
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

fn api_keys() -> Vec<ApiVersion> {
    HANDLERS
        .iter()
        .map(|h| {
            ApiVersion::default()
                .with_api_key(h.key as i16)
                .with_min_version(h.min_version)
                .with_max_version(h.max_version)
        })
        .collect()
}

pub async fn handle(_ctx: &RequestContext, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(api_keys())
}

pub fn unsupported_version_response(correlation_id: i32) -> BytesMut {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    match encode_frame(0, 0, correlation_id, &body) {
        Dispatch::Respond(b) => b,
        _ => BytesMut::new(),
    }
}
