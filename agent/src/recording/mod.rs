//! Recording: what turns the camera's stream into evidence on disk.
//!
//! * `recorder`: the appsink branch that cuts MPEG-TS segments at keyframes (`SegmentWriter`).
//! * `ledger`: the one thread that owns a camera's folder: it finishes segments, writes their
//!   manifest entries and gap entries, recovers orphans after a crash, and deletes for retention.
//! * `manifest_writer`: the signed, hash-chained manifest file.
//! * `segment`: segment file naming and what a finished segment is (a leaf).

pub mod ledger;
pub mod manifest_writer;
pub mod recorder;
pub mod segment;
pub mod tsmux;
