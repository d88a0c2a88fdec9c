//! Privacy masks of a camera (`docs/camera-view.md`): polygons an operator draws where ballots
//! are marked, blanked in every picture shown to people without full rights. Shared because
//! both ends check them: the controller before it stores them, the agent before it keeps what
//! a `set_masks` command brought.
//!
//! Coordinates are relative to the picture (`0.0..=1.0` across and down), so a mask holds
//! whatever the resolution.

use sha2::{Digest, Sha256};

/// One mask: the corners of a polygon, `[x, y]` relative to the picture.
pub type Polygon = Vec<[f64; 2]>;

/// At most this many masks per camera, corners per mask, and corners in all (a `set_masks`
/// command must fit in an MQTT command's 16 KiB).
pub const MAX_MASKS: usize = 16;
pub const MAX_CORNERS: usize = 64;
pub const MAX_TOTAL_CORNERS: usize = 256;

/// Checks masks: a bounded number of polygons of 3 to 64 corners, every coordinate a finite
/// number in `0..=1`. The error says which mask and what is wrong.
pub fn validate(masks: &[Polygon]) -> Result<(), String> {
    if masks.len() > MAX_MASKS {
        return Err(format!(
            "{} masks; at most {MAX_MASKS} per camera",
            masks.len()
        ));
    }
    let total: usize = masks.iter().map(Vec::len).sum();
    if total > MAX_TOTAL_CORNERS {
        return Err(format!(
            "{total} corners in all; at most {MAX_TOTAL_CORNERS} per camera"
        ));
    }
    for (i, m) in masks.iter().enumerate() {
        if !(3..=MAX_CORNERS).contains(&m.len()) {
            return Err(format!(
                "mask {i} has {} corners; a mask has 3 to {MAX_CORNERS}",
                m.len()
            ));
        }
        if let Some(p) = m
            .iter()
            .find(|p| !p.iter().all(|c| c.is_finite() && (0.0..=1.0).contains(c)))
        {
            return Err(format!(
                "mask {i} has the corner {p:?}; coordinates are relative to the picture, 0 to 1"
            ));
        }
    }
    Ok(())
}

/// The masks with every coordinate rounded to 1/10000 of the picture (below a pixel of a 4K
/// picture): what is stored and sent, so that both ends compute the same [`digest`].
pub fn normalise(masks: Vec<Polygon>) -> Vec<Polygon> {
    masks
        .into_iter()
        .map(|m| {
            m.into_iter()
                .map(|p| p.map(|c| (c * 10_000.0).round() / 10_000.0))
                .collect()
        })
        .collect()
}

/// A short fingerprint of a set of masks (the first 16 hex digits of the SHA-256 of their
/// compact JSON): the agent reports it in health, the controller compares it with what it
/// stores to know whether the station holds the current masks. No masks: `""`.
pub fn digest(masks: &[Polygon]) -> String {
    if masks.is_empty() {
        return String::new();
    }
    let json = serde_json::to_vec(masks).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..8])
}

/// The pixels of a `width` x `height` picture that the masks cover, as runs: `(row, first
/// column, end column)` (end exclusive). A pixel is covered when its centre lies inside a mask
/// (even-odd rule). Used to blank masks in snapshots (controller) and in every frame of a
/// public live stream (gateway): computed once per picture size, applied to each frame.
pub fn spans(width: usize, height: usize, masks: &[Polygon]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    if width == 0 || height == 0 {
        return out;
    }
    for m in masks.iter().filter(|m| m.len() >= 3) {
        let px = |v: f64, n: usize| ((v * n as f64).floor().max(0.0) as usize).min(n);
        let x0 = px(m.iter().map(|p| p[0]).fold(1.0, f64::min), width);
        let x1 = (px(m.iter().map(|p| p[0]).fold(0.0, f64::max), width) + 1).min(width);
        let y0 = px(m.iter().map(|p| p[1]).fold(1.0, f64::min), height);
        let y1 = (px(m.iter().map(|p| p[1]).fold(0.0, f64::max), height) + 1).min(height);
        for y in y0..y1 {
            let cy = (y as f64 + 0.5) / height as f64;
            let mut run: Option<usize> = None;
            for x in x0..x1 {
                let cx = (x as f64 + 0.5) / width as f64;
                match (inside(m, cx, cy), run) {
                    (true, None) => run = Some(x),
                    (false, Some(start)) => {
                        out.push((y, start, x));
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(start) = run {
                out.push((y, start, x1));
            }
        }
    }
    out
}

fn inside(poly: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Polygon {
        vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    }

    #[test]
    fn masks_are_checked() {
        assert!(validate(&[rect(0.1, 0.1, 0.5, 0.5)]).is_ok());
        assert!(validate(&[]).is_ok());
        assert!(validate(&[vec![[0.1, 0.1], [0.2, 0.2]]]).is_err());
        assert!(validate(&[rect(0.1, 0.1, 1.5, 0.5)]).is_err());
        assert!(validate(&[rect(0.1, f64::NAN, 0.5, 0.5)]).is_err());
        assert!(validate(&vec![rect(0.1, 0.1, 0.2, 0.2); MAX_MASKS + 1]).is_err());
        let big = vec![vec![[0.5, 0.5]; MAX_CORNERS]; MAX_TOTAL_CORNERS / MAX_CORNERS + 1];
        let e = validate(&big).unwrap_err();
        assert!(e.contains("corners in all"), "{e}");
    }

    #[test]
    fn the_digest_follows_the_masks_and_survives_a_round_trip() {
        let m = normalise(vec![rect(0.123456789, 0.1, 0.5, 0.5)]);
        assert_eq!(m[0][0][0], 0.1235);
        let again: Vec<Polygon> = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(digest(&again), digest(&m));
        assert_eq!(digest(&m).len(), 16);
        assert_ne!(
            digest(&m),
            digest(&normalise(vec![rect(0.1, 0.1, 0.5, 0.6)]))
        );
        assert_eq!(digest(&[]), "");
    }

    #[test]
    fn the_largest_set_of_masks_fits_in_a_command() {
        let corner = [0.1234, 0.5678];
        let masks = vec![vec![corner; MAX_CORNERS]; MAX_TOTAL_CORNERS / MAX_CORNERS];
        assert!(validate(&masks).is_ok());
        let bytes = serde_json::to_vec(&masks).unwrap().len();
        assert!(
            bytes + 512 < crate::mqtt::MAX_COMMAND_BYTES,
            "{bytes} bytes"
        );
    }

    #[test]
    fn spans_cover_the_inside_of_each_mask() {
        // A rectangle over the left half, top half of a 10 x 4 picture.
        let rect = vec![[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]];
        assert_eq!(
            spans(10, 4, std::slice::from_ref(&rect)),
            vec![(0, 0, 5), (1, 0, 5)]
        );
        // A triangle: fewer pixels per row as it narrows; nothing outside the picture.
        let tri = vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        let s = spans(8, 8, &[tri]);
        let widths: Vec<usize> = s.iter().map(|(_, a, b)| b - a).collect();
        assert!(widths.windows(2).all(|w| w[0] >= w[1]), "{widths:?}");
        assert!(s.iter().all(|&(y, a, b)| y < 8 && a < b && b <= 8));
        assert!(spans(0, 0, &[rect]).is_empty());
    }
}
