//! Small bar charts as inline SVG, drawn on the server: one bar per minute, two stacked series
//! (e.g. succeeded over failed). No script and no chart library; every value also has a text
//! form (the chart's title and each bar's tooltip) for screen readers.

use maud::{html, Markup};

/// One bar: the lower (`good`) and upper (`bad`) parts, and its label (the minute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) good: u64,
    pub(crate) bad: u64,
}

const WIDTH: u64 = 300;
const HEIGHT: u64 = 60;

/// A stacked bar chart of `bars` named `title`, with `good` and `bad` naming the two series.
pub(crate) fn bars(title: &str, good: &str, bad: &str, bars: &[Bar]) -> Markup {
    let max = bars
        .iter()
        .map(|b| b.good + b.bad)
        .max()
        .unwrap_or(0)
        .max(1);
    let n = u64::try_from(bars.len()).unwrap_or(1).max(1);
    let step = WIDTH / n;
    let width = step.saturating_sub(1).max(1);
    let total_good: u64 = bars.iter().map(|b| b.good).sum();
    let total_bad: u64 = bars.iter().map(|b| b.bad).sum();
    let summary = format!("{title}: {total_good} {good}, {total_bad} {bad} in {n} minutes");
    let scale = |v: u64| v * HEIGHT / max;
    html! {
        figure .chart {
            svg viewBox={"0 0 " (WIDTH) " " (HEIGHT)} width="100%" height="60" role="img"
                aria-label=(summary) preserveAspectRatio="none" {
                title { (summary) }
                @for (i, b) in (0u64..).zip(bars) {
                    @let x = i * step;
                    @let g = scale(b.good);
                    @let r = scale(b.bad);
                    g {
                        title { (b.label) ": " (b.good) " " (good) ", " (b.bad) " " (bad) }
                        rect .good x=(x) y=(HEIGHT - g) width=(width) height=(g) {}
                        rect .bad x=(x) y=(HEIGHT - g - r) width=(width) height=(r) {}
                        // An invisible full-height target, so every minute has a tooltip.
                        rect .hit x=(x) y="0" width=(width) height=(HEIGHT) {}
                    }
                }
            }
            figcaption {
                (title) " — "
                span .key-good { (total_good) " " (good) }
                ", "
                span .key-bad { (total_bad) " " (bad) }
                " (max " (max) "/min)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_highest_and_say_their_totals() {
        let svg = bars(
            "Throughput",
            "succeeded",
            "failed",
            &[
                Bar {
                    label: "10:00".into(),
                    good: 2,
                    bad: 0,
                },
                Bar {
                    label: "10:01".into(),
                    good: 0,
                    bad: 4,
                },
            ],
        )
        .into_string();
        assert!(svg.contains("2 succeeded, 4 failed in 2 minutes"), "{svg}");
        assert!(svg.contains(r#"height="60""#));
        assert!(svg.contains(r#"height="30""#), "2 of 4 is half: {svg}");
        let empty = bars("T", "a", "b", &[]).into_string();
        assert!(empty.contains("0 a, 0 b"));
    }

    #[test]
    fn labels_are_escaped() {
        let svg = bars(
            "<b>",
            "<i>",
            "x",
            &[Bar {
                label: "<script>".into(),
                good: 1,
                bad: 1,
            }],
        )
        .into_string();
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
    }
}
