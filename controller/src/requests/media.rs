//! What a delivered request gives its readers: the timeline (recorded spans and gaps), HLS
//! playlists of the recorded segments as they are (never re-encoded), and the evidence bundle
//! (`docs/requests.md`): one tar holding the segments as recorded, the manifest excerpt that
//! signs them, the station's registered keys and the controller's witness of the heads (both
//! signed by the controller), and a report for people.

use std::io::Write;

use serde::Serialize;
use serde_json::json;
use stationwatch_protocol::manifest::{parse_line, EntryBody, StationKey, Timestamp};
use stationwatch_protocol::trust::{KeyRegistry, Signed, StationKeys, Witness};
use stationwatch_protocol::{CameraId, StationId};

use super::collect::TOLERANCE_MS;
use crate::archive::{object_path, segment_key, Archive};
use crate::store::archive::{EntryRow, ARCHIVED};
use crate::store::requests::{Gap, RequestRow};
use crate::store::{Store, StoreError};

/// Most entries read per camera for a window (a day of 2-second segments is 43,200).
const MAX_ENTRIES: i64 = 200_000;

/// How far before the first entry of a window its `open` entries are looked for.
const OPEN_LOOKBACK: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("archive: {0}")]
    Archive(String),
    #[error("writing the bundle: {0}")]
    Io(#[from] std::io::Error),
    #[error("signing: {0}")]
    Sign(String),
}

/// A span of time a camera recorded (consecutive archived segments merged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub from_ms: i64,
    pub to_ms: i64,
    pub segments: usize,
}

/// One camera of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraTimeline {
    pub camera: CameraId,
    pub spans: Vec<Span>,
    pub gaps: Vec<Gap>,
}

/// The archived segment entries of a camera overlapping `[from, to)`, in time order.
pub async fn window_segments(
    store: &Store,
    station: &StationId,
    camera: &CameraId,
    from: i64,
    to: i64,
) -> Result<Vec<EntryRow>, StoreError> {
    Ok(store
        .archive_timeline(station, Some(camera), from, to, MAX_ENTRIES)
        .await?
        .into_iter()
        .filter(|e| e.kind == "segment" && e.state.as_deref() == Some(ARCHIVED))
        // Touching the window counts, as the verifier counts it (a segment ending at `from`).
        .filter(|e| e.start_ms.unwrap_or(i64::MAX) <= to && e.end_ms.unwrap_or(i64::MIN) >= from)
        .collect())
}

/// Merges segments into spans (a hole longer than the tolerance starts a new span).
pub fn spans(segments: &[EntryRow]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for e in segments {
        let (Some(s), Some(t)) = (e.start_ms, e.end_ms) else {
            continue;
        };
        match out.last_mut() {
            Some(last) if s - last.to_ms <= TOLERANCE_MS => {
                last.to_ms = last.to_ms.max(t);
                last.segments += 1;
            }
            _ => out.push(Span {
                from_ms: s,
                to_ms: t,
                segments: 1,
            }),
        }
    }
    out
}

/// The timeline of a delivered request: spans from the archive, gaps as the request recorded
/// them when it became ready.
pub async fn timeline(store: &Store, r: &RequestRow) -> Result<Vec<CameraTimeline>, StoreError> {
    let mut out = Vec::new();
    for cam in &r.cameras {
        let segs = window_segments(store, &r.station_id, cam, r.from_ms, r.to_ms).await?;
        out.push(CameraTimeline {
            camera: cam.clone(),
            spans: spans(&segs),
            gaps: r
                .gaps
                .iter()
                .filter(|g| &g.camera == cam)
                .cloned()
                .collect(),
        });
    }
    Ok(out)
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_unix_ms(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// An HLS playlist (VOD) of one camera's archived segments of the window: each segment as
/// recorded, its station time as `EXT-X-PROGRAM-DATE-TIME`, a discontinuity at every gap.
/// `segment_url(seq)` names each segment.
pub fn playlist(segments: &[EntryRow], segment_url: impl Fn(u64) -> String) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n");
    let longest = segments
        .iter()
        .filter_map(|e| Some(e.end_ms? - e.start_ms?))
        .max()
        .unwrap_or(1000);
    out.push_str(&format!(
        "#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n",
        (longest + 999) / 1000
    ));
    let mut previous_end: Option<i64> = None;
    for e in segments {
        let (Some(s), Some(t)) = (e.start_ms, e.end_ms) else {
            continue;
        };
        if previous_end.is_some_and(|p| s - p > TOLERANCE_MS) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        out.push_str(&format!(
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\n{}\n",
            rfc3339(s),
            (t - s) as f64 / 1000.0,
            segment_url(e.seq)
        ));
        previous_end = Some(t);
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// One camera's part of a bundle.
struct CameraPart {
    camera: CameraId,
    /// `(seq, line)` of the excerpt, contiguous.
    lines: Vec<(u64, String)>,
    segments: Vec<EntryRow>,
    heads: Vec<stationwatch_protocol::trust::WitnessedHead>,
}

/// The top folder of a bundle.
pub fn bundle_root(r: &RequestRow) -> String {
    format!("stationwatch-bundle-{}", r.id)
}

/// Gathers everything a bundle holds but the segment bytes, then writes the tar to `out`
/// (blocking: run it on a blocking thread; segment bytes are fetched from the archive with
/// `rt`). Returns the bytes of footage written.
pub async fn prepare_bundle(
    store: &Store,
    controller_key: &StationKey,
    r: &RequestRow,
    now: i64,
) -> Result<Bundle, MediaError> {
    let station = &r.station_id;
    let all_heads = crate::keys::witness(store, controller_key, station, None, None, now)
        .await
        .map_err(|e| MediaError::Sign(e.to_string()))?
        .body;
    let mut parts = Vec::new();
    for cam in &r.cameras {
        let entries = store
            .archive_timeline(station, Some(cam), r.from_ms, r.to_ms, MAX_ENTRIES)
            .await?;
        let range = store.archive_range(station, cam).await?;
        let (Some(first), Some(last), Some(range)) = (
            entries.iter().map(|e| e.seq).min(),
            entries.iter().map(|e| e.seq).max(),
            range,
        ) else {
            parts.push(CameraPart {
                camera: cam.clone(),
                lines: Vec::new(),
                segments: Vec::new(),
                heads: Vec::new(),
            });
            continue;
        };
        // Up to the first witnessed head at or after the window's last entry, when the
        // archive holds it: the excerpt can then be checked against the controller's witness.
        let cam_heads: Vec<_> = all_heads.heads_of(cam).cloned().collect();
        let end = cam_heads
            .iter()
            .map(|h| h.next_seq.saturating_sub(1))
            .filter(|s| *s >= last && *s <= range.last_seq)
            .min()
            .unwrap_or(last);
        // Back to the `open` entries announcing the excerpt's segments (the agent announces a
        // file before it writes it, a few entries before the file's segment entry): without
        // them a verifier sees segments that were never announced.
        let files: std::collections::HashSet<&str> =
            entries.iter().filter_map(|e| e.file.as_deref()).collect();
        let before = store
            .archive_lines(
                station,
                cam,
                first.saturating_sub(OPEN_LOOKBACK),
                first.saturating_sub(1),
            )
            .await?;
        let first = before
            .iter()
            .filter(|(seq, _)| *seq < first)
            .filter_map(
                |(seq, line)| match parse_line(line.as_bytes()).map(|p| p.body().clone()) {
                    Ok(EntryBody::Open(o)) if files.contains(o.file.as_str()) => Some(*seq),
                    _ => None,
                },
            )
            .min()
            .unwrap_or(first);
        let lines = store.archive_lines(station, cam, first, end).await?;
        let heads = cam_heads
            .into_iter()
            .filter(|h| h.next_seq > first && h.next_seq <= end + 1)
            .collect();
        let segments = window_segments(store, station, cam, r.from_ms, r.to_ms).await?;
        parts.push(CameraPart {
            camera: cam.clone(),
            lines,
            segments,
            heads,
        });
    }
    let keys_of_station = all_heads.keys.clone();
    let issued = Timestamp::from_unix_ms(now).map_err(|e| MediaError::Sign(e.to_string()))?;
    let registry = Signed::sign(
        KeyRegistry::new(
            issued,
            vec![StationKeys {
                station: station.clone(),
                keys: keys_of_station.clone(),
            }],
        ),
        controller_key,
    )
    .map_err(|e| MediaError::Sign(e.to_string()))?;
    let witness = Signed::sign(
        Witness::new(
            issued,
            station.clone(),
            Some(Timestamp::from_unix_ms(r.from_ms).map_err(|e| MediaError::Sign(e.to_string()))?),
            Some(Timestamp::from_unix_ms(r.to_ms).map_err(|e| MediaError::Sign(e.to_string()))?),
            keys_of_station,
            parts.iter().flat_map(|p| p.heads.iter().cloned()).collect(),
        ),
        controller_key,
    )
    .map_err(|e| MediaError::Sign(e.to_string()))?;
    Ok(Bundle {
        request: r.clone(),
        controller_key: controller_key.public().to_string(),
        controller_fingerprint: controller_key.public().fingerprint().to_string(),
        created_at: now,
        keys_json: registry
            .to_json()
            .map_err(|e| MediaError::Sign(e.to_string()))?,
        witness_json: witness
            .to_json()
            .map_err(|e| MediaError::Sign(e.to_string()))?,
        parts,
    })
}

/// Everything of a bundle but the segment bytes.
pub struct Bundle {
    request: RequestRow,
    controller_key: String,
    controller_fingerprint: String,
    created_at: i64,
    keys_json: String,
    witness_json: String,
    parts: Vec<CameraPart>,
}

impl Bundle {
    /// Bytes of footage the bundle holds.
    pub fn footage_bytes(&self) -> u64 {
        self.parts
            .iter()
            .flat_map(|p| p.segments.iter())
            .map(|e| e.size.unwrap_or(0))
            .sum()
    }

    /// Writes the tar. Blocking; `rt` fetches the segments from the archive.
    pub fn write(
        &self,
        archive: &Archive,
        rt: &tokio::runtime::Handle,
        out: impl Write,
    ) -> Result<(), MediaError> {
        let r = &self.request;
        let root = bundle_root(r);
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        let mtime = (self.created_at / 1000).max(0) as u64;
        let add = |tar: &mut tar::Builder<_>, path: &str, data: &[u8]| -> std::io::Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, format!("{root}/{path}"), data)
        };
        let info = json!({
            "format": "stationwatch-bundle",
            "version": 1,
            "request": r.id,
            "station": r.station_id,
            "cameras": r.cameras,
            "from": rfc3339(r.from_ms),
            "to": rfc3339(r.to_ms),
            "created_at": rfc3339(self.created_at),
            "controller_key": self.controller_key,
        });
        add(
            &mut tar,
            "bundle.json",
            serde_json::to_string_pretty(&info)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        add(&mut tar, "REPORT.txt", self.report().as_bytes())?;
        add(&mut tar, "keys.json", self.keys_json.as_bytes())?;
        add(&mut tar, "witness.json", self.witness_json.as_bytes())?;
        for p in &self.parts {
            let mut manifest = String::new();
            for (_, line) in &p.lines {
                manifest.push_str(line);
                manifest.push('\n');
            }
            add(
                &mut tar,
                &format!("{}/manifest.jsonl", p.camera),
                manifest.as_bytes(),
            )?;
            for e in &p.segments {
                let Some(file) = &e.file else { continue };
                let key = segment_key(&r.station_id, &p.camera, file);
                let path = object_path(&key).map_err(|e| MediaError::Archive(e.to_string()))?;
                let bytes = rt
                    .block_on(async { archive.objects().get(&path).await?.bytes().await })
                    .map_err(|e| MediaError::Archive(format!("{key}: {e}")))?;
                add(&mut tar, &format!("{}/{file}", p.camera), &bytes)?;
            }
        }
        tar.into_inner()?.flush()?;
        Ok(())
    }

    /// The report for people: what was asked, what the bundle holds, every gap, every file and
    /// its hash, and how to check it.
    pub fn report(&self) -> String {
        let r = &self.request;
        let mut o = String::new();
        let mut line = |s: String| {
            o.push_str(&s);
            o.push('\n');
        };
        line("STATIONWATCH EVIDENCE BUNDLE".into());
        line(String::new());
        line(format!("Request      {}", r.id));
        line(format!("Station      {}", r.station_id));
        line(format!(
            "Cameras      {}",
            r.cameras
                .iter()
                .map(CameraId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        line(format!(
            "Window       {} to {} (UTC)",
            rfc3339(r.from_ms),
            rfc3339(r.to_ms)
        ));
        line(format!(
            "Requested by {} at {}",
            r.requested_by,
            rfc3339(r.requested_at)
        ));
        line(format!("Reason       {}", r.reason));
        if let (Some(by), Some(at)) = (&r.decided_by, r.decided_at) {
            line(format!(
                "Approved by  {by} at {}{}",
                rfc3339(at),
                r.decision
                    .as_ref()
                    .filter(|d| !d.is_empty())
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(at) = r.ready_at {
            line(format!("Delivered    {} ({})", rfc3339(at), r.status));
        }
        line(format!("Bundle made  {}", rfc3339(self.created_at)));
        line(String::new());
        line("HISTORY".into());
        for t in &r.history {
            line(format!(
                "  {}  {:<16} by {}{}",
                rfc3339(t.at),
                t.status,
                t.by,
                if t.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", t.note)
                }
            ));
        }
        line(String::new());
        line("COVERAGE".into());
        for p in &self.parts {
            let recorded: i64 = spans(&p.segments)
                .iter()
                .map(|s| s.to_ms.min(r.to_ms) - s.from_ms.max(r.from_ms))
                .sum();
            let window = r.to_ms - r.from_ms;
            line(format!(
                "  {}: {} segment(s), {} bytes, {:.1} s recorded of {:.1} s ({:.1} %); manifest excerpt seq {}",
                p.camera,
                p.segments.len(),
                p.segments.iter().map(|e| e.size.unwrap_or(0)).sum::<u64>(),
                recorded.max(0) as f64 / 1000.0,
                window as f64 / 1000.0,
                100.0 * recorded.max(0) as f64 / window.max(1) as f64,
                match (p.lines.first(), p.lines.last()) {
                    (Some(a), Some(b)) => format!("{}..{}", a.0, b.0),
                    _ => "none (nothing archived)".into(),
                }
            ));
        }
        line(String::new());
        line("GAPS (time in the window the bundle holds no footage for, and why)".into());
        if r.gaps.is_empty() {
            line("  none".into());
        }
        for g in &r.gaps {
            line(format!(
                "  {} {} to {} ({:.1} s): {}",
                g.camera,
                rfc3339(g.from_ms),
                rfc3339(g.to_ms),
                (g.to_ms - g.from_ms) as f64 / 1000.0,
                g.reason
            ));
        }
        line(String::new());
        line("FILES (as recorded by the station; SHA-256 as signed in its manifest)".into());
        for p in &self.parts {
            for e in &p.segments {
                line(format!(
                    "  {}/{}  {} bytes  {}  seq {}  {} to {}",
                    p.camera,
                    e.file.as_deref().unwrap_or("?"),
                    e.size.unwrap_or(0),
                    e.sha256.as_deref().unwrap_or("?"),
                    e.seq,
                    e.start_ms.map(rfc3339).unwrap_or_default(),
                    e.end_ms.map(rfc3339).unwrap_or_default()
                ));
            }
        }
        line(String::new());
        line("HOW TO CHECK IT".into());
        line(format!("  The controller that issued this bundle has the public key\n    {}\n  (fingerprint {}). Obtain it from the election authority through another channel", self.controller_key, self.controller_fingerprint));
        line("  (do not trust the copy in bundle.json), then run, on any machine:".into());
        line(format!(
            "    stationwatch-verify --controller-key <that key> {}.tar",
            bundle_root(r)
        ));
        line("  The verifier has no GStreamer and no network; build it from the Stationwatch sources with".into());
        line("    cargo build --release -p stationwatch-verify   (binary: target/release/stationwatch-verify)".into());
        line("  or use `station-agent verify` on a station. Verdicts: OK, OK_WITH_GAPS (every missing moment".into());
        line("  explained by a signed gap), UNTRUSTED (no trusted key given), FAILED (altered, missing, cut short).".into());
        line("  keys.json and witness.json are the station's registered keys and the manifest heads the".into());
        line("  controller received (with RFC 3161 time-stamps where configured), both signed by the controller.".into());
        o
    }
}

/// Writes the segments (archived, in time order) of one camera as one fragmented MP4 to `out`,
/// each placed at its station time. Blocking; `rt` fetches the segments. A segment that cannot
/// be remuxed into this output (another resolution, damaged) is left out and logged; the MP4
/// goes on with the next.
pub fn write_mp4(
    archive: &Archive,
    rt: &tokio::runtime::Handle,
    station: &StationId,
    camera: &CameraId,
    segments: &[EntryRow],
    out: impl Write,
) -> Result<stationwatch_remux::Summary, MediaError> {
    let first = segments
        .iter()
        .filter_map(|e| e.start_ms)
        .min()
        .unwrap_or(0);
    let mut w = stationwatch_remux::Fmp4Writer::new(out);
    for e in segments {
        let (Some(file), Some(start)) = (&e.file, e.start_ms) else {
            continue;
        };
        let key = segment_key(station, camera, file);
        let path = object_path(&key).map_err(|e| MediaError::Archive(e.to_string()))?;
        let bytes = rt
            .block_on(async { archive.objects().get(&path).await?.bytes().await })
            .map_err(|e| MediaError::Archive(format!("{key}: {e}")))?;
        let at = std::time::Duration::from_millis((start - first).max(0) as u64);
        match w.push_segment_at(&bytes, at) {
            Ok(_) => {}
            Err(stationwatch_remux::RemuxError::Output(e)) => return Err(MediaError::Io(e)),
            Err(stationwatch_remux::RemuxError::OutputFailed) => {
                return Err(MediaError::Io(std::io::Error::other("output failed")))
            }
            Err(err) => {
                tracing::warn!(station = %station, camera = %camera, seq = e.seq, error = %err, "segment left out of the MP4");
            }
        }
    }
    w.finish().map_err(|e| match e {
        stationwatch_remux::RemuxError::Output(e) => MediaError::Io(e),
        other => MediaError::Archive(other.to_string()),
    })
}
