#!/usr/bin/env python3
"""The report of bench/token: reads hyperfine's JSON export and prints medians, means, p95,
each command's overhead over /bin/true and the ratio of oauthimap to pizauth against the target
(warm `oauthimap token` median <= `pizauth show` median)."""

import argparse
import json
import os
import platform
import statistics
import sys

# pizauth 1.x `show` on this machine type, recorded when the issue was written: used only
# when this run could not measure pizauth.
REFERENCE_PIZAUTH_MS = 1.9
REFERENCE_PIZAUTH_OVERHEAD_MS = 0.9


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--hyperfine", default="hyperfine")
    ap.add_argument("--pizauth-version")
    ap.add_argument("--note")
    ap.add_argument("--oauthimap-path")
    args = ap.parse_args()

    with open(args.json, encoding="utf-8") as f:
        data = json.load(f)
    rows = {}
    order = []
    for r in data["results"]:
        name = r["command"]
        times = [t * 1000.0 for t in r["times"]]
        failed = [c for c in (r.get("exit_codes") or []) if c != 0]
        if failed:
            sys.exit(f"{name}: {len(failed)} run(s) exited non-zero")
        rows[name] = {
            "median": statistics.median(times),
            "mean": statistics.fmean(times),
            "p95": percentile(times, 0.95),
            "min": min(times),
            "n": len(times),
        }
        order.append(name)

    base = rows.get("/bin/true")
    oi = rows.get("oauthimap token")
    pz = rows.get("pizauth show")
    if base is None or oi is None:
        sys.exit("the JSON lacks the oauthimap token or /bin/true results")

    out = []
    out.append(
        f"warm token latency: {args.hyperfine}, {args.runs} runs after {args.warmup} warm-up "
        f"runs each, no shell (-N); {os.cpu_count()} CPU(s), {cpu_model()}; commit {args.commit}"
    )
    if args.pizauth_version:
        out.append(f"peer: {args.pizauth_version}, its daemon holding a valid access token")
    if args.oauthimap_path:
        out.append(f"oauthimap token: from {args.oauthimap_path}")
    out.append("")
    out.append(
        f"{'command':<18} {'median ms':>10} {'mean ms':>9} {'p95 ms':>8} {'min ms':>8} {'over /bin/true':>15}"
    )
    for name in order:
        r = rows[name]
        over = "" if name == "/bin/true" else f"{r['median'] - base['median']:+.3f} ms"
        out.append(
            f"{name:<18} {r['median']:>10.3f} {r['mean']:>9.3f} {r['p95']:>8.3f} {r['min']:>8.3f} {over:>15}"
        )
    out.append("(over /bin/true: the difference of the medians)")
    out.append("")
    oi_over = oi["median"] - base["median"]
    if pz is not None:
        pz_over = pz["median"] - base["median"]
        ratio = oi["median"] / pz["median"]
        verdict = "MET" if oi["median"] <= pz["median"] else "MISSED"
        out.append(
            f"oauthimap token / pizauth show (medians): {ratio:.3f}x  (target <= 1x)   {verdict}"
        )
        over_ratio = f"{oi_over / pz_over:.2f}x" if pz_over > 0 else "n/a"
        out.append(
            f"overhead over /bin/true: oauthimap {oi_over:+.3f} ms, pizauth {pz_over:+.3f} ms ({over_ratio})"
        )
        out.append(
            f"p95: oauthimap {oi['p95']:.3f} ms, pizauth {pz['p95']:.3f} ms ({oi['p95'] / pz['p95']:.3f}x)"
        )
    else:
        if args.note:
            out.append(args.note)
        verdict = "MET" if oi_over <= REFERENCE_PIZAUTH_OVERHEAD_MS else "MISSED"
        out.append(
            f"pizauth not measured in this run: against its recorded overhead "
            f"({REFERENCE_PIZAUTH_OVERHEAD_MS} ms over /bin/true, {REFERENCE_PIZAUTH_MS} ms median), "
            f"oauthimap adds {oi_over:+.3f} ms   {verdict} (reference, not this run's peer)"
        )
    print("\n".join(out))


if __name__ == "__main__":
    main()
