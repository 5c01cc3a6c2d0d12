//! The incident chart: cumulative prevented, completed and outstanding USD over the window, one
//! panel per group (each with its own scale: misc is a thousand times smaller than BTC), with
//! the suspension of withdrawals shaded. Hand-written SVG: a chart this simple does not need a
//! plotting library. Pixel positions are computed in floating point; the money is not.
//!
//! The axis arithmetic (ticks, a nice maximum, a value's height) multiplies and divides USD
//! figures by small constants to draw them, far inside a Decimal's range: it is allowed here.
#![allow(clippy::arithmetic_side_effects)]

use std::fmt::Write;

use anyhow::Result;
use custos_domain::{Event, StreamId, Timestamp};
use custos_ledger::{Ledger, ReplayOrder};
use custos_projection::LossRow;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 210.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 96.0;
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

/// A "nice" axis maximum (1, 2 or 5 times a power of ten) at or above `max`.
fn nice_max(max: Decimal) -> Decimal {
    let mut step = Decimal::ONE;
    while step * Decimal::from(10) <= max {
        step *= Decimal::from(10);
    }
    for m in [1, 2, 5, 10] {
        if step * Decimal::from(m) >= max {
            return step * Decimal::from(m);
        }
    }
    step * Decimal::from(10)
}

pub fn incident_svg(ledger: &Ledger, from: Timestamp, to: Timestamp) -> Result<String> {
    let bound = ledger.bound(None, None, None)?;
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
        r##"<text x="{LEFT}" y="48" font-size="12" fill="#555">{} to {} UTC (valid time), as known to the ledger at seq {} ({}).</text>"##,
        from,
        to,
        bound.known_seq,
        bound.known_at.to_datetime().format("%Y-%m-%d %H:%M UTC")
    )?;
    writeln!(
        svg,
        r##"<text x="{LEFT}" y="64" font-size="12" fill="#555">Shaded: withdrawals suspended. Completed = attempted - prevented; outstanding = completed - reimbursed. Each panel has its own scale.</text>"##
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
        let ymax = nice_max(max.max(Decimal::ONE));
        let y = |v: Decimal| bottom - PANEL_HEIGHT * (v / ymax).to_f64().unwrap_or(0.0);
        for (s, r) in &windows {
            let (a, b) = (x(s.nanos().max(t0)), x(r.map_or(t1, |r| r.nanos()).min(t1)));
            writeln!(
                svg,
                r##"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{PANEL_HEIGHT}" fill="#f5cba7" opacity="0.55"/>"##,
                b - a
            )?;
            if gi == 0 {
                writeln!(
                    svg,
                    r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#a04000" text-anchor="middle">withdrawals suspended {} h</text>"##,
                    (a + b) / 2.0,
                    top + 14.0,
                    r.map_or("open".into(), |r| ((r.nanos() - s.nanos()) / 3_600_000_000_000).to_string())
                )?;
            }
        }
        for k in 0..=4 {
            let v = ymax * Decimal::from(k) / Decimal::from(4);
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
                    bottom + 14.0
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
            r##"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold" fill="#222">{group}: completed {}, prevented {}, outstanding {}</text>"##,
            top - 8.0,
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
    }
    let ly = height - 22.0;
    let names = [
        ("completed (went out)", "#c0392b"),
        ("prevented (reversed)", "#2e86c1"),
        ("outstanding (customers' loss)", "#7d3c98"),
    ];
    for (i, (name, color)) in names.iter().enumerate() {
        let lx = LEFT + i as f64 * 250.0;
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
