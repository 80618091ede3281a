//! Placeholder: the santedb provider is being written.
