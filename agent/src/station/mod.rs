//! The station itself: its signing key, facts about the machine, and systemd notifications.
//!
//! * `enroll`: `station-agent enroll`, the device's side of enrollment.
//! * `keys`: the station's Ed25519 key (load or generate).
//! * `sysinfo`: disk, load, uptime, temperature, power, clock synchronisation.
//! * `service`: sd_notify (READY, WATCHDOG, STOPPING).
//! * `status`: the on-site status file the link writes and `station-agent status` reads.

pub mod enroll;
pub mod keys;
pub mod service;
pub mod status;
pub mod sysinfo;
