//! DescribeAcls (key 29). Fjord has no authorizer yet, so it answers as a
//! Kafka broker without `authorizer.class.name` does: SECURITY_DISABLED.
//! Tools know that answer (Kafdrop shows "security disabled", kafka-ui hides
//! its ACL pages); it is not an empty ACL list, which would claim ACLs are
//! enforced.

use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::ResponseError;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 3;

/// Kafka's message for SECURITY_DISABLED without an authorizer.
pub const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

pub async fn handle(_ctx: &RequestContext, _req: DescribeAclsRequest) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ResponseError::SecurityDisabled.code())
        .with_error_message(Some(StrBytes::from_static_str(NO_AUTHORIZER)))
}
