//! Small, dependency-light charts: log-scale line plots written as SVG, and
//! the same SVG rendered to PNG with resvg (text uses the system's fonts; the
//! DejaVu family on Debian). One source of truth for both files.

use crate::app::histogram::Histogram;
use crate::error::{Error, Result};
use std::fmt::Write;

/// One line.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend label (empty: not in the legend).
    pub label: String,
    /// CSS colour.
    pub color: String,
    /// Dashed (theory) or solid (measured).
    pub dashed: bool,
    /// (x, y) points; y <= 0 or non-finite breaks the line.
    pub points: Vec<(f64, f64)>,
    /// A note drawn where the line ends or leaves the panel (e.g. "f32
    /// overflow at layer 36"); solid lines only.
    pub note: Option<String>,
}

/// One panel: shared x/y labels, its own title.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    /// Title above the panel.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Lines.
    pub series: Vec<Series>,
    /// The y axis shows at most these decades (e.g. (-20, 20)); lines that
    /// leave it end in an arrow at the edge with their label. `None`: the
    /// data's whole range.
    pub y_window: Option<(f64, f64)>,
}

/// A colour per index, from a palette that stays distinct in print.
pub(crate) fn color(i: usize) -> String {
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

/// Text centred on (x, y), escaped.
fn centred(s: &mut String, (x, y): (f64, f64), size: u32, text: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{x}" y="{y}" font-size="{size}" text-anchor="middle">{}</text>"#,
        esc(text)
    );
}

/// A vertical axis label: text rotated a quarter turn, centred on (x, y), escaped.
fn rotated(s: &mut String, (x, y): (f64, f64), size: u32, text: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{x}" y="{y}" font-size="{size}" text-anchor="middle" transform="rotate(-90 {x} {y})">{}</text>"#,
        esc(text)
    );
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
pub(crate) fn log_plot_svg(title: &str, panels: &[Panel], cols: usize) -> String {
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
        let (mut y0, mut y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
        if let Some((lo, hi)) = p.y_window {
            (y0, y1) = (y0.max(lo), y1.min(hi));
            if y1 <= y0 {
                (y0, y1) = (lo, hi);
            }
        }
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
    centred(s, (ox + PW / 2.0, oy - 12.0), 14, &p.title);
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
    let mut notes: Vec<(f64, f64)> = Vec::new();
    for sr in p.series.iter().filter(|sr| !sr.dashed) {
        exit_marker(s, sr, &f, &mut notes);
    }
}

/// Where a solid line leaves the window (an arrow at the edge, labelled) or,
/// if it has a note and stays inside, where it ends (a cross, labelled).
/// `taken` holds label positions already used, so labels do not overprint.
fn exit_marker(s: &mut String, sr: &Series, f: &Frame, taken: &mut Vec<(f64, f64)>) {
    let w = &f.w;
    let valid = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite() && y > 0.0;
    let exit = sr
        .points
        .iter()
        .filter(valid)
        .find(|(_, y)| y.log10() > w.y1 || y.log10() < w.y0);
    let (x, up) = match exit {
        Some(&(x, y)) => (x, y.log10() > w.y1),
        None => match (&sr.note, sr.points.iter().rev().find(valid)) {
            (Some(note), Some(&(x, y))) => {
                let (px, py) = (f.sx(x), f.sy(y.log10()));
                let _ = writeln!(
                    s,
                    r#"<text x="{px:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="{}">&#215;</text>"#,
                    py + 4.0,
                    sr.color
                );
                label(s, taken, f.ox, (px, py - 8.0), &sr.color, note);
                return;
            }
            _ => return,
        },
    };
    let px = f.sx(x);
    let (py, tip, base) = if up {
        (f.oy, f.oy, f.oy + 9.0)
    } else {
        (f.oy + PH, f.oy + PH, f.oy + PH - 9.0)
    };
    let _ = writeln!(
        s,
        r#"<polygon points="{px:.1},{tip:.1} {:.1},{base:.1} {:.1},{base:.1}" fill="{}"/>"#,
        px - 5.0,
        px + 5.0,
        sr.color
    );
    let text = match &sr.note {
        Some(n) => format!(
            "{} {}: {n}",
            sr.label,
            if up { "off scale" } else { "below scale" }
        ),
        None => format!(
            "{} {}",
            sr.label,
            if up { "off scale" } else { "below scale" }
        ),
    };
    let ly = if up { py + 22.0 } else { py - 14.0 };
    label(s, taken, f.ox, (px, ly), &sr.color, &text);
}

/// A small label at (x, y), moved down (or up, near the bottom) until it is
/// clear of the labels already placed.
fn label(
    s: &mut String,
    taken: &mut Vec<(f64, f64)>,
    ox: f64,
    (x, y): (f64, f64),
    color: &str,
    text: &str,
) {
    let mut y = y;
    let step = if taken.iter().any(|&(_, ty)| ty > y) {
        -14.0
    } else {
        14.0
    };
    while taken
        .iter()
        .any(|&(tx, ty)| (tx - x).abs() < 150.0 && (ty - y).abs() < 13.0)
    {
        y += step;
    }
    taken.push((x, y));
    // Keep the label inside its panel horizontally.
    let anchor = if x - ox > 0.6 * PW { "end" } else { "start" };
    let _ = writeln!(
        s,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="11" text-anchor="{anchor}" fill="{color}" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"#,
        esc(text)
    );
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
    centred(s, (ox + PW / 2.0, oy + PH + 38.0), 12, &p.x_label);
    rotated(s, (ox - 52.0, oy + PH / 2.0), 12, &p.y_label);
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
/// The diverging colour of `t` in [-1, 1]: blue (vanishing) through a light
/// neutral at 0 (variance 1, healthy) to red (exploding).
fn diverging(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 7] = [
        (33.0, 102.0, 172.0),
        (103.0, 169.0, 207.0),
        (209.0, 229.0, 240.0),
        (247.0, 247.0, 247.0),
        (253.0, 219.0, 199.0),
        (239.0, 138.0, 98.0),
        (178.0, 24.0, 43.0),
    ];
    let t = (t.clamp(-1.0, 1.0) + 1.0) * 3.0;
    let i = (t.floor() as usize).min(5);
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

/// A horizontal line across every heatmap at a multiplier.
#[derive(Debug, Clone)]
pub(crate) struct Marker {
    /// The multiplier.
    pub at: f64,
    /// Its label (e.g. "theory: critical 1.000").
    pub label: String,
    /// Dashed (theory) or solid (measured).
    pub dashed: bool,
}

/// Heatmap panels side by side on one shared colour scale: `grids[p].1[row][col]`
/// is log10 of a variance at multiplier `ys[row]` and layer `col + 1`; NaN is
/// drawn grey (f32 overflow, or exactly zero). The scale is symmetric about
/// 0 (variance 1), with a labelled bar of decade ticks; `markers` are drawn
/// across every panel.
pub(crate) fn heatmaps_svg(
    title: &str,
    grids: &[(&str, Vec<Vec<f64>>)],
    ys: &[f64],
    markers: &[Marker],
) -> String {
    let cell_w = HM_ML + HM_PW + 30.0;
    let width = cell_w * grids.len() as f64 + 150.0;
    let height = HM_MT + HM_PH + 90.0;
    let mut s = svg_open(width, height, title, 14);
    let range = colour_range(grids.iter().map(|(_, g)| g.as_slice()));
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
        centred(&mut s, (cells.ox + HM_PW / 2.0, HM_MT - 10.0), 13, name);
        heatmap_cells(&mut s, grid, &cells, range);
        heatmap_axes(&mut s, ys, &cells);
        for m in markers {
            marker_line(&mut s, ys, &cells, m);
        }
    }
    colour_bar(&mut s, grids.len() as f64 * cell_w + 20.0, range);
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

/// The shared colour scale: symmetric about 0, out to the largest finite
/// |value| of any grid (at most 60 decades), rounded up to a tick step.
/// Returns (half-range, tick step), both in decades.
fn colour_range<'a>(grids: impl Iterator<Item = &'a [Vec<f64>]>) -> (f64, f64) {
    let max = grids
        .flat_map(|g| g.iter().flatten())
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .clamp(1.0, 60.0);
    let step = [1.0, 2.0, 5.0, 10.0, 20.0]
        .into_iter()
        .find(|st| max / st <= 4.0)
        .unwrap_or(20.0);
    ((max / step).ceil() * step, step)
}

fn heatmap_cells(s: &mut String, grid: &[Vec<f64>], c: &Cells, (half, _): (f64, f64)) {
    for (r, row) in grid.iter().enumerate() {
        let y = HM_MT + HM_PH - (r + 1) as f64 * c.ch;
        for (col, &v) in row.iter().enumerate() {
            let fill = if v.is_finite() {
                diverging(v / half)
            } else {
                "#9a9a9a".into()
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
    centred(s, (ox + pw / 2.0, mt + ph + 34.0), 12, "layer l");
    rotated(s, (ox - 50.0, mt + ph / 2.0), 12, "multiplier");
}

/// A marker's line across the panel, if its multiplier is inside the grid.
fn marker_line(s: &mut String, ys: &[f64], c: &Cells, m: &Marker) {
    let (Some(&first), Some(&last)) = (ys.first(), ys.last()) else {
        return;
    };
    if c.rows <= 1 || !(first..=last).contains(&m.at) {
        return;
    }
    // Rows are centred on their multipliers; interpolate between them.
    let k = ys
        .iter()
        .position(|&y| y >= m.at)
        .unwrap_or(c.rows - 1)
        .max(1);
    let frac = (m.at - ys[k - 1]) / (ys[k] - ys[k - 1]);
    let y = HM_MT + HM_PH - ((k - 1) as f64 + 0.5 + frac) * c.ch;
    // Theory labelled at the left above its line, measurement at the right
    // below its line: close multipliers do not overprint each other.
    let (dash, lx, ly, anchor) = if m.dashed {
        (r#" stroke-dasharray="8,5""#, c.ox + 6.0, y - 5.0, "start")
    } else {
        ("", c.ox + HM_PW - 6.0, y + 14.0, "end")
    };
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="#111" stroke-width="2"{dash}/><text x="{lx:.1}" y="{ly:.2}" font-size="11" fill="#111" text-anchor="{anchor}" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"##,
        c.ox,
        c.ox + HM_PW,
        esc(&m.label)
    );
}

/// The shared colour bar: a tick and label every `step` decades, its scale
/// named, and the grey of overflowed cells explained.
fn colour_bar(s: &mut String, bx: f64, (half, step): (f64, f64)) {
    let (mt, ph) = (HM_MT, HM_PH);
    for i in 0..60 {
        let t = f64::from(i) / 59.0;
        let _ = writeln!(
            s,
            r#"<rect x="{bx}" y="{:.2}" width="16" height="{:.2}" fill="{}"/>"#,
            mt + ph - (t * ph) - ph / 59.0,
            ph / 59.0 + 0.5,
            diverging(2.0 * t - 1.0)
        );
    }
    let mut d = -half;
    while d <= half + 1e-9 {
        let y = mt + ph / 2.0 - d / half * ph / 2.0;
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#333"/><text x="{}" y="{:.1}" font-size="11">1e{d:.0}</text>"##,
            bx + 16.0,
            bx + 20.0,
            bx + 23.0,
            y + 4.0
        );
        d += step;
    }
    rotated(
        s,
        (bx + 70.0, mt + ph / 2.0),
        12,
        "variance (log scale; 1 = scale kept)",
    );
    let _ = writeln!(
        s,
        r##"<rect x="{bx}" y="{}" width="16" height="12" fill="#9a9a9a"/><text x="{}" y="{}" font-size="11">f32 overflow</text>"##,
        mt + ph + 20.0,
        bx + 22.0,
        mt + ph + 30.0
    );
}

fn percent(part: u64, total: u64) -> f64 {
    100.0 * part as f64 / total.max(1) as f64
}

/// Glorot and Bengio's picture: one panel per multiplier, the layers of that
/// network overlaid as density curves on one x axis shared by every panel,
/// with what the axis does not show (values beyond it, exact zeros) stated
/// per layer. The y axis of all panels is shared too, capped at 1.3 x the
/// highest layer-1 density, so a collapsed layer's spike is clipped (and
/// labelled) instead of flattening the rest.
pub(crate) fn histograms_svg(title: &str, hs: &[Histogram]) -> String {
    let mut ms: Vec<f64> = hs.iter().map(|h| h.multiplier).collect();
    ms.sort_by(f64::total_cmp);
    ms.dedup();
    let mut ls: Vec<usize> = hs.iter().map(|h| h.layer).collect();
    ls.sort_unstable();
    ls.dedup();
    let (pw, ph) = (300.0, 180.0);
    let (cw, top) = (pw + 70.0, 56.0);
    let width = cw * ms.len().max(1) as f64 + 40.0;
    let legend_h = 16.0 * ls.len() as f64 + 10.0;
    let height = top + ph + 60.0 + legend_h;
    let ymax = 1.3
        * hs.iter()
            .filter(|h| Some(&h.layer) == ls.first())
            .flat_map(|h| (0..h.counts.len()).map(move |i| h.density(i)))
            .fold(0.0f64, f64::max)
            .max(1e-300);
    let mut s = svg_open(width, height, title, 14);
    for (c, &m) in ms.iter().enumerate() {
        let ox = 60.0 + c as f64 * cw;
        histogram_panel(&mut s, hs, m, &ls, (ox, top, pw, ph), ymax);
    }
    s.push_str("</svg>\n");
    s
}

/// Greens, light to dark: deeper layers darker.
fn layer_color(i: usize, n: usize) -> &'static str {
    const SHADES: [&str; 4] = ["#74c476", "#31a354", "#006d2c", "#00441b"];
    SHADES[(i * 3 / n.max(1)).min(3)]
}

fn histogram_panel(
    s: &mut String,
    hs: &[Histogram],
    m: f64,
    ls: &[usize],
    (ox, oy, pw, ph): (f64, f64, f64, f64),
    ymax: f64,
) {
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">multiplier {m:.3}</text>"#,
        ox + pw / 2.0,
        oy - 8.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{ox}" y="{oy}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let mut legend_y = oy + ph + 44.0;
    for (li, &l) in ls.iter().enumerate() {
        let Some(h) = hs.iter().find(|h| h.multiplier == m && h.layer == l) else {
            continue;
        };
        let color = layer_color(li, ls.len());
        let bw = pw / h.counts.len().max(1) as f64;
        let mut path = String::new();
        let mut clipped = false;
        for i in 0..h.counts.len() {
            let d = h.density(i);
            clipped |= d > ymax;
            let y = oy + ph - (d / ymax).min(1.0) * ph;
            let x = ox + i as f64 * bw;
            let _ = write!(
                path,
                "{}{x:.1},{y:.1} H{:.1} ",
                if i == 0 { "M" } else { "L" },
                x + bw
            );
        }
        let _ = writeln!(
            s,
            r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>"#
        );
        let total = h.total();
        let mut facts = Vec::new();
        if h.zeros > 0 {
            facts.push(format!("{:.0}% exactly 0", percent(h.zeros, total)));
        }
        if h.below + h.above > 0 {
            facts.push(format!(
                "{:.1}% beyond the axis",
                percent(h.below + h.above, total)
            ));
        }
        if h.nonfinite > 0 {
            facts.push(format!("{:.0}% overflowed", percent(h.nonfinite, total)));
        }
        if clipped {
            facts.push("peak above the panel".into());
        }
        let text = if facts.is_empty() {
            format!("layer {l}")
        } else {
            format!("layer {l}: {}", facts.join(", "))
        };
        let _ = writeln!(
            s,
            r#"<line x1="{ox}" y1="{0}" x2="{1}" y2="{0}" stroke="{color}" stroke-width="2.5"/><text x="{2}" y="{3}" font-size="11">{4}</text>"#,
            legend_y,
            ox + 20.0,
            ox + 26.0,
            legend_y + 4.0,
            esc(&text)
        );
        legend_y += 16.0;
    }
    if let Some(h) = hs.iter().find(|h| h.multiplier == m) {
        for (x, v, anchor) in [
            (ox, h.lo, "start"),
            (ox + pw / 2.0, 0.5 * (h.lo + h.hi), "middle"),
            (ox + pw, h.hi, "end"),
        ] {
            let _ = writeln!(
                s,
                r#"<text x="{x}" y="{}" font-size="10" text-anchor="{anchor}">{}</text>"#,
                oy + ph + 13.0,
                tick(v)
            );
        }
        centred(
            s,
            (ox + pw / 2.0, oy + ph + 28.0),
            11,
            "activation a_l (same axis in every panel)",
        );
    }
    rotated(
        s,
        (ox - 14.0, oy + ph / 2.0),
        11,
        "density (area = share drawn)",
    );
}

/// A short axis label: 3 significant digits, no trailing zeros.
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let t = format!("{v:.3}");
    if v.abs() >= 0.01 && v.abs() < 1e4 {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}
