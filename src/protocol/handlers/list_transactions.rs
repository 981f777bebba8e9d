//! ListTransactions (key 66): every transactional id this broker
//! coordinates, with its producer id and state, filtered by state, producer
//! id and (v1) by how long the transaction has been open.
//!
//! Runs on the connection's shard and asks every shard for the ids of the
//! `__transaction_state` partitions it has loaded (`TxnCoordinator::list`).

use std::rc::Rc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::RequestContext;
use crate::shard::ShardState;
use crate::txn::{self, TxnState};

pub const MIN_VERSION: i16 = 0;
/// v2 adds a transactional id pattern (KIP-1152); not served yet.
pub const MAX_VERSION: i16 = 1;

pub async fn handle(ctx: &RequestContext, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let states: Vec<String> = req.state_filters.iter().map(|s| s.to_string()).collect();
    let unknown: Vec<StrBytes> =
        req.state_filters.iter().filter(|s| !TxnState::KNOWN_NAMES.contains(&s.as_str())).cloned().collect();
    let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    // v1: only transactions running longer than this many ms (-1: no filter).
    let min_duration = if ctx.api_version >= 1 { req.duration_filter } else { -1 };
    let now = txn::now_ms();
    let mut found = Vec::new();
    for shard in 0..ctx.shard.mesh.shard_count() {
        if let Ok(list) = ctx.shard.mesh.call(shard, |s: Rc<ShardState>| async move { s.txns.list() }).await {
            found.extend(list);
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let transaction_states = found
        .into_iter()
        .filter(|(_, m)| states.is_empty() || states.iter().any(|s| s == m.state.name()))
        .filter(|(_, m)| pids.is_empty() || pids.contains(&m.producer_id))
        .filter(|(_, m)| min_duration < 0 || (m.state == TxnState::Ongoing && now - m.start_ms > min_duration))
        .map(|(id, m)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(transaction_states)
}
