//! Types shared by `station-agent` and `station-controller`.
//!
//! This crate holds the identifiers, wire messages and the segment-manifest format. It must stay
//! free of GStreamer and of any database so that both sides (and third-party verifiers) can use it.

pub mod archive;
pub mod broker_config;
pub mod config_reader;
pub mod ids;
pub mod live;
pub mod manifest;
pub mod masks;
pub mod mqtt;
pub mod trust;

pub use ids::{CameraId, IdError, StationId};
