//! EndTxn (key 26): commit or abort the producer's ongoing transaction.
//! Answered once the markers are written to every partition of the
//! transaction and the Complete state is persisted (`txn::end`).
//!
//! Runs on the connection's shard; the transactional id's coordinator shard
//! does the work. Versions 0..=4 (v5 is KIP-890's per-transaction epoch bump).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use crate::error::txn_error_code;
use crate::protocol::RequestContext;
use crate::txn;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;
const FENCED_SINCE: i16 = 2;

pub async fn handle(ctx: &RequestContext, req: EndTxnRequest) -> EndTxnResponse {
    let (pid, epoch, commit) = (req.producer_id.0, req.producer_epoch, req.committed);
    let result = txn::call(&ctx.shard, req.transactional_id.0.to_string(), false, move |s, tp, id| {
        txn::end(s, tp, id, pid, epoch, commit)
    })
    .await;
    let code = match result {
        Ok(()) => 0,
        Err(e) => txn_error_code(&e, ctx.api_version, FENCED_SINCE),
    };
    EndTxnResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
}
