//! Privacy masks (`docs/camera-view.md`): polygons an operator draws on a camera's snapshot
//! where ballots are marked, blanked in every picture shown to people without full rights
//! (observers). Admins and operators see the picture whole; the recording itself is never
//! masked (it is evidence).
//!
//! Coordinates are relative to the picture (`0.0..=1.0` across and down), so a mask holds
//! whatever the resolution. Masking fails closed: a picture that cannot be decoded or encoded
//! again is not served to an observer at all.

use serde::{Deserialize, Serialize};

pub use stationwatch_protocol::masks::Polygon;

/// The grey masked pixels become.
const FILL: [u8; 3] = [128, 128, 128];

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("{0}")]
    Invalid(String),
    #[error("the snapshot cannot be decoded: {0}")]
    Decode(String),
    #[error("the masked snapshot cannot be encoded: {0}")]
    Encode(String),
}

/// What `PUT .../masks` takes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MasksIn {
    pub masks: Vec<Polygon>,
}

/// Checks masks an operator sent (`stationwatch_protocol::masks::validate`: a bounded number
/// of polygons of 3 to 64 corners, every coordinate a finite number in `0..=1`).
pub fn validate(masks: &[Polygon]) -> Result<(), MaskError> {
    stationwatch_protocol::masks::validate(masks).map_err(MaskError::Invalid)
}

/// Whether the point `(x, y)` lies inside the polygon (even-odd rule).
/// Blanks the masks in an RGB picture (`width * height * 3` bytes): every pixel whose centre
/// lies inside a mask becomes uniform grey.
pub fn blank(rgb: &mut [u8], width: usize, height: usize, masks: &[Polygon]) {
    for (y, x0, x1) in stationwatch_protocol::masks::spans(width, height, masks) {
        for x in x0..x1 {
            let i = (y * width + x) * 3;
            if let Some(px) = rgb.get_mut(i..i + 3) {
                px.copy_from_slice(&FILL);
            }
        }
    }
}

/// The JPEG with the masks blanked (re-encoded); the JPEG as it is when there are no masks.
pub fn apply(jpeg: &[u8], masks: &[Polygon]) -> Result<Vec<u8>, MaskError> {
    if masks.is_empty() {
        return Ok(jpeg.to_vec());
    }
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    let pixels = decoder
        .decode()
        .map_err(|e| MaskError::Decode(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| MaskError::Decode("no picture information".into()))?;
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    let mut rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        other => return Err(MaskError::Decode(format!("pixel format {other:?}"))),
    };
    if rgb.len() != w * h * 3 {
        return Err(MaskError::Decode("short picture".into()));
    }
    blank(&mut rgb, w, h, masks);
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&rgb, info.width, info.height, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| MaskError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_checked_before_they_are_stored() {
        // The checks are the protocol's (tested there); here: they are the ones applied.
        assert!(validate(&[vec![[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]]).is_ok());
        assert!(matches!(
            validate(&[vec![[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]]),
            Err(MaskError::Invalid(_))
        ));
    }

    #[test]
    fn a_jpeg_masked_is_uniform_inside_and_unchanged_outside() {
        // A picture of stripes, so that "uniform" means something.
        let (w, h) = (64usize, 48usize);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let v = if (i % w) / 4 % 2 == 0 { 20 } else { 230 };
                [v, v, v]
            })
            .collect();
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95)
            .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        // A triangle over the left half.
        let masks = vec![vec![[0.0, 0.0], [0.5, 0.0], [0.0, 1.0]]];
        let out = apply(&jpeg, &masks).unwrap();
        let mut d = jpeg_decoder::Decoder::new(&out[..]);
        let px = d.decode().unwrap();
        let at = |x: usize, y: usize| px[(y * w + x) * 3];
        // Well inside the triangle: grey, give or take JPEG's rounding.
        for (x, y) in [(2, 2), (10, 4), (4, 20), (20, 2)] {
            assert!(at(x, y).abs_diff(128) <= 6, "({x},{y}) = {}", at(x, y));
        }
        // Far outside: the stripes are still there.
        let right: Vec<u8> = (40..60).map(|x| at(x, 40)).collect();
        assert!(
            right.iter().max().unwrap() - right.iter().min().unwrap() > 150,
            "{right:?}"
        );
        // No masks: the very bytes.
        assert_eq!(apply(&jpeg, &[]).unwrap(), jpeg);
        // Not a JPEG: an error, never the input.
        assert!(apply(b"not a jpeg", &masks).is_err());
    }
}
