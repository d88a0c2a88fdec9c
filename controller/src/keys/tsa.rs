//! RFC 3161 time-stamps of witnessed heads: proof from an independent authority that a head
//! (and so every manifest entry and file up to it) existed at the authority's time.
//!
//! The request and the parts of the response we check are small, so they are written and read
//! here with a minimal DER reader rather than the RustCrypto `x509-tsp`/`cms` crates: the
//! request is fixed but for the imprint and nonce, and the response is checked for status
//! granted, the imprint we asked for, our nonce, and `genTime`. The authority's signature is
//! not checked here; `openssl ts -verify` with the authority's certificate does that, and the
//! whole response is kept (base64 DER) so anyone can.

use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use stationwatch_protocol::manifest::{Hash256, Timestamp};
use stationwatch_protocol::trust::TsaToken;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::TrustConfig;
use crate::now_ms;
use crate::store::{HeadRow, Store};

#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    #[error("time-stamping authority {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("time-stamp response: {0}")]
    Response(String),
}

fn bad(why: impl Into<String>) -> TsaError {
    TsaError::Response(why.into())
}

/// OID 2.16.840.1.101.3.4.2.1 (SHA-256), DER content bytes.
const SHA256_OID: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER's minimal content bytes.
fn uint(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut out = bytes[skip..].to_vec();
    if out[0] & 0x80 != 0 {
        out.insert(0, 0);
    }
    out
}

/// `TimeStampReq { version 1, messageImprint { sha256, imprint }, nonce, certReq TRUE }`.
pub fn request(imprint: &[u8; 32], nonce: u64) -> Vec<u8> {
    let alg = der(0x30, &[der(0x06, &SHA256_OID), der(0x05, &[])].concat());
    let mi = der(0x30, &[alg, der(0x04, imprint)].concat());
    der(
        0x30,
        &[
            der(0x02, &[1]),
            mi,
            der(0x02, &uint(nonce)),
            der(0x01, &[0xFF]),
        ]
        .concat(),
    )
}

/// One TLV: (tag, content, rest).
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), TsaError> {
    let (&tag, b) = b.split_first().ok_or_else(|| bad("truncated DER"))?;
    let (&l, mut b) = b.split_first().ok_or_else(|| bad("truncated DER"))?;
    let len = if l < 0x80 {
        l as usize
    } else {
        let n = (l & 0x7F) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return Err(bad("unsupported DER length"));
        }
        let len = b[..n].iter().fold(0usize, |a, x| (a << 8) | *x as usize);
        b = &b[n..];
        len
    };
    if b.len() < len {
        return Err(bad("truncated DER"));
    }
    Ok((tag, &b[..len], &b[len..]))
}

fn expect<'a>(b: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), TsaError> {
    let (t, c, rest) = tlv(b)?;
    if t != tag {
        return Err(bad(format!("{what}: tag {t:#04x}, expected {tag:#04x}")));
    }
    Ok((c, rest))
}

fn int_u64(c: &[u8]) -> Result<u64, TsaError> {
    let c = match c {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => c,
    };
    if c.len() > 8 || c.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(bad("integer out of range"));
    }
    Ok(c.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
}

/// What a granted response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub gen_time: Timestamp,
    pub imprint: [u8; 32],
}

/// Checks a `TimeStampResp`: status granted (0 or 1), a token whose `TSTInfo` carries the
/// SHA-256 `imprint` and `nonce` we sent; returns its `genTime`.
pub fn check_response(resp: &[u8], imprint: &[u8; 32], nonce: u64) -> Result<Granted, TsaError> {
    let (body, _) = expect(resp, 0x30, "TimeStampResp")?;
    let (status_info, token) = expect(body, 0x30, "PKIStatusInfo")?;
    let (status, _) = expect(status_info, 0x02, "PKIStatus")?;
    let status = int_u64(status)?;
    if status > 1 {
        return Err(bad(format!("status {status} (not granted)")));
    }
    // ContentInfo { contentType, [0] SignedData }
    let (ci, _) = expect(token, 0x30, "timeStampToken")?;
    let (_, ci) = expect(ci, 0x06, "contentType")?;
    let (sd, _) = expect(ci, 0xA0, "content")?;
    let (sd, _) = expect(sd, 0x30, "SignedData")?;
    let (_, sd) = expect(sd, 0x02, "version")?;
    let (_, sd) = expect(sd, 0x31, "digestAlgorithms")?;
    let (eci, _) = expect(sd, 0x30, "encapContentInfo")?;
    let (_, eci) = expect(eci, 0x06, "eContentType")?;
    let (ec, _) = expect(eci, 0xA0, "eContent")?;
    let (tst, _) = expect(ec, 0x04, "eContent octets")?;
    // TSTInfo { version, policy, messageImprint, serialNumber, genTime, accuracy?, ordering?, nonce? }
    let (tst, _) = expect(tst, 0x30, "TSTInfo")?;
    let (_, tst) = expect(tst, 0x02, "TSTInfo version")?;
    let (_, tst) = expect(tst, 0x06, "policy")?;
    let (mi, tst) = expect(tst, 0x30, "messageImprint")?;
    let (alg, mi) = expect(mi, 0x30, "hashAlgorithm")?;
    let (oid, _) = expect(alg, 0x06, "hashAlgorithm OID")?;
    if oid != SHA256_OID {
        return Err(bad("the token's imprint is not SHA-256"));
    }
    let (hashed, _) = expect(mi, 0x04, "hashedMessage")?;
    if hashed != imprint {
        return Err(bad(
            "the token stamps another imprint than the one asked for",
        ));
    }
    let (_, tst) = expect(tst, 0x02, "serialNumber")?;
    let (time, mut rest) = expect(tst, 0x18, "genTime")?;
    let gen_time = generalized_time(time)?;
    let mut got_nonce = None;
    while !rest.is_empty() {
        let (t, c, r) = tlv(rest)?;
        if t == 0x02 {
            got_nonce = Some(int_u64(c)?);
            break;
        }
        rest = r;
    }
    if got_nonce != Some(nonce) {
        return Err(bad("the token does not carry our nonce"));
    }
    Ok(Granted {
        gen_time,
        imprint: *imprint,
    })
}

/// `YYYYMMDDHHMMSS[.f*]Z`.
fn generalized_time(c: &[u8]) -> Result<Timestamp, TsaError> {
    let s = std::str::from_utf8(c).map_err(|_| bad("genTime is not text"))?;
    let s = s
        .strip_suffix('Z')
        .ok_or_else(|| bad("genTime is not UTC"))?;
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let t = chrono::NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S")
        .map_err(|e| bad(format!("genTime {s}: {e}")))?;
    let ms = frac
        .chars()
        .chain("000".chars())
        .take(3)
        .collect::<String>()
        .parse::<i64>()
        .map_err(|_| bad("genTime fraction"))?;
    Timestamp::from_unix_ms(t.and_utc().timestamp_millis() + ms)
        .map_err(|e| bad(format!("genTime: {e}")))
}

/// Has `bytes` (a head's `imprint_bytes`) stamped by the authority at `url`.
pub async fn stamp(url: &str, bytes: &[u8]) -> Result<TsaToken, TsaError> {
    let imprint: [u8; 32] = Sha256::digest(bytes).into();
    let nonce = rand::random::<u64>() >> 1;
    let req = request(&imprint, nonce);
    let u = url.to_owned();
    let resp = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent();
        let resp = agent
            .post(&u)
            .header("content-type", "application/timestamp-query")
            .send(&req[..])
            .map_err(|e| e.to_string())?;
        resp.into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    .map_err(|reason| TsaError::Http {
        url: url.to_owned(),
        reason,
    })?;
    let granted = check_response(&resp, &imprint, nonce)?;
    Ok(TsaToken {
        tsa: url.to_owned(),
        time: granted.gen_time,
        imprint: Hash256(imprint),
        token: base64::engine::general_purpose::STANDARD.encode(&resp),
    })
}

/// Every `interval`, has the latest head of every camera that changed since the previous run
/// time-stamped (one request per head, at most `max_per_run`), and stores the tokens.
pub async fn run(store: Store, cfg: TrustConfig, shutdown: CancellationToken) {
    let Some(url) = cfg.tsa_url.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(cfg.tsa_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let interval_ms = cfg.tsa_interval.as_millis() as i64;
    let mut since = now_ms() - interval_ms;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let started = now_ms();
        match stamp_once(&store, &url, since, cfg.tsa_max_per_run, &shutdown).await {
            Ok(n) => {
                if n > 0 {
                    info!(heads = n, tsa = %url, "witnessed heads time-stamped");
                }
                // Heads received while this run went on are taken by the next one.
                since = started - 1000;
            }
            Err(e) => warn!(error = %e, tsa = %url, "time-stamping failed; retried next time"),
        }
    }
}

async fn stamp_once(
    store: &Store,
    url: &str,
    since: i64,
    max: u32,
    shutdown: &CancellationToken,
) -> anyhow::Result<usize> {
    let heads: Vec<HeadRow> = store.heads_to_stamp(since, i64::from(max)).await?;
    let mut n = 0;
    for h in heads {
        if shutdown.is_cancelled() {
            break;
        }
        let w = h.witnessed(None)?;
        let token = stamp(url, &w.imprint_bytes(&h.station)).await?;
        store.set_head_tsa(&h, &token).await?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_the_der_openssl_writes() {
        // `openssl ts -query -digest <64 zeros> -sha256 -cert` without -no_nonce, nonce 1.
        let req = request(&[0; 32], 1);
        let mut want = hex::decode("303c0201013031300d06096086480165030402010500042000000000000000000000000000000000000000000000000000000000000000000201010101ff").unwrap();
        assert_eq!(hex::encode(&req), hex::encode(&want));
        want.clear();
        // Long lengths and high-bit integers.
        assert_eq!(uint(0x80), vec![0, 0x80]);
        assert_eq!(der(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(int_u64(&uint(u64::MAX >> 1)).unwrap(), u64::MAX >> 1);
    }

    #[test]
    fn a_refused_or_truncated_response_is_an_error() {
        // status 2 (rejection)
        let resp = der(0x30, &der(0x30, &der(0x02, &[2])));
        assert!(check_response(&resp, &[0; 32], 1)
            .unwrap_err()
            .to_string()
            .contains("not granted"));
        assert!(check_response(&[0x30, 0x05, 0x30], &[0; 32], 1).is_err());
        assert!(check_response(&[], &[0; 32], 1).is_err());
    }

    #[test]
    fn generalized_times_with_and_without_fractions() {
        assert_eq!(
            generalized_time(b"20261202145000Z").unwrap().unix_ms(),
            1_796_223_000_000
        );
        assert_eq!(
            generalized_time(b"20261202145000.25Z").unwrap().unix_ms(),
            1_796_223_000_250
        );
        assert!(generalized_time(b"20261202145000").is_err());
    }
}
