//! Stationwatch station agent.
//!
//! Captures one to four cameras through GStreamer and records them into crash-safe MPEG-TS
//! segments on local disk. See `README.md` and `docs/` for the whole picture; each concept
//! lives in the folder named after it:
//!
//! * `camera/`: one supervised GStreamer pipeline per camera (pipeline, supervision, snapshot).
//! * `recording/`: segments, the writer, the ledger (manifest, gaps, orphans, deletions).
//! * `retention/`: what policy may delete (age, space) and legal holds.
//! * `live/`: the live branch: feed, taps, sender, supervisor, uplink policy, overrides.
//! * `upload/`: uploads to the archive: durable jobs, plan, pacing, signed HTTP.
//! * `link/`: the link to the controller: MQTT, outbox, health reports, commands.
//! * `station/`: the station's key, system facts, systemd notifications.
//! * `config/`: the config file, validated.
//! * leaves shared by several folders: `disk` (directory fsync, durable JSON, the disk reserve),
//!   `elements` (GStreamer build error, RTSP source), `state` (per-camera counters), `backoff`.

pub(crate) mod agent;
pub(crate) mod backoff;
pub(crate) mod camera;
pub mod config;
pub(crate) mod disk;
pub(crate) mod elements;
pub(crate) mod link;
pub(crate) mod live;
pub mod probe;
pub(crate) mod recording;
pub(crate) mod retention;
pub(crate) mod state;
pub mod station;
pub(crate) mod upload;
pub(crate) mod view;

// What the binary (`bin/station-agent.rs`) uses; everything else is internal.
pub use agent::run;
pub use camera::pipeline::missing_elements;
pub use config::AgentConfig;
pub use live::required_elements as live_required_elements;
pub use station::keys::load_or_generate as load_or_generate_key;
pub use station::status::{read as read_status, render as render_status};
