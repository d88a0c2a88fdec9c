//! Stationwatch station agent.
//!
//! Captures one to four cameras through GStreamer and records them into crash-safe MPEG-TS
//! segments on local disk. See `README.md` and `docs/` for the whole picture; each concept
//! lives in the module named after it.

pub mod agent;
pub mod backoff;
pub mod camera;
pub mod config;
pub mod health;
pub mod holds;
pub mod json_file;
pub mod keys;
pub mod ledger;
pub mod live;
pub mod live_overrides;
pub mod manifest_writer;
pub mod mqtt;
pub mod outbox;
pub mod pipeline;
pub mod recorder;
pub mod retention;
pub mod service;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod sysinfo;
pub mod uplink;
pub mod verify;

pub use agent::run;
pub use config::AgentConfig;
