//! Cuts an MPEG-TS byte stream into HLS segments, each starting at a keyframe with the
//! stream's PAT and PMT in front, without demuxing or remuxing (the packets are copied as they
//! came). This is what lets one gateway repackage a hundred stations on two cores: a packet
//! costs a header check and a copy.
//!
//! Keyframes: a PES start on the video PID whose adaptation field has the random-access
//! indicator, or whose first bytes hold an H.264 IDR/SPS or H.265 IRAP/VPS NAL unit (some muxers
//! do not set the indicator). Durations come from the PES presentation time stamps (90 kHz,
//! 33-bit, wrap-around handled).

/// Bytes of one TS packet.
pub const PACKET: usize = 188;
const PTS_WRAP: i64 = 1 << 33;
/// A PTS jump larger than this (either way) is a discontinuity, not elapsed time.
const MAX_PTS_JUMP: i64 = 10 * 90_000;

/// A finished segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub data: Vec<u8>,
    /// Seconds, from the PTS of its first keyframe to the next segment's.
    pub duration: f64,
    /// The time stamps jumped before this segment: the player must treat it as a new timeline.
    pub discontinuity: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

pub struct Cutter {
    target: i64,
    /// Longest segment when keyframes are late (cut there anyway, marked discontinuous, so
    /// the playlist's target duration holds).
    longest: i64,
    pending: Vec<u8>,
    pat: Option<[u8; PACKET]>,
    pmt_pid: Option<u16>,
    pmt: Option<[u8; PACKET]>,
    video_pid: Option<u16>,
    pub codec: Option<Codec>,
    current: Vec<u8>,
    /// PTS of the current segment's first keyframe (None: waiting for the first keyframe).
    start_pts: Option<i64>,
    last_pts: Option<i64>,
    /// The next segment starts a new timeline (time stamps jumped, or frames were skipped).
    next_discontinuous: bool,
    /// Packets dropped before the first keyframe or because they were not TS.
    pub skipped_bytes: u64,
}

impl Cutter {
    pub fn new(target_seconds: f64) -> Cutter {
        let target = (target_seconds * 90_000.0) as i64;
        Cutter {
            target,
            longest: target * 4,
            pending: Vec::new(),
            pat: None,
            pmt_pid: None,
            pmt: None,
            video_pid: None,
            codec: None,
            current: Vec::new(),
            start_pts: None,
            last_pts: None,
            next_discontinuous: false,
            skipped_bytes: 0,
        }
    }

    /// Feeds bytes (any split); returns the segments finished by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Segment> {
        let mut out = Vec::new();
        self.pending.extend_from_slice(bytes);
        let mut i = 0;
        while self.pending.len() - i >= PACKET {
            if self.pending[i] != 0x47 {
                // Lost sync: skip to the next sync byte.
                i += 1;
                self.skipped_bytes += 1;
                continue;
            }
            let mut p = [0u8; PACKET];
            p.copy_from_slice(&self.pending[i..i + PACKET]);
            i += PACKET;
            if let Some(s) = self.packet(&p) {
                out.push(s);
            }
        }
        self.pending.drain(..i);
        out
    }

    fn packet(&mut self, p: &[u8; PACKET]) -> Option<Segment> {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let pusi = p[1] & 0x40 != 0;
        let afc = (p[3] >> 4) & 0x3;
        let (payload_at, rai) = match afc {
            1 => (4, false),
            2 => (PACKET, p[4] > 0 && p[5] & 0x40 != 0),
            3 => (5 + p[4] as usize, p[4] > 0 && p[5] & 0x40 != 0),
            _ => (PACKET, false),
        };
        let payload = if payload_at < PACKET {
            &p[payload_at..]
        } else {
            &[][..]
        };
        if pid == 0 && pusi {
            if let Some(pmt_pid) = parse_pat(payload) {
                self.pat = Some(*p);
                self.pmt_pid = Some(pmt_pid);
            }
        } else if Some(pid) == self.pmt_pid && pusi {
            if let Some((vpid, codec)) = parse_pmt(payload) {
                self.pmt = Some(*p);
                self.video_pid = Some(vpid);
                self.codec = Some(codec);
            }
        }
        let mut finished = None;
        if Some(pid) == self.video_pid && pusi {
            let key = rai || self.codec.is_some_and(|c| starts_with_keyframe(payload, c));
            if let Some(pts) = pes_pts(payload) {
                let previous = self.last_pts.replace(pts);
                let jump = previous
                    .is_some_and(|l| !(-MAX_PTS_JUMP..=MAX_PTS_JUMP).contains(&wrap_diff(pts, l)));
                match self.start_pts {
                    None if key => self.begin(pts),
                    None => {}
                    Some(start) => {
                        let elapsed = wrap_diff(pts, start);
                        if jump || (key && elapsed >= self.target) || elapsed >= self.longest {
                            // After a jump the segment lasted until the frame before it.
                            let ticks = if jump {
                                previous.map_or(0, |l| wrap_diff(l, start))
                            } else {
                                elapsed
                            };
                            let ticks = if ticks > 0 { ticks } else { self.target };
                            finished = Some(Segment {
                                data: std::mem::take(&mut self.current),
                                duration: ticks as f64 / 90_000.0,
                                discontinuity: std::mem::take(&mut self.next_discontinuous),
                            });
                            if key {
                                self.begin(pts);
                            } else {
                                // No keyframe yet: wait for one (the next segment would not
                                // decode); what is skipped meanwhile is a gap.
                                self.start_pts = None;
                            }
                            self.next_discontinuous = jump || !key;
                        }
                    }
                }
            }
        }
        if self.start_pts.is_some() {
            if !(self.current.is_empty() && (pid == 0 || Some(pid) == self.pmt_pid)) {
                self.current.extend_from_slice(p);
            }
        } else {
            self.skipped_bytes += PACKET as u64;
        }
        finished
    }

    fn begin(&mut self, pts: i64) {
        self.start_pts = Some(pts);
        self.current.clear();
        if let (Some(pat), Some(pmt)) = (self.pat, self.pmt) {
            self.current.extend_from_slice(&pat);
            self.current.extend_from_slice(&pmt);
        }
    }
}

/// `a - b` in 90 kHz ticks, across the 33-bit wrap.
fn wrap_diff(a: i64, b: i64) -> i64 {
    let d = (a - b).rem_euclid(PTS_WRAP);
    if d > PTS_WRAP / 2 {
        d - PTS_WRAP
    } else {
        d
    }
}

/// The PMT PID of the first program in a PAT section.
fn parse_pat(payload: &[u8]) -> Option<u16> {
    let pointer = *payload.first()? as usize;
    let sec = payload.get(1 + pointer..)?;
    if *sec.first()? != 0x00 {
        return None;
    }
    let len = ((usize::from(sec[1] & 0x0f) << 8) | usize::from(*sec.get(2)?)).min(sec.len() - 3);
    // Programs from byte 8 to the CRC.
    let mut i = 8;
    while i + 4 <= 3 + len - 4 {
        let program = u16::from_be_bytes([sec[i], sec[i + 1]]);
        let pid = (u16::from(sec[i + 2] & 0x1f) << 8) | u16::from(sec[i + 3]);
        if program != 0 {
            return Some(pid);
        }
        i += 4;
    }
    None
}

/// The first video elementary stream of a PMT section (H.264 0x1b or H.265 0x24).
fn parse_pmt(payload: &[u8]) -> Option<(u16, Codec)> {
    let pointer = *payload.first()? as usize;
    let sec = payload.get(1 + pointer..)?;
    if *sec.first()? != 0x02 || sec.len() < 12 {
        return None;
    }
    let len = ((usize::from(sec[1] & 0x0f) << 8) | usize::from(sec[2])).min(sec.len() - 3);
    let info_len = (usize::from(sec[10] & 0x0f) << 8) | usize::from(sec[11]);
    let mut i = 12 + info_len;
    let end = (3 + len).saturating_sub(4);
    while i + 5 <= end {
        let stream_type = sec[i];
        let pid = (u16::from(sec[i + 1] & 0x1f) << 8) | u16::from(sec[i + 2]);
        let es_len = (usize::from(sec[i + 3] & 0x0f) << 8) | usize::from(sec[i + 4]);
        match stream_type {
            0x1b => return Some((pid, Codec::H264)),
            0x24 => return Some((pid, Codec::H265)),
            _ => {}
        }
        i += 5 + es_len;
    }
    None
}

/// The PTS of a PES packet starting in this payload.
fn pes_pts(p: &[u8]) -> Option<i64> {
    if p.len() < 14 || p[0..3] != [0, 0, 1] || p[7] & 0x80 == 0 {
        return None;
    }
    let b = &p[9..14];
    Some(
        (i64::from(b[0] & 0x0e) << 29)
            | (i64::from(b[1]) << 22)
            | (i64::from(b[2] & 0xfe) << 14)
            | (i64::from(b[3]) << 7)
            | (i64::from(b[4]) >> 1),
    )
}

/// Whether the access unit starting in this PES payload holds a keyframe's parameter sets or
/// IDR slice (looked for in the bytes of this first packet only).
fn starts_with_keyframe(p: &[u8], codec: Codec) -> bool {
    if p.len() < 9 || p[0..3] != [0, 0, 1] {
        return false;
    }
    let es = match p.get(9 + p[8] as usize..) {
        Some(es) => es,
        None => return false,
    };
    let mut i = 0;
    while i + 3 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 {
            let h = es[i + 3];
            let key = match codec {
                Codec::H264 => matches!(h & 0x1f, 5 | 7),
                Codec::H265 => matches!((h >> 1) & 0x3f, 16..=21 | 32),
            };
            if key {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PAT packet naming PMT PID 0x1000.
    fn pat() -> [u8; PACKET] {
        let mut p = [0xffu8; PACKET];
        p[..4].copy_from_slice(&[0x47, 0x40, 0x00, 0x10]);
        let sec = [
            0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0, 0, 0,
            0,
        ];
        p[4..4 + sec.len()].copy_from_slice(&sec);
        p
    }

    /// A PMT packet on 0x1000 with one stream of `stream_type` on PID 0x100.
    fn pmt(stream_type: u8) -> [u8; PACKET] {
        let mut p = [0xffu8; PACKET];
        p[..4].copy_from_slice(&[0x47, 0x50, 0x00, 0x10]);
        let sec = [
            0x00,
            0x02,
            0xb0,
            0x12,
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00,
            0xe1,
            0x00,
            0xf0,
            0x00,
            stream_type,
            0xe1,
            0x00,
            0xf0,
            0x00,
            0,
            0,
            0,
            0,
        ];
        p[4..4 + sec.len()].copy_from_slice(&sec);
        p
    }

    fn pts_bytes(pts: i64) -> [u8; 5] {
        [
            0x21 | ((pts >> 29) as u8 & 0x0e),
            (pts >> 22) as u8,
            ((pts >> 14) as u8 & 0xfe) | 1,
            (pts >> 7) as u8,
            ((pts << 1) as u8) | 1,
        ]
    }

    /// A video PES start on PID 0x100 at `pts` whose first NAL unit has type `nal`.
    fn video(pts: i64, nal: u8, rai: bool) -> [u8; PACKET] {
        let mut p = [0u8; PACKET];
        p[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x30]);
        // Adaptation field of 1 byte of flags (+ nothing).
        p[4] = 1;
        p[5] = if rai { 0x40 } else { 0 };
        let pes = &mut p[6..];
        pes[..9].copy_from_slice(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5]);
        pes[9..14].copy_from_slice(&pts_bytes(pts));
        pes[14..19].copy_from_slice(&[0, 0, 0, 1, nal]);
        p
    }

    /// A continuation packet on the video PID.
    fn more() -> [u8; PACKET] {
        let mut p = [0u8; PACKET];
        p[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10]);
        p
    }

    fn stream(frames: usize, fps: i64, gop: usize, start: i64) -> Vec<u8> {
        let mut v = Vec::new();
        for f in 0..frames {
            if f % gop == 0 {
                v.extend_from_slice(&pat());
                v.extend_from_slice(&pmt(0x1b));
            }
            let pts = (start + f as i64 * 90_000 / fps).rem_euclid(PTS_WRAP);
            v.extend_from_slice(&video(pts, if f % gop == 0 { 0x65 } else { 0x41 }, false));
            v.extend_from_slice(&more());
        }
        v
    }

    #[test]
    fn cuts_at_keyframes_after_the_target_with_pat_and_pmt_first() {
        let mut c = Cutter::new(2.0);
        // 15 fps, a keyframe every 15 frames (1 s), 10 s.
        let segs = c.push(&stream(150, 15, 15, 0));
        // Cuts at 2, 4, 6, 8 s (the last segment is still open).
        assert_eq!(
            segs.len(),
            4,
            "{:?}",
            segs.iter().map(|s| s.duration).collect::<Vec<_>>()
        );
        for s in &segs {
            assert!((s.duration - 2.0).abs() < 1e-9, "{}", s.duration);
            assert_eq!(s.data.len() % PACKET, 0);
            assert_eq!(&s.data[..PACKET], &pat()[..]);
            assert_eq!(&s.data[PACKET..2 * PACKET], &pmt(0x1b)[..]);
            // The third packet is the keyframe's PES start.
            let third = &s.data[2 * PACKET..3 * PACKET];
            assert!(starts_with_keyframe(&third[6..], Codec::H264));
        }
        assert_eq!(c.codec, Some(Codec::H264));
    }

    #[test]
    fn any_split_of_the_bytes_gives_the_same_segments() {
        let bytes = stream(90, 15, 15, 1000);
        let whole = Cutter::new(2.0).push(&bytes);
        let mut c = Cutter::new(2.0);
        let mut pieces = Vec::new();
        for chunk in bytes.chunks(1316 - 77) {
            pieces.extend(c.push(chunk));
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn waits_for_the_first_keyframe_and_resyncs_after_garbage() {
        let mut c = Cutter::new(1.0);
        let mut bytes = vec![0x00, 0x47, 0x12]; // garbage
                                                // Starts mid-GOP: 7 delta frames first.
        let s = stream(60, 15, 15, 0);
        bytes.extend_from_slice(&s[(2 + 8 * 2) * PACKET..]);
        let segs = c.push(&bytes);
        assert!(!segs.is_empty());
        assert!(c.skipped_bytes >= 3);
        assert!(starts_with_keyframe(
            &segs[0].data[2 * PACKET + 6..3 * PACKET],
            Codec::H264
        ));
    }

    #[test]
    fn pts_wrap_around_is_elapsed_time() {
        let mut c = Cutter::new(2.0);
        // Starts 3 s before the 33-bit wrap.
        let segs = c.push(&stream(150, 15, 15, PTS_WRAP - 3 * 90_000));
        assert_eq!(segs.len(), 4);
        assert!(segs
            .iter()
            .all(|s| (s.duration - 2.0).abs() < 1e-9 && !s.discontinuity));
    }

    #[test]
    fn a_jump_in_time_stamps_is_a_discontinuity() {
        let mut c = Cutter::new(2.0);
        let mut bytes = stream(45, 15, 15, 0);
        bytes.extend(stream(45, 15, 15, 500 * 90_000));
        bytes.extend(stream(45, 15, 15, 500 * 90_000 + 45 * 6000));
        let segs = c.push(&bytes);
        let d: Vec<_> = segs.iter().map(|s| (s.duration, s.discontinuity)).collect();
        assert!(
            segs.iter().all(|s| s.duration > 0.0 && s.duration <= 4.0),
            "{d:?}"
        );
        // The segment cut by the jump (from 2 s) lasted to its last frame (at 44/15 s).
        assert!((d[1].0 - (44.0 / 15.0 - 2.0)).abs() < 1e-6, "{d:?}");
        assert!(
            d[2].1,
            "the first segment after the jump starts a new timeline: {d:?}"
        );
        assert_eq!(d.iter().filter(|(_, disc)| *disc).count(), 1, "{d:?}");
    }

    #[test]
    fn h265_keyframes_and_the_random_access_indicator() {
        let mut c = Cutter::new(1.0);
        let mut v = Vec::new();
        v.extend_from_slice(&pat());
        v.extend_from_slice(&pmt(0x24));
        for f in 0..60i64 {
            // H.265 IDR_W_RADL = 19 -> header byte 19 << 1; others TRAIL_R = 1.
            let nal = if f % 15 == 0 { 19 << 1 } else { 1 << 1 };
            v.extend_from_slice(&video(f * 6000, nal, false));
        }
        assert_eq!(c.push(&v).len(), 3);
        assert_eq!(c.codec, Some(Codec::H265));
        // A muxer that only sets the indicator (no parameter sets in the first packet).
        let mut c = Cutter::new(1.0);
        let mut v = Vec::new();
        v.extend_from_slice(&pat());
        v.extend_from_slice(&pmt(0x1b));
        for f in 0..60i64 {
            v.extend_from_slice(&video(f * 6000, 0x41, f % 15 == 0));
        }
        assert_eq!(c.push(&v).len(), 3);
    }

    #[test]
    fn hostile_bytes_do_not_panic() {
        let mut c = Cutter::new(1.0);
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut p = [0u8; PACKET];
            for b in p.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *b = seed as u8;
            }
            p[0] = 0x47;
            // Now and then a PAT/PMT/video PID so the parsers see garbage sections.
            if seed.is_multiple_of(3) {
                p[1] &= 0xe0;
                p[2] = 0;
            }
            c.push(&p);
        }
        c.push(&pat());
        for pid_hi in [0x50u8, 0x41] {
            let mut p = [0xffu8; PACKET];
            p[..5].copy_from_slice(&[0x47, pid_hi, 0x00, 0x10, 0xb7]);
            c.push(&p);
        }
    }
}
