#![no_main]

// The body and its properties: ceasefire_ledger::fuzzing::leaf.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ceasefire_ledger::fuzzing::leaf(data);
});
