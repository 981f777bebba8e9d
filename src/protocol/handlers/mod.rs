//! The table of Kafka API handlers, and dispatch.
//!
//! Each handler file declares its API's version range (`MIN_VERSION`,
//! `MAX_VERSION`); `HANDLERS` lists them, and that list is the single source
//! of what ApiVersions advertises and what dispatch accepts.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod describe_producers;
pub mod elect_leaders;
pub mod offset_for_leader_epoch;
pub mod describe_transactions;
pub mod end_txn;
pub mod list_transactions;
pub mod txn_offset_commit;
pub mod write_txn_markers;
pub mod api_versions;
pub mod delete_groups;
pub mod describe_groups;
pub mod find_coordinator;
pub mod heartbeat;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod sync_group;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::protocol::RequestContext;
use crate::shard::ShardState;

/// One handled API: key and the versions Fjord serves.
#[derive(Debug, Clone, Copy)]
pub struct HandlerDef {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

macro_rules! handler_def {
    ($key:expr, $module:ident) => {
        HandlerDef { key: $key, min_version: $module::MIN_VERSION, max_version: $module::MAX_VERSION }
    };
}

pub const HANDLERS: &[HandlerDef] = &[
    handler_def!(ApiKey::Produce, produce),
    handler_def!(ApiKey::Fetch, fetch),
    handler_def!(ApiKey::ListOffsets, list_offsets),
    handler_def!(ApiKey::Metadata, metadata),
    handler_def!(ApiKey::FindCoordinator, find_coordinator),
    handler_def!(ApiKey::JoinGroup, join_group),
    handler_def!(ApiKey::SyncGroup, sync_group),
    handler_def!(ApiKey::Heartbeat, heartbeat),
    handler_def!(ApiKey::LeaveGroup, leave_group),
    handler_def!(ApiKey::OffsetCommit, offset_commit),
    handler_def!(ApiKey::OffsetFetch, offset_fetch),
    handler_def!(ApiKey::DescribeGroups, describe_groups),
    handler_def!(ApiKey::ListGroups, list_groups),
    handler_def!(ApiKey::DeleteGroups, delete_groups),
    handler_def!(ApiKey::OffsetDelete, offset_delete),
    handler_def!(ApiKey::ApiVersions, api_versions),
    handler_def!(ApiKey::CreateTopics, create_topics),
    handler_def!(ApiKey::DeleteTopics, delete_topics),
    handler_def!(ApiKey::DescribeConfigs, describe_configs),
    handler_def!(ApiKey::CreatePartitions, create_partitions),
    handler_def!(ApiKey::DescribeCluster, describe_cluster),
    handler_def!(ApiKey::AlterConfigs, alter_configs),
    handler_def!(ApiKey::IncrementalAlterConfigs, incremental_alter_configs),
    handler_def!(ApiKey::DeleteRecords, delete_records),
    handler_def!(ApiKey::InitProducerId, init_producer_id),
    handler_def!(ApiKey::AddPartitionsToTxn, add_partitions_to_txn),
    handler_def!(ApiKey::AddOffsetsToTxn, add_offsets_to_txn),
    handler_def!(ApiKey::EndTxn, end_txn),
    handler_def!(ApiKey::TxnOffsetCommit, txn_offset_commit),
    handler_def!(ApiKey::DescribeTransactions, describe_transactions),
    handler_def!(ApiKey::ListTransactions, list_transactions),
    handler_def!(ApiKey::DescribeProducers, describe_producers),
    handler_def!(ApiKey::ElectLeaders, elect_leaders),
    handler_def!(ApiKey::OffsetForLeaderEpoch, offset_for_leader_epoch),
    handler_def!(ApiKey::WriteTxnMarkers, write_txn_markers),
];

pub fn handler_for(key: ApiKey) -> Option<&'static HandlerDef> {
    HANDLERS.iter().find(|h| h.key == key)
}

pub enum Dispatch {
    /// A complete response frame, length prefix included.
    Respond(BytesMut),
    /// A response frame with file ranges to sendfile (Fetch).
    RespondSegments(Vec<crate::protocol::zero_copy::Segment>),
    /// A response that becomes ready later (produce waiting for the disk);
    /// the connection reads on meanwhile and sends responses in order.
    Deferred(std::pin::Pin<Box<dyn std::future::Future<Output = Dispatch>>>),
    /// acks=0 produce.
    NoResponse,
    Close(String),
}

/// Decodes the frame's header, routes to the handler, encodes its answer.
pub async fn dispatch(shard: &Rc<ShardState>, frame: Bytes, client_host: &str, listener: &Rc<str>) -> Dispatch {
    use crate::protocol::decode::{frame_head, FrameRejection};
    let (key, api_version, correlation_id) = match frame_head(&frame) {
        Ok(h) => (h.key, h.api_version, h.correlation_id),
        Err(FrameRejection::UnsupportedVersion(h)) if h.key == ApiKey::ApiVersions => {
            return Dispatch::Respond(api_versions::unsupported_version_response(h.correlation_id));
        }
        Err(e) => return Dispatch::Close(e.to_string()),
    };
    let mut buf = frame;
    let header = match RequestHeader::decode(&mut buf, key.request_header_version(api_version)) {
        Ok(h) => h,
        Err(e) => return Dispatch::Close(format!("bad {key:?} request header: {e}")),
    };
    let ctx = RequestContext {
        shard: shard.clone(),
        api_version,
        correlation_id,
        client_id: header.client_id.as_ref().map(|s| s.to_string()),
        client_host: client_host.to_string(),
        listener: listener.clone(),
    };
    macro_rules! route {
        ($req:ty, $handler:path) => {{
            let req = match <$req>::decode(&mut buf, api_version) {
                Ok(r) => r,
                Err(e) => return Dispatch::Close(format!("bad {key:?} v{api_version} body: {e}")),
            };
            let resp = $handler(&ctx, req).await;
            encode_response(key, api_version, correlation_id, &resp)
        }};
    }
    match key {
        ApiKey::Produce => {
            let req = match m::ProduceRequest::decode(&mut buf, api_version) {
                Ok(r) => r,
                Err(e) => return Dispatch::Close(format!("bad Produce v{api_version} body: {e}")),
            };
            match produce::handle(&ctx, req).await {
                produce::ProduceOutcome::Respond(resp) => {
                    count_produce_errors(&resp);
                    encode_response(key, api_version, correlation_id, &resp)
                }
                produce::ProduceOutcome::Deferred(resp) => Dispatch::Deferred(Box::pin(async move {
                    let resp = resp.await;
                    count_produce_errors(&resp);
                    encode_response(key, api_version, correlation_id, &resp)
                })),
                produce::ProduceOutcome::NoResponse => Dispatch::NoResponse,
            }
        }
        ApiKey::Fetch => {
            let req = match m::FetchRequest::decode(&mut buf, api_version) {
                Ok(r) => r,
                Err(e) => return Dispatch::Close(format!("bad Fetch v{api_version} body: {e}")),
            };
            let (resp, file_ranges) = fetch::handle(&ctx, req).await;
            let header_version = key.response_header_version(api_version);
            match crate::protocol::zero_copy::encode_frame(header_version, api_version, correlation_id, &resp, file_ranges) {
                Ok(segments) => Dispatch::RespondSegments(segments),
                Err(e) => Dispatch::Close(format!("encoding Fetch response: {e}")),
            }
        }
        ApiKey::ListOffsets => route!(m::ListOffsetsRequest, list_offsets::handle),
        ApiKey::Metadata => route!(m::MetadataRequest, metadata::handle),
        ApiKey::FindCoordinator => route!(m::FindCoordinatorRequest, find_coordinator::handle),
        ApiKey::JoinGroup => route!(m::JoinGroupRequest, join_group::handle),
        ApiKey::SyncGroup => route!(m::SyncGroupRequest, sync_group::handle),
        ApiKey::Heartbeat => route!(m::HeartbeatRequest, heartbeat::handle),
        ApiKey::LeaveGroup => route!(m::LeaveGroupRequest, leave_group::handle),
        ApiKey::OffsetCommit => route!(m::OffsetCommitRequest, offset_commit::handle),
        ApiKey::OffsetFetch => route!(m::OffsetFetchRequest, offset_fetch::handle),
        ApiKey::DescribeGroups => route!(m::DescribeGroupsRequest, describe_groups::handle),
        ApiKey::ListGroups => route!(m::ListGroupsRequest, list_groups::handle),
        ApiKey::DeleteGroups => route!(m::DeleteGroupsRequest, delete_groups::handle),
        ApiKey::OffsetDelete => route!(m::OffsetDeleteRequest, offset_delete::handle),
        ApiKey::ApiVersions => route!(m::ApiVersionsRequest, api_versions::handle),
        ApiKey::CreateTopics => route!(m::CreateTopicsRequest, create_topics::handle),
        ApiKey::DeleteTopics => route!(m::DeleteTopicsRequest, delete_topics::handle),
        ApiKey::DescribeConfigs => route!(m::DescribeConfigsRequest, describe_configs::handle),
        ApiKey::CreatePartitions => route!(m::CreatePartitionsRequest, create_partitions::handle),
        ApiKey::DescribeCluster => route!(m::DescribeClusterRequest, describe_cluster::handle),
        ApiKey::AlterConfigs => route!(m::AlterConfigsRequest, alter_configs::handle),
        ApiKey::IncrementalAlterConfigs => route!(m::IncrementalAlterConfigsRequest, incremental_alter_configs::handle),
        ApiKey::DeleteRecords => route!(m::DeleteRecordsRequest, delete_records::handle),
        ApiKey::InitProducerId => route!(m::InitProducerIdRequest, init_producer_id::handle),
        ApiKey::AddPartitionsToTxn => route!(m::AddPartitionsToTxnRequest, add_partitions_to_txn::handle),
        ApiKey::AddOffsetsToTxn => route!(m::AddOffsetsToTxnRequest, add_offsets_to_txn::handle),
        ApiKey::EndTxn => route!(m::EndTxnRequest, end_txn::handle),
        ApiKey::TxnOffsetCommit => route!(m::TxnOffsetCommitRequest, txn_offset_commit::handle),
        ApiKey::DescribeTransactions => route!(m::DescribeTransactionsRequest, describe_transactions::handle),
        ApiKey::ListTransactions => route!(m::ListTransactionsRequest, list_transactions::handle),
        ApiKey::DescribeProducers => route!(m::DescribeProducersRequest, describe_producers::handle),
        ApiKey::ElectLeaders => route!(m::ElectLeadersRequest, elect_leaders::handle),
        ApiKey::OffsetForLeaderEpoch => route!(m::OffsetForLeaderEpochRequest, offset_for_leader_epoch::handle),
        ApiKey::WriteTxnMarkers => route!(m::WriteTxnMarkersRequest, write_txn_markers::handle),
        other => Dispatch::Close(format!("API {other:?} has no route")),
    }
}

fn count_produce_errors(resp: &m::ProduceResponse) {
    crate::metrics::with_shard(|metrics| {
        for p in resp.responses.iter().flat_map(|t| &t.partition_responses) {
            metrics.record_error(ApiKey::Produce as i16, p.error_code);
        }
    });
}

/// Length prefix, response header (its version follows the API version), body.
pub fn encode_response<R: Encodable>(key: ApiKey, api_version: i16, correlation_id: i32, body: &R) -> Dispatch {
    let header_version = key.response_header_version(api_version);
    encode_frame(header_version, api_version, correlation_id, body)
}

pub fn encode_frame<R: Encodable>(header_version: i16, body_version: i16, correlation_id: i32, body: &R) -> Dispatch {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    if let Err(e) = header.encode(&mut buf, header_version) {
        return Dispatch::Close(format!("encoding response header: {e}"));
    }
    if let Err(e) = body.encode(&mut buf, body_version) {
        tracing::error!(error = %e, "encoding response failed");
        return Dispatch::Close(format!("encoding response: {e}"));
    }
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Dispatch::Respond(buf)
}
