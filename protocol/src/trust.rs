//! Trust that does not rest on the station: files the controller signs for verifiers, and the
//! graded verdict of a verification.
//!
//! * [`KeyRegistry`]: the stations' registered public keys, exported by the controller
//!   (`stationwatch-keys`). Given to `verify` out of band, it says which key is the station's.
//! * [`Witness`]: the manifest heads the controller received from a station (camera, next seq,
//!   last entry hash, when), with optional RFC 3161 time-stamp tokens (`stationwatch-witness`).
//!   A manifest shorter than a witnessed head, or different at a witnessed seq, was cut or
//!   rewritten after the controller saw it.
//! * [`Verdict`]: OK, OK with gaps, UNTRUSTED, FAILED, each with its own exit status.
//!
//! Both files are JSON objects signed with the controller's Ed25519 key over their canonical
//! bytes: the compact JSON of every field but `sig`, in the order the structs declare them
//! (see `docs/trust.md`). A signature proves which controller issued the file; whether to trust
//! that controller's key is the reader's decision, made out of band.

mod signed;
mod verdict;
mod witness;

pub use signed::{Signed, SignedFileError};
pub use verdict::Verdict;
pub use witness::{
    KeyRegistry, RegisteredKey, StationKeys, TsaToken, Witness, WitnessedHead, KEY_REGISTRY_FORMAT,
    WITNESS_FORMAT,
};

#[cfg(test)]
mod tests;
