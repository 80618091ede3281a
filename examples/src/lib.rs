//! Runnable examples; see `examples/` (`cargo run -p examples --example patient_client`).
