//! The P3 chart: request latency across rollovers, one series per contender.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::rollover::Outcomes;

const COLORS: [RGBColor; 6] = [
    RGBColor(0, 0, 0),
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(0, 158, 115),
    RGBColor(150, 150, 150),
];

/// Bins latency into `bin`-second buckets and keeps each bucket's worst: at 500
/// req/s a point per request would hide the stalls under the crowd (and make a
/// multi-megabyte SVG).
fn worst_per_bin(samples: &[crate::rollover::Sample], bin: f64) -> Vec<(f64, f64)> {
    let mut bins: Vec<(f64, f64)> = Vec::new();
    for s in samples {
        let b = (s.t / bin).floor() * bin;
        match bins.last_mut() {
            Some(last) if last.0 == b => last.1 = last.1.max(s.ms),
            _ => bins.push((b, s.ms)),
        }
    }
    bins
}

/// Writes the chart to `path`.
pub fn rollover_svg(path: &Path, o: &Outcomes, duration: f64, title: &str) -> anyhow::Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow!("chart: {e}");
    let top = o.samples.iter().flatten().map(|s| s.ms).fold(1.0f64, f64::max) * 2.0;
    let root = SVGBackend::new(path, (1200, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..duration, (0.05f64..top).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("worst latency per 100 ms (ms, log)")
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (row, samples)) in o.rows.iter().zip(&o.samples).enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(worst_per_bin(samples, 0.1), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(row.kind.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        // A tick at the bottom for each token request of this contender: the rollovers.
        let lane = 0.06 * 1.25f64.powi(i as i32);
        let ticks = row
            .token_times
            .iter()
            .filter(|t| (0.0..duration).contains(*t))
            .map(|t| PathElement::new(vec![(*t, lane), (*t, lane * 1.2)], color.stroke_width(3)));
        chart.draw_series(ticks).map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
