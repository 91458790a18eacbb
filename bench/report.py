#!/usr/bin/env python3
"""Helpers of bench/run: records, the report, and a few /proc readings.

  report.py record-oha RESULTS OHA_JSON WORKLOAD TARGET REP CPU_TICKS CLK_TCK
  report.py record-streams RESULTS STREAM_JSON WORKLOAD TARGET REP CPU_TICKS CLK_TCK LISTEN_DROPS
  report.py record-callgrind RESULTS TARGET PROFILE_N1 PROFILE_N2 N1 N2
  report.py report RESULTS OUT.md [--smoke 0|1] [--name ...] ...
  report.py busy SECONDS                   machine-wide CPU busy percent over SECONDS
  report.py others-snap FILE               CPU times of processes outside this process group
  report.py others-record RESULTS FILE STEP  what they used since the snapshot
  report.py child PID                      the first child process of PID (the nginx worker)

`record-*` append one JSON line to RESULTS and print a one-line summary; they exit 1 when the
step got no successful answer (the benchmark itself is broken). `report` takes medians over
the repetitions, with differences paired within a repetition, prints the summary table and
writes the Markdown report; it exits 3 when a full run missed a target.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

# Targets from issue 7.
GOVERNANCE_P50_MS = 2.0
ADDED_LATENCY_VS_NGINX = 1.5  # Spillway's added p50 and p99 at most this multiple of nginx's
THROUGHPUT_VS_NGINX = 0.8     # Spillway's req/s at saturation at least this fraction of nginx's
FLEET_VS_SINGLE = 0.95        # fleet mode's req/s at saturation at least this fraction of the same config without it
ENTRA_VS_KEYS = 0.95          # Entra ID both ways at saturation at least this fraction of the same config with keys (issue 16)
STREAM_GAP_P99_MS = 1.0
STREAM_MEMORY_KB = 64.0


def append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def callgrind_total(path):
    """Instructions (Ir) of a whole process, from its callgrind profile (all threads)."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    return 0


def ok_answers(oha_json):
    d = json.load(open(oha_json))
    return d.get("statusCodeDistribution", {}).get("200", 0)


def record_callgrind(results, target, out1, out2, n1, n2):
    n1, n2 = int(n1), int(n2)
    ok1, ok2 = ok_answers(out1 + ".oha.json"), ok_answers(out2 + ".oha.json")
    ir1, ir2 = callgrind_total(out1), callgrind_total(out2)
    per_req = (ir2 - ir1) / (n2 - n1) if ir1 and ir2 else None
    rec = {"kind": "callgrind", "target": target, "n1": n1, "n2": n2, "ir1": ir1, "ir2": ir2,
           "ok": ok1 + ok2, "requests": n1 + n2, "ir_per_req": per_req}
    append(results, rec)
    print(f"   callgrind {target:8} {fmt(per_req, 0)} instructions/request "
          f"({ok1 + ok2}/{n1 + n2} answered 200)")
    return 0 if ok1 + ok2 == n1 + n2 and per_req is not None else 1


def record_oha(results, oha_json, workload, target, rep, cpu_ticks, clk_tck):
    with open(oha_json) as f:
        d = json.load(f)
    statuses = {int(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errors = d.get("errorDistribution") or {}
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    non2xx = sum(v for k, v in statuses.items() if not 200 <= k < 300)
    n_err = sum(errors.values())
    pct = d.get("latencyPercentiles") or {}
    ms = lambda v: None if v is None else v * 1000.0
    cpu_s = int(cpu_ticks) / int(clk_tck)
    r = {
        "kind": "oha",
        "workload": workload,
        "target": target,
        "rep": int(rep),
        "rps": d["summary"]["requestsPerSec"],
        "ok": ok,
        "non2xx": non2xx,
        "errors": n_err,
        "statuses": statuses,
        "error_kinds": errors,
        "p50_ms": ms(pct.get("p50")),
        "p99_ms": ms(pct.get("p99")),
        "p999_ms": ms(pct.get("p99.9")),
        "cpu_s": cpu_s,
        "cpu_us_per_req": cpu_s * 1e6 / ok if ok else None,
    }
    append(results, r)
    bad = f"  NON-2XX {non2xx} {dict((k, v) for k, v in statuses.items() if not 200 <= k < 300)}" if non2xx else ""
    bad += f"  ERRORS {n_err} {errors}" if n_err else ""
    print(
        f"   {workload:9} {target:8} rep {rep}: {r['rps']:8.0f} req/s  p50 {fmt(r['p50_ms'], 3)} ms"
        f"  p99 {fmt(r['p99_ms'], 3)} ms  cpu {fmt(r['cpu_us_per_req'], 0)} us/req  ok {ok}{bad}"
    )
    if ok == 0:
        print(f"bench: {workload} {target}: no successful answer", file=sys.stderr)
        sys.exit(1)


def record_streams(results, stream_json, workload, target, rep, cpu_ticks, clk_tck, listen_drops="0"):
    with open(stream_json) as f:
        d = json.load(f)
    cpu_s = int(cpu_ticks) / int(clk_tck)
    rss = next(iter(d.get("rss", {}).values()), {}) or {}
    idle, open_kb, max_open = rss.get("idle_kb"), rss.get("open_kb"), d.get("max_open") or 0
    per_stream = (open_kb - idle) / max_open if idle and open_kb and max_open else None
    r = {
        "kind": "streams",
        "workload": workload,
        "target": target,
        "rep": int(rep),
        "streams": d["streams"],
        "ok": d["ok"],
        "incomplete": d["incomplete"],
        "errors": d["errors"],
        "error_samples": d.get("error_samples", []),
        "ttft_p50_ms": d["ttft_ms"].get("p50"),
        "ttft_p99_ms": d["ttft_ms"].get("p99"),
        "gap_p50_ms": d["gap_ms"].get("p50"),
        "gap_p99_ms": d["gap_ms"].get("p99"),
        "gap_p999_ms": d["gap_ms"].get("p999"),
        "gap_max_ms": d["gap_ms"].get("max"),
        "gaps": d["gap_ms"].get("n", 0),
        "max_open": max_open,
        "idle_kb": idle,
        "open_kb": open_kb,
        "kb_per_stream": per_stream,
        "elapsed_s": d.get("elapsed_s"),
        "content_events": d.get("content_events", 0),
        "cpu_s": cpu_s,
        "cpu_us_per_event": cpu_s * 1e6 / d["content_events"] if d.get("content_events") else None,
        "cores": cpu_s / d["elapsed_s"] if d.get("elapsed_s") else None,
        "listen_drops": int(listen_drops),
    }
    append(results, r)
    bad = f"  FAILED {r['errors']} {r['error_samples'][:2]}" if r["errors"] else ""
    bad += f"  INCOMPLETE {r['incomplete']}" if r["incomplete"] else ""
    bad += f"  SYNs dropped by a full listen queue: {r['listen_drops']}" if r["listen_drops"] else ""
    mem = (
        f"  rss {idle / 1024:.1f} -> {open_kb / 1024:.1f} MB at {max_open} open = {per_stream:.1f} KB/stream"
        if per_stream is not None
        else ""
    )
    print(
        f"   {workload:12} {target:8} rep {rep}: ok {r['ok']}/{r['streams']}  cpu {fmt(r['cpu_us_per_event'], 1)} us/event  ttft p50 {fmt(r['ttft_p50_ms'], 2)} "
        f"p99 {fmt(r['ttft_p99_ms'], 2)} ms  gap p50 {fmt(r['gap_p50_ms'], 2)} p99 {fmt(r['gap_p99_ms'], 2)} ms{mem}{bad}"
    )
    if r["ok"] == 0:
        print(f"bench: streams {target}: no stream completed", file=sys.stderr)
        sys.exit(1)


def busy(seconds):
    def read():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]

    t0, i0 = read()
    time.sleep(float(seconds))
    t1, i1 = read()
    print(round(100 * (1 - (i1 - i0) / max(1, t1 - t0))))


def foreign_ticks():
    """CPU ticks (own plus reaped children) of every process outside our process group,
    kernel threads excluded."""
    ours = os.getpgid(0)
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid, pgrp = int(fields[1]), int(fields[2])
        if pgrp == ours or ppid == 2 or pid == "2":
            continue
        out[pid] = (comm, sum(int(x) for x in fields[11:15]))
    return out


def others_snap(path):
    with open(path, "w") as f:
        json.dump({"time": time.time(), "procs": foreign_ticks()}, f)


def others_record(results, path, step):
    with open(path) as f:
        snap = json.load(f)
    now = foreign_ticks()
    tck = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid, (comm, ticks) in now.items():
        before = snap["procs"].get(pid)
        delta = ticks - before[1] if before and before[0] == comm else ticks
        if delta > 0:
            used[comm] = used.get(comm, 0) + delta / tck
    wall = time.time() - snap["time"]
    total = sum(used.values())
    top = sorted(used.items(), key=lambda kv: -kv[1])[:3]
    append(results, {"kind": "others", "step": step, "cpu_s": total, "wall_s": wall, "top": top})
    share = 100 * total / wall if wall > 0 else 0
    note = "  WARNING: numbers of this step are disturbed" if share > 10 else ""
    print(f"   other processes used {total:.1f} CPU-s in {wall:.0f} s ({share:.0f}% of a core)"
          + (f": {', '.join(f'{c} {s:.1f}s' for c, s in top)}" if top else "") + note)


def fmt(v, digits=2, sign=False):
    if v is None:
        return "n/a"
    return f"{v:+,.{digits}f}" if sign else f"{v:,.{digits}f}"


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def failed(r):
    """Requests of this measurement that failed (non-2xx answers, transport errors)."""
    if r["kind"] == "oha":
        return r["non2xx"] + r["errors"]
    if r["kind"] == "streams":
        return r["errors"] + r["incomplete"]
    return 0


class Runs:
    def __init__(self, records):
        self.records = records
        # (workload, rep, target) left out of paired figures because that target failed requests.
        self.excluded = set()

    def get(self, kind, target, workload=None):
        return [
            r
            for r in self.records
            if r["kind"] == kind and r["target"] == target and (workload is None or r.get("workload") == workload)
        ]

    def med(self, kind, target, field, workload=None):
        rs = self.get(kind, target, workload)
        for r in rs:
            if failed(r):
                self.excluded.add((r.get("workload"), r["rep"], target))
        return med([r[field] for r in rs if not failed(r)])

    def paired(self, kind, field, a, b, workload_a=None, workload_b=None, op=lambda x, y: x - y):
        """Median over repetitions of op(a's field, b's field) within the same repetition.

        A repetition in which either side had failed requests is left out (and listed in the
        report): a baseline that stalled would otherwise make any gateway look fast."""
        by_rep_b = {r["rep"]: r for r in self.get(kind, b, workload_b)}
        out = []
        for r in self.get(kind, a, workload_a):
            o = by_rep_b.get(r["rep"])
            if not o or r[field] is None or o[field] is None:
                continue
            if failed(r) or failed(o):
                self.excluded.add((r.get("workload"), r["rep"], a if failed(r) else b))
                continue
            out.append(op(r[field], o[field]))
        return med(out)

    def errors(self, kind, target, workload=None):
        rs = self.get(kind, target, workload)
        if kind == "oha":
            return sum(r["non2xx"] + r["errors"] for r in rs)
        return sum(r["errors"] + r["incomplete"] for r in rs)


def verdict(value, limit, smoke, at_least=False):
    if value is None or limit is None:
        return "n/a"
    passed = value >= limit if at_least else value < limit
    word = "PASS" if passed else "MISS"
    return f"{word} (not enforced)" if smoke else word


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
        return f"{model}, {mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        return model


def table(header, body):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(out)


def excluded_text(R):
    return "; ".join(f"{t} in {w} repetition {rep}" for w, rep, t in sorted(R.excluded, key=str))


def report(args):
    records = [json.loads(l) for l in open(args.results) if l.strip()]
    R = Runs(records)
    smoke = args.smoke == "1"
    tgt = ["direct", "nginx", "pingora", "spillway"]
    # Only at saturation and in callgrind: the floor plus the body governance the target asks for,
    # and Spillway without its tenant budget and access log.
    sat_tgt = ["direct", "nginx", "pingora", "governed", "lean", "spillway", "fleet", "entra"]
    gws = ("nginx", "pingora", "spillway")
    hi, lo = f"streams-{args.streams}", f"streams-{args.streams_low}"

    # (i) fixed rate: added latency, paired per repetition.
    add = {(t, q): R.paired("oha", f"{q}_ms", t, "direct", "rate", "rate") for t in gws for q in ("p50", "p99")}
    # (i) saturation.
    sat = {t: R.med("oha", t, "rps", "sat") for t in sat_tgt}
    sat_ratio = {t: R.paired("oha", "rps", t, "nginx", "sat", "sat", op=lambda x, y: x / y)
                 for t in ("pingora", "governed", "lean", "spillway")}
    sat_vs_floor = {t: R.paired("oha", "rps", t, "pingora", "sat", "sat", op=lambda x, y: x / y)
                    for t in ("governed", "lean", "spillway", "fleet", "entra")}
    fleet_vs_single = R.paired("oha", "rps", "fleet", "spillway", "sat", "sat", op=lambda x, y: x / y)
    entra_vs_keys = R.paired("oha", "rps", "entra", "spillway", "sat", "sat", op=lambda x, y: x / y)
    # (ii) governance: Spillway's added latency on chat minus its added latency on embeddings.
    body_added = {
        (kind, q): R.paired("oha", f"{q}_ms", "spillway", "direct", f"body-{kind}", f"body-{kind}")
        for kind in ("chat", "emb")
        for q in ("p50", "p99")
    }
    gov = {}
    for q in ("p50", "p99"):
        diffs = []
        for rep in sorted({r["rep"] for r in records if "rep" in r}):
            def at(target, kind):
                rs = [r for r in R.get("oha", target, f"body-{kind}") if r["rep"] == rep]
                return rs[0][f"{q}_ms"] if rs else None

            vals = [at("spillway", "chat"), at("direct", "chat"), at("spillway", "emb"), at("direct", "emb")]
            if None not in vals:
                diffs.append((vals[0] - vals[1]) - (vals[2] - vals[3]))
        gov[q] = med(diffs)
    # (iii) streams, at both levels.
    s_add = {
        (lvl, t, f): R.paired("streams", f, t, "direct", lvl, lvl)
        for lvl in (hi, lo)
        for t in gws
        for f in ("ttft_p50_ms", "ttft_p99_ms", "gap_p50_ms", "gap_p99_ms")
    }
    # (iv) memory, with the most streams open.
    mem = {t: R.med("streams", t, "kb_per_stream", hi) for t in gws}

    def ms(v, d=3):
        return fmt(v, d, True) + " ms"

    def ttft(lvl, t):
        return f"{fmt(s_add[(lvl, t, 'ttft_p50_ms')], 2, True)} / {fmt(s_add[(lvl, t, 'ttft_p99_ms')], 2, True)} ms"

    gap_hi = s_add[(hi, "spillway", "gap_p99_ms")]

    def scaled(v, k):
        return None if v is None else v * k

    def lat_row(q):
        limit = scaled(add[("nginx", q)], ADDED_LATENCY_VS_NGINX)
        return (f"Added latency {q} at 2,000 req/s (over direct)", ms(add[("nginx", q)]),
                ms(add[("pingora", q)]), ms(add[("spillway", q)]),
                f"<= {ADDED_LATENCY_VS_NGINX:g}x nginx ({ms(limit)})",
                verdict(add[("spillway", q)], limit, smoke))

    def per_lvl(lvl, f, d=2):
        return [ms(s_add[(lvl, t, f)], d) for t in gws]

    rows = [
        lat_row("p50"),
        lat_row("p99"),
        # The target names governance, routing and metrics: that is the lean config. The tenant
        # budget (exact prompt counting) and the access log are reported beside it.
        ("Throughput at saturation, 64 connections: Spillway as the target names it, governance caps, "
         "routing and metrics (no tenant budget, no access log)",
         f"{fmt(sat['nginx'], 0)} req/s",
         f"{fmt(sat['pingora'], 0)} req/s = {fmt(sat_ratio['pingora'], 2)}x nginx",
         f"{fmt(sat['lean'], 0)} req/s = {fmt(sat_ratio['lean'], 2)}x nginx "
         f"= {fmt(sat_vs_floor['lean'], 2)}x bare Pingora",
         f">= {THROUGHPUT_VS_NGINX:g}x nginx",
         verdict(sat_ratio["lean"], THROUGHPUT_VS_NGINX, smoke, at_least=True)),
        ("Throughput at saturation, Spillway as above plus tenant budget (exact prompt counting) and access "
         "log", "", "",
         f"{fmt(sat['spillway'], 0)} req/s = {fmt(sat_ratio['spillway'], 2)}x nginx "
         f"= {fmt(sat_vs_floor['spillway'], 2)}x bare Pingora",
         "", "(beyond the target)"),
        ("Throughput at saturation, Spillway as above in fleet mode (a fleet section, redis-server on "
         "loopback: budget leases and one exchange every 100 ms beside the load)", "", "",
         f"{fmt(sat['fleet'], 0)} req/s = {fmt(fleet_vs_single, 3)}x the same without the fleet "
         f"= {fmt(sat_vs_floor['fleet'], 2)}x bare Pingora",
         f">= {FLEET_VS_SINGLE:g}x without the fleet",
         verdict(fleet_vs_single, FLEET_VS_SINGLE, smoke, at_least=True)),
        ("Throughput at saturation, Spillway as above with Entra ID both ways (tenant's JWT validated, "
         "upstream Bearer token from a managed identity, against a simulator that takes tokens only)", "", "",
         f"{fmt(sat['entra'], 0)} req/s = {fmt(entra_vs_keys, 3)}x the same with keys "
         f"= {fmt(sat_vs_floor['entra'], 2)}x bare Pingora",
         f">= {ENTRA_VS_KEYS:g}x with keys",
         verdict(entra_vs_keys, ENTRA_VS_KEYS, smoke, at_least=True)),
        ("Throughput at saturation: Pingora reading, parsing, capping and rewriting every body "
         "(bench/src/bin/pingora_governed.rs)", "",
         f"{fmt(sat['governed'], 0)} req/s = {fmt(sat_ratio['governed'], 2)}x nginx "
         f"= {fmt(sat_vs_floor['governed'], 2)}x bare", "", "", "(reference)"),
        ("Governance cost, 200 KB body, p50 (chat minus embeddings, each over direct)", "", "", ms(gov["p50"]),
         f"< {GOVERNANCE_P50_MS:g} ms", verdict(gov["p50"], GOVERNANCE_P50_MS, smoke)),
        (f"Added TTFT p50 / p99, {args.streams} streams", *[ttft(hi, t) for t in gws], "", ""),
        (f"Added gap between content events p99, {args.streams} streams", *per_lvl(hi, "gap_p99_ms"),
         f"< {STREAM_GAP_P99_MS:g} ms", verdict(gap_hi, STREAM_GAP_P99_MS, smoke)),
        (f"Added TTFT p50 / p99, {args.streams_low} streams", *[ttft(lo, t) for t in gws], "", ""),
        (f"Added gap between content events p99, {args.streams_low} streams", *per_lvl(lo, "gap_p99_ms"),
         "", "(reference)"),
        (f"Memory per open stream (VmRSS open minus idle, / open streams), {args.streams} streams",
         *[fmt(mem[t], 1) + " KB" for t in gws], f"< {STREAM_MEMORY_KB:g} KB",
         verdict(mem["spillway"], STREAM_MEMORY_KB, smoke)),
    ]
    cg = {t: med([r["ir_per_req"] for r in records if r["kind"] == "callgrind" and r["target"] == t])
          for t in ("pingora", "governed", "lean", "spillway", "fleet", "entra")}

    def vs_floor(t):
        v = cg[t]
        return f"{fmt(v and v / 1000, 1)}k = {fmt(v / cg['pingora'] if v and cg['pingora'] else None, 2)}x bare"

    rows.append(("User-space instructions per 1 KB chat request (callgrind; no timing noise)", "",
                 fmt(cg["pingora"] and cg["pingora"] / 1000, 1) + "k", vs_floor("spillway"), "", "(reference)"))
    rows.append(("The same, Spillway without tenant budget and access log", "", "", vs_floor("lean"), "",
                 "(reference)"))
    rows.append(("The same, Spillway in fleet mode (the exchanges during the run included)", "", "",
                 vs_floor("fleet"), "", "(reference)"))
    rows.append(("The same, Spillway with Entra ID both ways", "", "", vs_floor("entra"), "",
                 "(reference)"))
    rows.append(("The same, Pingora reading, parsing, capping and rewriting every body", "",
                 vs_floor("governed"), "", "", "(reference)"))
    summary = table(["Measure", "nginx", "Pingora, bare (floor)", "Spillway", "Target", "Result"], rows)

    others = [r for r in records if r["kind"] == "others"]
    o_cpu, o_wall = sum(r["cpu_s"] for r in others), sum(r["wall_s"] for r in others)
    o_top = {}
    for r in others:
        for comm, s in r["top"]:
            o_top[comm] = o_top.get(comm, 0) + s
    o_share = 100 * o_cpu / o_wall if o_wall else 0
    o_text = f"{o_cpu:.0f} CPU-s over {o_wall:.0f} s of measurements ({o_share:.0f}% of one core)"
    if o_top:
        o_text += "; most: " + ", ".join(f"{c} {s:.0f}s" for c, s in sorted(o_top.items(), key=lambda kv: -kv[1])[:3])

    reps = int(args.reps)
    sat_reps = int(args.sat_reps or reps)
    md = []
    md.append(f"# Spillway benchmark: {args.name}, {args.cores} cores\n")
    md.append(f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    md.append(f"- Command: `{args.command}` ({'smoke: targets not enforced' if smoke else 'full run'}; "
              f"{reps} interleaved repetition{'s' if reps > 1 else ''} per measurement"
              f"{f' ({sat_reps} at saturation)' if sat_reps != reps else ''}, medians; "
              "differences paired within a repetition)")
    md.append(f"- Machine: {machine()}, {args.cores} cores, Linux {args.kernel}")
    md.append(f"- Quiet machine: CPU {args.background_busy}% busy before the start; other processes: {o_text}")
    md.append(f"- Versions: {args.spillway}; {args.nginx}; {args.oha}; {args.rustc}")
    md.append(f"- Workloads: {args.params}")
    md.append("- Setup: the load generator, the simulator (`spillway sim`) and the gateway share the cores, on "
              "loopback. nginx: 1 worker, upstream keep-alive, `proxy_buffering off`, buffered access log. "
              "Spillway: `server.threads: 1`, governance (caps and a tenant budget), routing, metrics and a file "
              "access log on. "
              "Pingora, bare: `bench/src/bin/pingora_floor.rs`, the same framework, allocator and thread count, with "
              "no hook but `upstream_peer`; the floor that no Pingora-based gateway goes below. "
              "Pingora reading, parsing, capping and rewriting every body (at saturation and in callgrind): "
              "`bench/src/bin/pingora_governed.rs`, the floor plus what the throughput target asks for, done with "
              "Spillway's own functions, and nothing else (no routing, budget, metrics, log or headers). "
              "Spillway lean (at saturation and in callgrind): the same Spillway config without the tenant "
              "budget (so no prompt counting) and with the access log off, which is what the throughput "
              "target names (governance, routing and metrics). "
              "Spillway in fleet mode (at saturation and in callgrind): the Spillway config plus a `fleet:` "
              "section against a redis-server on loopback, one member: the tenant budget is a fleet lease and "
              "the exchange with Redis runs every 100 ms beside the load.\n")
    md.append("## Summary\n")
    md.append(summary + "\n")
    if R.excluded:
        md.append(f"**Left out: {excluded_text(R)}.** Those repetitions had failed requests (see the tables "
                  "below), so their figures and the ratios paired with them are not counted.\n")

    md.append("How to read it: added = through the gateway minus direct, within the same repetition. "
              f"The machine's {args.cores} cores are shared by the load generator, the simulator and the gateway, "
              "so a gateway that needs more CPU also slows the others; the stream tables show how busy each "
              "was. TTFT outliers of about 40 ms when direct has none are the signature of Nagle's algorithm "
              "meeting a delayed ACK on a reused upstream connection (an upstream socket without TCP_NODELAY); "
              "outliers of about 1 s, of a SYN dropped by a full listen queue and retransmitted (counted below "
              "as SYNs dropped; direct streams connect before their clock starts).\n")
    md.append("## Details\n")
    md.append("### (i) ~1 KB chat requests at a fixed 2,000 req/s (oha `-q 2000 -c 50 --latency-correction`)\n")
    body = [(t, fmt(R.med("oha", t, "p50_ms", "rate"), 3), fmt(R.med("oha", t, "p99_ms", "rate"), 3),
             fmt(R.med("oha", t, "rps", "rate"), 0), fmt(R.med("oha", t, "cpu_us_per_req", "rate"), 0),
             R.errors("oha", t, "rate")) for t in tgt]
    md.append(table(["Target", "p50 ms", "p99 ms", "req/s", "CPU us/req", "errors + non-2xx"], body) + "\n")
    timer_note = ""
    if (R.med("oha", "direct", "p50_ms", "rate") or 0) > 0.8:
        timer_note = (" The simulator answers after a zero-length tokio sleep, which waits for the next 1 ms "
                      "timer tick: that is most of the direct latency.")
    md.append("CPU is that of the process doing the target's work: the simulator for direct, the nginx worker, "
              "the bare Pingora process, the Spillway process." + timer_note + "\n")
    md.append("### (i) Saturation (oha `-c 64`, no rate limit)\n")
    body = [(t, fmt(R.med("oha", t, "rps", "sat"), 0), fmt(R.med("oha", t, "p50_ms", "sat"), 3),
             fmt(R.med("oha", t, "p99_ms", "sat"), 3), fmt(R.med("oha", t, "cpu_us_per_req", "sat"), 0),
             R.errors("oha", t, "sat")) for t in sat_tgt]
    md.append(table(["Target", "req/s", "p50 ms", "p99 ms", "CPU us/req", "errors + non-2xx"], body) + "\n")
    # Per repetition: the ratios move together, so a slow nginx or a fast one shows in every
    # Pingora-based column at once.
    by_rep = {}
    for r in R.get("oha", "nginx", "sat"):
        if isinstance(r["rep"], int) and not failed(r):
            by_rep[r["rep"]] = r["rps"]
    body = []
    for rep in sorted(by_rep):
        row = [rep, f"{fmt(by_rep[rep], 0)} req/s"]
        for t in ("pingora", "governed", "lean", "spillway", "fleet", "entra"):
            rs = [r for r in R.get("oha", t, "sat") if r["rep"] == rep and not failed(r)]
            row.append(fmt(rs[0]["rps"] / by_rep[rep], 2) + "x" if rs else "")
        body.append(tuple(row))
    md.append("Each repetition, as a ratio to nginx in the same repetition:\n")
    md.append(table(["Repetition", "nginx", "pingora", "governed", "lean", "spillway", "fleet", "entra"], body) + "\n")
    md.append("### (ii) 200 KB bodies at 100 req/s\n")
    body = []
    for kind, label in (("chat", "chat/completions (governed)"), ("emb", "embeddings (passed through)")):
        for t in ("direct", "spillway"):
            wl = f"body-{kind}"
            a50 = fmt(body_added[(kind, "p50")], 3, True) if t == "spillway" else ""
            a99 = fmt(body_added[(kind, "p99")], 3, True) if t == "spillway" else ""
            body.append((label, t, fmt(R.med("oha", t, "p50_ms", wl), 3), fmt(R.med("oha", t, "p99_ms", wl), 3), a50, a99,
                         fmt(R.med("oha", t, "cpu_us_per_req", wl), 0), R.errors("oha", t, wl)))
    md.append(table(["Path", "Target", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "CPU us/req",
                     "errors + non-2xx"], body) + "\n")
    md.append(f"Governance cost (Spillway's added latency on chat minus on embeddings): p50 {ms(gov['p50'])}, "
              f"p99 {ms(gov['p99'])}.\n")
    for lvl, n in ((hi, args.streams), (lo, args.streams_low)):
        md.append(f"### (iii) {n} concurrent SSE streams, 10 ms between tokens (bench/src/bin/stream_load.rs)\n")
        body = [(t, fmt(R.med("streams", t, "ttft_p50_ms", lvl), 2), fmt(R.med("streams", t, "ttft_p99_ms", lvl), 2),
                 fmt(R.med("streams", t, "gap_p50_ms", lvl), 2), fmt(R.med("streams", t, "gap_p99_ms", lvl), 2),
                 fmt(R.med("streams", t, "gap_p999_ms", lvl), 2), fmt(R.med("streams", t, "gap_max_ms", lvl), 1),
                 fmt(R.med("streams", t, "max_open", lvl), 0), fmt(R.med("streams", t, "cpu_us_per_event", lvl), 1),
                 fmt(R.med("streams", t, "cores", lvl), 2), sum(r["listen_drops"] for r in R.get("streams", t, lvl)),
                 R.errors("streams", t, lvl)) for t in tgt]
        md.append(table(["Target", "TTFT p50 ms", "TTFT p99 ms", "gap p50 ms", "gap p99 ms", "gap p99.9 ms",
                         "gap max ms", "most open at once", "CPU us/content event", "cores busy",
                         "SYNs dropped (listen queue full, all reps)", "failed + incomplete"], body) + "\n")
    md.append("TTFT runs from sending the request (on an open connection) to the first content event; the gaps "
              "are between consecutive content events of a stream, as the client reads them (a gap near 0 means "
              "events arrived bunched up). CPU per event and cores busy (CPU time over the run's wall time) are "
              "the simulator's for direct, the gateway's otherwise; the simulator works just as hard behind a "
              "gateway, and the client needs its share too.\n")
    md.append(f"### (iv) Resident memory with {args.streams} streams open\n")
    body = []
    for t in gws:
        idle, opened = R.med("streams", t, "idle_kb", hi), R.med("streams", t, "open_kb", hi)
        body.append((t, fmt(idle and idle / 1024, 1), fmt(opened and opened / 1024, 1),
                     fmt(R.med("streams", t, "max_open", hi), 0), fmt(mem[t], 1)))
    md.append(table(["Process", "idle VmRSS MB", "open VmRSS MB", "streams open", "KB per stream"], body) + "\n")
    md.append("The gateway is restarted and warmed with a few requests before each stream measurement; idle is "
              "read just before the first stream, open when the most streams are open. nginx is its worker "
              "process, Pingora and Spillway the whole process.\n")

    md.append("### (v) Instructions per request (valgrind --tool=callgrind)\n")
    body = [(r["target"], f"{r['n1']:,} / {r['n2']:,}", f"{r['ir1']:,} / {r['ir2']:,}",
             fmt(r["ir_per_req"], 0), f"{r['ok']}/{r['requests']}")
            for r in records if r["kind"] == "callgrind"]
    if body:
        md.append(table(["Target", "requests (two fresh runs)", "instructions, whole process",
                         "instructions per request", "answered 200"], body) + "\n")
        md.append("Per request = the difference between the two runs over the difference in requests, which "
                  "leaves out start-up (Spillway loads its tokenizer then), warm-up and shutdown. Callgrind "
                  "counts user-space instructions only: the kernel's share of a request (sockets, wake-ups) "
                  "is in the CPU columns above. The count is the same from run to run within a fraction of a "
                  "percent, so it shows the gateway's own work where the timings above move with the "
                  "machine.\n")
    else:
        md.append("Skipped: valgrind is not installed.\n")

    md.append("<details><summary>Every repetition</summary>\n")
    body = []
    for r in records:
        if r["kind"] == "oha":
            body.append((r["workload"], r["target"], r["rep"], fmt(r["rps"], 0) + " req/s", fmt(r["p50_ms"], 3),
                         fmt(r["p99_ms"], 3), fmt(r["cpu_us_per_req"], 0) + " us/req", r["non2xx"] + r["errors"]))
        elif r["kind"] == "streams":
            body.append((r["workload"], r["target"], r["rep"], f"{r['ok']}/{r['streams']} ok",
                         f"TTFT {fmt(r['ttft_p50_ms'], 2)} / {fmt(r['ttft_p99_ms'], 2)}",
                         f"gap {fmt(r['gap_p50_ms'], 2)} / {fmt(r['gap_p99_ms'], 2)}",
                         (f"{fmt(r['kb_per_stream'], 1)} KB/stream, " if r["target"] != "direct" else "")
                         + f"{fmt(r['cpu_us_per_event'], 1)} us/event",
                         r["errors"] + r["incomplete"]))
    md.append(table(["Workload", "Target", "Rep", "Throughput", "p50 ms", "p99 ms", "Cost", "errors"], body))
    md.append("\n</details>\n")

    total_errors = sum(R.errors(k, t) for k in ("oha", "streams") for t in sat_tgt)
    if total_errors:
        md.append(f"**{total_errors} requests or streams failed or got a non-2xx answer**; see the tables above.\n")

    with open(args.out, "w") as f:
        f.write("\n".join(md))
    print(summary)
    print(f"\nother processes: {o_text}")
    if total_errors:
        print(f"\nWARNING: {total_errors} requests or streams failed or got a non-2xx answer")
    if R.excluded:
        print(f"\nWARNING: left out of the figures (failed requests): {excluded_text(R)}")
    # A target whose every repetition was left out is not met either.
    missed = [r[0] for r in rows if r[5].startswith(("MISS", "n/a"))]
    if missed and not smoke:
        print("\nMISSED: " + "; ".join(missed))
        return 3
    return 0


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 1
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "record-oha":
        record_oha(*rest)
        return 0
    if cmd == "record-callgrind":
        return record_callgrind(*rest)
    if cmd == "record-streams":
        record_streams(*rest)
        return 0
    if cmd == "child":
        kids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                raw = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            if raw[raw.rindex(")") + 2 :].split()[1] == rest[0]:
                kids.append(int(pid))
        if not kids:
            return 1
        print(min(kids))
        return 0
    if cmd == "redis-ping":  # PORT: exit 0 once a redis-server answers PING there
        import socket
        with socket.create_connection(("127.0.0.1", int(rest[0])), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return 0 if s.recv(16).startswith(b"+PONG") else 1
    if cmd == "fleet-joined":  # STATUS_URL: exit 0 once that Spillway is in fleet mode
        import urllib.request
        status = json.load(urllib.request.urlopen(rest[0], timeout=1))
        return 0 if status["fleet"]["mode"] == "fleet" else 1
    if cmd == "entra-token":  # SIM_URL: a token from the simulated managed identity endpoint
        import urllib.request
        req = urllib.request.Request(
            rest[0] + "/metadata/identity/oauth2/token?api-version=2018-02-01"
            "&resource=https://cognitiveservices.azure.com", headers={"Metadata": "true"})
        print(json.load(urllib.request.urlopen(req, timeout=5))["access_token"])
        return 0
    if cmd == "busy":
        busy(*rest)
        return 0
    if cmd == "others-snap":
        others_snap(*rest)
        return 0
    if cmd == "others-record":
        others_record(*rest)
        return 0
    if cmd == "report":
        p = argparse.ArgumentParser()
        p.add_argument("results")
        p.add_argument("out")
        for flag in ("smoke", "name", "cores", "reps", "sat-reps", "streams", "streams-low", "spillway", "nginx", "oha", "rustc", "kernel",
                     "background-busy", "command", "params"):
            p.add_argument(f"--{flag}", default="")
        return report(p.parse_args(rest))
    print(__doc__, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
