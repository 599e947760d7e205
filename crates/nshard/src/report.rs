//! Self-contained HTML reports of `diff --html` and `log --html`: a heat map of how much each
//! tensor changed (layers down, tensor kinds across), a colour scale, and a sortable table.
//!
//! The page makes no network request: styles and the one script are inline, allowed by their
//! hashes in a Content-Security-Policy that forbids everything else (`default-src 'none'`), and
//! every tensor name (untrusted: it comes from the file) is escaped. The heat map is inline SVG
//! whose colours are presentation attributes, so no inline `style=` is needed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use nshard_core::{FileDiff, TensorChange, TensorChangeKind, TensorStats, VersionChange};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\
.meta{color:#555;margin:2px 0}.flag{color:#b00000;font-weight:bold}\
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:left}\
th{cursor:pointer;background:#f6f6f6;position:sticky;top:0}td.d{white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
svg text{font:11px system-ui,sans-serif;fill:#333}.scroll{overflow-x:auto}\
.version{margin:16px 0 4px;font-weight:600}code{font-size:12px}";

const SCRIPT: &str = "document.querySelectorAll('table.sortable').forEach(function(t){\
t.setAttribute('data-sortable','ready');var hs=t.tHead.rows[0].cells;\
Array.prototype.forEach.call(hs,function(h,i){h.addEventListener('click',function(){\
var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),asc=h.getAttribute('data-dir')!=='asc';\
rows.sort(function(x,y){var a=x.cells[i].getAttribute('data-v'),c=y.cells[i].getAttribute('data-v');\
var p=parseFloat(a),q=parseFloat(c);var r=(isNaN(p)||isNaN(q))?a.localeCompare(c):p-q;return asc?r:-r;});\
h.setAttribute('data-dir',asc?'asc':'desc');rows.forEach(function(r){b.appendChild(r);});});});});";

/// Colour of a cell that did not change.
const UNCHANGED: &str = "#eeeeee";
/// Colour of a changed tensor without figures (added, re-typed, a dtype without figures).
const NO_FIGURES: &str = "#b8b8b8";
/// Colour of a tensor with NaN or Inf values.
const NON_FINITE: &str = "#d00000";

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn csp_hash(s: &str) -> String {
    let mut h = nshard_core::format::Hasher::new();
    h.update(s.as_bytes());
    let digest = h.finish();
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_bytes())
    )
}

/// The page around `body`.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src {}; script-src {}; \
img-src 'none'; connect-src 'none'; font-src 'none'; form-action 'none'; base-uri 'none'\">\n\
<meta name=\"viewport\" content=\"width=device-width\">\n<title>{}</title>\n<style>{STYLE}</style></head>\n\
<body>\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n",
        csp_hash(STYLE),
        csp_hash(SCRIPT),
        esc(title)
    )
}

/// The figure a tensor is coloured by: relative change, or for a zero old norm the absolute
/// change, or for a quantized tensor the share of changed blocks.
fn value(s: &TensorStats) -> f64 {
    match s {
        TensorStats::Float(f) => f.rel_l2.unwrap_or(f.l2),
        TensorStats::Blocks(b) if b.blocks > 0 => b.changed_blocks as f64 / b.blocks as f64,
        _ => 0.0,
    }
}

/// A log colour scale over the figures shown.
#[derive(Clone, Copy)]
struct Scale {
    lo: f64,
    hi: f64,
}

impl Scale {
    fn over<'a>(stats: impl Iterator<Item = &'a TensorStats>) -> Scale {
        let vals: Vec<f64> = stats
            .map(value)
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let hi = vals.iter().copied().fold(0.0, f64::max);
        if hi <= 0.0 {
            return Scale { lo: 1e-6, hi: 1.0 };
        }
        let lo = vals.iter().copied().fold(hi, f64::min).max(hi / 1e4);
        Scale {
            lo: if lo >= hi { hi / 10.0 } else { lo },
            hi,
        }
    }

    /// 0..=1 on the scale.
    fn t(&self, v: f64) -> f64 {
        if v <= self.lo {
            return 0.0;
        }
        ((v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())).clamp(0.0, 1.0)
    }

    /// A colour from pale yellow through orange to dark purple.
    fn colour(&self, v: f64) -> String {
        ramp(self.t(v))
    }
}

fn ramp(t: f64) -> String {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [255.0, 247.0, 188.0]),
        (0.25, [254.0, 196.0, 79.0]),
        (0.5, [236.0, 112.0, 20.0]),
        (0.75, [178.0, 24.0, 43.0]),
        (1.0, [63.0, 0.0, 125.0]),
    ];
    let i = STOPS
        .windows(2)
        .position(|w| t <= w[1].0)
        .unwrap_or(STOPS.len() - 2);
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let f = ((t - a.0) / (b.0 - a.0)).clamp(0.0, 1.0);
    let c = |k: usize| (a.1[k] + (b.1[k] - a.1[k]) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", c(0), c(1), c(2))
}

fn fill(e: &TensorChange, scale: Scale) -> String {
    match (&e.change, &e.stats) {
        (_, Some(TensorStats::Float(f))) if f.non_finite > 0 => NON_FINITE.into(),
        (_, Some(s)) => scale.colour(value(s)),
        (TensorChangeKind::Unchanged, _) => UNCHANGED.into(),
        _ => NO_FIGURES.into(),
    }
}

/// `1.23e-3`.
fn sci(v: f64) -> String {
    format!("{v:.3e}")
}

fn shape(e: &TensorChange) -> String {
    let s = e.shape.as_ref().or(e.from_shape.as_ref());
    s.map(|s| s.iter().map(u64::to_string).collect::<Vec<_>>().join("×"))
        .unwrap_or_default()
}

fn dtype(e: &TensorChange) -> String {
    e.dtype
        .as_deref()
        .or(e.from_dtype.as_deref())
        .unwrap_or("?")
        .to_string()
}

/// One line per figure, for a cell's tooltip.
fn figures(e: &TensorChange) -> String {
    let mut t = format!("{}\n{} [{}]\n", e.name, dtype(e), shape(e));
    match (&e.change, &e.stats) {
        (_, Some(TensorStats::Float(f))) => {
            let _ = write!(
                t,
                "rel_l2 {}\nmax_abs {}\nchanged {} of {} elements",
                f.rel_l2
                    .map(sci)
                    .unwrap_or_else(|| format!("none (old norm 0; l2 {})", sci(f.l2))),
                sci(f.max_abs),
                f.changed_elements,
                f.elements
            );
            if f.non_finite > 0 {
                let _ = write!(t, "\n{} NaN/Inf values", f.non_finite);
            }
        }
        (_, Some(TensorStats::Blocks(b))) => {
            let _ = write!(
                t,
                "quantized: {} of {} blocks changed",
                b.changed_blocks, b.blocks
            );
        }
        (TensorChangeKind::Unchanged, _) => t.push_str("unchanged"),
        (k, _) => {
            let _ = write!(
                t,
                "{}",
                e.stats_note
                    .clone()
                    .unwrap_or_else(|| format!("{k:?}").to_lowercase())
            );
        }
    }
    t
}

/// Where a tensor sits in the heat map: (group, layer, kind), from names like
/// `model.layers.12.self_attn.q_proj.weight`: the first all-digit component is the layer.
fn place(name: &str) -> Option<(String, u64, String)> {
    let parts: Vec<&str> = name.split('.').collect();
    let i = parts
        .iter()
        .position(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))?;
    let kind = parts[i + 1..].join(".");
    if kind.is_empty() {
        return None;
    }
    Some((parts[..i].join("."), parts[i].parse().ok()?, kind))
}

/// A grid of coloured cells with row and column labels, as inline SVG.
struct Grid<'a> {
    rows: Vec<String>,
    cols: Vec<String>,
    cells: Vec<(usize, usize, &'a TensorChange)>,
    cell: (u32, u32),
    /// Column labels upright, every this many columns (small multiples), instead of rotated.
    upright_every: Option<usize>,
}

impl Grid<'_> {
    fn svg(&self, scale: Scale, id: &str) -> String {
        let (cw, ch) = self.cell;
        let left = 8 + 7 * self
            .rows
            .iter()
            .map(|r| r.chars().count())
            .max()
            .unwrap_or(0) as u32;
        let longest = self
            .cols
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0) as f64;
        // Rotated 45°, a label of n characters (about 6.2 px each) rises and runs 4.4 n px.
        let top = match self.upright_every {
            Some(_) => 16,
            None => 14 + (4.4 * longest) as u32,
        };
        let (w, h) = (
            left + cw * self.cols.len() as u32 + top + 20,
            top + ch * self.rows.len() as u32 + 4,
        );
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\" class=\"heatmap\" width=\"{w}\" height=\"{h}\" role=\"img\">"
        );
        for (i, r) in self.rows.iter().enumerate() {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                left - 6,
                top + ch * i as u32 + ch * 3 / 4,
                esc(r)
            );
        }
        for (j, c) in self.cols.iter().enumerate() {
            let x = left + cw * j as u32 + cw / 2;
            if let Some(every) = self.upright_every {
                if j % every == 0 {
                    let _ = write!(
                        s,
                        "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                        top - 4,
                        esc(c)
                    );
                }
                continue;
            }
            let _ = write!(
                s,
                "<text x=\"{x}\" y=\"{}\" transform=\"rotate(-45 {x} {})\">{}</text>",
                top - 4,
                top - 4,
                esc(c)
            );
        }
        for (r, c, e) in &self.cells {
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#fff\" data-tensor=\"{}\"><title>{}</title></rect>",
                left + cw * *c as u32,
                top + ch * *r as u32,
                cw,
                ch,
                fill(e, scale),
                esc(&e.name),
                esc(&figures(e))
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// Horizontal bars, one per tensor, longest for the most changed (log scale).
fn bars(tensors: &[&TensorChange], scale: Scale, id: &str) -> String {
    let mut list: Vec<&&TensorChange> = tensors.iter().collect();
    list.sort_by(|a, b| rank(b).total_cmp(&rank(a)));
    let left = 8 + 7 * list
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(80) as u32;
    let h = 16 * list.len() as u32 + 4;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\" class=\"bars\" width=\"{}\" height=\"{h}\" role=\"img\">",
        left + 420
    );
    for (i, e) in list.iter().enumerate() {
        let y = 16 * i as u32 + 2;
        let len = match &e.stats {
            Some(st) => 4.0 + 300.0 * scale.t(value(st)),
            None => 4.0,
        };
        let label = match &e.stats {
            Some(st) => sci(value(st)),
            None if e.change == TensorChangeKind::Unchanged => "unchanged".into(),
            None => format!("{:?}", e.change).to_lowercase(),
        };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{left}\" y=\"{y}\" width=\"{len:.0}\" height=\"12\" fill=\"{}\" data-tensor=\"{}\"><title>{}</title></rect><text x=\"{}\" y=\"{}\">{}</text>",
            left - 6,
            y + 10,
            esc(&e.name),
            fill(e, scale),
            esc(&e.name),
            esc(&figures(e)),
            left as f64 + len + 6.0,
            y + 10,
            esc(&label)
        );
    }
    s.push_str("</svg>");
    s
}

fn rank(e: &TensorChange) -> f64 {
    match &e.stats {
        Some(s) => s.rank(),
        None if e.change == TensorChangeKind::Unchanged => -1.0,
        None => -0.5,
    }
}

/// The heat map (or bars) of one set of tensors.
fn picture(tensors: &[&TensorChange], scale: Scale, id: &str, small: bool) -> String {
    // Columns in the order the file holds the tensors (the same in every version).
    let mut tensors = tensors.to_vec();
    tensors.sort_by_key(|e| e.index);
    let tensors = &tensors[..];
    let mut rows: BTreeMap<(String, u64), usize> = BTreeMap::new();
    let mut cols: Vec<String> = Vec::new();
    let mut placed = Vec::new();
    let mut other = Vec::new();
    for e in tensors {
        match place(&e.name) {
            Some((g, l, k)) => {
                rows.insert((g.clone(), l), 0);
                if !cols.contains(&k) {
                    cols.push(k.clone());
                }
                placed.push((g, l, k, *e));
            }
            None => other.push(*e),
        }
    }
    if rows.len() < 2 {
        return bars(tensors, scale, id);
    }
    for (i, v) in rows.values_mut().enumerate() {
        *v = i;
    }
    let groups = rows
        .keys()
        .map(|(g, _)| g)
        .collect::<std::collections::BTreeSet<_>>();
    let label = |g: &str, l: u64| {
        if groups.len() > 1 {
            format!("{g} {l}")
        } else {
            format!("{l}")
        }
    };
    let row_labels: Vec<String> = rows.keys().map(|(g, l)| label(g, *l)).collect();
    let cells: Vec<(usize, usize, &TensorChange)> = placed
        .iter()
        .map(|(g, l, k, e)| {
            let r = rows[&(g.clone(), *l)];
            let c = cols.iter().position(|x| x == k).expect("column added");
            (r, c, *e)
        })
        .collect();
    let grid = if small {
        // Small multiples: layers across, kinds down.
        Grid {
            rows: cols.clone(),
            cols: row_labels,
            cells: cells.into_iter().map(|(r, c, e)| (c, r, e)).collect(),
            cell: (12, 13),
            upright_every: Some(4),
        }
    } else {
        Grid {
            rows: row_labels,
            cols,
            cells,
            cell: (22, 16),
            upright_every: None,
        }
    };
    let mut s = format!("<div class=\"scroll\">{}</div>", grid.svg(scale, id));
    if !other.is_empty() && !small {
        let _ = write!(
            s,
            "<h2>Other tensors</h2><div class=\"scroll\">{}</div>",
            bars(&other, scale, &format!("{id}-other"))
        );
    }
    s
}

fn legend(scale: Scale) -> String {
    let mut s = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"scale\" width=\"560\" height=\"44\" role=\"img\">",
    );
    for i in 0..40 {
        let t = f64::from(i) / 39.0;
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"4\" width=\"6\" height=\"14\" fill=\"{}\"/>",
            10 + i * 6,
            ramp(t)
        );
    }
    let _ = write!(
        s,
        "<text x=\"10\" y=\"32\">{}</text><text x=\"250\" y=\"32\" text-anchor=\"end\">{}</text>\
<rect x=\"270\" y=\"4\" width=\"14\" height=\"14\" fill=\"{UNCHANGED}\"/><text x=\"288\" y=\"15\">unchanged</text>\
<rect x=\"360\" y=\"4\" width=\"14\" height=\"14\" fill=\"{NO_FIGURES}\"/><text x=\"378\" y=\"15\">no figures</text>\
<rect x=\"460\" y=\"4\" width=\"14\" height=\"14\" fill=\"{NON_FINITE}\"/><text x=\"478\" y=\"15\">NaN/Inf</text></svg>",
        sci(scale.lo),
        sci(scale.hi)
    );
    s
}

fn table(tensors: &[&TensorChange]) -> String {
    let mut list: Vec<&&TensorChange> = tensors.iter().collect();
    list.sort_by(|a, b| rank(b).total_cmp(&rank(a)));
    let mut s = String::from(
        "<table class=\"sortable\" id=\"tensors\"><thead><tr><th>Tensor</th><th>Change</th><th>dtype</th>\
<th>Shape</th><th>Changed elements</th><th>rel_l2</th><th>max_abs</th><th>Non-finite</th></tr></thead><tbody>",
    );
    for e in list {
        let change = format!("{:?}", e.change).to_lowercase();
        let (changed, rel, max, nf) = match &e.stats {
            Some(TensorStats::Float(f)) => (
                (
                    format!(
                        "{} of {} ({:.1} %)",
                        f.changed_elements,
                        f.elements,
                        f.changed_elements as f64 * 100.0 / f.elements.max(1) as f64
                    ),
                    f.changed_elements as f64,
                ),
                f.rel_l2.map_or_else(
                    || (format!("none (l2 {})", sci(f.l2)), f64::INFINITY),
                    |r| (sci(r), r),
                ),
                (sci(f.max_abs), f.max_abs),
                (f.non_finite.to_string(), f.non_finite as f64),
            ),
            Some(TensorStats::Blocks(b)) => (
                (
                    format!("{} of {} blocks", b.changed_blocks, b.blocks),
                    b.changed_blocks as f64,
                ),
                ("".into(), -1.0),
                ("".into(), -1.0),
                ("".into(), -1.0),
            ),
            _ => {
                let none = || (String::new(), -1.0);
                (none(), none(), none(), none())
            }
        };
        let _ = write!(
            s,
            "<tr><td data-v=\"{n}\"><code>{n}</code></td><td data-v=\"{change}\">{change}</td><td data-v=\"{d}\">{d}</td>\
<td data-v=\"{sh}\">{sh}</td><td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>\
<td class=\"n\" data-v=\"{}\">{}</td><td class=\"n{}\" data-v=\"{}\">{}</td></tr>",
            changed.1,
            esc(&changed.0),
            rel.1,
            esc(&rel.0),
            max.1,
            esc(&max.0),
            if nf.1 > 0.0 { " flag" } else { "" },
            nf.1,
            esc(&nf.0),
            n = esc(&e.name),
            d = esc(&dtype(e)),
            sh = esc(&shape(e)),
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn all_tensors<'a>(
    entries: &'a [TensorChange],
    unchanged: &'a [TensorChange],
) -> Vec<&'a TensorChange> {
    entries
        .iter()
        .filter(|e| e.change != TensorChangeKind::Removed)
        .chain(unchanged)
        .collect()
}

/// The report of one diff (with figures).
pub fn diff_report(d: &FileDiff, from: &str, to: &str, summary: &str) -> String {
    let path = d.path.as_str();
    let mut body = format!(
        "<h1>{}</h1><p class=\"meta\">from {}</p><p class=\"meta\">to {}</p><p class=\"meta\">{}</p>",
        esc(path),
        esc(from),
        esc(to),
        esc(summary)
    );
    match &d.tensors {
        Some(t) => {
            let tensors = all_tensors(&t.entries, &t.unchanged_tensors);
            let scale = Scale::over(tensors.iter().filter_map(|e| e.stats.as_ref()));
            let bad: u64 = tensors.iter().map(|e| e.non_finite()).sum();
            if bad > 0 {
                let _ = write!(
                    body,
                    "<p class=\"flag\">{bad} NaN/Inf values in the new version</p>"
                );
            }
            let _ = write!(
                body,
                "<h2>How much each tensor changed (relative L2)</h2>{}{}<h2>Tensors</h2>{}",
                legend(scale),
                picture(&tensors, scale, "heatmap", false),
                table(&tensors)
            );
            let removed: Vec<&TensorChange> = t
                .entries
                .iter()
                .filter(|e| e.change == TensorChangeKind::Removed)
                .collect();
            if !removed.is_empty() {
                let _ = write!(body, "<h2>Removed tensors</h2>{}", table(&removed));
            }
        }
        None => {
            let why = d
                .tensors_unavailable
                .as_deref()
                .unwrap_or("no tensor table");
            let _ = write!(body, "<p>No tensor-level diff: {}</p>", esc(why));
        }
    }
    page(&format!("nshard diff {path}"), &body)
}

/// The report of a file's history: one row per version (a small heat map against its parent).
pub fn log_report(path: &str, versions: &[VersionChange]) -> String {
    let stats = versions
        .iter()
        .flat_map(|v| v.tensors.iter().filter_map(|e| e.stats.as_ref()));
    let scale = Scale::over(stats);
    let mut body = format!(
        "<h1>{}</h1><p class=\"meta\">{} versions, newest first; each against its parent</p>{}",
        esc(path),
        versions.len(),
        legend(scale)
    );
    body.push_str(
        "<table class=\"sortable\" id=\"versions\"><thead><tr><th>Version</th><th>Date</th><th>Message</th>\
<th>Relative change</th><th>Changed tensors</th><th>Most changed</th><th>Non-finite</th></tr></thead><tbody>",
    );
    for v in versions {
        let rel = v.rel_l2.map(sci).unwrap_or_default();
        let most = v
            .most_changed
            .as_ref()
            .map(|m| {
                format!(
                    "{} ({})",
                    m.name,
                    m.rel_l2.map(sci).unwrap_or_else(|| "old norm 0".into())
                )
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td data-v=\"{id}\"><code>{id}</code></td><td class=\"d\" data-v=\"{ts}\">{ts}</td><td data-v=\"{m}\">{m}</td>\
<td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{} of {}</td><td data-v=\"{mc}\">{mc}</td>\
<td class=\"n{}\" data-v=\"{nf}\">{nf}</td></tr>",
            v.rel_l2.unwrap_or(-1.0),
            esc(&rel),
            v.changed_tensors,
            v.changed_tensors,
            v.tensors_total,
            if v.non_finite > 0 { " flag" } else { "" },
            id = v.version.short(),
            ts = esc(&crate::cmd::log::date(&v.timestamp)),
            m = esc(crate::cmd::log::first_line(&v.message)),
            mc = esc(&most),
            nf = v.non_finite,
        );
    }
    body.push_str("</tbody></table><h2>Where each version changed</h2>");
    for (i, v) in versions.iter().enumerate() {
        let _ = write!(
            body,
            "<p class=\"version\"><code>{}</code> {} {}{}</p>",
            v.version.short(),
            esc(&crate::cmd::log::date(&v.timestamp)),
            esc(crate::cmd::log::first_line(&v.message)),
            v.rel_l2
                .map(|r| format!(" (relative change {})", sci(r)))
                .unwrap_or_default()
        );
        match &v.unavailable {
            Some(why) => {
                let _ = write!(body, "<p class=\"meta\">{}</p>", esc(why));
            }
            None => {
                let t: Vec<&TensorChange> = v.tensors.iter().collect();
                body.push_str(&picture(&t, scale, &format!("v{i}"), true));
            }
        }
    }
    page(&format!("nshard log {path}"), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_placed_by_their_layer_number() {
        assert_eq!(
            place("model.layers.12.self_attn.q_proj.weight"),
            Some(("model.layers".into(), 12, "self_attn.q_proj.weight".into()))
        );
        assert_eq!(place("0.weight"), Some(("".into(), 0, "weight".into())));
        assert_eq!(place("lm_head.weight"), None);
        assert_eq!(place("blk.3"), None);
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
    }

    #[test]
    fn the_colour_ramp_runs_end_to_end() {
        assert_eq!(ramp(0.0), "#fff7bc");
        assert_eq!(ramp(1.0), "#3f007d");
        let s = Scale { lo: 1e-4, hi: 1e-1 };
        assert_eq!(s.t(1e-5), 0.0);
        assert!((s.t(1e-2) - 2.0 / 3.0).abs() < 1e-9);
    }
}
