//! One test binary for the engine-level suites that need nothing shared but the library: each file
//! was its own binary (same tests, same names, now under `<file>::`); one binary links once instead
//! of five times.

mod activation_interval;
mod onboard;
mod payload_decode;
mod settings;
mod upstream_http;
