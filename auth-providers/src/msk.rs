//! Placeholder: the msk provider is being written.
