//! Stationwatch central controller.
//!
//! Not built yet: the controller (MQTT ingest, fleet state, dashboard) is the subject of a later
//! issue. This crate exists so the workspace layout is final and the shared `protocol` crate has
//! its second user from the start.

/// The protocol crate the controller will speak.
pub use stationwatch_protocol as protocol;
