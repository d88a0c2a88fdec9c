//! A small MPEG-TS muxer for one H.264 or H.265 video stream (the RTSP pass-through path,
//! `camera/rtsp.rs`). Pure: access units in, 188-byte packets out, no I/O, no GStreamer.
//!
//! * Every keyframe is preceded by a PAT and a PMT, so a segment that starts at a keyframe
//!   is readable on its own (the caller puts the parameter sets in front of each keyframe's
//!   NAL units, as `h264parse config-interval=-1` does on the GStreamer path).
//! * One PES per access unit, with its PTS (no DTS: the RTP timestamp is a presentation time
//!   and the decode order is the order of arrival; cameras record without B-frames).
//! * The PCR rides in the adaptation field of each access unit's first packet, one second
//!   behind the PTS (so PTS ≥ PCR always holds, as `mpegtsmux` does with its 1 s base); a
//!   keyframe's first packet also carries the random-access indicator.
//! * Continuity counters per PID; the last packet of a PES is padded with adaptation-field
//!   stuffing.

/// Size of an MPEG-TS packet.
pub const TS_PACKET: usize = 188;

const PAT_PID: u16 = 0;
const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;
const PROGRAM: u16 = 1;
/// PTS = media time + this, PCR = media time (90 kHz ticks): one second of decoder delay.
const PTS_OFFSET: u64 = 90_000;
const PTS_MASK: u64 = (1 << 33) - 1;

/// The video codec of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

impl VideoCodec {
    fn stream_type(self) -> u8 {
        match self {
            VideoCodec::H264 => 0x1b,
            VideoCodec::H265 => 0x24,
        }
    }
}

/// Muxer state of one stream: continuity counters and the last PCR.
#[derive(Debug)]
pub struct TsMuxer {
    codec: VideoCodec,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    last_pcr: Option<u64>,
}

impl TsMuxer {
    pub fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            last_pcr: None,
        }
    }

    /// Appends one access unit (Annex-B NAL units, parameter sets included in front of a
    /// keyframe) presented at `pts_90k` (90 kHz ticks of media time, any origin; taken modulo
    /// 2^33 as the TS clock is) to `out`: PAT + PMT first if `key`, then the PES packets.
    pub fn write_access_unit(&mut self, out: &mut Vec<u8>, au: &[u8], pts_90k: u64, key: bool) {
        if key {
            self.write_psi(out);
        }
        let pts = (pts_90k.wrapping_add(PTS_OFFSET)) & PTS_MASK;
        // The PCR never goes backwards, even if presentation times do (reordered frames).
        let pcr = match self.last_pcr {
            Some(last) if pts_90k < last && last - pts_90k < PTS_OFFSET * 10 => last,
            _ => pts_90k,
        };
        self.last_pcr = Some(pcr);

        // PES header: start code, stream id 0xE0, length 0 (unbounded, allowed for video),
        // '10' marker + data_alignment_indicator, PTS only, 5 header bytes.
        let mut header = [0u8; 14];
        header[..6].copy_from_slice(&[0, 0, 1, 0xe0, 0, 0]);
        header[6] = 0x84;
        header[7] = 0x80;
        header[8] = 5;
        header[9] = 0x21 | (((pts >> 30) & 0x07) as u8) << 1;
        header[10] = (pts >> 22) as u8;
        header[11] = ((((pts >> 15) & 0x7f) as u8) << 1) | 1;
        header[12] = (pts >> 7) as u8;
        header[13] = (((pts & 0x7f) as u8) << 1) | 1;

        let total = header.len() + au.len();
        let mut written = 0usize; // bytes of header + access unit already packed
        while written < total {
            let first = written == 0;
            let start = out.len();
            out.resize(start + TS_PACKET, 0xff);
            let pkt = &mut out[start..];
            pkt[0] = 0x47;
            pkt[1] = if first { 0x40 } else { 0 } | ((VIDEO_PID >> 8) as u8 & 0x1f);
            pkt[2] = VIDEO_PID as u8;
            let cc = self.cc_video;
            self.cc_video = (cc + 1) & 0x0f;
            // Adaptation field after its length byte: flags (+ PCR on the first packet).
            let mut af = [0u8; 7];
            let mut af_content = 0usize;
            if first {
                af[0] = 0x10 | if key { 0x40 } else { 0 }; // PCR flag, random access
                let base = pcr & PTS_MASK;
                af[1] = (base >> 25) as u8;
                af[2] = (base >> 17) as u8;
                af[3] = (base >> 9) as u8;
                af[4] = (base >> 1) as u8;
                af[5] = (((base & 1) as u8) << 7) | 0x7e; // reserved bits, extension 0
                af[6] = 0;
                af_content = 7;
            }
            let remaining = total - written;
            let room = if af_content > 0 {
                184 - 1 - af_content
            } else {
                184
            };
            let payload = remaining.min(room);
            let stuffing = room - payload;
            let pos = if af_content > 0 {
                // Stuffing (0xff, already there) follows the adaptation field's content.
                pkt[3] = 0x30 | cc;
                pkt[4] = (af_content + stuffing) as u8;
                pkt[5..5 + af_content].copy_from_slice(&af[..af_content]);
                5 + af_content + stuffing
            } else if stuffing == 0 {
                pkt[3] = 0x10 | cc;
                4
            } else if stuffing == 1 {
                // An adaptation field of length 0: just its length byte.
                pkt[3] = 0x30 | cc;
                pkt[4] = 0;
                5
            } else {
                // Length byte, a flags byte of 0, then stuffing.
                pkt[3] = 0x30 | cc;
                pkt[4] = (stuffing - 1) as u8;
                pkt[5] = 0;
                4 + stuffing
            };
            debug_assert_eq!(pos + payload, TS_PACKET);
            let end = written + payload;
            let mut dst = pos;
            let mut from = written;
            if from < header.len() {
                let n = header.len().min(end) - from;
                pkt[dst..dst + n].copy_from_slice(&header[from..from + n]);
                dst += n;
                from += n;
            }
            if from < end {
                pkt[dst..dst + (end - from)]
                    .copy_from_slice(&au[from - header.len()..end - header.len()]);
            }
            written = end;
        }
    }

    /// PAT and PMT, one packet each.
    fn write_psi(&mut self, out: &mut Vec<u8>) {
        // PAT: program 1 → PMT PID.
        let pat = [
            0x00, // table id
            0xb0,
            13, // section syntax, length
            0x00,
            0x01, // transport stream id
            0xc1, // version 0, current
            0x00,
            0x00, // section numbers
            (PROGRAM >> 8) as u8,
            PROGRAM as u8,
            0xe0 | (PMT_PID >> 8) as u8,
            PMT_PID as u8,
        ];
        let cc = self.cc_pat;
        self.cc_pat = (cc + 1) & 0x0f;
        psi_packet(out, PAT_PID, cc, &pat);
        // PMT: one video stream, PCR on it.
        let pmt = [
            0x02,
            0xb0,
            18,
            (PROGRAM >> 8) as u8,
            PROGRAM as u8,
            0xc1,
            0x00,
            0x00,
            0xe0 | (VIDEO_PID >> 8) as u8,
            VIDEO_PID as u8, // PCR PID
            0xf0,
            0x00, // program info length
            self.codec.stream_type(),
            0xe0 | (VIDEO_PID >> 8) as u8,
            VIDEO_PID as u8,
            0xf0,
            0x00, // ES info length
        ];
        let cc = self.cc_pmt;
        self.cc_pmt = (cc + 1) & 0x0f;
        psi_packet(out, PMT_PID, cc, &pmt);
    }
}

/// One PSI section (without CRC; it is appended) in one packet, pointer field 0, 0xff padding.
fn psi_packet(out: &mut Vec<u8>, pid: u16, cc: u8, section: &[u8]) {
    let start = out.len();
    out.resize(start + TS_PACKET, 0xff);
    let pkt = &mut out[start..];
    pkt[0] = 0x47;
    pkt[1] = 0x40 | ((pid >> 8) as u8 & 0x1f);
    pkt[2] = pid as u8;
    pkt[3] = 0x10 | cc;
    pkt[4] = 0; // pointer field
    pkt[5..5 + section.len()].copy_from_slice(section);
    let crc = crc32_mpeg2(section);
    pkt[5 + section.len()..9 + section.len()].copy_from_slice(&crc.to_be_bytes());
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, not reflected, initial 0xFFFFFFFF, no final xor).
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::*;

    /// Encodes `frames` frames of 320x240 test video with x264/x265 (keyframe every 10 frames)
    /// into access units: (Annex-B bytes, keyframe).
    fn encode(codec: VideoCodec, frames: u32) -> Vec<(Vec<u8>, bool)> {
        gst::init().unwrap();
        let (enc, media) = match codec {
            VideoCodec::H264 => (
                "x264enc speed-preset=ultrafast key-int-max=10 ! h264parse config-interval=-1",
                "video/x-h264",
            ),
            VideoCodec::H265 => (
                "x265enc speed-preset=ultrafast key-int-max=10 ! h265parse config-interval=-1",
                "video/x-h265",
            ),
        };
        let desc = format!(
            "videotestsrc num-buffers={frames} ! video/x-raw,width=320,height=240,framerate=15/1 \
             ! {enc} ! {media},stream-format=byte-stream,alignment=au ! appsink name=out sync=false"
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut out = Vec::new();
        while let Ok(s) = sink.pull_sample() {
            let b = s.buffer().unwrap();
            let key = !b.flags().contains(gst::BufferFlags::DELTA_UNIT);
            out.push((b.map_readable().unwrap().to_vec(), key));
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert_eq!(out.len(), frames as usize);
        out
    }

    fn mux(codec: VideoCodec, aus: &[(Vec<u8>, bool)], first_pts: u64) -> Vec<u8> {
        let mut m = TsMuxer::new(codec);
        let mut ts = Vec::new();
        for (i, (au, key)) in aus.iter().enumerate() {
            m.write_access_unit(&mut ts, au, first_pts + i as u64 * 6000, *key);
        }
        ts
    }

    /// Every packet is 188 bytes with a sync byte, and each PID's continuity counter steps by
    /// one for every packet with payload.
    fn check_packets(ts: &[u8]) {
        assert_eq!(ts.len() % TS_PACKET, 0);
        let mut cc: std::collections::HashMap<u16, u8> = Default::default();
        for pkt in ts.chunks(TS_PACKET) {
            assert_eq!(pkt[0], 0x47);
            let pid = u16::from(pkt[1] & 0x1f) << 8 | u16::from(pkt[2]);
            let c = pkt[3] & 0x0f;
            if let Some(prev) = cc.insert(pid, c) {
                assert_eq!(c, (prev + 1) & 0x0f, "PID {pid:#x}: continuity");
            }
            if pkt[3] & 0x20 != 0 {
                assert!(usize::from(pkt[4]) <= 183, "adaptation field too long");
            }
        }
    }

    #[test]
    fn h264_segment_reads_back_whole() {
        let aus = encode(VideoCodec::H264, 30);
        let ts = mux(VideoCodec::H264, &aus, 0);
        check_packets(&ts);
        let info = stationwatch_remux::probe_ts(&ts).unwrap();
        assert_eq!(info.codec, stationwatch_remux::Codec::H264);
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.frames, 30);
        assert_eq!(info.keyframes, 3);
        assert_eq!(info.damaged_frames, 0);
        assert_eq!(info.last_pts_ms - info.first_pts_ms, 29 * 1000 / 15);
        // Each keyframe starts with PAT, PMT: a cut there (a segment) reads on its own.
        let second_key: usize = aus[..10]
            .iter()
            .enumerate()
            .map(|(i, (au, k))| mux(VideoCodec::H264, &[(au.clone(), *k)], i as u64).len())
            .sum();
        let tail = &ts[second_key..];
        // A PAT (PID 0, unit start), the second one (continuity counter 1).
        assert_eq!(&tail[..4], &[0x47, 0x40, 0x00, 0x11]);
        let info = stationwatch_remux::probe_ts(tail).unwrap();
        assert_eq!((info.frames, info.keyframes), (20, 2));
    }

    #[test]
    fn h265_segment_reads_back_whole() {
        let aus = encode(VideoCodec::H265, 20);
        let ts = mux(VideoCodec::H265, &aus, 0);
        check_packets(&ts);
        let info = stationwatch_remux::probe_ts(&ts).unwrap();
        assert_eq!(info.codec, stationwatch_remux::Codec::H265);
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(
            (info.frames, info.keyframes, info.damaged_frames),
            (20, 2, 0)
        );
    }

    #[test]
    fn timestamps_cross_the_33_bit_wrap() {
        let aus = encode(VideoCodec::H264, 20);
        // The TS clock wraps after the 10th frame.
        let ts = mux(VideoCodec::H264, &aus, (1 << 33) - PTS_OFFSET - 10 * 6000);
        check_packets(&ts);
        let info = stationwatch_remux::probe_ts(&ts).unwrap();
        assert_eq!(info.frames, 20);
        assert_eq!(info.last_pts_ms - info.first_pts_ms, 19 * 1000 / 15);
    }

    #[test]
    fn every_packet_size_of_access_unit_is_padded_right() {
        // Sizes around the packet boundaries: payload of the first packet is 176 bytes
        // (PCR adaptation field), the next ones 184.
        let mut m = TsMuxer::new(VideoCodec::H264);
        for len in [
            0usize, 1, 161, 162, 163, 175, 176, 177, 345, 346, 347, 360, 361, 1000,
        ] {
            let au: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ts = Vec::new();
            m.write_access_unit(&mut ts, &au, 0, false);
            check_packets(&ts);
            // Reassemble the payload: PES header (14 bytes) then the access unit.
            let mut payload = Vec::new();
            for pkt in ts.chunks(TS_PACKET) {
                let start = if pkt[3] & 0x20 != 0 {
                    5 + usize::from(pkt[4])
                } else {
                    4
                };
                payload.extend_from_slice(&pkt[start..]);
            }
            assert_eq!(&payload[..4], &[0, 0, 1, 0xe0], "len {len}");
            assert_eq!(&payload[14..], &au[..], "len {len}");
        }
    }

    #[test]
    fn crc_matches_the_mpeg2_check_value() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }
}
