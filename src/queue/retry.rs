//! Retry with exponential backoff and jitter (being written).
