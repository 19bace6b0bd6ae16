//! Charts drawn on the server as inline SVG: no script, no chart library, readable by a screen
//! reader (`role="img"` with a label, a `<title>` per bar). Every text placed in the SVG is escaped
//! here, because the templates embed the result as markup.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::http::recent::MinuteCounts;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 24.0;

/// The colours of the three outcomes, shared with the page's legend (`console.css`).
pub const DENIED: &str = "#c62828";
pub const APPROVED: &str = "#1565c0";
pub const AUTO_APPROVED: &str = "#2e7d32";

/// Stacked bars, one per minute, oldest left: Denied at the bottom, then Approved, AutoApproved.
pub fn outcomes_per_minute(hour: &[(DateTime<Utc>, MinuteCounts)]) -> String {
    let most = hour
        .iter()
        .map(|(_, counts)| counts.total())
        .max()
        .unwrap_or(0)
        .max(1);
    let total: u64 = hour.iter().map(|(_, counts)| counts.total()).sum();
    let slot = (WIDTH - LEFT) / hour.len().max(1) as f64;
    let plot = HEIGHT - BOTTOM;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        escape(&format!(
            "Decisions per minute over the last hour: {total} in all"
        ))
    );
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{plot}" x2="{WIDTH}" y2="{plot}" stroke="#888"/><text x="{x}" y="12" text-anchor="end" font-size="11">{most}</text><text x="{x}" y="{plot}" text-anchor="end" font-size="11">0</text>"##,
        x = LEFT - 4.0
    );
    for (index, (minute, counts)) in hour.iter().enumerate() {
        let x = LEFT + index as f64 * slot;
        let mut top = plot;
        let title = escape(&format!(
            "{}: {} denied, {} approved, {} auto-approved",
            minute.format("%H:%M"),
            counts.denied,
            counts.approved,
            counts.auto_approved
        ));
        let _ = write!(svg, "<g><title>{title}</title>");
        for (count, colour) in [
            (counts.denied, DENIED),
            (counts.approved, APPROVED),
            (counts.auto_approved, AUTO_APPROVED),
        ] {
            if count == 0 {
                continue;
            }
            let height = count as f64 / most as f64 * (plot - 14.0);
            top -= height;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{height:.1}" fill="{colour}"/>"#,
                w = (slot - 1.0).max(1.0)
            );
        }
        svg.push_str("</g>");
    }
    if let (Some((first, _)), Some((last, _))) = (hour.first(), hour.last()) {
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="{y}" font-size="11">{}</text><text x="{WIDTH}" y="{y}" text-anchor="end" font-size="11">{} UTC</text>"#,
            first.format("%H:%M"),
            last.format("%H:%M"),
            y = HEIGHT - 6.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Latency percentiles of one check kind, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles {
    pub kind: String,
    pub samples: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Nearest-rank percentiles per kind from `(kind, duration_ms)` samples.
pub fn percentiles(samples: impl IntoIterator<Item = (String, f64)>) -> Vec<Percentiles> {
    let mut by_kind: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (kind, duration) in samples {
        if duration.is_finite() {
            by_kind.entry(kind).or_default().push(duration);
        }
    }
    by_kind
        .into_iter()
        .map(|(kind, mut durations)| {
            durations.sort_by(f64::total_cmp);
            let rank = |p: f64| {
                let index = ((p / 100.0) * durations.len() as f64).ceil() as usize;
                durations[index.clamp(1, durations.len()) - 1]
            };
            Percentiles {
                samples: durations.len(),
                p50: rank(50.0),
                p90: rank(90.0),
                p99: rank(99.0),
                kind,
            }
        })
        .collect()
}

/// One row per kind: three bars (p50, p90, p99) on a shared millisecond scale.
pub fn latency_bars(rows: &[Percentiles]) -> String {
    let row_height = 42.0;
    let height = (rows.len() as f64 * row_height).max(row_height) + 8.0;
    let label = 110.0;
    let most = rows.iter().map(|row| row.p99).fold(1.0_f64, f64::max);
    let scale = (WIDTH - label - 90.0) / most;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Check latency percentiles in milliseconds">"#
    );
    if rows.is_empty() {
        svg.push_str(r#"<text x="8" y="28" font-size="12">no check has run yet</text>"#);
    }
    for (index, row) in rows.iter().enumerate() {
        let y = 4.0 + index as f64 * row_height;
        let _ = write!(
            svg,
            r#"<text x="0" y="{:.1}" font-size="12">{}</text>"#,
            y + 22.0,
            escape(&row.kind)
        );
        for (step, (name, value, shade)) in [
            ("p50", row.p50, "#90caf9"),
            ("p90", row.p90, "#42a5f5"),
            ("p99", row.p99, "#0d47a1"),
        ]
        .into_iter()
        .enumerate()
        {
            let bar_y = y + step as f64 * 12.0;
            let _ = write!(
                svg,
                r#"<g><title>{kind} {name}: {value:.1} ms ({samples} samples)</title><rect x="{label}" y="{bar_y:.1}" width="{w:.1}" height="10" fill="{shade}"/><text x="{tx:.1}" y="{ty:.1}" font-size="10">{name} {value:.1} ms</text></g>"#,
                kind = escape(&row.kind),
                samples = row.samples,
                w = (value * scale).max(1.0),
                tx = label + (value * scale).max(1.0) + 4.0,
                ty = bar_y + 9.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Text for SVG/HTML: the five characters with a meaning there.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_per_kind() {
        let samples = (1..=100)
            .map(|ms| ("itsm".to_string(), ms as f64))
            .chain([("hr".to_string(), 7.0), ("hr".to_string(), f64::NAN)]);

        let rows = percentiles(samples);

        assert_eq!(
            rows,
            vec![
                Percentiles {
                    kind: "hr".into(),
                    samples: 1,
                    p50: 7.0,
                    p90: 7.0,
                    p99: 7.0
                },
                Percentiles {
                    kind: "itsm".into(),
                    samples: 100,
                    p50: 50.0,
                    p90: 90.0,
                    p99: 99.0
                },
            ]
        );
    }

    #[test]
    fn the_hour_chart_has_a_bar_per_busy_minute_with_its_counts_as_title() {
        let start = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .map(|time| time.with_timezone(&Utc))
            .unwrap_or_default();
        let hour: Vec<(DateTime<Utc>, MinuteCounts)> = (0..60)
            .map(|minute| {
                let counts = if minute == 59 {
                    MinuteCounts {
                        approved: 2,
                        auto_approved: 1,
                        denied: 3,
                    }
                } else {
                    MinuteCounts::default()
                };
                (start + chrono::Duration::minutes(minute), counts)
            })
            .collect();

        let svg = outcomes_per_minute(&hour);

        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(
            svg.contains("10:59: 3 denied, 2 approved, 1 auto-approved"),
            "{svg}"
        );
        assert!(svg.contains("6 in all"), "{svg}");
    }

    #[test]
    fn text_in_a_chart_is_escaped() {
        let rows = percentiles([("<script>&\"'".to_string(), 1.0)]);
        let svg = latency_bars(&rows);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&amp;&quot;&#39;"));
    }
}
