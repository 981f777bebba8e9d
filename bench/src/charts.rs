//! PNG charts for `compare`, drawn with plotters' bitmap backend in pixel
//! coordinates and without any text: this build has no font backend (no
//! font-kit, no system fonts), so axes and legend are described in
//! report.md, and this module returns what that description needs.
//! Runs on the calling thread; writes only the files it is given.

use crate::BenchError;
use plotters::prelude::*;
use std::path::Path;

/// Chart size in pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 500;
const MARGIN: i32 = 40;

/// Series colours, in target order; report.md names them.
pub const PALETTE: [(u8, u8, u8, &str); 8] = [
    (31, 119, 180, "blue"),
    (255, 127, 14, "orange"),
    (44, 160, 44, "green"),
    (214, 39, 40, "red"),
    (148, 103, 189, "purple"),
    (140, 86, 75, "brown"),
    (227, 119, 194, "pink"),
    (127, 127, 127, "grey"),
];

pub fn colour(i: usize) -> RGBColor {
    let (r, g, b, _) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

pub fn colour_name(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()].3
}

fn chart_err<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Chart(e.to_string())
}

/// A "nice" axis maximum and grid step (1, 2 or 5 times a power of ten)
/// covering `max` in about five steps.
pub fn nice_axis(max: f64) -> (f64, f64) {
    if !(max > 0.0 && max.is_finite()) {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow);
    ((max / step).ceil() * step, step)
}

/// Bar data: median with a min–max whisker.
#[derive(Debug, Clone, Copy)]
pub struct Bar {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

/// Draws one bar per target; returns (axis max, grid step) for the legend.
pub fn throughput_bars(path: &Path, bars: &[Bar]) -> Result<(f64, f64), BenchError> {
    let top = bars.iter().map(|b| b.max).fold(0.0, f64::max);
    let (axis_max, step) = nice_axis(top);
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let (w, h) = (WIDTH as i32, HEIGHT as i32);
    let (x0, x1, y0, y1) = (MARGIN, w - MARGIN, h - MARGIN, MARGIN);
    let y_of = |v: f64| y0 - ((v / axis_max) * f64::from(y0 - y1)) as i32;
    draw_grid_h(
        &root,
        x0,
        x1,
        (0..=((axis_max / step).round() as i32)).map(|i| y_of(f64::from(i) * step)),
    )?;
    let n = bars.len().max(1) as i32;
    let slot = (x1 - x0) / n;
    for (i, b) in bars.iter().enumerate() {
        let left = x0 + slot * i as i32 + slot / 5;
        let right = x0 + slot * (i as i32 + 1) - slot / 5;
        root.draw(&Rectangle::new(
            [(left, y_of(b.median)), (right, y0)],
            colour(i).filled(),
        ))
        .map_err(chart_err)?;
        let mid = (left + right) / 2;
        let whisker = ShapeStyle::from(&BLACK).stroke_width(2);
        root.draw(&PathElement::new(
            vec![(mid, y_of(b.min)), (mid, y_of(b.max))],
            whisker,
        ))
        .map_err(chart_err)?;
        for v in [b.min, b.max] {
            root.draw(&PathElement::new(
                vec![(mid - 8, y_of(v)), (mid + 8, y_of(v))],
                whisker,
            ))
            .map_err(chart_err)?;
        }
    }
    draw_axes(&root, x0, x1, y0, y1)?;
    root.present().map_err(chart_err)?;
    Ok((axis_max, step))
}

/// x position of a percentile on a "nines" scale: 0 → 0, 90 → 1, 99 → 2 …;
/// the maximum (100) is drawn one step past 99.99.
pub fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        5.0
    } else {
        (-(1.0 - p / 100.0).log10()).clamp(0.0, 4.0)
    }
}

/// What the latency chart's axes span, for the legend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyAxes {
    /// y is log10(ms) from 10^decade_min to 10^decade_max, a gridline per decade.
    pub decade_min: i32,
    pub decade_max: i32,
}

/// Draws one latency-vs-percentile curve per target.
pub fn latency_curves(path: &Path, curves: &[Vec<(f64, f64)>]) -> Result<LatencyAxes, BenchError> {
    let values = curves
        .iter()
        .flatten()
        .map(|(_, ms)| *ms)
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (decade_min, decade_max) = if lo <= hi {
        (
            lo.log10().floor() as i32,
            (hi.log10().ceil() as i32).max(lo.log10().floor() as i32 + 1),
        )
    } else {
        (-1, 1)
    };
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_err)?;
    let (w, h) = (WIDTH as i32, HEIGHT as i32);
    let (x0, x1, y0, y1) = (MARGIN, w - MARGIN, h - MARGIN, MARGIN);
    let span = f64::from(decade_max - decade_min);
    let y_of = |ms: f64| {
        y0 - (((ms.max(1e-9).log10() - f64::from(decade_min)) / span) * f64::from(y0 - y1)) as i32
    };
    let x_of = |p: f64| x0 + ((nines(p) / 5.0) * f64::from(x1 - x0)) as i32;
    draw_grid_h(
        &root,
        x0,
        x1,
        (decade_min..=decade_max).map(|d| y_of(10f64.powi(d))),
    )?;
    let grey = RGBColor(220, 220, 220);
    for p in [90.0, 99.0, 99.9, 99.99, 100.0] {
        root.draw(&PathElement::new(vec![(x_of(p), y0), (x_of(p), y1)], grey))
            .map_err(chart_err)?;
    }
    for (i, c) in curves.iter().enumerate() {
        let pts: Vec<(i32, i32)> = c
            .iter()
            .filter(|(_, ms)| *ms > 0.0)
            .map(|(p, ms)| (x_of(*p), y_of(*ms)))
            .collect();
        root.draw(&PathElement::new(
            pts.clone(),
            ShapeStyle::from(&colour(i)).stroke_width(3),
        ))
        .map_err(chart_err)?;
        for pt in pts {
            root.draw(&Circle::new(pt, 4, colour(i).filled()))
                .map_err(chart_err)?;
        }
    }
    draw_axes(&root, x0, x1, y0, y1)?;
    root.present().map_err(chart_err)?;
    Ok(LatencyAxes {
        decade_min,
        decade_max,
    })
}

fn draw_grid_h<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    x0: i32,
    x1: i32,
    ys: impl Iterator<Item = i32>,
) -> Result<(), BenchError> {
    let grey = RGBColor(220, 220, 220);
    for y in ys {
        root.draw(&PathElement::new(vec![(x0, y), (x1, y)], grey))
            .map_err(chart_err)?;
    }
    Ok(())
}

fn draw_axes<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    x0: i32,
    x1: i32,
    y0: i32,
    y1: i32,
) -> Result<(), BenchError> {
    let axis = ShapeStyle::from(&BLACK).stroke_width(2);
    root.draw(&PathElement::new(vec![(x0, y1), (x0, y0), (x1, y0)], axis))
        .map_err(chart_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves axis maxima are round numbers that cover the data.
    #[test]
    fn nice_axis_covers() {
        assert_eq!(nice_axis(87.0), (100.0, 20.0));
        assert_eq!(nice_axis(4.2), (5.0, 1.0));
        let (m, s) = nice_axis(1234.0);
        assert!(m >= 1234.0 && s > 0.0);
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
    }

    // Proves the nines scale places the standard percentiles one step apart.
    #[test]
    fn nines_scale() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
        assert_eq!(nines(100.0), 5.0);
    }

    // Proves both charts render to valid PNG files without any font backend.
    #[test]
    fn charts_render_png() {
        let dir = std::env::temp_dir().join(format!("fjord-bench-charts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let bars = [
            Bar {
                min: 10.0,
                median: 12.0,
                max: 13.0,
            },
            Bar {
                min: 30.0,
                median: 31.0,
                max: 35.0,
            },
        ];
        let (m, _) = throughput_bars(&dir.join("t.png"), &bars).expect("bars");
        assert!(m >= 35.0);
        let curves = vec![
            vec![(0.0, 0.1), (50.0, 0.5), (99.0, 2.0), (100.0, 9.0)],
            vec![(0.0, 0.2), (50.0, 1.0), (100.0, 30.0)],
        ];
        let axes = latency_curves(&dir.join("l.png"), &curves).expect("curves");
        assert_eq!(
            axes,
            LatencyAxes {
                decade_min: -1,
                decade_max: 2
            }
        );
        for f in ["t.png", "l.png"] {
            let bytes = std::fs::read(dir.join(f)).expect("png");
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
