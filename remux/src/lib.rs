//! MPEG-TS segments (H.264 or H.265, as the stations' `mpegtsmux` writes them) to **one
//! fragmented MP4**, remuxed without re-encoding and written progressively to any
//! [`std::io::Write`] (no `Seek`: the output can be streamed over HTTP while it is produced).
//! No GStreamer, no FFmpeg.
//!
//! Output: `ftyp` + `moov` (one video track, `avc1`/`avcC` or `hvc1`/`hvcC` built from the first
//! segment's in-band SPS/PPS(/VPS), `mvex`/`trex`), then one `moof` + `mdat` per input segment.
//! Samples are length-prefixed (AVCC/HVCC); parameter sets and access unit delimiters are taken
//! out of the samples (they are in the sample entry). The media timescale is 90 kHz, so PTS/DTS
//! are copied exactly: sample durations from consecutive DTS, composition offsets from PTS − DTS
//! (B-frames), sync samples from IDR (H.264) / IRAP (H.265) slices. An edit list makes the first
//! presented frame start at zero when B-frames delay it.
//!
//! Timeline: real time is kept. Each fragment's `tfdt` is the segment's start relative to the
//! first segment's: a gap between segments is a jump in the MP4 timeline, never compressed.
//! * [`Fmp4Writer::push_segment`] takes the start from the TS clock (33-bit PTS/DTS, wrap-around
//!   handled). This is right while one recording run's clock goes on. A clock that goes
//!   backwards, or jumps forward by more than [`Options::max_gap`] (a recorder restart resets the
//!   clock), cannot tell the real gap: the segment is then placed right after the previous one
//!   and [`Placement::clamped`] says so.
//! * [`Fmp4Writer::push_segment_at`] takes the segment's wall-clock start (e.g. the UTC start in
//!   its file name, as a `Duration` since any fixed epoch): exact across recorder restarts. The
//!   first segment pushed with a start anchors the wall clock to the output timeline.
//!
//! ```no_run
//! use std::time::Duration;
//! use stationwatch_remux::Fmp4Writer;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any io::Write: a file, a pipe, an HTTP response body.
//! let mut mp4 = Fmp4Writer::new(std::io::stdout().lock());
//! for (path, utc_start_s) in [("20261121T100000.000Z.ts", 1_795_255_200), ("20261121T100200.000Z.ts", 1_795_255_320)] {
//!     let info = mp4.push_segment_at(&std::fs::read(path)?, Duration::from_secs(utc_start_s))?;
//!     eprintln!("{path}: {} frames, {:?}", info.frames, info.placement);
//! }
//! let summary = mp4.finish()?;
//! eprintln!("{} frames, {:?}", summary.samples, summary.duration);
//! # Ok(()) }
//! ```
//!
//! Limitations:
//! * One output = one codec configuration. A segment whose SPS/PPS/VPS differ from the first
//!   segment's (resolution or encoder settings changed) is refused with
//!   [`RemuxError::ConfigChanged`] naming it, before anything of it is written: the output so far
//!   stays a valid file, and the caller can end it and start a new one with that segment.
//!   Likewise a segment whose parameter sets change inside it is refused.
//! * Only the first H.264/H.265 stream of the first program is used; other streams (audio, data)
//!   are skipped.
//! * One PES packet with a PTS = one access unit (how `mpegtsmux` writes video); a PES packet
//!   without PTS continues the previous access unit.
//! * The last frame of a segment gets the segment's typical frame duration (its successor is not
//!   known when the fragment is written). Frames before the first keyframe of the output are
//!   dropped (they cannot be decoded); access units hit by a TS continuity error are dropped.
//! * A TS file cut in the middle of a packet is an error ([`TsError::Truncated`]); a file cut at a
//!   packet boundary is remuxed, and its last frame may then be incomplete.
//! * The `moov` carries no total duration (unknown while streaming); players take it from the
//!   fragments.

mod demux;
mod mp4;
mod nal;

use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

use demux::{wrap_delta, Demuxer, Segment};
use mp4::{TrunSample, TIMESCALE};
use nal::VideoConfig;

/// Video codec of a segment / of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    H265,
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::H264 => "H.264",
            Codec::H265 => "H.265",
        })
    }
}

/// Why one TS segment cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    #[error("input is empty")]
    Empty,
    #[error("not an MPEG-TS stream: byte {offset} is 0x{found:02x} where a packet's sync byte 0x47 belongs")]
    BadSync { offset: u64, found: u8 },
    #[error("truncated: {trailing} bytes after the last whole 188-byte packet (packet {packets})")]
    Truncated { packets: u64, trailing: usize },
    #[error("no program association table (PAT) with a program")]
    MissingPat,
    #[error("no program map table (PMT) for the program in the PAT")]
    MissingPmt,
    #[error("no H.264 or H.265 video stream in the program (stream types: {0})")]
    NoVideoStream(String),
    #[error("the video stream has no complete frame with a timestamp")]
    NoFrames,
    #[error("no keyframe (IDR/IRAP) to start the output with")]
    NoKeyframe,
    #[error("no in-band {0} parameter sets (SPS/PPS, and VPS for H.265) to build the decoder configuration from")]
    MissingParameterSets(Codec),
    #[error("invalid parameter set: {0}")]
    InvalidSps(String),
    #[error("the parameter sets change inside the segment ({sps} different SPS, {vps} different VPS); not supported")]
    ParameterSetsChange { sps: usize, vps: usize },
}

/// Errors of the remuxer. Segment indexes count the segments pushed, from 0.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemuxError {
    #[error("segment {segment}: {source}")]
    Segment { segment: usize, source: TsError },
    #[error("segment {segment}: codec configuration differs from the first segment's ({detail}); one output holds one configuration: end this output and start a new one from this segment")]
    ConfigChanged { segment: usize, detail: String },
    #[error("segment {segment}: reading the input failed: {source}")]
    Input {
        segment: usize,
        source: std::io::Error,
    },
    #[error("writing the MP4 failed: {0}")]
    Output(#[source] std::io::Error),
    #[error("an earlier write of the MP4 failed; the output is incomplete")]
    OutputFailed,
    #[error("no segment was remuxed: the output is empty")]
    NoSegments,
}

/// Where a segment was put in the output timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Decode time of the segment's first frame in the output, in ms (its fragment's `tfdt`).
    pub start_ms: u64,
    /// Time between the end of the previous segment and this one's start (0: contiguous).
    pub gap_before_ms: u64,
    /// The segment's timestamps (or the start given) lay before the previous segment's end, or
    /// implausibly far after it (clock reset): it was placed right after the previous segment.
    pub clamped: bool,
}

/// What a segment holds (and, once pushed, where it went).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    /// Frames (access units) in the segment; once pushed, the frames written.
    pub frames: u64,
    pub keyframes: u64,
    /// Earliest PTS, in ms of the 90 kHz TS clock (its 33-bit value / 90).
    pub first_pts_ms: u64,
    /// Latest PTS, in ms, on the same clock followed across a 33-bit wrap (so it can exceed the
    /// 33-bit range; `last_pts_ms - first_pts_ms` is always the span).
    pub last_pts_ms: u64,
    /// Presentation span including the last frame's duration.
    pub duration_ms: u64,
    /// Frames lost to TS continuity errors (not written).
    pub damaged_frames: u64,
    /// Frames before the output's first keyframe (not written; first segment only).
    pub skipped_frames: u64,
    /// The `avcC`/`hvcC` record built from the segment's parameter sets (empty if it carries
    /// none). Segments with equal records can go into one output.
    pub decoder_config: Vec<u8>,
    /// Set by the writer: where the segment went. `None` from [`probe_ts`].
    pub placement: Option<Placement>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Segments written (refused ones not counted).
    pub segments: usize,
    pub samples: u64,
    pub keyframes: u64,
    /// Presentation duration of the output, gaps included.
    pub duration: Duration,
    /// Sum of the gaps between segments.
    pub gaps: Duration,
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    /// Bytes of MP4 written.
    pub bytes: u64,
}

/// Tuning of [`Fmp4Writer`].
#[derive(Debug, Clone)]
pub struct Options {
    /// A forward jump of the TS clock larger than this (between or inside segments) is taken
    /// as a clock reset, not as a real gap. Default: 1 hour (a station's recorder restarts its
    /// pipeline long before an hour without video).
    pub max_gap: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_gap: Duration::from_secs(3600),
        }
    }
}

/// Frame duration assumed when a segment has a single frame and nothing else is known (30 fps).
const FALLBACK_FRAME: u32 = TIMESCALE / 30;

fn ticks(d: Duration) -> i128 {
    d.as_nanos() as i128 * TIMESCALE as i128 / 1_000_000_000
}

fn ms(ticks: i128) -> u64 {
    u64::try_from(ticks.max(0) / 90).unwrap_or(u64::MAX)
}

struct Timeline {
    /// Output decode time where the last fragment ends.
    end: u64,
    /// Latest end of a frame's presentation (composition time + duration), before the edit.
    presentation_end: u64,
    last_dts_raw: u64,
    /// Output decode time of the last sample written.
    last_dts_out: u64,
    frame_duration: u32,
    /// Wall-clock ticks minus output ticks, once a segment came with a start.
    epoch: Option<i128>,
    edit_shift: u32,
}

/// Streams TS segments, in order, into one fragmented MP4.
pub struct Fmp4Writer<W: Write> {
    out: W,
    opts: Options,
    config: Option<VideoConfig>,
    timeline: Option<Timeline>,
    pushed: usize,
    written: usize,
    samples: u64,
    keyframes: u64,
    gaps: u64,
    bytes: u64,
    failed: bool,
}

impl<W: Write> Fmp4Writer<W> {
    pub fn new(out: W) -> Self {
        Self::with_options(out, Options::default())
    }

    pub fn with_options(out: W, opts: Options) -> Self {
        Fmp4Writer {
            out,
            opts,
            config: None,
            timeline: None,
            pushed: 0,
            written: 0,
            samples: 0,
            keyframes: 0,
            gaps: 0,
            bytes: 0,
            failed: false,
        }
    }

    /// Appends one TS segment (the whole file's bytes), placed by its TS timestamps. The first
    /// segment written also writes `ftyp` + `moov`. On error nothing of the segment is written
    /// and the writer can go on with the next one (unless writing the output failed).
    pub fn push_segment(&mut self, ts: &[u8]) -> Result<SegmentInfo, RemuxError> {
        let seg = demux::demux(ts);
        self.push_parsed(seg, None)
    }

    /// As [`push_segment`](Self::push_segment), placed by the segment's wall-clock `start` (its
    /// first frame's time since any fixed epoch, the same for all segments).
    pub fn push_segment_at(
        &mut self,
        ts: &[u8],
        start: Duration,
    ) -> Result<SegmentInfo, RemuxError> {
        let seg = demux::demux(ts);
        self.push_parsed(seg, Some(start))
    }

    /// As [`push_segment`](Self::push_segment) / [`push_segment_at`](Self::push_segment_at),
    /// reading the segment from `input` (only the output fragment is held in memory).
    pub fn push_segment_reader<R: Read>(
        &mut self,
        mut input: R,
        start: Option<Duration>,
    ) -> Result<SegmentInfo, RemuxError> {
        let mut demuxer = Demuxer::new();
        let mut buf = vec![0u8; 188 * 512];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = demuxer.feed(&buf[..n]) {
                        return self.push_parsed(Err(e), start);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let segment = self.pushed;
                    self.pushed += 1;
                    return Err(RemuxError::Input { segment, source });
                }
            }
        }
        self.push_parsed(demuxer.finish(), start)
    }

    /// Flushes the output and says what was written. Fails if no segment was written.
    pub fn finish(mut self) -> Result<Summary, RemuxError> {
        if self.failed {
            return Err(RemuxError::OutputFailed);
        }
        let (Some(config), Some(timeline)) = (&self.config, &self.timeline) else {
            return Err(RemuxError::NoSegments);
        };
        let duration_ticks = timeline
            .presentation_end
            .saturating_sub(timeline.edit_shift as u64);
        let summary = Summary {
            segments: self.written,
            samples: self.samples,
            keyframes: self.keyframes,
            duration: Duration::from_nanos(
                (duration_ticks as u128 * 1_000_000_000 / TIMESCALE as u128) as u64,
            ),
            gaps: Duration::from_nanos(
                (self.gaps as u128 * 1_000_000_000 / TIMESCALE as u128) as u64,
            ),
            codec: config.codec,
            width: config.width,
            height: config.height,
            bytes: self.bytes,
        };
        self.out.flush().map_err(RemuxError::Output)?;
        Ok(summary)
    }

    fn write(&mut self, data: &[u8]) -> Result<(), RemuxError> {
        if let Err(e) = self.out.write_all(data) {
            self.failed = true;
            return Err(RemuxError::Output(e));
        }
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn push_parsed(
        &mut self,
        seg: Result<Segment, TsError>,
        start: Option<Duration>,
    ) -> Result<SegmentInfo, RemuxError> {
        let segment = self.pushed;
        self.pushed += 1;
        if self.failed {
            return Err(RemuxError::OutputFailed);
        }
        let seg_err = |source| RemuxError::Segment { segment, source };
        let seg = seg.map_err(seg_err)?;
        let seg_config = if seg.params.is_empty() {
            None
        } else {
            Some(nal::video_config(seg.codec, &seg.params).map_err(seg_err)?)
        };
        let first = self.config.is_none();
        let config = match (&self.config, seg_config) {
            (Some(cur), new) => {
                let detail = match &new {
                    _ if cur.codec != seg.codec => Some(format!("{} → {}", cur.codec, seg.codec)),
                    Some(n) if (n.width, n.height) != (cur.width, cur.height) => Some(format!(
                        "resolution {}x{} → {}x{}",
                        cur.width, cur.height, n.width, n.height
                    )),
                    Some(n) if n.record != cur.record => {
                        Some("same codec and size, different SPS/PPS".into())
                    }
                    _ => None,
                };
                if let Some(detail) = detail {
                    return Err(RemuxError::ConfigChanged { segment, detail });
                }
                cur.clone()
            }
            (None, Some(new)) => new,
            (None, None) => return Err(seg_err(TsError::MissingParameterSets(seg.codec))),
        };

        let skip = if first {
            seg.samples
                .iter()
                .position(|s| s.sync)
                .ok_or(seg_err(TsError::NoKeyframe))?
        } else {
            0
        };
        let samples = &seg.samples[skip..];

        // Durations from consecutive DTS; a step back or a jump beyond max_gap is a clock reset,
        // given the typical frame duration.
        let max_gap = ticks(self.opts.max_gap).clamp(1, u32::MAX as i128) as i64;
        let mut steps: Vec<i64> = samples
            .windows(2)
            .map(|w| w[1].dts - w[0].dts)
            .filter(|&d| d > 0 && d <= max_gap)
            .collect();
        let typical = if steps.is_empty() {
            self.timeline
                .as_ref()
                .map_or(FALLBACK_FRAME, |t| t.frame_duration)
        } else {
            let mid = steps.len() / 2;
            *steps.select_nth_unstable(mid).1 as u32
        };
        let mut trun: Vec<TrunSample> = Vec::with_capacity(samples.len());
        for (i, s) in samples.iter().enumerate() {
            let duration = match samples.get(i + 1) {
                Some(next) if next.dts - s.dts > 0 && next.dts - s.dts <= max_gap => {
                    (next.dts - s.dts) as u32
                }
                _ => typical,
            };
            trun.push(TrunSample {
                duration,
                size: s.size as u32,
                sync: s.sync,
                composition_offset: (s.pts - s.dts).clamp(0, u32::MAX as i64) as u32,
            });
        }
        let total: u64 = trun.iter().map(|t| t.duration as u64).sum();

        // Placement.
        let wall = start.map(ticks);
        let (tfdt, clamped) = match &self.timeline {
            None => (0u64, false),
            Some(t) => {
                let candidate = match (wall, t.epoch) {
                    (Some(w), Some(epoch)) => Some(w - epoch),
                    _ => {
                        let d = wrap_delta(samples[0].dts_raw, t.last_dts_raw);
                        (d > 0 && d <= max_gap).then(|| t.last_dts_out as i128 + d as i128)
                    }
                };
                match candidate {
                    Some(c) if c >= t.end as i128 => (c as u64, false),
                    // Within a frame of the end: the previous last frame's estimated duration.
                    Some(c) if c + typical as i128 >= t.end as i128 => (t.end, false),
                    _ => (t.end, true),
                }
            }
        };
        let gap = self.timeline.as_ref().map_or(0, |t| tfdt - t.end);
        let epoch = match (self.timeline.as_ref().and_then(|t| t.epoch), wall) {
            (Some(e), _) => Some(e),
            (None, Some(w)) => Some(w - tfdt as i128),
            (None, None) => None,
        };
        let edit_shift = match &self.timeline {
            Some(t) => t.edit_shift,
            None => {
                // Earliest composition time of the first fragment.
                let mut decode = 0u64;
                let mut earliest = u64::MAX;
                for t in &trun {
                    earliest = earliest.min(decode + t.composition_offset as u64);
                    decode += t.duration as u64;
                }
                earliest.min(u32::MAX as u64) as u32
            }
        };

        let data = &seg.data[samples[0].offset..];
        let mut out = Vec::new();
        if first {
            out = mp4::init_segment(&config, edit_shift);
        }
        let sequence = self.written as u32 + 1;
        out.extend(mp4::fragment_header(
            sequence,
            tfdt,
            &trun,
            data.len() as u64,
        ));
        self.write(&out)?;
        self.write(data)?;

        let keyframes = samples.iter().filter(|s| s.sync).count() as u64;
        let mut decode = tfdt;
        let mut presentation_end = self.timeline.as_ref().map_or(0, |t| t.presentation_end);
        for t in &trun {
            presentation_end =
                presentation_end.max(decode + t.composition_offset as u64 + t.duration as u64);
            decode += t.duration as u64;
        }
        let last_duration = trun.last().map_or(typical, |t| t.duration) as u64;
        self.timeline = Some(Timeline {
            end: tfdt + total,
            presentation_end,
            last_dts_raw: samples[samples.len() - 1].dts_raw,
            last_dts_out: tfdt + total - last_duration,
            frame_duration: typical,
            epoch,
            edit_shift,
        });
        self.written += 1;
        self.samples += samples.len() as u64;
        self.keyframes += keyframes;
        self.gaps += gap;
        if first {
            self.config = Some(config.clone());
        }
        let mut info = info(&seg, samples, &config, typical, skip as u64);
        info.placement = Some(Placement {
            start_ms: ms(tfdt as i128),
            gap_before_ms: ms(gap as i128),
            clamped,
        });
        Ok(info)
    }
}

fn info(
    seg: &Segment,
    samples: &[demux::Sample],
    config: &VideoConfig,
    typical: u32,
    skipped: u64,
) -> SegmentInfo {
    let first = samples.iter().map(|s| s.pts).min().unwrap_or(0);
    let last = samples.iter().map(|s| s.pts).max().unwrap_or(0);
    SegmentInfo {
        codec: seg.codec,
        width: config.width,
        height: config.height,
        frames: samples.len() as u64,
        keyframes: samples.iter().filter(|s| s.sync).count() as u64,
        first_pts_ms: ms(first as i128),
        last_pts_ms: ms(last as i128),
        duration_ms: ms((last - first) as i128 + typical as i128),
        damaged_frames: seg.damaged,
        skipped_frames: skipped,
        decoder_config: if seg.params.is_empty() {
            Vec::new()
        } else {
            config.record.clone()
        },
        placement: None,
    }
}

/// Reads one TS segment and says what it holds (codec, size, frames, PTS range), without
/// writing anything. Errors are reported as segment 0.
pub fn probe_ts(ts: &[u8]) -> Result<SegmentInfo, RemuxError> {
    let seg_err = |source| RemuxError::Segment { segment: 0, source };
    let seg = demux::demux(ts).map_err(seg_err)?;
    let config = nal::video_config(seg.codec, &seg.params).map_err(seg_err)?;
    let mut steps: Vec<i64> = seg
        .samples
        .windows(2)
        .map(|w| w[1].dts - w[0].dts)
        .filter(|&d| d > 0 && d <= ticks(Options::default().max_gap) as i64)
        .collect();
    let typical = if steps.is_empty() {
        FALLBACK_FRAME
    } else {
        let mid = steps.len() / 2;
        *steps.select_nth_unstable(mid).1 as u32
    };
    Ok(info(&seg, &seg.samples, &config, typical, 0))
}

/// Remuxes `segments`, in order, into one fragmented MP4 written to `out`, each placed by its
/// TS timestamps (see [`Fmp4Writer`]; use it directly to place segments by wall clock, or to go
/// on after a refused segment).
pub fn ts_to_fmp4<I, S, W>(segments: I, out: W) -> Result<Summary, RemuxError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
    W: Write,
{
    let mut writer = Fmp4Writer::new(out);
    for seg in segments {
        writer.push_segment(seg.as_ref())?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_output_is_an_error() {
        let mut out = Vec::new();
        assert!(matches!(
            ts_to_fmp4(Vec::<Vec<u8>>::new(), &mut out),
            Err(RemuxError::NoSegments)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn garbage_segments_are_refused_and_nothing_is_written() {
        let mut out = Vec::new();
        let mut w = Fmp4Writer::new(&mut out);
        let err = w
            .push_segment(b"hello, not a transport stream")
            .unwrap_err();
        assert!(
            matches!(
                err,
                RemuxError::Segment {
                    segment: 0,
                    source: TsError::Truncated { .. }
                }
            ),
            "{err}"
        );
        let mut junk = vec![0x47u8; 188 * 4];
        junk[188 * 2] = 0x48;
        let err = w.push_segment(&junk).unwrap_err();
        assert_eq!(
            err.to_string(),
            "segment 1: not an MPEG-TS stream: byte 376 is 0x48 where a packet's sync byte 0x47 belongs"
        );
        let err = w
            .push_segment_reader(&[0x47u8; 188 * 3][..], None)
            .unwrap_err();
        assert!(
            matches!(err, RemuxError::Segment { segment: 2, .. }),
            "{err}"
        );
        assert!(matches!(w.finish(), Err(RemuxError::NoSegments)));
        assert!(out.is_empty());
        assert!(probe_ts(&[]).is_err());
    }
}
