//! WriteTxnMarkers (key 27): a transaction coordinator on another broker
//! asks this broker to write COMMIT/ABORT markers to partitions it leads, as
//! Kafka's coordinators do. Each marker is fdatasync'ed before the answer;
//! a partition this broker does not lead answers NOT_LEADER_OR_FOLLOWER.
//!
//! Runs on the connection's shard; each partition's owner shard writes
//! (`txn::write_local_markers`). Versions 0..=1 (v1 is flexible).

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::RequestContext;
use crate::txn::{self, Marker};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

/// Markers one request may carry (Kafka's coordinator batches per broker).
const MARKERS_MAX: usize = 10_000;

pub async fn handle(ctx: &RequestContext, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(req.markers.len().min(MARKERS_MAX));
    for m in req.markers.into_iter().take(MARKERS_MAX) {
        let marker = Marker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let parts: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(move |p| (t.name.0.to_string(), *p)))
            .collect();
        let written = txn::write_local_markers(&ctx.shard, parts, marker).await;
        let mut topics: Vec<WritableTxnMarkerTopicResult> = Vec::new();
        for (topic, partition, code) in written {
            let result = WritableTxnMarkerPartitionResult::default().with_partition_index(partition).with_error_code(code);
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(result),
                None => topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(vec![result]),
                ),
            }
        }
        results.push(WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
