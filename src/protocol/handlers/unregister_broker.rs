//! UnregisterBroker (key 64, `kafka-cluster.sh unregister --id N`): forgets
//! a broker's registration, through the active controller (forwarded
//! there, as a Kafka broker forwards it). A broker stopped for good then
//! leaves Metadata, DescribeCluster and the health report; one that is still
//! running is fenced and registers again with its next heartbeat, as in
//! Kafka. An unknown id is BROKER_ID_NOT_REGISTERED.

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::controller_error_code;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: UnregisterBrokerRequest) -> UnregisterBrokerResponse {
    match ctx.shard.controller.unregister_broker(req.broker_id.0).await {
        Ok(()) => UnregisterBrokerResponse::default().with_error_code(0),
        Err(e) => UnregisterBrokerResponse::default()
            .with_error_code(controller_error_code(&e))
            .with_error_message(Some(StrBytes::from_string(e.to_string()))),
    }
}
