//! Zero-copy read views over encoded spans (being written).
