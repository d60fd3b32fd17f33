//! What a run leaves behind: `metrics.csv` and a PNG chart.

use crate::chart::{COLORS, line_panel, register_font};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// One row of `metrics.csv`: a logged training step, or an epoch's summary.
#[derive(Clone, Debug)]
pub struct Row {
    pub run: String,
    /// `step` or `epoch`.
    pub kind: &'static str,
    pub epoch: usize,
    pub step: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
    pub images_per_s: f64,
    pub wall_s: f64,
}

pub fn write_csv(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    let mut text = String::from(
        "run,kind,epoch,step,lr,train_loss,train_acc,test_loss,test_acc,images_per_s,wall_s\n",
    );
    for r in rows {
        writeln!(
            text,
            "{},{},{},{},{:.6e},{:.6},{},{},{},{:.1},{:.2}",
            r.run,
            r.kind,
            r.epoch,
            r.step,
            r.lr,
            r.train_loss,
            opt(r.train_acc),
            opt(r.test_loss),
            opt(r.test_acc),
            r.images_per_s,
            r.wall_s
        )
        .unwrap();
    }
    std::fs::write(path, text)
}

/// Reads back a `metrics.csv` written by [`write_csv`].
pub fn read_csv(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |line: usize| format!("{}: line {line} is not a metrics row", path.display());
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 11 {
            return Err(bad(i + 1));
        }
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad(i + 1));
        let opt = |s: &str| {
            if s.is_empty() {
                Ok(None)
            } else {
                num(s).map(Some)
            }
        };
        rows.push(Row {
            run: f[0].to_string(),
            kind: if f[1] == "epoch" { "epoch" } else { "step" },
            epoch: num(f[2])? as usize,
            step: num(f[3])? as usize,
            lr: num(f[4])?,
            train_loss: num(f[5])?,
            train_acc: opt(f[6])?,
            test_loss: opt(f[7])?,
            test_acc: opt(f[8])?,
            images_per_s: num(f[9])?,
            wall_s: num(f[10])?,
        });
    }
    Ok(rows)
}

/// Two panels: training loss (log scale) and test accuracy, against steps,
/// one line per run.
pub fn draw_chart(path: &Path, title: &str, rows: &[Row]) -> Result<(), String> {
    register_font();
    let mut runs: Vec<&str> = Vec::new();
    for r in rows {
        if !runs.contains(&r.run.as_str()) {
            runs.push(&r.run);
        }
    }
    let finite = |v: f64| v.is_finite().then_some(v);
    let steps = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    let losses: Vec<f64> = rows
        .iter()
        .filter(|r| r.kind == "step")
        .filter_map(|r| finite(r.train_loss))
        .collect();
    let lo = losses
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min)
        .clamp(1e-4, 1.0);
    let hi = (losses.iter().cloned().fold(0.0, f64::max) * 1.2)
        .max(lo * 10.0)
        .min(1e3);
    let accs: Vec<f64> = rows.iter().filter_map(|r| r.test_acc).collect();
    let acc_lo = accs
        .iter()
        .cloned()
        .fold(100.0, f64::min)
        .clamp(0.0, 97.0)
        .floor();

    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);

    let mut chart = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..steps, (lo..hi).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, run) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = rows
            .iter()
            .filter(|r| r.run == *run && r.kind == "step")
            .filter_map(|r| finite(r.train_loss).map(|l| (r.step as f64, l.clamp(lo, hi))));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*run)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let series: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|run| {
            let points = rows
                .iter()
                .filter(|r| r.run == *run)
                .filter_map(|r| r.test_acc.map(|a| (r.step as f64, a.max(acc_lo))))
                .collect();
            (*run, points)
        })
        .collect();
    line_panel(
        &right,
        "test accuracy (%)",
        steps,
        acc_lo..100.0,
        "accuracy %",
        1,
        &series,
        SeriesLabelPosition::LowerRight,
        true,
    )?;
    root.present().map_err(|e| err(&e))
}

/// The runs' summary as a Markdown table.
pub fn print_table(outcomes: &[(&str, crate::train::Outcome)]) {
    println!("\n| run | test accuracy | test loss | wall time | images/s |\n|---|---|---|---|---|");
    for (name, o) in outcomes {
        println!(
            "| {name} | {:.2}% | {:.4} | {:.1} s | {:.0} |",
            o.test_acc, o.test_loss, o.wall_s, o.images_per_s
        );
    }
}
