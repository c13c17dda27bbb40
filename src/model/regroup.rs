//! Per-trace regrouping of spans (being written).
