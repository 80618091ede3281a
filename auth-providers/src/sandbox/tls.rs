//! TLS for the emulators that need it (placeholder, being written).
