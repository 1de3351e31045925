#![no_main]

// The body and its properties: ceasefire_fuzz_bodies::tlog_proof.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ceasefire_fuzz_bodies::tlog_proof(data);
});
