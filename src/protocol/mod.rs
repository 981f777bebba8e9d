//! The Kafka wire: framing, request dispatch, and one file per API handler.
//!
//! Runs on every shard: each shard accepts its own connections and serves
//! them here. A connection handles one request at a time, in order, as Kafka
//! does (clients pipeline by queueing on the socket), so responses always
//! leave in request order. Handlers split work by owning shard through the
//! mesh and merge the answers.

pub mod connection;
pub mod decode;
pub mod handlers;
pub mod zero_copy;

use std::rc::Rc;

use crate::shard::ShardState;

/// What a handler sees of the request it serves.
pub struct RequestContext {
    pub shard: Rc<ShardState>,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The peer's address as Kafka shows it in DescribeGroups ("/127.0.0.1").
    pub client_host: String,
    /// The name of the listener the connection came in on (Metadata answers
    /// with the brokers' addresses on the same listener).
    pub listener: Rc<str>,
}

impl RequestContext {
    /// `broker`'s address on this request's listener, if it has that listener.
    pub fn endpoint_of<'m>(&self, broker: &'m crate::metadata::BrokerMeta) -> Option<(&'m str, i32)> {
        broker.endpoint(&self.listener)
    }
}
