//! The incident chart: cumulative prevented, completed and outstanding USD over the window, one
//! panel per group (each with its own scale: misc is a thousand times smaller than BTC), with
//! the suspension of withdrawals shaded and a mark where each flag was recorded. The same
//! ledger and bound draw the same bytes (nothing reads the clock). Hand-written SVG: a chart
//! this simple does not need a plotting library. Pixel positions are computed in floating
//! point; the money is not.
//!
//! The axis arithmetic (ticks, a nice maximum, a value's height) multiplies and divides USD
//! figures by small constants to draw them, far inside a Decimal's range: it is allowed here.
#![allow(clippy::arithmetic_side_effects)]

use std::fmt::Write;

use anyhow::Result;
use custos_domain::EventKind;
use custos_domain::{Event, StreamId, Timestamp};
use custos_ledger::{Bound, Ledger, ReplayOrder};
use custos_projection::LossRow;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 210.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 112.0;
const GAP: f64 = 55.0;

struct Series {
    color: &'static str,
    points: Vec<(i64, Decimal)>,
}

fn usd_label(v: Decimal) -> String {
    let v = v.round_dp(0);
    let s = v.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    format!("${out}")
}

/// A panel's axis: a tick step of 1, 2, 2.5 or 5 times a power of ten giving at most five
/// steps, and the smallest multiple of it at or above `max` (so a panel's scale follows its
/// own data, not a coarse power of ten that two panels can share).
pub fn axis(max: Decimal) -> (Decimal, Decimal) {
    let max = max.max(Decimal::ONE);
    let raw = max / Decimal::from(5);
    let mut power = Decimal::ONE;
    while power * Decimal::from(10) <= raw {
        power *= Decimal::from(10);
    }
    let step = [Decimal::ONE, Decimal::TWO, Decimal::new(25, 1), Decimal::from(5), Decimal::TEN]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(power * Decimal::TEN);
    (step, (max / step).ceil() * step)
}

/// Text drawn over the plot keeps a white halo, so no grid line or series runs through it.
const HALO: &str = r##"paint-order="stroke" stroke="#ffffff" stroke-width="4" stroke-linejoin="round""##;

/// The chart of the window `[from, to]` at `bound` (its `known_at` decides which flags count).
pub fn incident_svg(ledger: &Ledger, from: Timestamp, to: Timestamp, bound: &Bound) -> Result<String> {
    let bound = *bound;
    let (start, rows) = ledger.replay(from, to, &bound, ReplayOrder::Valid)?;
    let windows: Vec<(Timestamp, Option<Timestamp>)> = {
        let mut w = Vec::new();
        for env in ledger.stream_events(&StreamId::Ledger, bound.known_seq)? {
            match env.event {
                Event::WithdrawalsSuspended { .. } => w.push((env.occurred_at, None)),
                Event::WithdrawalsResumed => {
                    if let Some(l) = w.last_mut() {
                        l.1 = Some(env.occurred_at);
                    }
                }
                _ => {}
            }
        }
        w
    };
    let groups = ["ETH", "BTC", "misc"];
    let (t0, t1) = (from.nanos(), to.nanos());
    let x = |t: i64| LEFT + (WIDTH - LEFT - RIGHT) * ((t - t0) as f64 / (t1 - t0) as f64);
    let height = TOP + 3.0 * PANEL_HEIGHT + 2.0 * GAP + 60.0;
    let mut svg = String::new();
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif">"#
    )?;
    writeln!(svg, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##)?;
    writeln!(
        svg,
        r##"<text x="{LEFT}" y="28" font-size="18" font-weight="bold" fill="#222">Unauthorized withdrawals, January 2022: cumulative USD by asset group</text>"##
    )?;
    writeln!(
        svg,
        r##"<text x="{LEFT}" y="48" font-size="12" fill="#555">{} to {} UTC (valid time), as known to the ledger at seq {}.</text>"##,
        from, to, bound.known_seq,
    )?;
    writeln!(
        svg,
        r##"<text x="{LEFT}" y="64" font-size="12" fill="#555">Shaded: withdrawals suspended. Ticks under each panel: when a flag was recorded. Each panel has its own scale.</text>"##
    )?;
    writeln!(
        svg,
        r##"<text x="{LEFT}" y="80" font-size="12" fill="#555">Completed = attempted - prevented; outstanding = completed - reimbursed.</text>"##
    )?;
    for (gi, group) in groups.iter().enumerate() {
        let top = TOP + gi as f64 * (PANEL_HEIGHT + GAP);
        let bottom = top + PANEL_HEIGHT;
        let pick = |rows: &[LossRow]| rows.iter().find(|r| r.group == *group).map(|r| r.cols).unwrap_or_default();
        let s0 = pick(&start);
        let mut series = [
            Series { color: "#c0392b", points: vec![(t0, s0.completed_usd())] },
            Series { color: "#2e86c1", points: vec![(t0, s0.prevented_usd)] },
            Series { color: "#7d3c98", points: vec![(t0, s0.outstanding_usd())] },
        ];
        for r in &rows {
            let c = pick(&r.totals);
            let t = r.occurred_at.nanos();
            for (s, v) in series.iter_mut().zip([c.completed_usd(), c.prevented_usd, c.outstanding_usd()]) {
                if s.points.last().map(|p| p.1) != Some(v) {
                    s.points.push((t, v));
                }
            }
        }
        let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).max().unwrap_or_default();
        let (ystep, ymax) = axis(max);
        writeln!(svg, r#"<g class="panel" data-group="{group}" data-max-usd="{max}" data-axis-max-usd="{ymax}">"#)?;
        let y = |v: Decimal| bottom - PANEL_HEIGHT * (v / ymax).to_f64().unwrap_or(0.0);
        let mut labels = String::new();
        for (s, r) in &windows {
            let (a, b) = (x(s.nanos().max(t0)), x(r.map_or(t1, |r| r.nanos()).min(t1)));
            writeln!(
                svg,
                r##"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{PANEL_HEIGHT}" fill="#f5cba7" opacity="0.55"/>"##,
                b - a
            )?;
            if gi == 0 {
                writeln!(
                    labels,
                    r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#a04000" text-anchor="middle" {HALO}>withdrawals suspended {} h</text>"##,
                    (a + b) / 2.0,
                    top + 14.0,
                    r.map_or("open".into(), |r| ((r.nanos() - s.nanos()) / 3_600_000_000_000).to_string())
                )?;
            }
        }
        // Where each flag of this group's withdrawals was recorded: a tick under the panel.
        for r in rows.iter().filter(|r| r.kind == EventKind::Flag) {
            let in_group = r.asset.is_some_and(|a| a.group().name() == *group);
            let t = r.recorded_at.nanos();
            if in_group && (t0..=t1).contains(&t) {
                writeln!(
                    svg,
                    r##"<line class="flag" x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#117a65" stroke-width="1"/>"##,
                    x(t),
                    bottom + 17.0,
                    bottom + 25.0
                )?;
            }
        }
        let mut k = 0u32;
        while Decimal::from(k) * ystep <= ymax {
            let v = Decimal::from(k) * ystep;
            k += 1;
            let yy = y(v);
            writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
                WIDTH - RIGHT
            )?;
            writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#444" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                yy + 4.0,
                usd_label(v)
            )?;
        }
        let mut day = from.to_datetime().date_naive().and_hms_opt(0, 0, 0).expect("midnight");
        loop {
            for hour in [0u32, 6, 12, 18] {
                let at = day.and_utc() + chrono::Duration::hours(i64::from(hour));
                let tn = at.timestamp_nanos_opt().unwrap_or(0);
                if tn < t0 || tn > t1 {
                    continue;
                }
                let xx = x(tn);
                writeln!(svg, r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top:.1}" y2="{bottom:.1}" stroke="#eee"/>"##)?;
                let label = if hour == 0 { at.format("%d %b").to_string() } else { at.format("%H:%M").to_string() };
                writeln!(
                    svg,
                    r##"<text x="{xx:.1}" y="{:.1}" font-size="10" fill="#555" text-anchor="middle">{label}</text>"##,
                    bottom + 13.0
                )?;
            }
            day += chrono::Duration::days(1);
            if day.and_utc().timestamp_nanos_opt().unwrap_or(i64::MAX) > t1 {
                break;
            }
        }
        writeln!(svg, r##"<line x1="{LEFT}" x2="{LEFT}" y1="{top:.1}" y2="{bottom:.1}" stroke="#888"/>"##)?;
        writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{bottom:.1}" y2="{bottom:.1}" stroke="#888"/>"##,
            WIDTH - RIGHT
        )?;
        writeln!(
            svg,
            r##"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold" fill="#222">{group} at {}: completed {}, prevented {}, outstanding {}</text>"##,
            top - 8.0,
            to.to_datetime().format("%Y-%m-%d %H:%M UTC"),
            usd_label(series[0].points.last().map(|p| p.1).unwrap_or_default()),
            usd_label(series[1].points.last().map(|p| p.1).unwrap_or_default()),
            usd_label(series[2].points.last().map(|p| p.1).unwrap_or_default())
        )?;
        for (si, s) in series.iter().enumerate().rev() {
            let mut d = String::new();
            let mut prev_y = None;
            for (t, v) in &s.points {
                let (xx, yy) = (x(*t), y(*v));
                match prev_y {
                    None => write!(d, "M{xx:.1},{yy:.1}")?,
                    Some(py) => write!(d, " L{xx:.1},{py:.1} L{xx:.1},{yy:.1}")?,
                }
                prev_y = Some(yy);
            }
            if let Some(py) = prev_y {
                write!(d, " L{:.1},{py:.1}", x(t1))?;
            }
            if si == 2 {
                // Outstanding as a shaded area, so the completed line stays visible over it.
                writeln!(
                    svg,
                    r#"<path d="{d} L{:.1},{bottom:.1} L{:.1},{bottom:.1} Z" fill="{}" opacity="0.18" stroke="none"/>"#,
                    x(t1),
                    x(t0),
                    s.color
                )?;
                writeln!(svg, r#"<path d="{d}" fill="none" stroke="{}" stroke-width="1.5"/>"#, s.color)?;
            } else {
                let dash = if si == 0 { r#" stroke-dasharray="7 4""# } else { "" };
                writeln!(svg, r#"<path d="{d}" fill="none" stroke="{}" stroke-width="2.5"{dash}/>"#, s.color)?;
            }
        }
        // Labels last, over the grid and the series.
        svg.push_str(&labels);
        writeln!(svg, "</g>")?;
    }
    let ly = height - 22.0;
    let names = [
        ("completed (went out)", "#c0392b"),
        ("prevented (reversed)", "#2e86c1"),
        ("outstanding (customers' loss)", "#7d3c98"),
        ("flag recorded", "#117a65"),
    ];
    for (i, (name, color)) in names.iter().enumerate() {
        let lx = LEFT + i as f64 * 205.0;
        writeln!(
            svg,
            r#"<line x1="{lx}" x2="{:.1}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
            lx + 24.0
        )?;
        writeln!(svg, r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#222">{name}</text>"##, lx + 30.0, ly + 4.0)?;
    }
    writeln!(svg, "</svg>")?;
    Ok(svg)
}
