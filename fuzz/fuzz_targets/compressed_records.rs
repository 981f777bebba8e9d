//! Fuzz target: one RecordBatch v2 whose header is repaired so that it
//! passes `storage::validate_batches` (magic 2, batchLength = the input's
//! length, lastOffsetDelta = recordCount − 1, CRC32C recomputed), so that
//! arbitrary bytes reach the records-section decoders behind it: gzip,
//! xerial/raw snappy, lz4 frames (lz4_flex) and zstd (ruzstd), chosen by the
//! attributes' compression bits. Then what a client's produce to a compacted
//! topic runs (`first_keyless_record`, the INVALID_RECORD check) and what the
//! cleaner runs (`records_section`, `parse_records`, `map_batch`,
//! `clean_batch`, with a check that a rewrite keeps the batch's offsets).
//! Any panic is a bug: the broker aborts on panic, so it would be a remote
//! crash. Seeds: `corpus/compressed_records`, made by `fuzz/make_seeds.py`.
#![no_main]

use fjord::storage::compaction::{
    clean_batch, first_keyless_record, map_batch, parse_records, records_section, BatchFate, CleanRules, KeyMap,
    NO_ABORTED_TXNS,
};
use fjord::storage::{validate_batches, BatchHeader};
use libfuzzer_sys::fuzz_target;

/// The broker's allocator (as in the broker binary).
#[global_allocator]
static GLOBAL: fjord::alloc_guard::NoReserveHuge = fjord::alloc_guard::NoReserveHuge;

const BATCH_LENGTH_POS: usize = 8;
const MAGIC_POS: usize = 16;
const CRC_POS: usize = 17;
const ATTRIBUTES_POS: usize = 21;
const LAST_OFFSET_DELTA_POS: usize = 23;
const RECORD_COUNT_POS: usize = 57;

fuzz_target!(|data: &[u8]| {
    if data.len() < BatchHeader::SIZE || data.len() > i32::MAX as usize {
        return;
    }
    let mut b = data.to_vec();
    let batch_length = (b.len() - 12) as i32;
    b[BATCH_LENGTH_POS..BATCH_LENGTH_POS + 4].copy_from_slice(&batch_length.to_be_bytes());
    b[MAGIC_POS] = 2;
    let mut count = i32::from_be_bytes(b[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].try_into().unwrap());
    if count < 1 {
        count = 1;
        b[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&count.to_be_bytes());
    }
    b[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&(count - 1).to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_POS..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());

    let Ok(headers) = validate_batches(&b) else { return };
    let [h] = headers[..] else { panic!("one repaired batch validates as {} batches", headers.len()) };
    // Produce on a compacted topic.
    let _ = first_keyless_record(&h, &b);
    // The cleaner.
    if let Ok(Some(section)) = records_section(&h, &b) {
        let _ = parse_records(&h, &section);
    }
    let mut map = KeyMap::new(64);
    map_batch(&h, &b, &mut map, &NO_ABORTED_TXNS);
    let rules = CleanRules { now_ms: h.max_timestamp, delete_retention_ms: 0, aborted: &NO_ABORTED_TXNS };
    if let BatchFate::Rewrite { bytes, .. } = clean_batch(&h, &b, &map, rules) {
        let nh = BatchHeader::parse(&bytes).expect("rewritten header parses");
        assert_eq!((nh.base_offset, nh.last_offset()), (h.base_offset, h.last_offset()));
        assert_eq!(nh.total_size(), bytes.len());
        assert_eq!(nh.crc, crc32c::crc32c(&bytes[ATTRIBUTES_POS..]), "rewritten batch has a valid crc");
    }
});
