//! Small, dependency-light charts: log-scale line plots written as SVG, and
//! the same SVG rendered to PNG with resvg (text uses the system's fonts; the
//! DejaVu family on Debian). One source of truth for both files.

use crate::error::{Error, Result};
use std::fmt::Write;

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

/// The opening of an SVG document: white background, centred title.
fn svg_open(width: f64, height: f64, title: &str, title_size: u32) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="{title_size}" text-anchor="middle">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    s
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
    let mut s = svg_open(width, height, title, 16);
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

/// A panel's data window: x range and log10 y range (whole decades).
struct Window {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Window {
    fn of(p: &Panel) -> Window {
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        let pts = p
            .series
            .iter()
            .flat_map(|sr| sr.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0);
        for &(x, y) in pts {
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
        Window { x0, x1, y0, y1 }
    }
}

/// Where a panel sits on the page, and its data-to-page maps.
struct Frame {
    ox: f64,
    oy: f64,
    w: Window,
}

impl Frame {
    fn sx(&self, x: f64) -> f64 {
        self.ox + (x - self.w.x0) / (self.w.x1 - self.w.x0) * PW
    }

    fn sy(&self, ly: f64) -> f64 {
        self.oy + PH - (ly - self.w.y0) / (self.w.y1 - self.w.y0) * PH
    }
}

fn panel(s: &mut String, p: &Panel, ox: f64, oy: f64) {
    let f = Frame {
        ox,
        oy,
        w: Window::of(p),
    };
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
    panel_axes(s, p, &f);
    let _ = writeln!(
        s,
        r#"<clipPath id="c{0}{1}"><rect x="{0}" y="{1}" width="{PW}" height="{PH}"/></clipPath>"#,
        ox as i64, oy as i64
    );
    for sr in &p.series {
        panel_series(s, sr, &f);
    }
}

/// Decade ticks on y, 1-2-5 ticks on x, and both axis labels.
fn panel_axes(s: &mut String, p: &Panel, f: &Frame) {
    let (ox, oy, w) = (f.ox, f.oy, &f.w);
    // y ticks: at most ~8 labelled decades.
    let decades = (w.y1 - w.y0) as i64;
    let step = (decades / 8).max(1);
    let mut d = w.y0 as i64;
    while d <= w.y1 as i64 {
        let y = f.sy(d as f64);
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
    let span = w.x1 - w.x0;
    let mag = 10f64.powf((span / 5.0).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|st| span / st <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut x = (w.x0 / step).ceil() * step;
    while x <= w.x1 + 1e-9 * span {
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#333"/><text x="{0}" y="{3}" font-size="11" text-anchor="middle">{4}</text>"##,
            f.sx(x),
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
}

/// One series as a path, broken where a value is not positive and finite.
fn panel_series(s: &mut String, sr: &Series, f: &Frame) {
    let mut path = String::new();
    let mut pen_down = false;
    for &(x, y) in &sr.points {
        if x.is_finite() && y.is_finite() && y > 0.0 {
            let _ = write!(
                path,
                "{}{:.1},{:.1} ",
                if pen_down { "L" } else { "M" },
                f.sx(x),
                f.sy(y.log10())
            );
            pen_down = true;
        } else {
            pen_down = false;
        }
    }
    if path.is_empty() {
        return;
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
        f.ox as i64,
        f.oy as i64
    );
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
        .map_err(|e| Error::internal("plot", format!("SVG rejected: {e}")))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| Error::internal("plot", "empty image"))?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| Error::internal("plot", format!("PNG encoding failed: {e}")))
}

/// A viridis-like colour for t in [0, 1] (5-stop linear interpolation).
fn viridis(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// Heatmap panels side by side: `grids[p].1[row][col]` is the value at
/// multiplier `ys[row]` and layer `col + 1`; NaN is drawn grey (overflow or
/// underflow). `line` draws a dashed horizontal line at that multiplier.
pub fn heatmaps_svg(
    title: &str,
    grids: &[(&str, Vec<Vec<f64>>)],
    ys: &[f64],
    line: Option<f64>,
) -> String {
    let cell_w = HM_ML + HM_PW + 90.0;
    let width = cell_w * grids.len() as f64 + 20.0;
    let height = HM_MT + HM_PH + 70.0;
    let mut s = svg_open(width, height, title, 14);
    for (pi, (name, grid)) in grids.iter().enumerate() {
        let rows = grid.len().max(1);
        let cols = grid.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let cells = Cells {
            ox: pi as f64 * cell_w + HM_ML,
            rows,
            cols,
            cw: HM_PW / cols as f64,
            ch: HM_PH / rows as f64,
        };
        let (lo, hi) = colour_range(grid);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">{}</text>"#,
            cells.ox + HM_PW / 2.0,
            HM_MT - 10.0,
            esc(name)
        );
        heatmap_cells(&mut s, grid, &cells, (lo, hi));
        heatmap_axes(&mut s, ys, &cells);
        if let Some(m) = line {
            critical_line(&mut s, ys, &cells, m);
        }
        colour_bar(&mut s, cells.ox + HM_PW + 14.0, (lo, hi));
    }
    s.push_str("</svg>\n");
    s
}

// Heatmap panel geometry.
const HM_PW: f64 = 420.0;
const HM_PH: f64 = 320.0;
const HM_ML: f64 = 70.0;
const HM_MT: f64 = 60.0;

/// One heatmap panel: its left edge and its grid of cells.
struct Cells {
    ox: f64,
    rows: usize,
    cols: usize,
    cw: f64,
    ch: f64,
}

/// The colour scale of a grid: its finite range, clamped to [-60, 60].
fn colour_range(grid: &[Vec<f64>]) -> (f64, f64) {
    let finite = || grid.iter().flatten().copied().filter(|v| v.is_finite());
    let lo = finite().fold(f64::INFINITY, f64::min).max(-60.0);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max).min(60.0);
    if lo < hi {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    }
}

fn heatmap_cells(s: &mut String, grid: &[Vec<f64>], c: &Cells, (lo, hi): (f64, f64)) {
    for (r, row) in grid.iter().enumerate() {
        let y = HM_MT + HM_PH - (r + 1) as f64 * c.ch;
        for (col, &v) in row.iter().enumerate() {
            let fill = if v.is_finite() {
                viridis((v - lo) / (hi - lo))
            } else {
                "#bbbbbb".into()
            };
            let _ = writeln!(
                s,
                r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{fill}"/>"#,
                c.ox + col as f64 * c.cw,
                y,
                c.cw + 0.3,
                c.ch + 0.3
            );
        }
    }
}

fn heatmap_axes(s: &mut String, ys: &[f64], c: &Cells) {
    let (ox, mt, pw, ph) = (c.ox, HM_MT, HM_PW, HM_PH);
    let _ = writeln!(
        s,
        r##"<rect x="{ox}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    // y ticks: about 6 multipliers.
    let every = c.rows.div_ceil(6).max(1);
    for (r, m) in ys.iter().enumerate().step_by(every) {
        let y = mt + ph - (r as f64 + 0.5) * c.ch;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{m:.3}</text>"#,
            ox - 6.0,
            y + 4.0
        );
    }
    for col in [1, c.cols.div_ceil(2), c.cols] {
        let x = ox + (col as f64 - 0.5) * c.cw;
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" font-size="11" text-anchor="middle">{col}</text>"#,
            mt + ph + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">layer l</text>"#,
        ox + pw / 2.0,
        mt + ph + 34.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{0}" y="{1}" font-size="12" text-anchor="middle" transform="rotate(-90 {0} {1})">multiplier</text>"#,
        ox - 50.0,
        mt + ph / 2.0
    );
}

/// The theory's critical multiplier `m` as a dashed line across the panel.
fn critical_line(s: &mut String, ys: &[f64], c: &Cells, m: f64) {
    let (Some(&first), Some(&last)) = (ys.first(), ys.last()) else {
        return;
    };
    if c.rows <= 1 || m < first || m > last {
        return;
    }
    // Rows are centred on their multipliers; interpolate between them.
    let k = ys.iter().position(|&y| y >= m).unwrap_or(c.rows - 1).max(1);
    let frac = (m - ys[k - 1]) / (ys[k] - ys[k - 1]);
    let y = HM_MT + HM_PH - ((k - 1) as f64 + 0.5 + frac) * c.ch;
    let _ = writeln!(
        s,
        r#"<line x1="{}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="white" stroke-width="2" stroke-dasharray="8,5"/><text x="{}" y="{}" font-size="11" fill="white">theory: critical {m:.3}</text>"#,
        c.ox,
        c.ox + HM_PW,
        c.ox + 6.0,
        y - 5.0
    );
}

fn colour_bar(s: &mut String, bx: f64, (lo, hi): (f64, f64)) {
    let (mt, ph) = (HM_MT, HM_PH);
    for i in 0..50 {
        let t = f64::from(i) / 49.0;
        let _ = writeln!(
            s,
            r#"<rect x="{bx}" y="{:.2}" width="14" height="{:.2}" fill="{}"/>"#,
            mt + ph - (t * ph),
            ph / 49.0 + 0.5,
            viridis(t)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="11">{hi:.0}</text>"#,
        bx + 18.0,
        mt + 8.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="11">{lo:.0}</text>"#,
        bx + 18.0,
        mt + ph
    );
}

/// A histogram of one layer's activations.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Histogram {
    /// Layer.
    pub layer: usize,
    /// The network's multiplier.
    pub multiplier: f64,
    /// Range of the bins.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Counts per bin (values outside fall into the end bins).
    pub counts: Vec<u64>,
    /// NaN / Inf values (not binned).
    pub nonfinite: u64,
}

impl Histogram {
    /// 50 bins over [-1, 1] for bounded activations, else over +-4 rms.
    pub fn of(a: &[f32], layer: usize, multiplier: f64, bounded: bool) -> Histogram {
        let finite = || a.iter().filter(|v| v.is_finite()).map(|&v| f64::from(v));
        let n = finite().count().max(1) as f64;
        let rms = (finite().map(|v| v * v).sum::<f64>() / n).sqrt();
        let (lo, hi) = if bounded {
            (-1.0, 1.0)
        } else if rms > 0.0 {
            (-4.0 * rms, 4.0 * rms)
        } else {
            (-1.0, 1.0)
        };
        let mut counts = vec![0u64; 50];
        for v in finite() {
            let i = (((v - lo) / (hi - lo)) * 50.0).floor().clamp(0.0, 49.0) as usize;
            counts[i] += 1;
        }
        Histogram {
            layer,
            multiplier,
            lo,
            hi,
            counts,
            nonfinite: a.iter().filter(|v| !v.is_finite()).count() as u64,
        }
    }
}

/// Small multiples of histograms: one row per multiplier, one column per layer.
pub fn histograms_svg(title: &str, hs: &[Histogram]) -> String {
    let mut ms: Vec<f64> = Vec::new();
    let mut ls: Vec<usize> = Vec::new();
    for h in hs {
        if !ms.contains(&h.multiplier) {
            ms.push(h.multiplier);
        }
        if !ls.contains(&h.layer) {
            ls.push(h.layer);
        }
    }
    let (pw, ph) = (240.0, 120.0);
    let (cw, chh) = (pw + 30.0, ph + 50.0);
    let width = cw * ls.len().max(1) as f64 + 40.0;
    let height = chh * ms.len().max(1) as f64 + 50.0;
    let mut s = svg_open(width, height, title, 14);
    for h in hs {
        let (Some(r), Some(c)) = (
            ms.iter().position(|&m| m == h.multiplier),
            ls.iter().position(|&l| l == h.layer),
        ) else {
            continue;
        };
        let ox = 30.0 + c as f64 * cw;
        let oy = 50.0 + r as f64 * chh;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">multiplier {:.3}, layer {}</text>"#,
            ox + pw / 2.0,
            oy + 12.0,
            h.multiplier,
            h.layer
        );
        let top = oy + 20.0;
        let max = h.counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let bw = pw / h.counts.len().max(1) as f64;
        for (i, &k) in h.counts.iter().enumerate() {
            let bh = k as f64 / max * ph;
            let _ = writeln!(
                s,
                r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{bh:.2}" fill="#1f77b4"/>"##,
                ox + i as f64 * bw,
                top + ph - bh,
                bw * 0.9
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{ox}" y1="{0}" x2="{1}" y2="{0}" stroke="#333"/>"##,
            top + ph,
            ox + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{ox}" y="{}" font-size="10">{:.3}</text>"#,
            top + ph + 12.0,
            h.lo
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{:.3}</text>"#,
            ox + pw,
            top + ph + 12.0,
            h.hi
        );
    }
    s.push_str("</svg>\n");
    s
}
