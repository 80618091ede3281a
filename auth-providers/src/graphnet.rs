//! Placeholder: the graphnet provider is being written.
