//! SVG plots of `idnode bench` runs: throughput over time and the latency percentile curve
//! (HDR style), side by side, one curve per run (`bench-compare` plots two).
//!
//! Owns the layout, scales, ticks and SVG text of those charts. Pure: no I/O, no clock, no
//! dependency; it knows nothing of the bench report's JSON or of `hdrhistogram` (the caller
//! fills [`Series`]). Same input, same bytes: coordinates are printed with one decimal and
//! colours are fixed by series index.

/// One run as plotted.
pub struct Series {
    pub label: String,
    /// Requests completed in each second of the run (index = second).
    pub per_second: Vec<u64>,
    /// The latency percentile curve: (percentile in 0..=100, latency in µs), ascending
    /// percentile, e.g. from an HDR histogram at 0, 50, 90, 99, 99.9, 99.99, 100 and more.
    pub percentiles: Vec<(f64, u64)>,
}

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 480.0;
/// The top of both plot areas with a one-row legend; each further legend row pushes it down.
const PLOT_TOP: f64 = 104.0;
const PLOT_BOTTOM: f64 = 420.0;
const PLOT_WIDTH: f64 = 390.0;
const THROUGHPUT_LEFT: f64 = 80.0;
const LATENCY_LEFT: f64 = 580.0;
const LEGEND_ROW: f64 = 18.0;
/// Okabe–Ito colours: told apart with the common colour-vision deficiencies, and in print.
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];
/// Longer labels are cut (with "…") so that two legend entries fit on one row.
const LABEL_CHARS: usize = 60;
const TITLE_CHARS: usize = 100;
/// The percentile axis ends at 99.9999999999 % (twelve nines): past that, `1 - p` is below
/// what an f64 percentile near 100 can tell apart.
const MAX_NINES: f64 = 12.0;
/// Decimal-log comparisons allow for `log10(0.1)` being `-0.9999999999999998`.
const EPSILON: f64 = 1e-9;

/// An SVG document with two charts side by side: on the left, throughput over time (requests
/// completed in each second, linear axes, one polyline per series); on the right, the latency
/// percentile curve in the HDR style (x: percentile on a log scale of `1/(1-p)`, ticks at 0 %,
/// 90 %, 99 %, 99.9 % …, and "max" at the right edge when a series has the 100th percentile;
/// y: latency on a log scale, decades labelled in µs, ms and s). A title, a legend of the
/// series labels, and "no data" in a chart with nothing to draw.
///
/// The latency axis is logarithmic because one run spans several decades (a p50 of tens of µs
/// and a max of seconds after a timeout, up to 1 µs–60 s): on a linear axis everything but
/// the tail would lie on the bottom edge, and two runs' p50s could not be compared. A latency
/// of 0 µs is drawn on the bottom edge. Percentiles outside 0..=100 are clamped and NaN ones
/// dropped; unsorted points are sorted by percentile. Every second is drawn (no down-sampling):
/// a day-long run gives 86,400 points per series.
pub fn svg(title: &str, series: &[Series]) -> String {
    let mut out = String::new();
    out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += &format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    );
    let title = escape(&truncate(title, TITLE_CHARS));
    out += &format!("<title>{title}</title>\n");
    out += &format!("<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>\n");
    out += &format!(
        "<text class=\"title\" x=\"{}\" y=\"30\" text-anchor=\"middle\" font-size=\"18\" \
         font-weight=\"bold\">{title}</text>\n",
        WIDTH / 2.0
    );
    let rows = legend(&mut out, series);
    let top = PLOT_TOP + LEGEND_ROW * (rows.max(1) - 1) as f64;
    let frame = |left| Frame {
        left,
        top,
        width: PLOT_WIDTH,
        height: PLOT_BOTTOM - top,
    };
    throughput(&mut out, &frame(THROUGHPUT_LEFT), series);
    latency(&mut out, &frame(LATENCY_LEFT), series);
    out += "</svg>\n";
    out
}

/// A plot area in SVG coordinates; `x` and `y` map fractions 0..=1 of the axes into it.
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Frame {
    fn x(&self, fraction: f64) -> f64 {
        self.left + fraction.clamp(0.0, 1.0) * self.width
    }

    fn y(&self, fraction: f64) -> f64 {
        self.top + (1.0 - fraction.clamp(0.0, 1.0)) * self.height
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }

    fn right(&self) -> f64 {
        self.left + self.width
    }

    /// The chart's heading, its border, and the axis titles.
    fn decorate(&self, out: &mut String, heading: &str, x_title: &str, y_title: &str) {
        let (cx, cy) = (self.left + self.width / 2.0, self.top + self.height / 2.0);
        *out += &format!(
            "<text class=\"heading\" x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
             font-size=\"14\">{heading}</text>\n",
            self.top - 12.0
        );
        *out += &format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" \
             stroke=\"#333333\"/>\n",
            self.left, self.top, self.width, self.height
        );
        *out += &format!(
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x_title}</text>\n",
            self.bottom() + 40.0
        );
        let x = self.left - 62.0;
        *out += &format!(
            "<text x=\"{x:.1}\" y=\"{cy:.1}\" text-anchor=\"middle\" \
             transform=\"rotate(-90 {x:.1} {cy:.1})\">{y_title}</text>\n"
        );
    }

    /// A vertical grid line at `fraction` of the x axis, labelled below the plot.
    fn x_tick(&self, out: &mut String, class: &str, fraction: f64, label: &str) {
        let x = self.x(fraction);
        *out += &format!(
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e0e0e0\"/>\n",
            self.top,
            self.bottom()
        );
        if !label.is_empty() {
            *out += &format!(
                "<text class=\"tick-x {class}\" x=\"{x:.1}\" y=\"{:.1}\" \
                 text-anchor=\"middle\">{label}</text>\n",
                self.bottom() + 16.0
            );
        }
    }

    /// A horizontal grid line at `fraction` of the y axis, labelled left of the plot.
    fn y_tick(&self, out: &mut String, class: &str, fraction: f64, label: &str) {
        let y = self.y(fraction);
        *out += &format!(
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\n",
            self.left,
            self.right()
        );
        *out += &format!(
            "<text class=\"tick-y {class}\" x=\"{:.1}\" y=\"{:.1}\" \
             text-anchor=\"end\">{label}</text>\n",
            self.left - 6.0,
            y + 4.0
        );
    }

    fn no_data(&self, out: &mut String) {
        *out += &format!(
            "<text class=\"no-data\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
             fill=\"#777777\">no data</text>\n",
            self.left + self.width / 2.0,
            self.top + self.height / 2.0
        );
    }
}

/// Writes the legend (entries left to right, wrapping into rows) and returns its rows.
fn legend(out: &mut String, series: &[Series]) -> usize {
    let (mut x, mut row) = (THROUGHPUT_LEFT, 0);
    for (i, s) in series.iter().enumerate() {
        let label = truncate(&s.label, LABEL_CHARS);
        let width = 30.0 + 7.0 * label.chars().count() as f64 + 24.0;
        if x > THROUGHPUT_LEFT && x + width > WIDTH - 20.0 {
            (x, row) = (THROUGHPUT_LEFT, row + 1);
        }
        let y = 58.0 + LEGEND_ROW * row as f64;
        *out += &format!(
            "<g class=\"legend-entry\"><line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" \
             y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{y:.1}\">{}\
             </text></g>\n",
            y - 4.0,
            x + 24.0,
            y - 4.0,
            colour(i),
            x + 30.0,
            escape(&label)
        );
        x += width;
    }
    if series.is_empty() {
        0
    } else {
        row + 1
    }
}

fn throughput(out: &mut String, frame: &Frame, series: &[Series]) {
    frame.decorate(out, "Throughput", "time (s)", "requests/s");
    let seconds = series.iter().map(|s| s.per_second.len()).max().unwrap_or(0);
    let peak = series
        .iter()
        .flat_map(|s| s.per_second.iter().copied())
        .max()
        .unwrap_or(0);
    // A run of one second still gets an axis from 0 to 1.
    let (x_step, x_max) = nice_axis(seconds.saturating_sub(1).max(1) as f64, 8.0);
    let (y_step, y_max) = nice_axis(peak.max(1) as f64, 6.0);
    for t in ticks(x_step, x_max) {
        frame.x_tick(out, "throughput", t / x_max, &format!("{t}"));
    }
    for v in ticks(y_step, y_max) {
        frame.y_tick(out, "throughput", v / y_max, &count_label(v));
    }
    if seconds == 0 {
        frame.no_data(out);
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = s
            .per_second
            .iter()
            .enumerate()
            .map(|(t, &v)| (frame.x(t as f64 / x_max), frame.y(v as f64 / y_max)))
            .collect();
        curve(out, "throughput", i, &points);
    }
}

fn latency(out: &mut String, frame: &Frame, series: &[Series]) {
    frame.decorate(
        out,
        "Latency by percentile",
        "percentile",
        "latency (log scale)",
    );
    let curves: Vec<Vec<(f64, u64)>> = series.iter().map(|s| clean(&s.percentiles)).collect();
    let all = || curves.iter().flatten();
    let has_max = all().any(|&(p, _)| p >= 100.0);
    let finite = all()
        .filter(|&&(p, _)| p < 100.0)
        .map(|&(p, _)| nines(p))
        .fold(0.0, f64::max);
    // The 100th percentile has no place on a scale of 1/(1-p): it gets the decade after the
    // highest finite percentile, labelled "max".
    let x_max = if has_max {
        (finite + EPSILON).floor() + 1.0
    } else {
        (finite - EPSILON).ceil().max(1.0)
    };
    let x_of = |p: f64| {
        if p >= 100.0 {
            1.0
        } else {
            nines(p) / x_max
        }
    };

    let low = all().map(|&(_, v)| v).filter(|&v| v > 0).min();
    let high = all().map(|&(_, v)| v).max().unwrap_or(0);
    let (low, high) = match low {
        Some(low) => (low.ilog10(), ceil_log10(high)),
        None => (0, 1),
    };
    let high = high.max(low + 1);
    let span = f64::from(high - low);
    let y_of = |v: u64| {
        if v == 0 {
            0.0
        } else {
            ((v as f64).log10() - f64::from(low)) / span
        }
    };

    let decades = x_max as u32;
    // At most about seven labels: more would overlap on a 390-pixel axis.
    let every = decades.div_ceil(7);
    for k in 0..=decades {
        let label = if has_max && k == decades {
            "max".to_owned()
        } else if k % every == 0 {
            percentile_label(k)
        } else {
            String::new()
        };
        frame.x_tick(out, "latency", f64::from(k) / x_max, &label);
    }
    for d in low..=high {
        frame.y_tick(out, "latency", f64::from(d - low) / span, &latency_label(d));
    }
    if curves.iter().all(Vec::is_empty) {
        frame.no_data(out);
    }
    for (i, c) in curves.iter().enumerate() {
        let points: Vec<(f64, f64)> = c
            .iter()
            .map(|&(p, v)| (frame.x(x_of(p)), frame.y(y_of(v))))
            .collect();
        curve(out, "latency", i, &points);
    }
}

/// One series' polyline (nothing when empty), and a dot when a single point would be invisible.
fn curve(out: &mut String, class: &str, index: usize, points: &[(f64, f64)]) {
    if points.is_empty() {
        return;
    }
    let colour = colour(index);
    let coords: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    *out += &format!(
        "<polyline class=\"{class} s{index}\" fill=\"none\" stroke=\"{colour}\" \
         stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"{}\"/>\n",
        coords.join(" ")
    );
    if let [(x, y)] = points {
        *out += &format!(
            "<circle class=\"{class} s{index}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" \
             fill=\"{colour}\"/>\n"
        );
    }
}

fn colour(index: usize) -> &'static str {
    COLOURS[index % COLOURS.len()]
}

/// Percentiles clamped to 0..=100, NaN dropped, sorted (stable: equal percentiles keep their
/// order).
fn clean(points: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut points: Vec<(f64, u64)> = points
        .iter()
        .filter(|(p, _)| !p.is_nan())
        .map(|&(p, v)| (p.clamp(0.0, 100.0), v))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// `log10(1/(1-p))` for a percentile below 100: 0 at 0 %, 1 at 90 %, 2 at 99 % …
fn nines(p: f64) -> f64 {
    let rest = 1.0 - p / 100.0;
    if rest <= 0.0 {
        MAX_NINES
    } else {
        (-rest.log10()).clamp(0.0, MAX_NINES)
    }
}

/// The percentile `k` decades along the axis: 0 %, 90 %, 99 %, 99.9 % …
fn percentile_label(k: u32) -> String {
    match k {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        _ => format!("99.{}%", "9".repeat(k as usize - 2)),
    }
}

/// `10^decade` µs in the unit that keeps it a whole number from 1 to 100.
fn latency_label(decade: u32) -> String {
    match decade {
        0..=2 => format!("{}µs", 10u64.pow(decade)),
        3..=5 => format!("{}ms", 10u64.pow(decade - 3)),
        _ => format!("{}s", 10u64.pow(decade - 6)),
    }
}

/// The smallest `d` with `10^d >= v` (v > 0), in integers: `log10` of a power of ten may
/// come out just below the whole number.
fn ceil_log10(v: u64) -> u32 {
    let d = v.max(1).ilog10();
    if 10u64.pow(d) == v.max(1) {
        d
    } else {
        d + 1
    }
}

/// A tick step of 1, 2 or 5 × 10^k (at least 1: the axes count whole requests and seconds)
/// giving about `target` ticks, and the axis end: the first step at or above `max`.
fn nice_axis(max: f64, target: f64) -> (f64, f64) {
    let raw = max / target;
    let magnitude = 10f64.powi(raw.log10().floor() as i32);
    let step = match raw / magnitude {
        n if n <= 1.0 => magnitude,
        n if n <= 2.0 => 2.0 * magnitude,
        n if n <= 5.0 => 5.0 * magnitude,
        _ => 10.0 * magnitude,
    }
    .max(1.0);
    (step, (max / step - EPSILON).ceil().max(1.0) * step)
}

fn ticks(step: f64, max: f64) -> impl Iterator<Item = f64> {
    let count = (max / step + EPSILON).floor() as u64;
    (0..=count).map(move |k| k as f64 * step)
}

/// 1500 → "1.5k", 2000000 → "2M".
fn count_label(v: f64) -> String {
    let (divisor, unit) = match v {
        v if v >= 1e9 => (1e9, "G"),
        v if v >= 1e6 => (1e6, "M"),
        v if v >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let text = format!("{:.2}", v / divisor);
    format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

fn truncate(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        s.to_owned()
    } else {
        let mut cut: String = s.chars().take(chars - 1).collect();
        cut.push('…');
        cut
    }
}

/// Text safe in XML content and attribute values: markup characters as entities, and the
/// control characters XML 1.0 forbids dropped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&apos;",
            '\t' | '\n' | '\r' => out.push(' '),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, per_second: &[u64], percentiles: &[(f64, u64)]) -> Series {
        Series {
            label: label.to_owned(),
            per_second: per_second.to_vec(),
            percentiles: percentiles.to_vec(),
        }
    }

    /// A realistic run: p50 of 200 µs, a 1.2 s max.
    fn typical(label: &str, scale: u64) -> Series {
        let per_second: Vec<u64> = (0..30u64)
            .map(|t| scale * (900 + (t * 37) % 200) + if t < 3 { 0 } else { scale * 300 })
            .collect();
        let percentiles = [
            (0.0, 40),
            (50.0, 200),
            (75.0, 260),
            (90.0, 410),
            (99.0, 1_900),
            (99.9, 12_000),
            (99.99, 95_000),
            (100.0, 1_200_000),
        ];
        Series {
            label: label.to_owned(),
            per_second,
            percentiles: percentiles.map(|(p, v)| (p, v * 4 / (scale + 3))).to_vec(),
        }
    }

    /// The tags (up to their `>`) that start with `start`, in document order.
    fn tags<'a>(doc: &'a str, start: &str) -> Vec<&'a str> {
        doc.match_indices(start)
            .map(|(i, _)| &doc[i..i + doc[i..].find('>').unwrap() + 1])
            .collect()
    }

    fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
        let key = format!(" {name}=\"");
        let from = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
        &tag[from..from + tag[from..].find('"').unwrap()]
    }

    fn points(tag: &str) -> Vec<(f64, f64)> {
        attr(tag, "points")
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    /// The x of the latency axis tick labelled `label`.
    fn tick_x(doc: &str, label: &str) -> f64 {
        let tag = doc
            .match_indices("<text class=\"tick-x latency\"")
            .map(|(i, _)| &doc[i..])
            .find(|t| t[t.find('>').unwrap() + 1..].starts_with(&format!("{label}<")))
            .unwrap_or_else(|| panic!("no tick {label}"));
        attr(tag, "x").parse().unwrap()
    }

    /// A small well-formedness check: one XML declaration, one root, balanced tags, quoted
    /// attributes, and `&` only in the five named entities or a character reference.
    fn well_formed(doc: &str) -> Result<(), String> {
        fn chars(s: &str) -> Result<(), String> {
            if let Some(c) = s
                .chars()
                .find(|&c| c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
            {
                return Err(format!("control character {c:?}"));
            }
            for (i, _) in s.match_indices('&') {
                let entity = &s[i..s[i..].find(';').map_or(s.len(), |e| i + e + 1)];
                let numeric = entity.strip_prefix("&#").and_then(|e| e.strip_suffix(';'));
                let named = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity);
                if !named && !numeric.is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())) {
                    return Err(format!("bad entity {entity:?}"));
                }
            }
            Ok(())
        }
        fn attrs(mut s: &str) -> Result<(), String> {
            loop {
                s = s.trim_start();
                if s.is_empty() {
                    return Ok(());
                }
                let (name, rest) = s
                    .split_once("=\"")
                    .ok_or_else(|| format!("unquoted in {s:?}"))?;
                if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '-') {
                    return Err(format!("bad attribute name {name:?}"));
                }
                let (value, rest) = rest.split_once('"').ok_or("unterminated value")?;
                chars(value)?;
                s = rest;
            }
        }
        let mut rest = doc
            .strip_prefix("<?xml ")
            .and_then(|r| r.split_once("?>"))
            .ok_or("no XML declaration")?
            .1;
        let (mut stack, mut roots) = (Vec::new(), 0);
        loop {
            let (text, tail) = rest.split_at(rest.find('<').unwrap_or(rest.len()));
            chars(text)?;
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            if tail.is_empty() {
                break;
            }
            let end = tail.find('>').ok_or("unterminated tag")?;
            let tag = &tail[1..end];
            rest = &tail[end + 1..];
            if tag.contains('<') {
                return Err(format!("< inside a tag: {tag:?}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop() != Some(name) {
                    return Err(format!("</{name}> does not close the open tag"));
                }
                continue;
            }
            let body = tag.strip_suffix('/').unwrap_or(tag);
            let (name, attributes) = body.split_once(' ').unwrap_or((body, ""));
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("bad element name {name:?}"));
            }
            attrs(attributes)?;
            if stack.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        match (stack.last(), roots) {
            (Some(open), _) => Err(format!("<{open}> is never closed")),
            (None, 1) => Ok(()),
            (None, n) => Err(format!("{n} root elements")),
        }
    }

    #[test]
    fn the_checker_rejects_broken_documents() {
        let head = "<?xml version=\"1.0\"?>";
        for bad in [
            "<svg><g></svg>",
            "<svg></g>",
            "<svg><text>a < b</text></svg>",
            "<svg><text>a & b</text></svg>",
            "<svg a=b/>",
            "<svg/><svg/>",
            "<svg/>text",
        ] {
            assert!(well_formed(&format!("{head}{bad}")).is_err(), "{bad}");
        }
        well_formed(&format!(
            "{head}<svg><g a=\"&amp;\">x &lt; y</g><br/></svg>"
        ))
        .unwrap();
    }

    #[test]
    fn throughput_polyline_has_a_point_per_second_and_peaks_at_the_max() {
        let per_second = [120, 480, 950, 0, 610, 300];
        let doc = svg("t", &[run("a", &per_second, &[(50.0, 10)])]);
        let lines = tags(&doc, "<polyline class=\"throughput s0\"");
        assert_eq!(lines.len(), 1);
        let pts = points(lines[0]);
        assert_eq!(pts.len(), per_second.len());
        let highest = (0..pts.len())
            .min_by(|&a, &b| pts[a].1.total_cmp(&pts[b].1))
            .unwrap();
        assert_eq!(highest, 2, "the 950 second is the highest point: {pts:?}");
        // Axis 0..1000: 950 sits 5 % below the top, 0 on the bottom edge.
        let top = PLOT_TOP;
        let height = PLOT_BOTTOM - top;
        assert!((pts[2].1 - (top + 0.05 * height)).abs() < 0.1, "{pts:?}");
        assert_eq!(pts[3].1, PLOT_BOTTOM);
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0), "time goes right");
        assert_eq!(
            (pts[0].0, pts[5].0),
            (THROUGHPUT_LEFT, THROUGHPUT_LEFT + PLOT_WIDTH)
        );
    }

    #[test]
    fn percentile_axis_places_99_right_of_90() {
        let percentiles = [(0.0, 5), (50.0, 9), (90.0, 20), (99.0, 80), (99.9, 400)];
        let doc = svg("t", &[run("a", &[1], &percentiles)]);
        let (x90, x99, x999) = (
            tick_x(&doc, "90%"),
            tick_x(&doc, "99%"),
            tick_x(&doc, "99.9%"),
        );
        assert!(tick_x(&doc, "0%") < x90 && x90 < x99 && x99 < x999);
        // Log scale of 1/(1-p): 0 → 90 → 99 → 99.9 % are equal steps.
        assert!(((x99 - x90) - (x90 - tick_x(&doc, "0%"))).abs() < 0.2);
        let pts = points(tags(&doc, "<polyline class=\"latency s0\"")[0]);
        assert_eq!(pts.len(), percentiles.len());
        assert_eq!((pts[2].0, pts[3].0, pts[4].0), (x90, x99, x999));
        assert!(
            pts.windows(2).all(|w| w[0].1 >= w[1].1),
            "slower goes up: {pts:?}"
        );
        // Without a 100th percentile the axis ends at the last decade; with one, at "max".
        assert_eq!(x999, LATENCY_LEFT + PLOT_WIDTH);
        assert!(!doc.contains(">max<"));
        let doc = svg("t", &[run("a", &[1], &[(99.0, 80), (100.0, 900)])]);
        let pts = points(tags(&doc, "<polyline class=\"latency s0\"")[0]);
        assert_eq!(pts[1].0, tick_x(&doc, "max"));
        assert!(tick_x(&doc, "99%") < tick_x(&doc, "max"));
    }

    #[test]
    fn labels_are_escaped() {
        let doc = svg(
            "<&\"> title",
            &[run("run <&\"'>\u{1}", &[1, 2], &[(50.0, 3)])],
        );
        well_formed(&doc).unwrap();
        assert!(
            doc.contains("<title>&lt;&amp;&quot;&gt; title</title>"),
            "{doc}"
        );
        assert!(
            doc.contains(">run &lt;&amp;&quot;&apos;&gt;</text>"),
            "{doc}"
        );
        assert!(!doc.contains("<&") && !doc.contains("run <"));
        assert_eq!(escape("a\tb\u{0}c\u{fffe}"), "a bc");
    }

    #[test]
    fn two_series_give_two_curves_and_a_legend_of_two() {
        let doc = svg("compare", &[typical("before", 1), typical("after", 2)]);
        well_formed(&doc).unwrap();
        for class in ["throughput", "latency"] {
            let s0 = tags(&doc, &format!("<polyline class=\"{class} s0\""));
            let s1 = tags(&doc, &format!("<polyline class=\"{class} s1\""));
            assert_eq!((s0.len(), s1.len()), (1, 1), "{class}");
            assert_ne!(attr(s0[0], "stroke"), attr(s1[0], "stroke"), "{class}");
            assert_ne!(attr(s0[0], "points"), attr(s1[0], "points"), "{class}");
        }
        let legend = tags(&doc, "<g class=\"legend-entry\"");
        assert_eq!(legend.len(), 2);
        assert!(doc.contains(">before</text>") && doc.contains(">after</text>"));
        // Colours belong to the index: the first series has the same colour alone or not.
        let alone = svg("one", &[typical("after", 2)]);
        let first =
            |d: &str| attr(tags(d, "<polyline class=\"latency s0\"")[0], "stroke").to_owned();
        assert_eq!(first(&alone), first(&doc));
        assert_eq!(first(&doc), COLOURS[0]);
    }

    #[test]
    fn edge_cases_give_well_formed_deterministic_documents() {
        let cases = [
            ("nothing", vec![]),
            ("empty", vec![run("e", &[], &[])]),
            ("one point", vec![run("p", &[7], &[(50.0, 10)])]),
            ("zeros", vec![run("z", &[0, 0, 0], &[(0.0, 0), (100.0, 0)])]),
            (
                "range",
                vec![run("r", &[u64::MAX, 1], &[(0.0, 1), (100.0, 60_000_000)])],
            ),
            (
                "odd percentiles",
                vec![run(
                    "o",
                    &[1],
                    &[
                        (100.0, 9),
                        (f64::NAN, 3),
                        (-5.0, 2),
                        (150.0, 8),
                        (99.999_999_999_999_99, 7),
                    ],
                )],
            ),
            (
                "long label",
                vec![run(&"x".repeat(300), &[1], &[]), run("b", &[], &[(1.0, 1)])],
            ),
            (
                "six series",
                (0..6)
                    .map(|i| typical(&format!("configuration {i}: cache on"), i))
                    .collect(),
            ),
        ];
        for (name, series) in &cases {
            let doc = svg(name, series);
            well_formed(&doc).unwrap_or_else(|e| panic!("{name}: {e}\n{doc}"));
            assert_eq!(doc, svg(name, series), "{name}: same input, same bytes");
            assert!(
                !doc.contains("NaN") && !doc.contains("inf"),
                "{name}: {doc}"
            );
            for line in tags(&doc, "<polyline") {
                for (x, y) in points(line) {
                    assert!(
                        (THROUGHPUT_LEFT..=LATENCY_LEFT + PLOT_WIDTH).contains(&x),
                        "{name}"
                    );
                    assert!((PLOT_TOP..=PLOT_BOTTOM).contains(&y), "{name}: {y}");
                }
            }
        }
        let doc = |name: &str| svg(name, &cases.iter().find(|c| c.0 == name).unwrap().1);
        assert_eq!(doc("nothing").matches(">no data<").count(), 2);
        assert_eq!(doc("empty").matches(">no data<").count(), 2);
        assert!(!doc("empty").contains("<polyline"));
        let one = doc("one point");
        assert_eq!(tags(&one, "<circle class=\"throughput s0\"").len(), 1);
        assert_eq!(
            points(tags(&one, "<polyline class=\"throughput s0\"")[0]).len(),
            1
        );
        let range = doc("range");
        assert!(
            range.contains(">1µs<") && range.contains(">100s<"),
            "1 µs to 60 s"
        );
        let pts = points(tags(&range, "<polyline class=\"latency s0\"")[0]);
        assert_eq!(pts[0].1, PLOT_BOTTOM);
        assert!(pts[1].1 > PLOT_TOP, "60 s is below the 100 s line");
        let zeros = points(tags(&doc("zeros"), "<polyline class=\"latency s0\"")[0]);
        assert!(zeros.iter().all(|p| p.1 == PLOT_BOTTOM));
        let odd = points(tags(&doc("odd percentiles"), "<polyline class=\"latency s0\"")[0]);
        assert_eq!(odd.len(), 4, "NaN dropped, the rest clamped and sorted");
        assert!(doc("long label").contains(&format!(">{}…<", "x".repeat(LABEL_CHARS - 1))));
        // Six entries do not fit one row: the plots move down under the legend.
        let frame_at_top = format!(" y=\"{PLOT_TOP:.1}\" width=\"{PLOT_WIDTH:.1}\"");
        assert_eq!(one.matches(&frame_at_top).count(), 2);
        let six = doc("six series");
        assert_eq!(tags(&six, "<g class=\"legend-entry\"").len(), 6);
        assert!(!six.contains(&frame_at_top));
    }

    #[test]
    fn axis_helpers() {
        let check = |max: f64, target: f64, expected: (f64, f64)| {
            assert_eq!(nice_axis(max, target), expected, "{max}");
        };
        check(1.0, 6.0, (1.0, 1.0));
        check(950.0, 6.0, (200.0, 1000.0));
        check(1000.0, 6.0, (200.0, 1000.0));
        check(29.0, 8.0, (5.0, 30.0));
        assert_eq!(ticks(200.0, 1000.0).count(), 6);
        for (v, label) in [(0.0, "0"), (10.0, "10"), (1500.0, "1.5k"), (2e6, "2M")] {
            assert_eq!(count_label(v), label);
        }
        for (d, label) in [(0, "1µs"), (2, "100µs"), (3, "1ms"), (6, "1s"), (8, "100s")] {
            assert_eq!(latency_label(d), label);
        }
        for (v, d) in [(1, 0), (9, 1), (10, 1), (11, 2), (1000, 3), (60_000_000, 8)] {
            assert_eq!(ceil_log10(v), d, "{v}");
        }
        for (k, label) in [(0, "0%"), (1, "90%"), (2, "99%"), (4, "99.99%")] {
            assert_eq!(percentile_label(k), label);
        }
        assert!((nines(90.0) - 1.0).abs() < EPSILON && (nines(99.9) - 3.0).abs() < EPSILON);
    }

    /// Writes a sample of `bench-compare`'s chart to the path in `IDNODE_PLOT_SAMPLE`, to look at.
    #[test]
    fn sample_document() {
        let doc = svg(
            "idnode bench: resolve, 30 s, 64 connections",
            &[
                typical("v0.1.0 (before)", 1),
                typical("cache on (after)", 2),
            ],
        );
        well_formed(&doc).unwrap();
        if let Some(path) = std::env::var_os("IDNODE_PLOT_SAMPLE") {
            std::fs::write(path, &doc).unwrap();
        }
    }
}
