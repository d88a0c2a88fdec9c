//! The link to the controller: MQTT session, must-arrive outbox, health reports and commands.
//!
//! * `mqtt`: the MQTT session (status with last will, health, events, command acks) and the
//!   command handlers.
//! * `outbox`: must-arrive messages kept on disk until the broker acknowledges them.
//! * `health`: the periodic health report, assembled from the cameras, disk, live and system.

pub mod health;
pub mod mqtt;
pub mod outbox;
