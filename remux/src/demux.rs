//! MPEG-TS → access units of the first H.264/H.265 stream, already converted to MP4 sample form
//! (4-byte length-prefixed NAL units, parameter sets and delimiters taken out).
//!
//! PAT/PMT parsing and PES reassembly are `mpeg2ts-reader`'s; this module adds the checks that
//! library leaves to its user (sync bytes, truncation, missing tables) and the access-unit logic.

use mpeg2ts_reader::demultiplex::{
    self, DemuxContext, FilterChangeset, FilterRequest, NullPacketFilter, PacketFilter,
    PatPacketFilter, PmtPacketFilter,
};
use mpeg2ts_reader::packet::{Packet, Pid};
use mpeg2ts_reader::pes::{self, ElementaryStreamConsumer, PesContents, PtsDts};
use mpeg2ts_reader::{psi, StreamType};

use crate::nal::{self, AnnexB, NalClass, ParamSets};
use crate::{Codec, TsError};

const PACKET: usize = 188;
const SYNC: u8 = 0x47;
pub(crate) const MASK33: u64 = (1 << 33) - 1;

/// Signed difference `a - b` of two 33-bit timestamps, taking the shorter way round the wrap.
pub(crate) fn wrap_delta(a: u64, b: u64) -> i64 {
    let d = a.wrapping_sub(b) & MASK33;
    if d >= 1 << 32 {
        d as i64 - (1 << 33)
    } else {
        d as i64
    }
}

/// One access unit in MP4 sample form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Decode time, 90 kHz, unwrapped: the segment's first DTS is taken as is (0..2^33), the
    /// others follow it across any 33-bit wrap.
    pub dts: i64,
    /// Presentation time on the same unwrapped clock.
    pub pts: i64,
    /// The DTS as found in the stream (33 bits).
    pub dts_raw: u64,
    /// Where the sample's bytes are in [`Segment::data`].
    pub offset: usize,
    pub size: usize,
    pub sync: bool,
}

/// A demultiplexed segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub codec: Codec,
    pub params: ParamSets,
    pub samples: Vec<Sample>,
    /// The samples' bytes, back to back, in decode order.
    pub data: Vec<u8>,
    /// Access units lost to TS continuity errors.
    pub damaged: u64,
}

/// Demultiplexes a TS fed in chunks of any size.
pub(crate) struct Demuxer {
    ctx: Ctx,
    demux: demultiplex::Demultiplex<Ctx>,
    /// A packet split across two chunks.
    partial: Vec<u8>,
    /// Bytes fed so far.
    offset: u64,
}

impl Demuxer {
    pub(crate) fn new() -> Self {
        let mut ctx = Ctx::default();
        let demux = demultiplex::Demultiplex::new(&mut ctx);
        Demuxer {
            ctx,
            demux,
            partial: Vec::with_capacity(PACKET),
            offset: 0,
        }
    }

    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), TsError> {
        if !self.partial.is_empty() {
            let need = PACKET - self.partial.len();
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < PACKET {
                return Ok(());
            }
            let packet = std::mem::take(&mut self.partial);
            self.push_whole(&packet)?;
            self.partial = packet;
            self.partial.clear();
        }
        let whole = data.len() / PACKET * PACKET;
        self.push_whole(&data[..whole])?;
        self.partial.extend_from_slice(&data[whole..]);
        Ok(())
    }

    fn push_whole(&mut self, packets: &[u8]) -> Result<(), TsError> {
        if let Some(i) = (0..packets.len())
            .step_by(PACKET)
            .find(|&i| packets[i] != SYNC)
        {
            return Err(TsError::BadSync {
                offset: self.offset + i as u64,
                found: packets[i],
            });
        }
        self.demux.push(&mut self.ctx, packets);
        self.offset += packets.len() as u64;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<Segment, TsError> {
        if self.offset == 0 && self.partial.is_empty() {
            return Err(TsError::Empty);
        }
        if !self.partial.is_empty() {
            return Err(TsError::Truncated {
                packets: self.offset / PACKET as u64,
                trailing: self.partial.len(),
            });
        }
        let ctx = &mut self.ctx;
        if !ctx.pat_seen {
            return Err(TsError::MissingPat);
        }
        if !ctx.pmt_seen {
            return Err(TsError::MissingPmt);
        }
        let Some(codec) = ctx.es.codec else {
            let mut types: Vec<String> = ctx
                .other_streams
                .iter()
                .map(|t| format!("0x{t:02x}"))
                .collect();
            types.dedup();
            return Err(TsError::NoVideoStream(if types.is_empty() {
                "none".into()
            } else {
                types.join(", ")
            }));
        };
        ctx.es.end_access_unit();
        let es = std::mem::take(&mut ctx.es);
        if es.samples.is_empty() {
            return Err(TsError::NoFrames);
        }
        Ok(Segment {
            codec,
            params: es.params,
            samples: es.samples,
            data: es.data,
            damaged: es.damaged,
        })
    }
}

/// Access-unit assembly for the selected video stream.
#[derive(Default)]
struct Es {
    codec: Option<Codec>,
    params: ParamSets,
    samples: Vec<Sample>,
    data: Vec<u8>,
    damaged: u64,
    /// The access unit being received: (pts, dts) raw, its Annex B bytes, damaged.
    current: Option<(u64, u64, bool)>,
    au: Vec<u8>,
    /// Last raw and unwrapped DTS, for unwrapping the next one.
    last_dts: Option<(u64, i64)>,
}

impl Es {
    /// A PES packet begins; `ts` is its (pts, dts), or `None` when it has no PTS (then it
    /// continues the current access unit).
    fn begin_pes(&mut self, ts: Option<(u64, u64)>) {
        if let Some((pts, dts)) = ts {
            self.end_access_unit();
            self.current = Some((pts, dts, false));
        }
    }

    fn append(&mut self, data: &[u8]) {
        if self.current.is_some() {
            self.au.extend_from_slice(data);
        }
    }

    fn damage(&mut self) {
        if let Some(c) = &mut self.current {
            c.2 = true;
        }
    }

    fn end_access_unit(&mut self) {
        let Some((pts_raw, dts_raw, damaged)) = self.current.take() else {
            return;
        };
        let Some(codec) = self.codec else { return };
        let au = std::mem::take(&mut self.au);
        if damaged {
            self.damaged += 1;
        } else {
            let offset = self.data.len();
            let mut sync = false;
            for unit in AnnexB::new(&au) {
                let class = nal::classify(codec, unit);
                match class {
                    NalClass::Vps | NalClass::Sps | NalClass::Pps => {
                        self.params.add(class, unit);
                        continue;
                    }
                    NalClass::Skip => continue,
                    NalClass::RandomAccess => sync = true,
                    NalClass::Other => {}
                }
                let Ok(len) = u32::try_from(unit.len()) else {
                    continue;
                };
                self.data.extend_from_slice(&len.to_be_bytes());
                self.data.extend_from_slice(unit);
            }
            let size = self.data.len() - offset;
            if size > 0 {
                let dts = match self.last_dts {
                    None => dts_raw as i64,
                    Some((raw, unwrapped)) => unwrapped + wrap_delta(dts_raw, raw),
                };
                self.last_dts = Some((dts_raw, dts));
                self.samples.push(Sample {
                    dts,
                    pts: dts + wrap_delta(pts_raw, dts_raw),
                    dts_raw,
                    offset,
                    size,
                    sync,
                });
            }
        }
        // Keep the allocation for the next access unit.
        self.au = au;
        self.au.clear();
    }
}

#[derive(Default)]
struct Ctx {
    changeset: FilterChangeset<Filter>,
    /// A PAT announced at least one program.
    pat_seen: bool,
    /// Packets of a PMT arrived.
    pmt_seen: bool,
    /// Stream types of the streams that are not the selected video.
    other_streams: Vec<u8>,
    es: Es,
}

impl DemuxContext for Ctx {
    type F = Filter;

    fn filter_changeset(&mut self) -> &mut FilterChangeset<Filter> {
        &mut self.changeset
    }

    fn construct(&mut self, req: FilterRequest<'_, '_>) -> Filter {
        match req {
            FilterRequest::ByPid(psi::pat::PAT_PID) => Filter::Pat(PatPacketFilter::default()),
            FilterRequest::ByPid(_) | FilterRequest::Nit { .. } => {
                Filter::Null(NullPacketFilter::default())
            }
            FilterRequest::Pmt {
                pid,
                program_number,
            } => {
                self.pat_seen = true;
                Filter::Pmt(PmtPacketFilter::new(pid, program_number))
            }
            FilterRequest::ByStream {
                stream_type,
                stream_info,
                ..
            } => {
                let codec = match stream_type {
                    StreamType::H264 => Some(Codec::H264),
                    StreamType::H265 => Some(Codec::H265),
                    _ => None,
                };
                match codec {
                    Some(codec) if self.es.codec.is_none() => {
                        self.es.codec = Some(codec);
                        Filter::Video(Box::new(pes::PesPacketFilter::new(Video {
                            _pid: stream_info.elementary_pid(),
                        })))
                    }
                    _ => {
                        self.other_streams.push(stream_type.into());
                        Filter::Null(NullPacketFilter::default())
                    }
                }
            }
        }
    }
}

enum Filter {
    Pat(PatPacketFilter<Ctx>),
    Pmt(PmtPacketFilter<Ctx>),
    Video(Box<pes::PesPacketFilter<Ctx, Video>>),
    Null(NullPacketFilter<Ctx>),
}

impl PacketFilter for Filter {
    type Ctx = Ctx;

    fn consume(&mut self, ctx: &mut Ctx, pk: &Packet<'_>) {
        match self {
            Filter::Pat(f) => f.consume(ctx, pk),
            Filter::Pmt(f) => {
                ctx.pmt_seen = true;
                f.consume(ctx, pk)
            }
            Filter::Video(f) => f.consume(ctx, pk),
            Filter::Null(f) => f.consume(ctx, pk),
        }
    }
}

struct Video {
    _pid: Pid,
}

impl ElementaryStreamConsumer<Ctx> for Video {
    fn start_stream(&mut self, _ctx: &mut Ctx) {}

    fn begin_packet(&mut self, ctx: &mut Ctx, header: pes::PesHeader<'_>) {
        match header.contents() {
            PesContents::Parsed(Some(parsed)) => {
                let ts = match parsed.pts_dts() {
                    Ok(PtsDts::PtsOnly(Ok(pts))) => Some((pts.value(), pts.value())),
                    Ok(PtsDts::Both {
                        pts: Ok(pts),
                        dts: Ok(dts),
                    }) => Some((pts.value(), dts.value())),
                    _ => None,
                };
                ctx.es.begin_pes(ts);
                ctx.es.append(parsed.payload());
            }
            PesContents::Parsed(None) => {}
            PesContents::Payload(data) => ctx.es.append(data),
        }
    }

    fn continue_packet(&mut self, ctx: &mut Ctx, data: &[u8]) {
        ctx.es.append(data);
    }

    fn end_packet(&mut self, _ctx: &mut Ctx) {}

    fn continuity_error(&mut self, ctx: &mut Ctx) {
        ctx.es.damage();
    }
}

/// Demultiplexes a whole segment held in memory.
pub(crate) fn demux(ts: &[u8]) -> Result<Segment, TsError> {
    let mut d = Demuxer::new();
    d.feed(ts)?;
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_delta_takes_the_short_way() {
        assert_eq!(wrap_delta(10, 5), 5);
        assert_eq!(wrap_delta(5, 10), -5);
        assert_eq!(wrap_delta(100, MASK33 - 99), 200);
        assert_eq!(wrap_delta(MASK33 - 99, 100), -200);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(matches!(demux(&[]), Err(TsError::Empty)));
        assert!(matches!(
            demux(&[0x47; 100]),
            Err(TsError::Truncated { trailing: 100, .. })
        ));
        let mut junk = vec![0u8; 188 * 3];
        junk[0] = 0x47;
        junk[188] = 0x47;
        assert!(matches!(
            demux(&junk),
            Err(TsError::BadSync {
                offset: 376,
                found: 0
            })
        ));
        // Valid-looking null packets only: no PAT.
        let mut nulls = Vec::new();
        for _ in 0..10 {
            let mut p = vec![0xffu8; 188];
            p[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
            nulls.extend(p);
        }
        assert!(matches!(demux(&nulls), Err(TsError::MissingPat)));
        // Random bytes with correct sync bytes: never a panic.
        let mut seed = 0x9e37_79b9_u32;
        for _ in 0..200 {
            let mut buf: Vec<u8> = (0..188 * 20)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            for p in buf.chunks_mut(188) {
                p[0] = 0x47;
                if seed & 1 == 0 {
                    p[1] &= 0xe0; // PID 0 (PAT) often
                    p[2] = 0;
                }
            }
            assert!(demux(&buf).is_err());
        }
    }

    #[test]
    fn chunked_feeding_checks_sync_across_chunks() {
        let mut p = vec![0xffu8; 188 * 2];
        p[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
        p[188] = 0x00;
        let mut d = Demuxer::new();
        d.feed(&p[..100]).unwrap();
        let err = d.feed(&p[100..]).unwrap_err();
        assert!(matches!(err, TsError::BadSync { offset: 188, .. }), "{err}");
    }
}
