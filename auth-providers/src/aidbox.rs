//! Placeholder: the aidbox provider is being written.
