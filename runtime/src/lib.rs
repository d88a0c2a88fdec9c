//! What the agent and the controller share at their edge, so neither writes it again: logging
//! setup ([`logging`]) and the MQTT client options built from the shared `[mqtt]` broker config
//! ([`mqtt`]). Wire types stay in `stationwatch-protocol`, which has no runtime dependencies.

pub mod logging;
pub mod mqtt;
