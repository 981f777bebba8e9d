//! Fuzz target: a request frame (without its length prefix) through the
//! broker's decode path — frame head checked against the handler table,
//! request header, and the body of whichever served API the head names.
//! Any panic is a bug: the broker must answer or close, never crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The broker's allocator (a lying array count must not abort the decoder).
#[global_allocator]
static GLOBAL: fjord::alloc_guard::NoReserveHuge = fjord::alloc_guard::NoReserveHuge;

fuzz_target!(|data: &[u8]| {
    let _ = fjord::protocol::decode::decode_request(bytes::Bytes::copy_from_slice(data));
});
