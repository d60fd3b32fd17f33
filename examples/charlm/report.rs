//! What a run leaves behind: `metrics.csv` and a PNG chart of the losses.

use crate::chart::{line_panel, register_font};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// One row of `metrics.csv`, logged every few steps; `val_loss` is set on
/// the steps where validation ran.
#[derive(Clone, Debug)]
pub struct Row {
    pub run: String,
    pub step: usize,
    pub lr: f64,
    /// Mean training loss (nats/char) since the previous row.
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub tokens_per_s: f64,
    pub wall_s: f64,
}

pub fn write_csv(path: &Path, rows: &[Row]) -> Result<(), String> {
    let mut text = String::from("run,step,lr,train_loss,val_loss,tokens_per_s,wall_s\n");
    for r in rows {
        let val = r.val_loss.map_or(String::new(), |v| format!("{v:.6}"));
        writeln!(
            text,
            "{},{},{:.6e},{:.6},{val},{:.1},{:.2}",
            r.run, r.step, r.lr, r.train_loss, r.tokens_per_s, r.wall_s
        )
        .unwrap();
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads back a `metrics.csv` written by [`write_csv`].
pub fn read_csv(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = || format!("{}: line {} is not a metrics row", path.display(), i + 1);
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 7 {
            return Err(bad());
        }
        let num = |s: &str| s.parse::<f64>().map_err(|_| bad());
        rows.push(Row {
            run: f[0].to_string(),
            step: num(f[1])? as usize,
            lr: num(f[2])?,
            train_loss: num(f[3])?,
            val_loss: if f[4].is_empty() {
                None
            } else {
                Some(num(f[4])?)
            },
            tokens_per_s: num(f[5])?,
            wall_s: num(f[6])?,
        });
    }
    Ok(rows)
}

/// Two panels, training and validation loss against steps, one line per run.
/// Losses above the uniform guess (`ln vocab`) are drawn at the top edge, so
/// a diverged run stays visible without squashing the others.
pub fn draw_chart(path: &Path, title: &str, rows: &[Row], uniform: f64) -> Result<(), String> {
    register_font();
    let mut runs: Vec<&str> = Vec::new();
    for r in rows {
        if !runs.contains(&r.run.as_str()) {
            runs.push(&r.run);
        }
    }
    let steps = rows.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    let top = uniform * 1.05;
    let low = rows
        .iter()
        .flat_map(|r| [Some(r.train_loss), r.val_loss])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(top, f64::min);
    let bottom = ((low - 0.1) * 10.0).floor() / 10.0;
    // NaN and divergence both show as the top edge.
    let clamp = |v: f64| {
        if v.is_finite() {
            v.clamp(bottom, top)
        } else {
            top
        }
    };

    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);
    for (area, caption, validation) in [
        (&left, "training loss", false),
        (&right, "validation loss", true),
    ] {
        let series: Vec<(&str, Vec<(f64, f64)>)> = runs
            .iter()
            .map(|run| {
                let points = rows
                    .iter()
                    .filter(|r| r.run == *run)
                    .filter_map(|r| {
                        if validation {
                            r.val_loss
                        } else {
                            Some(r.train_loss)
                        }
                        .map(|v| (r.step as f64, clamp(v)))
                    })
                    .collect();
                (*run, points)
            })
            .collect();
        line_panel(
            area,
            caption,
            steps,
            bottom..top,
            "nats / character",
            2,
            &series,
            SeriesLabelPosition::UpperRight,
            false,
        )?;
    }
    root.present().map_err(|e| err(&e))
}

/// The runs' summary as a Markdown table.
pub fn print_table(outcomes: &[(&str, crate::train::Outcome)]) {
    println!("\n| run | validation loss (nats/char) | wall time | tokens/s |\n|---|---|---|---|");
    for (name, o) in outcomes {
        let loss = if o.diverged {
            "diverged".to_string()
        } else {
            format!("{:.4}", o.val_loss)
        };
        println!(
            "| {name} | {loss} | {:.1} s | {:.0} |",
            o.wall_s, o.tokens_per_s
        );
    }
}
