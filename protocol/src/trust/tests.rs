//! Signed files: round trip, tampering, the wrong signer; verdict order.

use super::*;
use crate::ids::{CameraId, StationId};
use crate::manifest::{Hash256, StationKey, Timestamp};

fn controller() -> StationKey {
    StationKey::from_seed(&[42; 32])
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(1_795_248_000_000 + ms).unwrap()
}

fn witness() -> Witness {
    let station = StationId::new("KG-0042").unwrap();
    Witness::new(
        t(0),
        station,
        Some(t(-60_000)),
        None,
        vec![RegisteredKey {
            key: StationKey::from_seed(&[7; 32]).public(),
            registered_at: t(-1_000_000),
            retired_at: None,
        }],
        vec![WitnessedHead {
            camera: CameraId::new("desk").unwrap(),
            next_seq: 12,
            prev: Hash256::of(b"line 11"),
            agent_at: t(-15_000),
            received_at: t(-14_990),
            tsa: None,
        }],
    )
}

#[test]
fn signed_witness_round_trips_and_names_its_signer() {
    let key = controller();
    let signed = Signed::sign(witness(), &key).unwrap();
    let text = signed.to_json().unwrap();
    let back = Signed::<Witness>::from_json(text.as_bytes(), WITNESS_FORMAT).unwrap();
    assert_eq!(back, signed);
    assert!(back.signed_by(&key.public()));
    assert!(!back.signed_by(&StationKey::from_seed(&[1; 32]).public()));
}

#[test]
fn any_change_to_a_signed_witness_is_refused() {
    let signed = Signed::sign(witness(), &controller()).unwrap();
    let text = signed.to_json().unwrap();
    for (from, to) in [
        ("\"next_seq\": 12", "\"next_seq\": 11"),
        ("KG-0042", "KG-0043"),
    ] {
        let forged = text.replacen(from, to, 1);
        assert_ne!(forged, text);
        assert!(
            matches!(
                Signed::<Witness>::from_json(forged.as_bytes(), WITNESS_FORMAT),
                Err(SignedFileError::BadSignature { .. })
            ),
            "{from} -> {to} accepted"
        );
    }
    // Re-signed by another key: valid, but not by the controller the reader trusts.
    let resigned = Signed::sign(witness(), &StationKey::from_seed(&[9; 32])).unwrap();
    let back = Signed::<Witness>::from_json(resigned.to_json().unwrap().as_bytes(), WITNESS_FORMAT)
        .unwrap();
    assert!(!back.signed_by(&controller().public()));
    assert!(Signed::<Witness>::from_json(b"{}", WITNESS_FORMAT).is_err());
}

#[test]
fn key_registry_lists_every_key_of_a_station() {
    let station = StationId::new("KG-0042").unwrap();
    let old = StationKey::from_seed(&[7; 32]).public();
    let new = StationKey::from_seed(&[8; 32]).public();
    let reg = KeyRegistry::new(
        t(0),
        vec![StationKeys {
            station: station.clone(),
            keys: vec![
                RegisteredKey {
                    key: old,
                    registered_at: t(-100),
                    retired_at: Some(t(-50)),
                },
                RegisteredKey {
                    key: new,
                    registered_at: t(-50),
                    retired_at: None,
                },
            ],
        }],
    );
    assert_eq!(reg.keys_of(&station), vec![old, new]);
    assert!(reg.stations[0].keys[0].in_force_at(t(-60)));
    assert!(!reg.stations[0].keys[0].in_force_at(t(-50)));
    let signed = Signed::sign(reg, &controller()).unwrap();
    let back =
        Signed::<KeyRegistry>::from_json(signed.to_json().unwrap().as_bytes(), KEY_REGISTRY_FORMAT)
            .unwrap();
    assert_eq!(back.body.keys_of(&station).len(), 2);
}

#[test]
fn verdicts_combine_to_the_worst_and_have_distinct_exit_codes() {
    use Verdict::*;
    assert_eq!(Ok.worst(OkWithGaps), OkWithGaps);
    assert_eq!(Untrusted.worst(OkWithGaps), Untrusted);
    assert_eq!(Failed.worst(Ok), Failed);
    assert_eq!(Verdict::grade(false, false, false), Untrusted);
    assert_eq!(Verdict::grade(true, true, false), Failed);
    assert_eq!(Verdict::grade(false, true, true), OkWithGaps);
    let codes: std::collections::HashSet<u8> = [Ok, OkWithGaps, Untrusted, Failed]
        .map(Verdict::exit_code)
        .into();
    assert_eq!(codes.len(), 4);
    assert!(!codes.contains(&1) && !codes.contains(&2));
}
