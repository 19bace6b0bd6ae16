//! cargo-fuzz target: every input through `pimgate_fuzz::connector_responses`, which panics on a
//! broken property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pimgate_fuzz::connector_responses(data);
});
