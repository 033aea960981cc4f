//! Small, dependency-light charts: log-scale line plots written as SVG, and
//! the same SVG rendered to PNG with resvg (text uses the system's fonts; the
//! DejaVu family on Debian). One source of truth for both files.

use crate::error::{Error, Result};
use std::fmt::Write;
use std::path::Path;

/// One line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label (empty: not in the legend).
    pub label: String,
    /// CSS colour.
    pub color: String,
    /// Dashed (theory) or solid (measured).
    pub dashed: bool,
    /// (x, y) points; y <= 0 or non-finite breaks the line.
    pub points: Vec<(f64, f64)>,
}

/// One panel: shared x/y labels, its own title.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
}

/// A colour per index, from a palette that stays distinct in print.
pub fn color(i: usize) -> String {
    const P: [&str; 8] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
    ];
    P[i % P.len()].to_string()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const PW: f64 = 460.0; // panel plot area
const PH: f64 = 300.0;
const ML: f64 = 70.0;
const MT: f64 = 50.0;
const MB: f64 = 50.0;
const GAP: f64 = 40.0;
const LEGEND: f64 = 150.0;

/// A grid of panels (`cols` per row) with log10 y axes, as SVG text.
pub fn log_plot_svg(title: &str, panels: &[Panel], cols: usize) -> String {
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols).max(1);
    let cell_w = ML + PW + GAP;
    let cell_h = MT + PH + MB;
    let width = cols as f64 * cell_w + LEGEND;
    let height = rows as f64 * cell_h + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="16" text-anchor="middle">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    for (pi, p) in panels.iter().enumerate() {
        let ox = (pi % cols) as f64 * cell_w + ML;
        let oy = (pi / cols) as f64 * cell_h + MT + 10.0;
        panel(&mut s, p, ox, oy);
    }
    // Legend: the first panel's labelled series, plus the line styles.
    let lx = cols as f64 * cell_w;
    let mut ly = MT + 20.0;
    let mut seen = Vec::new();
    for p in panels {
        for sr in p.series.iter().filter(|sr| !sr.label.is_empty()) {
            if seen.contains(&sr.label) {
                continue;
            }
            seen.push(sr.label.clone());
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2.5"/><text x="{}" y="{}" font-size="12">{}</text>"#,
                lx + 24.0,
                sr.color,
                lx + 30.0,
                ly + 4.0,
                esc(&sr.label)
            );
            ly += 18.0;
        }
    }
    ly += 10.0;
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="#444" stroke-width="2"/><text x="{}" y="{}" font-size="12">measured</text>"##,
        lx + 24.0,
        lx + 30.0,
        ly + 4.0
    );
    ly += 18.0;
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="#444" stroke-width="2" stroke-dasharray="6,4"/><text x="{}" y="{}" font-size="12">theory</text>"##,
        lx + 24.0,
        lx + 30.0,
        ly + 4.0
    );
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, p: &Panel, ox: f64, oy: f64) {
    let pts = || {
        p.series
            .iter()
            .flat_map(|sr| sr.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
    };
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y.log10());
        y1 = y1.max(y.log10());
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, -1.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
    let sx = |x: f64| ox + (x - x0) / (x1 - x0) * PW;
    let sy = |ly: f64| oy + PH - (ly - y0) / (y1 - y0) * PH;
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
        ox + PW / 2.0,
        oy - 12.0,
        esc(&p.title)
    );
    let _ = writeln!(
        s,
        r##"<rect x="{ox}" y="{oy}" width="{PW}" height="{PH}" fill="none" stroke="#333"/>"##
    );
    // y ticks: at most ~8 labelled decades.
    let decades = (y1 - y0) as i64;
    let step = (decades / 8).max(1);
    let mut d = y0 as i64;
    while d <= y1 as i64 {
        let y = sy(d as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{ox}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">1e{d}</text>"##,
            ox + PW,
            ox - 6.0,
            y + 4.0
        );
        d += step;
    }
    // x ticks: a 1-2-5 step giving at most ~6 ticks.
    let span = x1 - x0;
    let mag = 10f64.powf((span / 5.0).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|st| span / st <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut x = (x0 / step).ceil() * step;
    while x <= x1 + 1e-9 * span {
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#333"/><text x="{0}" y="{3}" font-size="11" text-anchor="middle">{4}</text>"##,
            sx(x),
            oy + PH,
            oy + PH + 5.0,
            oy + PH + 18.0,
            x
        );
        x += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
        ox + PW / 2.0,
        oy + PH + 38.0,
        esc(&p.x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="{0}" y="{1}" font-size="12" text-anchor="middle" transform="rotate(-90 {0} {1})">{2}</text>"#,
        ox - 52.0,
        oy + PH / 2.0,
        esc(&p.y_label)
    );
    let _ = writeln!(
        s,
        r#"<clipPath id="c{0}{1}"><rect x="{0}" y="{1}" width="{PW}" height="{PH}"/></clipPath>"#,
        ox as i64, oy as i64
    );
    for sr in &p.series {
        let mut path = String::new();
        let mut pen_down = false;
        for &(x, y) in &sr.points {
            if x.is_finite() && y.is_finite() && y > 0.0 {
                let _ = write!(
                    path,
                    "{}{:.1},{:.1} ",
                    if pen_down { "L" } else { "M" },
                    sx(x),
                    sy(y.log10())
                );
                pen_down = true;
            } else {
                pen_down = false;
            }
        }
        if path.is_empty() {
            continue;
        }
        let dash = if sr.dashed {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<path d="{path}" fill="none" stroke="{}" stroke-width="{}"{dash} clip-path="url(#c{}{})"/>"#,
            sr.color,
            if sr.dashed { 1.5 } else { 2.0 },
            ox as i64,
            oy as i64
        );
    }
}

/// Renders SVG text to PNG bytes (system fonts for text).
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_system_fonts();
    let opt = resvg::usvg::Options {
        fontdb: std::sync::Arc::new(db),
        font_family: "DejaVu Sans".into(),
        ..Default::default()
    };
    let tree = resvg::usvg::Tree::from_str(svg, &opt)
        .map_err(|e| Error::invalid("plot", format!("SVG rejected: {e}")))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| Error::invalid("plot", "empty image"))?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| Error::invalid("plot", format!("PNG encoding failed: {e}")))
}

/// Writes `stem.svg` and `stem.png` atomically.
pub fn write_svg_png(svg: &str, stem: &Path) -> Result<()> {
    crate::output::write_atomic(&stem.with_extension("svg"), svg.as_bytes())?;
    crate::output::write_atomic(&stem.with_extension("png"), &svg_to_png(svg)?)
}
