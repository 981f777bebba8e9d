//! DescribeTransactions (key 65): state, timeout, start time, producer id
//! and epoch, and partitions of each named transactional id.
//!
//! Runs on the connection's shard; each id's coordinator shard answers
//! (`txn::describe`).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::txn_error_code;
use crate::protocol::RequestContext;
use crate::txn::{self, TxnError};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut out = Vec::with_capacity(req.transactional_ids.len());
    for id in req.transactional_ids {
        let key = id.0.to_string();
        let result = match txn::locate(&ctx.shard, &key, false).await {
            // No `__transaction_state` yet: no transactional id exists.
            Err(TxnError::CoordinatorNotAvailable) if ctx.shard.metadata().topic(txn::TXN_TOPIC).is_none() => {
                Err(TxnError::TransactionalIdNotFound)
            }
            Err(e) => Err(e),
            Ok(_) => txn::call(&ctx.shard, key, false, |_s, tp, id| txn::describe(tp, id)).await,
        };
        let state = TransactionState::default().with_transactional_id(id).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
        out.push(match result {
            Ok(m) => {
                let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (t, p) in &m.partitions {
                    topics.entry(t.clone()).or_default().push(*p);
                }
                state
                    .with_transaction_state(StrBytes::from_static_str(m.state.name()))
                    .with_transaction_timeout_ms(m.timeout_ms)
                    .with_transaction_start_time_ms(m.start_ms)
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.epoch)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(t, ps)| TopicData::default().with_topic(TopicName(StrBytes::from_string(t))).with_partitions(ps))
                            .collect(),
                    )
            }
            Err(e) => state.with_error_code(txn_error_code(&e, ctx.api_version, 0)),
        });
    }
    DescribeTransactionsResponse::default().with_transaction_states(out)
}
