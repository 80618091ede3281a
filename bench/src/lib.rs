//! Benchmarks of the token path (see `benches/`); nothing to use from here.
