//! InitProducerId (key 22): a fresh producer id, epoch 0, for an idempotent
//! producer. Answered on the connection's shard from its block of ids
//! (`producer_ids`); no partition is involved.
//!
//! As in Kafka, a request without a transactional id always gets a NEW id
//! (also when v3+ passes its current id and epoch after an error: KIP-360's
//! epoch bump is for transactional producers). With a transactional id the
//! request goes to the id's transaction coordinator shard (`txn::init`):
//! the same producer id with a bumped epoch, fencing the previous producer
//! and aborting its open transaction.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::error::ResponseError;
use crate::metadata::ControllerError;
use crate::protocol::RequestContext;

/// Kafka 4.0 serves 0..=5.
pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    match req.transactional_id.as_ref().map(|t| t.0.is_empty()) {
        // Kafka: an empty transactional id is an INVALID_REQUEST.
        Some(true) => return failed(ResponseError::InvalidRequest),
        Some(false) => {
            let id = req.transactional_id.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
            let timeout = req.transaction_timeout_ms;
            let expected = (ctx.api_version >= 3 && req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
            let result = crate::txn::call(&ctx.shard, id, true, move |s, tp, id| crate::txn::init(s, tp, id, timeout, expected)).await;
            return match result {
                Ok((pid, epoch)) => InitProducerIdResponse::default().with_producer_id(ProducerId(pid)).with_producer_epoch(epoch),
                Err(e) => InitProducerIdResponse::default()
                    .with_error_code(crate::error::txn_error_code(&e, ctx.api_version, 4))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            };
        }
        None => {}
    }
    match ctx.shard.producer_ids.next_id(&ctx.shard.controller).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "no producer id block");
            failed(match e {
                // Retriable: the client asks again.
                ControllerError::Unavailable(_) | ControllerError::NotController => {
                    ResponseError::CoordinatorLoadInProgress
                }
                _ => ResponseError::UnknownServerError,
            })
        }
    }
}
