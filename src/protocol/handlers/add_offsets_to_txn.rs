//! AddOffsetsToTxn (key 25): the group's `__consumer_offsets` partition joins
//! the transaction, so the commit marker there makes the producer's
//! TxnOffsetCommit offsets visible.
//!
//! Runs on the connection's shard; the transactional id's coordinator shard
//! does the work (`txn::add_partitions`).

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::coordinator::{self, OFFSETS_TOPIC};
use crate::error::{txn_error_code, ResponseError};
use crate::protocol::RequestContext;
use crate::txn;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 3;
const FENCED_SINCE: i16 = 2;

pub async fn handle(ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let group = req.group_id.0.to_string();
    if coordinator::validate_group_id(&group).is_err() {
        return AddOffsetsToTxnResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    if coordinator::ensure_offsets_topic(&ctx.shard).await.is_err() {
        return AddOffsetsToTxnResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    let Some(count) = ctx.shard.metadata().topic(OFFSETS_TOPIC).map(|t| t.partitions.len()) else {
        return AddOffsetsToTxnResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    let partition = coordinator::records::partition_for(&group, i32::try_from(count).unwrap_or(i32::MAX));
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    let result = txn::call(&ctx.shard, req.transactional_id.0.to_string(), false, move |_s, tp, id| {
        txn::add_partitions(tp, id, pid, epoch, vec![(OFFSETS_TOPIC.to_string(), partition)])
    })
    .await;
    let code = match result {
        Ok(()) => 0,
        Err(e) => txn_error_code(&e, ctx.api_version, FENCED_SINCE),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
