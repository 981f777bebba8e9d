//! DescribeClientQuotas (key 48). Fjord enforces no client quotas yet, so
//! no entity has one: every filter matches nothing (an empty entry list,
//! not an error, as Kafka answers when none is configured).
//! `kafka-configs.sh --describe --entity-type clients|users` asks for it.

use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

pub async fn handle(_ctx: &RequestContext, _req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default().with_error_code(0).with_entries(Some(Vec::new()))
}
