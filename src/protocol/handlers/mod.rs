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
pub mod create_acls;
pub mod delete_acls;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_log_dirs;
pub mod describe_user_scram_credentials;
pub mod list_partition_reassignments;
pub mod unregister_broker;
pub mod describe_quorum;
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

/// Every API Fjord serves besides Produce and Fetch (whose dispatch is
/// special: deferred and zero-copy responses), as `Key => Request, module;`.
/// This list drives `HANDLERS` (hence ApiVersions), dispatch and the
/// body decoder (`decode::decode_request`): adding an API is one line here,
/// its module, and its `pub mod` above.
macro_rules! with_request_response_apis {
    ($callback:ident) => {
        $callback! {
            ListOffsets => ListOffsetsRequest, list_offsets;
            Metadata => MetadataRequest, metadata;
            FindCoordinator => FindCoordinatorRequest, find_coordinator;
            JoinGroup => JoinGroupRequest, join_group;
            SyncGroup => SyncGroupRequest, sync_group;
            Heartbeat => HeartbeatRequest, heartbeat;
            LeaveGroup => LeaveGroupRequest, leave_group;
            OffsetCommit => OffsetCommitRequest, offset_commit;
            OffsetFetch => OffsetFetchRequest, offset_fetch;
            DescribeGroups => DescribeGroupsRequest, describe_groups;
            ListGroups => ListGroupsRequest, list_groups;
            DeleteGroups => DeleteGroupsRequest, delete_groups;
            OffsetDelete => OffsetDeleteRequest, offset_delete;
            ApiVersions => ApiVersionsRequest, api_versions;
            CreateTopics => CreateTopicsRequest, create_topics;
            DeleteTopics => DeleteTopicsRequest, delete_topics;
            DescribeConfigs => DescribeConfigsRequest, describe_configs;
            CreatePartitions => CreatePartitionsRequest, create_partitions;
            DescribeCluster => DescribeClusterRequest, describe_cluster;
            AlterConfigs => AlterConfigsRequest, alter_configs;
            IncrementalAlterConfigs => IncrementalAlterConfigsRequest, incremental_alter_configs;
            DeleteRecords => DeleteRecordsRequest, delete_records;
            InitProducerId => InitProducerIdRequest, init_producer_id;
            AddPartitionsToTxn => AddPartitionsToTxnRequest, add_partitions_to_txn;
            AddOffsetsToTxn => AddOffsetsToTxnRequest, add_offsets_to_txn;
            EndTxn => EndTxnRequest, end_txn;
            TxnOffsetCommit => TxnOffsetCommitRequest, txn_offset_commit;
            DescribeTransactions => DescribeTransactionsRequest, describe_transactions;
            ListTransactions => ListTransactionsRequest, list_transactions;
            DescribeProducers => DescribeProducersRequest, describe_producers;
            ElectLeaders => ElectLeadersRequest, elect_leaders;
            OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, offset_for_leader_epoch;
            WriteTxnMarkers => WriteTxnMarkersRequest, write_txn_markers;
            DescribeLogDirs => DescribeLogDirsRequest, describe_log_dirs;
            DescribeQuorum => DescribeQuorumRequest, describe_quorum;
            ListPartitionReassignments => ListPartitionReassignmentsRequest, list_partition_reassignments;
            DescribeAcls => DescribeAclsRequest, describe_acls;
            CreateAcls => CreateAclsRequest, create_acls;
            DeleteAcls => DeleteAclsRequest, delete_acls;
            DescribeUserScramCredentials => DescribeUserScramCredentialsRequest, describe_user_scram_credentials;
            DescribeClientQuotas => DescribeClientQuotasRequest, describe_client_quotas;
            UnregisterBroker => UnregisterBrokerRequest, unregister_broker;
        }
    };
}
pub(crate) use with_request_response_apis;

macro_rules! handler_table {
    ($($key:ident => $req:ident, $module:ident;)*) => {
        pub const HANDLERS: &[HandlerDef] = &[
            HandlerDef { key: ApiKey::Produce, min_version: produce::MIN_VERSION, max_version: produce::MAX_VERSION },
            HandlerDef { key: ApiKey::Fetch, min_version: fetch::MIN_VERSION, max_version: fetch::MAX_VERSION },
            $(HandlerDef { key: ApiKey::$key, min_version: $module::MIN_VERSION, max_version: $module::MAX_VERSION },)*
        ];
    };
}
with_request_response_apis!(handler_table);

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
        _ => {
            macro_rules! route_generic {
                ($($k:ident => $r:ident, $module:ident;)*) => {
                    match key {
                        $(ApiKey::$k => route!(m::$r, $module::handle),)*
                        other => Dispatch::Close(format!("API {other:?} has no route")),
                    }
                };
            }
            with_request_response_apis!(route_generic)
        }
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
