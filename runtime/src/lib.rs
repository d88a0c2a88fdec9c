//! What the agent and the controller share at their edge, so neither writes it again: logging
//! setup ([`logging`]), the MQTT client options built from the shared `[mqtt]` broker config
//! ([`mqtt`]) and the manual pages the packages ship, made from each binary's command line
//! ([`man`]). Wire types stay in `stationwatch-protocol`, which has no runtime dependencies.

pub mod logging;
pub mod man;
pub mod mqtt;
