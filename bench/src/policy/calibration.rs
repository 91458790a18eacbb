//! The report's calibration section: why the load has the shape it has, worked out for the
//! flags of this run, and what `today` measured with it.

use std::fmt::Write;

use super::report::{lat, Params};
use super::summary::Summary;

pub fn write(w: &mut String, p: &Params, today: Option<&Summary>) {
    let sh = &p.shape;
    let _ = writeln!(w, "## Calibration\n");
    let _ = writeln!(
        w,
        "Today's gateway leaves the PTU for two reasons: its reported utilization (the \
         simulator's leaky bucket, capacity one minute of tokens, draining at capacity/60 per \
         second) reaches 90% (latched until it falls below 80%), or the tokens the gateway \
         itself admitted to it over the last 60 s reach 90% of `capacity_tokens_per_minute`. \
         Both average over about a minute, so a burst shorter than a few seconds, or one whose \
         extra tokens a minute can absorb, never spills: the burst has to be long and large \
         enough to push a one-minute sum over 90%. The two triggers are not equally easy to \
         reach. The bucket only fills while tokens arrive faster than capacity and needs an \
         excess of 90% of a minute's capacity (e.g. 2× capacity for 54 s) to report 90%; the \
         60 s window needs only that the last minute's admissions reach 90% of capacity. So the \
         window is what spills first, and the shape is chosen for it."
    );
    let _ = writeln!(
        w,
        "\nThe shape: every {p_s} s period has {lead} s at the base load ({base:.1}%) then a \
         {b_s} s burst at {burst:.0}% of capacity, mean {mean:.0}%. The run starts in the base \
         phase, which warms the window. When the base phase is at least a minute long, the \
         window enters each burst holding only base load, so what spills is set by the shape \
         and not by the previous burst.\n",
        p_s = sh.period_secs,
        lead = sh.period_secs.saturating_sub(sh.burst_secs),
        base = p.base_load * 100.0,
        b_s = sh.burst_secs,
        burst = sh.burst_load * 100.0,
        mean = sh.mean_load * 100.0,
    );
    match sh.window_crossing(p.base_load, 0.9) {
        Some(x) => {
            let rest = sh.burst_secs as f64 - x;
            let bucket = (sh.burst_load - 1.0).max(0.0) * x / 60.0 * 100.0;
            // What the bucket would gain if nothing spilled: the burst's excess over capacity.
            let full = (sh.burst_load - 1.0).max(0.0) * sh.burst_secs as f64 / 60.0;
            let verdict = if full < 0.9 {
                "That stays under 90%, so those policies need neither hold nor spill: what they \
                 save comes from the better estimate alone, and the run says nothing about the \
                 queue. A burst whose excess over capacity passes 90% of a minute of it \
                 (`--burst-load 2.4 --burst-secs 50 --period-secs 200`) makes the queue work."
            } else {
                "That passes 90%, so those policies reach their thresholds in every burst: the \
                 rest of the burst is held while the bucket drains (a minute's capacity per \
                 minute), up to each request's allowance, and what cannot wait spills."
            };
            let _ = writeln!(
                w,
                "The 60 s window reaches 90% {x:.0} s into each burst; for the remaining \
                 {rest:.0} s the PTU only takes what leaves the window (the base load's \
                 {base:.1}% of a minute ago) and the rest, about {spill:.0}% of capacity, \
                 spills. Meanwhile the bucket, filling only at the excess over capacity, gets \
                 to about {bucket:.0}% (it charges each request whole at admission, and every \
                 request generates its whole max_tokens): it never reports 90%, so the spills \
                 are all the prediction's (`reason=\"predicted\"` in the appendix).\n\n\
                 The hold policies read another estimate. A class that may hold a request \
                 (`max_hold_ms` above 0) on a provisioned pool reads the gateway's model of \
                 the PTU's leaky bucket (the arithmetic Azure enforces and the simulator \
                 implements), not the 60 s window, and holds or spills only when that model is \
                 at the class's threshold. With every token of a burst on the PTU, the bucket \
                 would gain {full:.0}% of a minute's capacity per burst. {verdict}",
                base = p.base_load * 100.0,
                spill = (sh.burst_load - p.base_load) * 100.0,
                full = full * 100.0,
            );
        }
        None => {
            let _ = writeln!(
                w,
                "With these flags the window does not cross 90% inside a burst that follows a \
                 full minute of base load (no analytic crossing point), so little may spill."
            );
        }
    }
    if let Some(t) = today {
        let _ = writeln!(
            w,
            "\nMeasured with `today`: {:.1}% of all tokens went to Standard ({} of {} \
             answers named a Standard deployment), the PTU's bucket peaked at {:.1}% and \
             averaged {:.1}%, and the PTU served {:.1}% of its capacity; interactive p50/p99 \
             {}, batch {}, {} 429s to clients.",
            t.standard_share * 100.0,
            t.served_by_standard,
            t.requests,
            t.ptu_utilization_max,
            t.ptu_utilization_mean,
            t.ptu_use_of_capacity * 100.0,
            lat(&t.interactive),
            lat(&t.batch),
            t.client_429
        );
    }
    let _ = writeln!(
        w,
        "\nRe-tune with `--mean-load`, `--burst-load`, `--period-secs`, `--burst-secs` and \
         `--seconds`.\n"
    );
}
