//! What is wrong with a picture: pure measures of a small greyscale frame, compared with the
//! previous frame analysed and with the approved reference view.
//!
//! The frame is cut into a grid of cells; each measure is chosen to survive what a real polling
//! station does to a picture all day:
//!
//! * **dark**: nearly every cell is dark (a camera's own burned-in clock covers a few cells);
//! * **covered**: nearly every cell is flat *and* the cells look alike (one colour: tape, a cap,
//!   a cloth). Large flat areas of different colours (walls, a table) are not a cover;
//! * **frozen**: no small block of the picture (5x5 pixels of the 160x90 picture) changed its
//!   mean brightness by more than compression noise since the previous picture analysed, a
//!   second or two earlier, while frames keep arriving. Block means, because an encoder
//!   re-encoding the same still picture changes many single pixels by a few levels, but
//!   averages them out over a block; a ticking on-screen clock or a person moving changes some
//!   block by far more;
//! * **blurred** (with a reference): the edges' energy (mean squared difference of neighbouring
//!   pixels), relative to the picture's contrast, is far below the reference's. Squared, because
//!   the plain sum of differences across a blurred edge is the same as across a sharp one;
//!   relative to contrast, so dimmer lighting is not blur;
//! * **moved** (with a reference): the coarse picture's normalised cross-correlation with the
//!   reference's is low. Correlation is blind to a change of gain and offset, so the lights
//!   going up or down is not a move; a person walking through changes a part only.
//!
//! Dark and covered explain everything else: a taped lens is also frozen, blurred and unlike the
//! reference, and reporting those too would only hide the cause.

use stationwatch_protocol::mqtt::ViewProblemKind;

/// A greyscale picture, one byte per pixel, rows without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grey {
    pub width: usize,
    pub height: usize,
    pub px: Vec<u8>,
}

impl Grey {
    /// `None` when `px` does not hold `width * height` bytes, or the picture is too small to
    /// measure.
    pub fn new(width: usize, height: usize, px: Vec<u8>) -> Option<Grey> {
        (width >= GRID_X * 2 && height >= GRID_Y * 2 && px.len() == width * height)
            .then_some(Grey { width, height, px })
    }

    fn at(&self, x: usize, y: usize) -> f64 {
        f64::from(self.px[y * self.width + x])
    }
}

/// Cells across and down.
const GRID_X: usize = 16;
const GRID_Y: usize = 9;
/// Cells in a picture (the length of a coarse picture).
pub const CELLS: usize = GRID_X * GRID_Y;

/// Limits of the measures (see the module documentation; the figures are in
/// `docs/camera-view.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A cell darker than this mean brightness (of 255) is dark.
    pub dark_level: f64,
    /// The share of cells that must be dark (or flat) for dark (or covered).
    pub share: f64,
    /// A cell whose brightness varies less than this (standard deviation) is flat.
    pub flat_std: f64,
    /// Covered only if the cells' means vary less than this (one colour).
    pub covered_spread: f64,
    /// Frozen when no block's mean brightness changed by more than this since the previous
    /// picture (compression noise stays below it).
    pub frozen_level: f64,
    /// Blurred below this share of the reference's relative sharpness.
    pub blur_ratio: f64,
    /// Moved below this correlation with the reference.
    pub moved_correlation: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            dark_level: 32.0,
            share: 0.9,
            flat_std: 5.0,
            covered_spread: 10.0,
            frozen_level: 4.0,
            blur_ratio: 0.4,
            moved_correlation: 0.5,
        }
    }
}

/// The measures of one picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Measures {
    pub mean: f64,
    /// Share of dark cells.
    pub dark_share: f64,
    /// Share of flat cells.
    pub flat_share: f64,
    /// Standard deviation of the cells' means.
    pub spread: f64,
    /// Standard deviation of the whole picture (its contrast).
    pub contrast: f64,
    /// Per cell: the mean squared difference between neighbouring pixels, divided by the
    /// picture's contrast squared.
    pub sharpness: Vec<f64>,
    /// The cells' means, row by row (the coarse picture the correlation uses).
    pub cells: Vec<f64>,
}

pub fn measure(g: &Grey, t: &Thresholds) -> Measures {
    let n = (g.width * g.height) as f64;
    let mean = g.px.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
    let contrast = (g
        .px
        .iter()
        .map(|&p| (f64::from(p) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let mut cells = Vec::with_capacity(CELLS);
    let mut sharpness = Vec::with_capacity(CELLS);
    let (mut dark, mut flat) = (0usize, 0usize);
    for cy in 0..GRID_Y {
        for cx in 0..GRID_X {
            let (x0, x1) = (cx * g.width / GRID_X, (cx + 1) * g.width / GRID_X);
            let (y0, y1) = (cy * g.height / GRID_Y, (cy + 1) * g.height / GRID_Y);
            let (mut sum, mut sq, mut grad) = (0.0, 0.0, 0.0);
            for y in y0..y1 {
                for x in x0..x1 {
                    let v = g.at(x, y);
                    sum += v;
                    sq += v * v;
                    if x + 1 < g.width && y + 1 < g.height {
                        grad += (g.at(x + 1, y) - v).powi(2) + (g.at(x, y + 1) - v).powi(2);
                    }
                }
            }
            let k = ((x1 - x0) * (y1 - y0)) as f64;
            let m = sum / k;
            let std = (sq / k - m * m).max(0.0).sqrt();
            dark += usize::from(m < t.dark_level);
            flat += usize::from(std < t.flat_std);
            cells.push(m);
            sharpness.push(if contrast > 1.0 {
                grad / (2.0 * k * contrast * contrast)
            } else {
                0.0
            });
        }
    }
    let cm = cells.iter().sum::<f64>() / cells.len() as f64;
    let spread = (cells.iter().map(|m| (m - cm).powi(2)).sum::<f64>() / cells.len() as f64).sqrt();
    Measures {
        mean,
        dark_share: dark as f64 / cells.len() as f64,
        flat_share: flat as f64 / cells.len() as f64,
        spread,
        contrast,
        sharpness,
        cells,
    }
}

/// Normalised cross-correlation of two coarse pictures (1: the same up to gain and offset).
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma).powi(2);
        bb += (y - mb).powi(2);
    }
    if aa < 1e-9 || bb < 1e-9 {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

/// Side of the blocks [`changed`] compares.
const BLOCK: usize = 5;

/// The largest change of a block's mean brightness between two pictures of the same size
/// (`None` for different sizes).
pub fn changed(a: &Grey, b: &Grey) -> Option<f64> {
    if a.width != b.width || a.height != b.height {
        return None;
    }
    let mut most = 0.0f64;
    for by in 0..a.height / BLOCK {
        for bx in 0..a.width / BLOCK {
            let mut d = 0i64;
            for y in by * BLOCK..(by + 1) * BLOCK {
                for x in bx * BLOCK..(bx + 1) * BLOCK {
                    let i = y * a.width + x;
                    d += i64::from(a.px[i]) - i64::from(b.px[i]);
                }
            }
            most = most.max(d.abs() as f64 / (BLOCK * BLOCK) as f64);
        }
    }
    Some(most)
}

/// The approved view's measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub sharpness: Vec<f64>,
    pub cells: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How sharp the picture is compared with the reference: the median, over the cells where the
/// reference has its sharper half of the edges, of the cell's sharpness now over then. The
/// median, so that a sharp on-screen clock (a few cells) or a person in front of the camera
/// does not decide; `None` when the reference has too few edges to judge.
pub fn blur_ratio(now: &[f64], reference: &[f64]) -> Option<f64> {
    if now.len() != reference.len() || reference.is_empty() {
        return None;
    }
    let middle = median(reference.to_vec());
    let ratios: Vec<f64> = now
        .iter()
        .zip(reference)
        .filter(|(_, r)| **r > middle && **r > 1e-6)
        .map(|(n, r)| n / r)
        .collect();
    (ratios.len() >= CELLS / 8).then(|| median(ratios))
}

/// The problems a picture shows, each with the measure behind it for people.
pub fn assess(
    m: &Measures,
    changed: Option<f64>,
    reference: Option<&Reference>,
    t: &Thresholds,
) -> Vec<(ViewProblemKind, String)> {
    let mut out = Vec::new();
    if m.dark_share >= t.share {
        out.push((
            ViewProblemKind::Dark,
            format!(
                "{:.0} % of the picture darker than {:.0} of 255 (mean {:.0})",
                m.dark_share * 100.0,
                t.dark_level,
                m.mean
            ),
        ));
        return out;
    }
    if m.flat_share >= t.share && m.spread < t.covered_spread {
        out.push((
            ViewProblemKind::Covered,
            format!(
                "featureless: {:.0} % of the picture flat, one colour (brightness {:.0} of 255)",
                m.flat_share * 100.0,
                m.mean
            ),
        ));
        return out;
    }
    if let Some(c) = changed.filter(|c| *c < t.frozen_level) {
        out.push((
            ViewProblemKind::Frozen,
            format!("the picture has not changed (no part of it by more than {c:.1} of 255)"),
        ));
    }
    if let Some(r) = reference {
        if let Some(ratio) = blur_ratio(&m.sharpness, &r.sharpness).filter(|q| *q < t.blur_ratio) {
            out.push((
                ViewProblemKind::Blurred,
                format!("sharpness {:.0} % of the approved view's", ratio * 100.0),
            ));
        }
        let c = correlation(&m.cells, &r.cells);
        if c < t.moved_correlation {
            out.push((
                ViewProblemKind::Moved,
                format!(
                    "similarity to the approved view {c:.2} (limit {:.2})",
                    t.moved_correlation
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 160;
    const H: usize = 90;

    fn picture(f: impl Fn(usize, usize) -> f64) -> Grey {
        let px = (0..W * H)
            .map(|i| f(i % W, i / W).clamp(0.0, 255.0) as u8)
            .collect();
        Grey::new(W, H, px).unwrap()
    }

    /// A room: bars of different brightness, fine texture, a dark clock in a corner.
    fn scene(x: usize, y: usize) -> f64 {
        let bar = [200.0, 170.0, 140.0, 110.0, 90.0, 60.0, 160.0][x * 7 / W];
        let texture = if (x / 3 + y / 3).is_multiple_of(2) {
            25.0
        } else {
            -25.0
        };
        bar + texture
    }

    /// The same picture with a burned-in clock (white text on a small black box).
    fn with_clock(f: impl Fn(usize, usize) -> f64, x: usize, y: usize) -> f64 {
        if x < 30 && y < 10 {
            if (x + y).is_multiple_of(3) {
                255.0
            } else {
                0.0
            }
        } else {
            f(x, y)
        }
    }

    fn kinds(g: &Grey, prev: Option<&Grey>, reference: Option<&Reference>) -> Vec<ViewProblemKind> {
        let t = Thresholds::default();
        let m = measure(g, &t);
        let diff = prev.and_then(|p| changed(g, p));
        assess(&m, diff, reference, &t)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    fn reference() -> Reference {
        let m = measure(&picture(scene), &Thresholds::default());
        Reference {
            sharpness: m.sharpness,
            cells: m.cells,
        }
    }

    #[test]
    fn a_normal_scene_has_no_problem_even_with_its_clock_ticking() {
        let a = picture(|x, y| with_clock(scene, x, y));
        let b = picture(|x, y| with_clock(scene, x, y) + if x < 30 && y < 10 { 40.0 } else { 0.0 });
        assert_eq!(kinds(&b, Some(&a), Some(&reference())), vec![]);
    }

    #[test]
    fn black_with_a_clock_is_dark_and_nothing_else() {
        let g = picture(|x, y| with_clock(|_, _| 3.0, x, y));
        assert_eq!(
            kinds(&g, Some(&g), Some(&reference())),
            vec![ViewProblemKind::Dark]
        );
    }

    #[test]
    fn tape_is_covered_but_flat_walls_of_different_colours_are_not() {
        let tape = picture(|x, y| with_clock(|x, y| 150.0 + ((x * 7 + y * 3) % 3) as f64, x, y));
        assert_eq!(
            kinds(&tape, Some(&tape), Some(&reference())),
            vec![ViewProblemKind::Covered]
        );
        // Flat areas of distinct brightness: a wall, a table, a floor.
        let room = picture(|x, y| [220.0, 120.0, 60.0][(y * 3 / H).min(2)] + (x % 2) as f64);
        assert!(!kinds(&room, None, None).contains(&ViewProblemKind::Covered));
    }

    #[test]
    fn an_unchanged_picture_is_frozen_a_changing_one_is_not() {
        let a = picture(|x, y| with_clock(scene, x, y));
        assert_eq!(kinds(&a, Some(&a), None), vec![ViewProblemKind::Frozen]);
        // The same picture encoded again: compression noise is no change.
        let again = picture(|x, y| with_clock(scene, x, y) + ((x * 31 + y * 17) % 5) as f64 - 2.0);
        assert_eq!(kinds(&again, Some(&a), None), vec![ViewProblemKind::Frozen]);
        // The clock ticked.
        let ticked = picture(|x, y| with_clock(scene, (x + 1) % 30, y));
        assert_eq!(kinds(&ticked, Some(&a), None), vec![]);
    }

    #[test]
    fn blur_and_a_turned_camera_need_the_reference_and_are_told_apart() {
        // A 7x7 box blur of the scene.
        let sharp = picture(scene);
        let blurred = picture(|x, y| {
            let (mut s, mut n) = (0.0, 0.0);
            for dy in -3i64..=3 {
                for dx in -3i64..=3 {
                    let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                    if xx >= 0 && yy >= 0 && (xx as usize) < W && (yy as usize) < H {
                        s += sharp.at(xx as usize, yy as usize);
                        n += 1.0;
                    }
                }
            }
            s / n
        });
        assert_eq!(kinds(&blurred, None, None), vec![]);
        assert_eq!(
            kinds(&blurred, None, Some(&reference())),
            vec![ViewProblemKind::Blurred]
        );
        // Turned: the bars the other way round (as sharp as before), light falling off.
        let turned = picture(|x, y| scene(W - 1 - x, y) - y as f64 * 0.5);
        assert_eq!(kinds(&turned, None, None), vec![]);
        assert_eq!(
            kinds(&turned, None, Some(&reference())),
            vec![ViewProblemKind::Moved]
        );
    }

    #[test]
    fn the_lights_going_down_or_up_is_no_problem() {
        let r = reference();
        for (gain, offset) in [(0.6, -10.0), (0.8, 0.0), (1.1, 20.0), (1.0, 40.0)] {
            let lit = picture(|x, y| scene(x, y) * gain + offset);
            assert_eq!(
                kinds(&lit, None, Some(&r)),
                vec![],
                "gain {gain} offset {offset}"
            );
        }
    }

    #[test]
    fn a_person_walking_through_is_not_a_move() {
        let r = reference();
        let person = picture(|x, y| {
            if (60..90).contains(&x) && y > 20 {
                35.0
            } else {
                scene(x, y)
            }
        });
        assert_eq!(kinds(&person, None, Some(&r)), vec![]);
    }

    #[test]
    fn wrong_sizes_are_refused_not_measured() {
        assert!(Grey::new(160, 90, vec![0; 10]).is_none());
        assert!(Grey::new(4, 4, vec![0; 16]).is_none());
        let a = picture(scene);
        let b = Grey::new(320, 180, vec![0; 320 * 180]).unwrap();
        assert_eq!(changed(&a, &b), None);
    }
}
