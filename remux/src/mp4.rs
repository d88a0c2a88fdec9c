//! The few ISO BMFF boxes a single-track fragmented MP4 needs (ISO/IEC 14496-12 and -15),
//! written by hand: `ftyp`, `moov` (with `mvex`/`trex`, `avc1`+`avcC` or `hvc1`+`hvcC`), and per
//! fragment `moof` (`mfhd`, `traf` with `tfhd`, `tfdt`, `trun`) followed by the `mdat` header.

use crate::nal::VideoConfig;
use crate::Codec;

/// Media timescale: the MPEG-TS 90 kHz clock, so timestamps are copied without rounding.
pub(crate) const TIMESCALE: u32 = 90_000;
const TRACK_ID: u32 = 1;

/// Sample flags (14496-12 §8.8.3.1): sync sample (depends on no other) / non-sync sample.
const FLAGS_SYNC: u32 = 0x0200_0000;
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Appends a box: size, type, then what `body` writes; the size is patched in afterwards.
fn bx(buf: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(kind);
    body(buf);
    let size = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box (version and flags after the header).
fn full(
    buf: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    bx(buf, kind, |b| {
        b.extend_from_slice(&(((version as u32) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
        body(b);
    });
}

fn u16be(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn u32be(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn u64be(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}

const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `ftyp` + `moov` for one video track. `edit_shift` (in 90 kHz ticks) is the composition time
/// of the first presented frame: an edit list then makes presentation start at zero.
pub(crate) fn init_segment(cfg: &VideoConfig, edit_shift: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(1024 + cfg.record.len());
    bx(&mut b, b"ftyp", |b| {
        b.extend_from_slice(b"isom");
        u32be(b, 0x200);
        b.extend_from_slice(b"isomiso6mp41");
        b.extend_from_slice(match cfg.codec {
            Codec::H264 => b"avc1",
            Codec::H265 => b"hvc1",
        });
    });
    bx(&mut b, b"moov", |b| {
        full(b, b"mvhd", 0, 0, |b| {
            u32be(b, 0); // creation_time
            u32be(b, 0); // modification_time
            u32be(b, 1000); // timescale
            u32be(b, 0); // duration: unknown while streaming (fragments follow)
            u32be(b, 0x0001_0000); // rate 1.0
            u16be(b, 0x0100); // volume 1.0
            b.extend_from_slice(&[0; 10]);
            UNITY_MATRIX.iter().for_each(|&m| u32be(b, m));
            b.extend_from_slice(&[0; 24]); // pre_defined
            u32be(b, TRACK_ID + 1); // next_track_ID
        });
        bx(b, b"trak", |b| {
            full(b, b"tkhd", 0, 0x3, |b| {
                u32be(b, 0);
                u32be(b, 0);
                u32be(b, TRACK_ID);
                u32be(b, 0); // reserved
                u32be(b, 0); // duration
                b.extend_from_slice(&[0; 8]);
                u16be(b, 0); // layer
                u16be(b, 0); // alternate_group
                u16be(b, 0); // volume (video)
                u16be(b, 0);
                UNITY_MATRIX.iter().for_each(|&m| u32be(b, m));
                u32be(b, cfg.width << 16);
                u32be(b, cfg.height << 16);
            });
            if edit_shift > 0 {
                bx(b, b"edts", |b| {
                    full(b, b"elst", 0, 0, |b| {
                        u32be(b, 1);
                        u32be(b, 0); // segment_duration 0: the whole (fragmented) media
                        u32be(b, edit_shift); // media_time
                        u32be(b, 0x0001_0000); // media_rate 1.0
                    });
                });
            }
            bx(b, b"mdia", |b| {
                full(b, b"mdhd", 0, 0, |b| {
                    u32be(b, 0);
                    u32be(b, 0);
                    u32be(b, TIMESCALE);
                    u32be(b, 0);
                    u16be(b, 0x55c4); // language "und"
                    u16be(b, 0);
                });
                full(b, b"hdlr", 0, 0, |b| {
                    u32be(b, 0);
                    b.extend_from_slice(b"vide");
                    b.extend_from_slice(&[0; 12]);
                    b.extend_from_slice(b"VideoHandler\0");
                });
                bx(b, b"minf", |b| {
                    full(b, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                    bx(b, b"dinf", |b| {
                        full(b, b"dref", 0, 0, |b| {
                            u32be(b, 1);
                            full(b, b"url ", 0, 1, |_| {});
                        });
                    });
                    bx(b, b"stbl", |b| {
                        full(b, b"stsd", 0, 0, |b| {
                            u32be(b, 1);
                            sample_entry(b, cfg);
                        });
                        full(b, b"stts", 0, 0, |b| u32be(b, 0));
                        full(b, b"stsc", 0, 0, |b| u32be(b, 0));
                        full(b, b"stsz", 0, 0, |b| {
                            u32be(b, 0);
                            u32be(b, 0);
                        });
                        full(b, b"stco", 0, 0, |b| u32be(b, 0));
                    });
                });
            });
        });
        bx(b, b"mvex", |b| {
            full(b, b"trex", 0, 0, |b| {
                u32be(b, TRACK_ID);
                u32be(b, 1); // default_sample_description_index
                u32be(b, 0); // default_sample_duration
                u32be(b, 0); // default_sample_size
                u32be(b, FLAGS_NON_SYNC); // default_sample_flags
            });
        });
    });
    b
}

fn sample_entry(b: &mut Vec<u8>, cfg: &VideoConfig) {
    let (entry, record) = match cfg.codec {
        Codec::H264 => (b"avc1", b"avcC"),
        Codec::H265 => (b"hvc1", b"hvcC"),
    };
    bx(b, entry, |b| {
        b.extend_from_slice(&[0; 6]);
        u16be(b, 1); // data_reference_index
        b.extend_from_slice(&[0; 16]); // pre_defined, reserved
        u16be(b, cfg.width.min(0xffff) as u16);
        u16be(b, cfg.height.min(0xffff) as u16);
        u32be(b, 0x0048_0000); // 72 dpi
        u32be(b, 0x0048_0000);
        u32be(b, 0);
        u16be(b, 1); // frame_count
        b.extend_from_slice(&[0; 32]); // compressorname
        u16be(b, 0x0018); // depth
        u16be(b, 0xffff); // pre_defined = -1
        bx(b, record, |b| b.extend_from_slice(&cfg.record));
    });
}

/// One `trun` row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrunSample {
    pub duration: u32,
    pub size: u32,
    pub sync: bool,
    pub composition_offset: u32,
}

/// `moof` and the `mdat` header for a fragment whose sample data (`mdat_len` bytes, the samples
/// back to back) follows right after.
pub(crate) fn fragment_header(
    sequence: u32,
    base_decode_time: u64,
    samples: &[TrunSample],
    mdat_len: u64,
) -> Vec<u8> {
    let large = mdat_len + 8 > u32::MAX as u64;
    let mdat_header_len: u32 = if large { 16 } else { 8 };
    let mut b = Vec::with_capacity(100 + samples.len() * 16);
    let mut data_offset_pos = 0;
    bx(&mut b, b"moof", |b| {
        full(b, b"mfhd", 0, 0, |b| u32be(b, sequence));
        bx(b, b"traf", |b| {
            full(b, b"tfhd", 0, 0x02_0000, |b| u32be(b, TRACK_ID)); // default-base-is-moof
            full(b, b"tfdt", 1, 0, |b| u64be(b, base_decode_time));
            // data-offset, sample duration, size, flags and composition time offset present.
            full(b, b"trun", 0, 0x000f01, |b| {
                u32be(b, samples.len() as u32);
                data_offset_pos = b.len();
                u32be(b, 0); // data_offset, patched below
                for s in samples {
                    u32be(b, s.duration);
                    u32be(b, s.size);
                    u32be(b, if s.sync { FLAGS_SYNC } else { FLAGS_NON_SYNC });
                    u32be(b, s.composition_offset);
                }
            });
        });
    });
    let data_offset = b.len() as u32 + mdat_header_len;
    b[data_offset_pos..data_offset_pos + 4].copy_from_slice(&data_offset.to_be_bytes());
    if large {
        u32be(&mut b, 1);
        b.extend_from_slice(b"mdat");
        u64be(&mut b, mdat_len + 16);
    } else {
        u32be(&mut b, mdat_len as u32 + 8);
        b.extend_from_slice(b"mdat");
    }
    b
}
