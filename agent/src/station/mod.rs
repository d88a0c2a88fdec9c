//! The station itself: its signing key, facts about the machine, and systemd notifications.
//!
//! * `keys`: the station's Ed25519 key (load or generate).
//! * `sysinfo`: disk, load, uptime, temperature, power, clock synchronisation.
//! * `service`: sd_notify (READY, WATCHDOG, STOPPING).

pub mod keys;
pub mod service;
pub mod sysinfo;
