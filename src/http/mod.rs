//! HTTP API (being written).
