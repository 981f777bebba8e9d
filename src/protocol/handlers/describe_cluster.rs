//! DescribeCluster (key 60): cluster id, controller id and the brokers.
//!
//! Runs on whichever shard holds the connection and only reads its newest
//! metadata snapshot. Fjord has brokers and no separate controller
//! endpoints: a request for endpoint type CONTROLLER (2) gets
//! MISMATCHED_ENDPOINT_TYPE, as a Kafka broker answers. Fenced brokers are
//! left out unless v2's `include_fenced_brokers` asks for them. Without ACLs every cluster operation is allowed, so the
//! authorized operations, when asked for, are all of the cluster's.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::ResponseError;
use crate::metadata::ClusterMetadata;
use crate::protocol::RequestContext;

/// Every version kafka-protocol 0.18 knows (v2 adds fenced brokers).
pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// Kafka's `EndpointType` ids.
const ENDPOINT_BROKER: i8 = 1;

/// Kafka's "authorized operations were not requested" value.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's `AclOperation` ids that apply to the CLUSTER resource.
const CLUSTER_OPERATIONS: [u8; 7] = [
    5,  // CREATE
    7,  // ALTER
    8,  // DESCRIBE
    9,  // CLUSTER_ACTION
    10, // DESCRIBE_CONFIGS
    11, // ALTER_CONFIGS
    12, // IDEMPOTENT_WRITE
];

/// The bit set of every cluster operation (Kafka's encoding: bit n = operation n).
pub fn all_cluster_operations() -> i32 {
    CLUSTER_OPERATIONS
        .iter()
        .fold(0, |acc, op| acc | (1i32 << op))
}

/// The whole response from a snapshot. Pure.
pub fn build_response(
    req: &DescribeClusterRequest,
    version: i16,
    metadata: &ClusterMetadata,
    listener: &str,
) -> DescribeClusterResponse {
    // v0 has no endpoint type on the wire: the request means brokers.
    let endpoint_type = if version >= 1 {
        req.endpoint_type
    } else {
        ENDPOINT_BROKER
    };
    let base = DescribeClusterResponse::default()
        .with_throttle_time_ms(0)
        .with_endpoint_type(endpoint_type)
        .with_cluster_id(StrBytes::from_string(metadata.cluster_id.clone()))
        .with_controller_id(BrokerId(metadata.client_controller_id()));
    if endpoint_type != ENDPOINT_BROKER {
        return base
            .with_error_code(ResponseError::MismatchedEndpointType.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type {}",
                endpoint_type_name(endpoint_type)
            ))))
            .with_controller_id(BrokerId(-1))
            .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    }
    // v2's include_fenced_brokers asks for fenced brokers too (flagged); otherwise only live ones.
    let include_fenced = version >= 2 && req.include_fenced_brokers;
    let brokers = metadata
        .brokers
        .values()
        .filter(|b| include_fenced || !b.fenced)
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(port)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
                .with_is_fenced(b.fenced))
        })
        .collect();
    let operations = if req.include_cluster_authorized_operations {
        all_cluster_operations()
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    base.with_error_code(0)
        .with_error_message(None)
        .with_brokers(brokers)
        .with_cluster_authorized_operations(operations)
}

fn endpoint_type_name(id: i8) -> &'static str {
    match id {
        1 => "BROKER",
        2 => "CONTROLLER",
        _ => "UNKNOWN",
    }
}

pub async fn handle(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let metadata = ctx.shard.metadata();
    build_response(&req, ctx.api_version, &metadata, &ctx.listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::BrokerMeta;

    fn metadata() -> ClusterMetadata {
        let mut md = ClusterMetadata {
            cluster_id: "abc".into(),
            controller_id: 1,
            ..ClusterMetadata::default()
        };
        for (id, rack) in [(1, None), (2, Some("r2".to_string()))] {
            md.brokers.insert(
                id,
                BrokerMeta {
                    node_id: id,
                    host: format!("127.0.0.{id}"),
                    port: 9092,
                    rack,
                    shard_count: 2,
                    listeners: Vec::new(),
                    incarnation: uuid::Uuid::nil(),
                    fenced: false,
                },
            );
        }
        md
    }

    /// Brokers, cluster id and controller id come from metadata; authorized
    /// operations are "omitted" unless asked for.
    #[test]
    fn describes_brokers() {
        let md = metadata();
        let resp = build_response(&DescribeClusterRequest::default(), 1, &md, "PLAINTEXT");
        assert_eq!(
            (resp.error_code, resp.endpoint_type, resp.controller_id.0),
            (0, 1, 1)
        );
        assert_eq!(resp.cluster_id.as_str(), "abc");
        assert_eq!(resp.cluster_authorized_operations, i32::MIN);
        assert_eq!(resp.brokers.len(), 2);
        assert_eq!(resp.brokers[1].host.as_str(), "127.0.0.2");
        assert_eq!(
            resp.brokers[1].rack.as_ref().map(|r| r.as_str()),
            Some("r2")
        );
        assert_eq!(resp.brokers[0].rack, None);
        let asked =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        assert_eq!(
            build_response(&asked, 0, &md, "PLAINTEXT").cluster_authorized_operations,
            8096
        );
    }

    /// Asking a broker for controller endpoints is MISMATCHED_ENDPOINT_TYPE.
    #[test]
    fn controller_endpoint_is_mismatched() {
        let req = DescribeClusterRequest::default().with_endpoint_type(2);
        let resp = build_response(&req, 1, &metadata(), "PLAINTEXT");
        assert_eq!(resp.error_code, 114);
        assert!(resp.brokers.is_empty());
    }

    /// Every advertised version encodes what build_response produces.
    #[test]
    fn encodes_at_every_version() {
        use kafka_protocol::protocol::Encodable;
        for v in MIN_VERSION..=MAX_VERSION {
            let resp = build_response(&DescribeClusterRequest::default(), v, &metadata(), "PLAINTEXT");
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
