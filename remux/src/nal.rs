//! H.264 / H.265 elementary-stream helpers: Annex B splitting, NAL unit classes, SPS parsing and
//! the decoder configuration records (`avcC`, `hvcC`) an MP4 sample entry carries.

use h264_reader::nal::sps::{ChromaFormat, SeqParameterSet};
use h264_reader::rbsp::{BitRead, BitReader};

use crate::{Codec, TsError};

/// Iterates over the NAL units of an Annex B byte stream (`00 00 01` / `00 00 00 01` start
/// codes). Bytes before the first start code and trailing zero bytes are not part of any unit.
pub(crate) struct AnnexB<'a> {
    data: &'a [u8],
    /// Start of the next unit's payload (just after its start code), or `None` when done.
    next: Option<usize>,
}

impl<'a> AnnexB<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        let next = find_start_code(data, 0).map(|(_, payload)| payload);
        AnnexB { data, next }
    }
}

/// Finds the first start code at or after `from`: returns (index of its first zero byte, counting
/// extra leading zeros, which are trailing_zero_8bits of the unit before; index just after it).
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < data.len() {
        let one = i + memchr::memchr(1, &data[i..])?;
        if one >= from + 2 && data[one - 1] == 0 && data[one - 2] == 0 {
            let mut start = one - 2;
            while start > from && data[start - 1] == 0 {
                start -= 1;
            }
            return Some((start, one + 1));
        }
        i = one + 1;
    }
    None
}

impl<'a> Iterator for AnnexB<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let begin = self.next?;
            let (end, next) = match find_start_code(self.data, begin) {
                Some((end, next)) => (end, Some(next)),
                None => {
                    // Last unit: drop trailing zero bytes (trailing_zero_8bits / padding).
                    let mut end = self.data.len();
                    while end > begin && self.data[end - 1] == 0 {
                        end -= 1;
                    }
                    (end, None)
                }
            };
            self.next = next;
            if end > begin {
                return Some(&self.data[begin..end]);
            }
        }
    }
}

/// What the remuxer does with a NAL unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NalClass {
    Vps,
    Sps,
    Pps,
    /// Access unit delimiter or filler data: not copied into the MP4 sample.
    Skip,
    /// A slice of an IDR (H.264) or IRAP (H.265) picture: the sample is a sync sample.
    RandomAccess,
    Other,
}

pub(crate) fn classify(codec: Codec, nal: &[u8]) -> NalClass {
    let Some(&first) = nal.first() else {
        return NalClass::Skip;
    };
    match codec {
        Codec::H264 => match first & 0x1f {
            5 => NalClass::RandomAccess,
            7 => NalClass::Sps,
            8 => NalClass::Pps,
            9 | 12 => NalClass::Skip,
            _ => NalClass::Other,
        },
        Codec::H265 => {
            if nal.len() < 2 {
                return NalClass::Skip;
            }
            match (first >> 1) & 0x3f {
                16..=23 => NalClass::RandomAccess,
                32 => NalClass::Vps,
                33 => NalClass::Sps,
                34 => NalClass::Pps,
                35 | 38 => NalClass::Skip,
                _ => NalClass::Other,
            }
        }
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`) from a NAL unit's body.
pub(crate) fn unescape(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut zeros = 0usize;
    for &b in body {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// The distinct parameter sets of a segment, in the order they first appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ParamSets {
    pub vps: Vec<Vec<u8>>,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

impl ParamSets {
    pub(crate) fn add(&mut self, class: NalClass, nal: &[u8]) {
        let list = match class {
            NalClass::Vps => &mut self.vps,
            NalClass::Sps => &mut self.sps,
            NalClass::Pps => &mut self.pps,
            _ => return,
        };
        if !list.iter().any(|p| p.as_slice() == nal) {
            list.push(nal.to_vec());
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.vps.is_empty() && self.sps.is_empty() && self.pps.is_empty()
    }
}

/// What an MP4 sample entry needs: codec, picture size and the decoder configuration record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VideoConfig {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    /// Payload of the `avcC` / `hvcC` box.
    pub record: Vec<u8>,
}

/// Builds the decoder configuration from a segment's parameter sets.
pub(crate) fn video_config(codec: Codec, ps: &ParamSets) -> Result<VideoConfig, TsError> {
    let missing = match codec {
        Codec::H264 => ps.sps.is_empty() || ps.pps.is_empty(),
        Codec::H265 => ps.vps.is_empty() || ps.sps.is_empty() || ps.pps.is_empty(),
    };
    if missing {
        return Err(TsError::MissingParameterSets(codec));
    }
    if ps.sps.len() > 1 || ps.vps.len() > 1 {
        return Err(TsError::ParameterSetsChange {
            sps: ps.sps.len(),
            vps: ps.vps.len(),
        });
    }
    let too_long = |v: &Vec<Vec<u8>>| v.len() > 31 || v.iter().any(|p| p.len() > 0xffff);
    if too_long(&ps.vps) || too_long(&ps.sps) || too_long(&ps.pps) {
        return Err(TsError::InvalidSps(
            "parameter set too large for the MP4 decoder configuration".into(),
        ));
    }
    match codec {
        Codec::H264 => avc_config(ps),
        Codec::H265 => hevc_config(ps),
    }
}

fn avc_config(ps: &ParamSets) -> Result<VideoConfig, TsError> {
    let sps_nal = &ps.sps[0];
    if sps_nal.len() < 4 {
        return Err(TsError::InvalidSps("H.264 SPS shorter than 4 bytes".into()));
    }
    let rbsp = unescape(&sps_nal[1..]);
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
        .map_err(|e| TsError::InvalidSps(format!("H.264 SPS: {e:?}")))?;
    let (width, height) = sps
        .pixel_dimensions()
        .map_err(|e| TsError::InvalidSps(format!("H.264 SPS dimensions: {e:?}")))?;
    check_dims(width, height)?;

    let (profile_idc, constraints, level_idc) = (rbsp[0], rbsp[1], rbsp[2]);
    let mut r = vec![1, profile_idc, constraints, level_idc, 0xfc | 3];
    r.push(0xe0 | ps.sps.len() as u8);
    for s in &ps.sps {
        r.extend_from_slice(&(s.len() as u16).to_be_bytes());
        r.extend_from_slice(s);
    }
    r.push(ps.pps.len() as u8);
    for p in &ps.pps {
        r.extend_from_slice(&(p.len() as u16).to_be_bytes());
        r.extend_from_slice(p);
    }
    if matches!(profile_idc, 100 | 110 | 122 | 144) {
        let chroma = match sps.chroma_info.chroma_format {
            ChromaFormat::Monochrome => 0,
            ChromaFormat::YUV420 => 1,
            ChromaFormat::YUV422 => 2,
            ChromaFormat::YUV444 => 3,
            ChromaFormat::Invalid(_) => 1,
        };
        r.push(0xfc | chroma);
        r.push(0xf8 | (sps.chroma_info.bit_depth_luma_minus8 & 7));
        r.push(0xf8 | (sps.chroma_info.bit_depth_chroma_minus8 & 7));
        r.push(0); // numOfSequenceParameterSetExt
    }
    Ok(VideoConfig {
        codec: Codec::H264,
        width,
        height,
        record: r,
    })
}

fn check_dims(width: u32, height: u32) -> Result<(), TsError> {
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(TsError::InvalidSps(format!(
            "implausible picture size {width}x{height}"
        )));
    }
    Ok(())
}

/// The H.265 SPS fields the `hvcC` record and the sample entry need.
#[derive(Debug)]
struct HevcSps {
    max_sub_layers_minus1: u8,
    temporal_id_nesting: bool,
    /// general_profile_space .. general_level_idc: the 12 bytes `hvcC` copies.
    general_ptl: [u8; 12],
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    width: u32,
    height: u32,
}

fn parse_hevc_sps(nal: &[u8]) -> Result<HevcSps, TsError> {
    let bad = |what: &str| TsError::InvalidSps(format!("H.265 SPS: {what}"));
    if nal.len() < 3 {
        return Err(bad("too short"));
    }
    let rbsp = unescape(&nal[2..]);
    if rbsp.len() < 14 {
        return Err(bad("too short"));
    }
    let mut general_ptl = [0u8; 12];
    general_ptl.copy_from_slice(&rbsp[1..13]);
    let e = |e: h264_reader::rbsp::BitReaderError| bad(&format!("{e:?}"));
    let mut r = BitReader::new(&rbsp[..]);
    r.skip(4, "sps_video_parameter_set_id").map_err(e)?;
    let max_sub_layers_minus1: u8 = r.read::<3, u8>("sps_max_sub_layers_minus1").map_err(e)?;
    let temporal_id_nesting = r.read_bit("sps_temporal_id_nesting_flag").map_err(e)?;
    // profile_tier_level(1, sps_max_sub_layers_minus1): 88 bits of general profile, 8 of level.
    r.skip(96, "general_profile_tier_level").map_err(e)?;
    let mut sub_profile = [false; 8];
    let mut sub_level = [false; 8];
    for i in 0..max_sub_layers_minus1 as usize {
        sub_profile[i] = r.read_bit("sub_layer_profile_present_flag").map_err(e)?;
        sub_level[i] = r.read_bit("sub_layer_level_present_flag").map_err(e)?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2, "reserved_zero_2bits").map_err(e)?;
        }
    }
    for i in 0..max_sub_layers_minus1 as usize {
        if sub_profile[i] {
            r.skip(88, "sub_layer_profile").map_err(e)?;
        }
        if sub_level[i] {
            r.skip(8, "sub_layer_level_idc").map_err(e)?;
        }
    }
    r.read_ue("sps_seq_parameter_set_id").map_err(e)?;
    let chroma_format_idc = r.read_ue("chroma_format_idc").map_err(e)?;
    if chroma_format_idc > 3 {
        return Err(bad(&format!("chroma_format_idc {chroma_format_idc}")));
    }
    let separate_colour_planes =
        chroma_format_idc == 3 && r.read_bit("separate_colour_plane_flag").map_err(e)?;
    let pic_width = r.read_ue("pic_width_in_luma_samples").map_err(e)?;
    let pic_height = r.read_ue("pic_height_in_luma_samples").map_err(e)?;
    let (mut crop_w, mut crop_h) = (0u64, 0u64);
    if r.read_bit("conformance_window_flag").map_err(e)? {
        let left = r.read_ue("conf_win_left_offset").map_err(e)? as u64;
        let right = r.read_ue("conf_win_right_offset").map_err(e)? as u64;
        let top = r.read_ue("conf_win_top_offset").map_err(e)? as u64;
        let bottom = r.read_ue("conf_win_bottom_offset").map_err(e)? as u64;
        let chroma_array_type = if separate_colour_planes {
            0
        } else {
            chroma_format_idc
        };
        let sub_w = if matches!(chroma_array_type, 1 | 2) {
            2
        } else {
            1
        };
        let sub_h = if chroma_array_type == 1 { 2 } else { 1 };
        crop_w = sub_w * (left + right);
        crop_h = sub_h * (top + bottom);
    }
    let bit_depth_luma_minus8 = r.read_ue("bit_depth_luma_minus8").map_err(e)?;
    let bit_depth_chroma_minus8 = r.read_ue("bit_depth_chroma_minus8").map_err(e)?;
    if bit_depth_luma_minus8 > 8 || bit_depth_chroma_minus8 > 8 {
        return Err(bad("bit depth out of range"));
    }
    let width = (pic_width as u64).saturating_sub(crop_w);
    let height = (pic_height as u64).saturating_sub(crop_h);
    let (width, height) = (
        u32::try_from(width).unwrap_or(0),
        u32::try_from(height).unwrap_or(0),
    );
    check_dims(width, height)?;
    Ok(HevcSps {
        max_sub_layers_minus1,
        temporal_id_nesting,
        general_ptl,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma_minus8: bit_depth_luma_minus8 as u8,
        bit_depth_chroma_minus8: bit_depth_chroma_minus8 as u8,
        width,
        height,
    })
}

fn hevc_config(ps: &ParamSets) -> Result<VideoConfig, TsError> {
    let sps = parse_hevc_sps(&ps.sps[0])?;
    let mut r = vec![1];
    r.extend_from_slice(&sps.general_ptl);
    r.extend_from_slice(&[0xf0, 0x00]); // min_spatial_segmentation_idc = 0
    r.push(0xfc); // parallelismType = 0 (unknown)
    r.push(0xfc | sps.chroma_format_idc);
    r.push(0xf8 | sps.bit_depth_luma_minus8);
    r.push(0xf8 | sps.bit_depth_chroma_minus8);
    r.extend_from_slice(&[0, 0]); // avgFrameRate unspecified
                                  // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne = 3
    r.push(((sps.max_sub_layers_minus1 + 1) & 7) << 3 | (sps.temporal_id_nesting as u8) << 2 | 3);
    r.push(3); // numOfArrays
    for (nal_type, list) in [(32u8, &ps.vps), (33, &ps.sps), (34, &ps.pps)] {
        r.push(0x80 | nal_type); // array_completeness = 1: no parameter sets in band
        r.extend_from_slice(&(list.len() as u16).to_be_bytes());
        for p in list {
            r.extend_from_slice(&(p.len() as u16).to_be_bytes());
            r.extend_from_slice(p);
        }
    }
    Ok(VideoConfig {
        codec: Codec::H265,
        width: sps.width,
        height: sps.height,
        record: r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_annexb_with_3_and_4_byte_start_codes() {
        let data = [
            0xff, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 5, 0, 0,
        ];
        let units: Vec<&[u8]> = AnnexB::new(&data).collect();
        assert_eq!(
            units,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert_eq!(AnnexB::new(&[0, 0, 0, 0]).count(), 0);
        assert_eq!(AnnexB::new(&[]).count(), 0);
        assert_eq!(AnnexB::new(&[0, 0, 1]).count(), 0);
    }

    #[test]
    fn unescapes_emulation_prevention() {
        assert_eq!(unescape(&[1, 0, 0, 3, 1, 0, 0, 3]), vec![1, 0, 0, 1, 0, 0]);
        assert_eq!(unescape(&[0, 3, 0, 0, 3, 3]), vec![0, 3, 0, 0, 3]);
    }

    #[test]
    fn garbage_parameter_sets_are_errors() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..64 {
            for _ in 0..50 {
                let mut sps: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed as u8
                    })
                    .collect();
                if let Some(b) = sps.first_mut() {
                    *b = 0x67;
                }
                let ps = ParamSets {
                    vps: vec![vec![0x40, 1, 2]],
                    sps: vec![sps.clone()],
                    pps: vec![vec![0x68, 0xce]],
                };
                let _ = video_config(Codec::H264, &ps);
                let _ = video_config(Codec::H265, &ps);
            }
        }
    }
}
