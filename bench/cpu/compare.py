#!/usr/bin/env python3
"""compare.py OUT_DIR: the table bench/cpu/run.sh prints from what it left in OUT_DIR: per (N, d,
causal), medians over the rounds of flashcl fa2 (the CPU form the planner picks), the team kernel
it replaced (FLASHCL_FA2_CPU=0) and PyTorch's CPU SDPA, in GFLOP/s; the ratios; fa2's share of
the FMA ceiling flashcl-bench measured; and fp16/bf16 storage time over fp32. Then the backward:
flashcl-bench --backward's fa2 backward and forward+backward against PyTorch's forward+backward
(GFLOP/s counted alike, 3.5x the forward's FLOPs for both passes)."""
import glob
import json
import statistics
import sys


def flashcl_rows(pattern):
    rows, ceiling = {}, None
    for path in sorted(glob.glob(pattern)):
        doc = json.load(open(path))
        ceiling = doc["context"]["ceilings"]["fma_gflops"]
        for r in doc["results"]:
            if r["status"] != "ok":
                print(f"flashcl row not ok: {r['seqlen_q']} {r['head_dim']} {r['causal']} {r['dtype']}: {r['note']}")
                continue
            key = (r["seqlen_q"], r["head_dim"], bool(r["causal"]), r["dtype"])
            rows.setdefault(key, []).append((r["median_ms"], r["tflops"] * 1e3, r["max_abs_error"]))
    return rows, ceiling


def med(values, i):
    return statistics.median(v[i] for v in values) if values else float("nan")


def main():
    out = sys.argv[1]
    fa2, ceiling = flashcl_rows(f"{out}/fa2-r*.json")
    team, _ = flashcl_rows(f"{out}/team-r*.json")
    torch_rows = {}
    for path in sorted(glob.glob(f"{out}/sdpa-r*.json")):
        for r in json.load(open(path)):
            torch_rows.setdefault((r["seqlen"], r["head_dim"], r["causal"], r["mode"]), []).append(r["gflops"])
    print(f"FMA ceiling (flashcl-bench, PoCL): {ceiling:.1f} GFLOP/s; GFLOP/s are medians over rounds")
    print(f"{'N':>5} {'d':>4} {'causal':>6} | {'fa2 cpu':>8} {'team fa2':>8} {'torch':>8} | {'vs torch':>8} "
          f"{'vs team':>7} {'%fma':>5} | {'f16/f32':>7} {'bf16/f32':>8} {'max|err|':>8} | {'torch f+b':>9}")
    worst_torch = worst_fma = float("inf")
    worst_16 = 0.0
    for (n, d, causal, dtype) in sorted(k for k in fa2 if k[3] == "f32"):
        g = med(fa2[(n, d, causal, "f32")], 1)
        t = med(team.get((n, d, causal, "f32"), []), 1)
        p = statistics.median(torch_rows.get((n, d, causal, "fwd"), [float("nan")]))
        pb = statistics.median(torch_rows.get((n, d, causal, "fwd+bwd"), [float("nan")]))
        ms32 = med(fa2[(n, d, causal, "f32")], 0)
        r16 = med(fa2.get((n, d, causal, "f16"), []), 0) / ms32
        rb16 = med(fa2.get((n, d, causal, "bf16"), []), 0) / ms32
        err = max(v[2] for v in fa2[(n, d, causal, "f32")])
        worst_torch, worst_fma = min(worst_torch, g / p), min(worst_fma, g / ceiling)
        worst_16 = max(worst_16, r16, rb16)
        print(f"{n:>5} {d:>4} {'on' if causal else 'off':>6} | {g:8.1f} {t:8.1f} {p:8.1f} | {g / p:8.2f} "
              f"{g / t:7.2f} {100 * g / ceiling:5.1f} | {r16:7.2f} {rb16:8.2f} {err:8.1e} | {pb:9.1f}")
    print(f"slowest row: {worst_torch:.2f}x PyTorch (bar 1.0), {100 * worst_fma:.1f}% of the FMA ceiling (bar 60%); "
          f"16-bit storage at most {worst_16:.2f}x fp32's time (bar 1.2)")
    backward_table(out, torch_rows)


def backward_rows(pattern):
    """(N, d, causal) -> [(bwd GFLOP/s, fwd+bwd GFLOP/s)] from flashcl-bench --backward's text tables."""
    rows = {}
    for path in sorted(glob.glob(pattern)):
        for line in open(path):
            f = line.split()
            # N d causal dtype algo | bwd_ms TFLOP/s | fwd+bwd_ms TFLOP/s
            if len(f) >= 11 and f[0].isdigit() and f[3] == "f32" and f[5] == "|" and f[8] == "|":
                n, d, causal = int(f[0]), int(f[1]), f[2] == "yes"
                # from the times (its TFLOP/s column has too few digits on a CPU); run.sh's B = 1, H = 8
                fwd = 4.0 * 8 * n * n * d / (2 if causal else 1)
                rows.setdefault((n, d, causal), []).append((2.5 * fwd / float(f[6]) / 1e6, 3.5 * fwd / float(f[9]) / 1e6))
    return rows


def backward_table(out, torch_rows):
    bwd = backward_rows(f"{out}/bwd-r*.txt")
    if not bwd:
        return
    print()
    print("backward, fp32 (flashcl-bench --backward; GFLOP/s: bwd 2.5x, fwd+bwd 3.5x the forward's FLOPs)")
    print(f"{'N':>5} {'d':>4} {'causal':>6} | {'fa2 bwd':>8} {'fa2 f+b':>8} {'torch f+b':>9} | {'f+b vs torch':>12}")
    worst = float("inf")
    for (n, d, causal) in sorted(bwd):
        b = statistics.median(v[0] for v in bwd[(n, d, causal)])
        fb = statistics.median(v[1] for v in bwd[(n, d, causal)])
        pb = statistics.median(torch_rows.get((n, d, causal, "fwd+bwd"), [float("nan")]))
        if pb == pb:  # a PyTorch figure exists (not NaN)
            worst = min(worst, fb / pb)
        print(f"{n:>5} {d:>4} {'on' if causal else 'off':>6} | {b:8.1f} {fb:8.1f} {pb:9.1f} | {fb / pb:12.2f}")
    print(f"slowest backward row: flashcl forward+backward {worst:.2f}x PyTorch's (bar 1.0)")


if __name__ == "__main__":
    main()
