//! DeleteAcls (key 31): SECURITY_DISABLED for every filter, as a Kafka
//! broker without an authorizer answers (see `describe_acls`).

use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::ResponseError;
use crate::protocol::handlers::describe_acls::NO_AUTHORIZER;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 3;

pub async fn handle(_ctx: &RequestContext, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(StrBytes::from_static_str(NO_AUTHORIZER)))
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
