//! Stationwatch station agent.
//!
//! Captures one to four cameras through GStreamer and records them into crash-safe MPEG-TS
//! segments on local disk. See `README.md` and `docs/` for the whole picture; each concept
//! lives in the folder named after it.

pub mod agent;
pub mod backoff;
pub mod camera;
pub mod config;
pub mod disk;
pub mod elements;
pub mod link;
pub mod live;
pub mod recording;
pub mod retention;
pub mod state;
pub mod station;
pub mod verify;

pub use agent::run;
pub use config::AgentConfig;
