//! Durable files on disk, shared by recording, retention and the live overrides: directory
//! fsync and atomically replaced JSON files. A leaf: it imports nothing from the crate.

pub mod json_file;
