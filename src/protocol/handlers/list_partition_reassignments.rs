//! ListPartitionReassignments (key 46): the partition moves in progress.
//! Fjord cannot move a replica yet, so none is ever in progress: the answer
//! is an empty list (topics or partitions that do not exist are left out,
//! as Kafka's controller does). `kafka-reassign-partitions.sh --verify`,
//! `kafka-topics.sh --describe` and kafka-ui ask for it.

use kafka_protocol::messages::{ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse};

use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(_ctx: &RequestContext, _req: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default().with_error_code(0).with_topics(Vec::new())
}
