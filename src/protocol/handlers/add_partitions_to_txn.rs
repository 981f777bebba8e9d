//! AddPartitionsToTxn (key 24): a transactional producer names the
//! partitions it is about to write, so the coordinator writes markers there
//! when the transaction ends.
//!
//! Runs on the connection's shard; the transactional id's coordinator shard
//! does the work (`txn::add_partitions`). Versions 0..=3 (the client form);
//! v4+ batches several transactions and is broker-to-broker (KIP-890).

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use crate::error::{txn_error_code, ResponseError};
use crate::protocol::RequestContext;
use crate::txn;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 3;
/// PRODUCER_FENCED from this version on; INVALID_PRODUCER_EPOCH before.
const FENCED_SINCE: i16 = 2;

pub async fn handle(ctx: &RequestContext, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let md = ctx.shard.metadata();
    let mut wanted = Vec::new();
    let mut unknown = false;
    for t in &req.v3_and_below_topics {
        for p in &t.partitions {
            let known = md.partition(&t.name.0, *p).is_some();
            unknown |= !known;
            wanted.push((t.name.0.to_string(), *p, known));
        }
    }
    let result = if unknown {
        // Kafka: the unknown partitions fail, the others are not attempted.
        Err(None)
    } else {
        let parts: Vec<(String, i32)> = wanted.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        let (pid, epoch) = (req.v3_and_below_producer_id.0, req.v3_and_below_producer_epoch);
        txn::call(&ctx.shard, req.v3_and_below_transactional_id.0.to_string(), false, move |_s, tp, id| {
            txn::add_partitions(tp, id, pid, epoch, parts)
        })
        .await
        .map_err(Some)
    };
    let code_of = |known: bool| match &result {
        Ok(()) => 0,
        Err(None) if known => ResponseError::OperationNotAttempted.code(),
        Err(None) => ResponseError::UnknownTopicOrPartition.code(),
        Err(Some(e)) => txn_error_code(e, ctx.api_version, FENCED_SINCE),
    };
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for t in &req.v3_and_below_topics {
        let results = t
            .partitions
            .iter()
            .map(|p| {
                let known = md.partition(&t.name.0, *p).is_some();
                AddPartitionsToTxnPartitionResult::default().with_partition_index(*p).with_partition_error_code(code_of(known))
            })
            .collect();
        topics.push(AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(results));
    }
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}
