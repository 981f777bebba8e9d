//! Fuzz target: a produce request's `records` field through
//! `storage::validate_batches`, and every batch it accepts through the
//! compaction decoder and cleaner (records section, record parsing, rewrite)
//! with a key map that has seen the batch itself. Any panic is a bug.
#![no_main]

use fjord::storage::compaction::{clean_batch, map_batch, records_section, parse_records, BatchFate, CleanRules, KeyMap, NO_ABORTED_TXNS};
use fjord::storage::{validate_batches, BatchHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(headers) = validate_batches(data) else { return };
    let mut pos = 0usize;
    for h in headers {
        let batch = &data[pos..pos + h.total_size()];
        pos += h.total_size();
        if let Ok(Some(section)) = records_section(&h, batch) {
            let _ = parse_records(&h, &section);
        }
        let mut map = KeyMap::new(64);
        map_batch(&h, batch, &mut map, &NO_ABORTED_TXNS);
        let rules = CleanRules { now_ms: h.max_timestamp, delete_retention_ms: 0, aborted: &NO_ABORTED_TXNS };
        if let BatchFate::Rewrite { bytes, .. } = clean_batch(&h, batch, &map, rules) {
            // A rewritten batch is a well-formed batch with the same offsets.
            let nh = BatchHeader::parse(&bytes).expect("rewritten header parses");
            assert_eq!((nh.base_offset, nh.last_offset()), (h.base_offset, h.last_offset()));
            assert_eq!(nh.total_size(), bytes.len());
        }
    }
});
