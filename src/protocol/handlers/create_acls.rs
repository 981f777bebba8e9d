//! CreateAcls (key 30): SECURITY_DISABLED for every creation, as a Kafka
//! broker without an authorizer answers (see `describe_acls`).

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::ResponseError;
use crate::protocol::handlers::describe_acls::NO_AUTHORIZER;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 3;

pub async fn handle(_ctx: &RequestContext, req: CreateAclsRequest) -> CreateAclsResponse {
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(StrBytes::from_static_str(NO_AUTHORIZER)))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
