#!/usr/bin/env python3
"""Joins flashcl-bench JSON files with sdpa.py's JSON files and prints one table: TFLOP/s per path
and the ratios that matter (fa2 over PyTorch's best backend of the same dtype, fa2 over fa1, fa2
over standard). Files of several rounds (run.sh runs fa2 and PyTorch in turn, ROUNDS times) are
pooled: each figure is the median over the rounds that measured it, so one slow or fast round of
either side does not set a ratio."""
import json
import statistics
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: compare.py JSON...   (sdpa.py's lists and flashcl-bench's reports, any order)")
    flashcl, sdpa = {}, {}  # shape -> name -> TFLOP/s of each round
    for path in sys.argv[1:]:
        data = json.load(open(path))
        if isinstance(data, list):  # sdpa.py
            for s in data:
                if s["tflops"]:
                    key = (s["dtype"], s["head_dim"], s["seqlen"], s["causal"])
                    sdpa.setdefault(key, {}).setdefault(s["backend"], []).append(s["tflops"])
        else:
            for r in data["results"]:
                if r.get("status") == "ok":
                    key = (r["dtype"], r["head_dim"], r["seqlen_q"], r["batch"], r["heads"], r["causal"])
                    flashcl.setdefault(key, {}).setdefault(r["algo"], []).append(r["tflops"])
    rounds = max((len(v) for per in flashcl.values() for v in per.values()), default=0)
    print(f"TFLOP/s, medians over up to {rounds} round(s) of each side")
    print(f"{'dtype':5} {'d':>4} {'N':>6} {'B':>3} {'causal':6} | {'standard':>8} {'fa1':>7} {'fa2':>7} |"
          f" {'torch best':>16} {'flash':>6} | {'fa2/torch':>9} {'fa2/flash':>9} {'fa2/fa1':>7} {'fa2/std':>7}")
    for key in sorted(flashcl):
        dtype, d, n, b, h, causal = key
        tf = {a: statistics.median(flashcl[key][a]) if a in flashcl[key] else None for a in ("standard", "fa1", "fa2")}
        torch = {name: statistics.median(v) for name, v in sdpa.get((dtype, d, n, causal), {}).items()}
        best = max(torch, key=torch.get, default=None)
        flash = torch.get("flash")
        fmt = lambda x: f"{x:7.1f}" if x else "      -"
        ratio = lambda x, y: f"{x / y:7.2f}x" if x and y else "       -"
        best_text = f"{torch[best]:6.1f} {best:>9}" if best else "               -"
        print(f"{dtype:5} {d:4} {n:6} {b:3} {str(causal):6} | {fmt(tf['standard']):>8} {fmt(tf['fa1'])} {fmt(tf['fa2'])} |"
              f" {best_text:>16} {fmt(flash):>6} | {ratio(tf['fa2'], torch[best] if best else None):>9}"
              f" {ratio(tf['fa2'], flash):>9}"
              f" {ratio(tf['fa2'], tf['fa1'])} {ratio(tf['fa2'], tf['standard'])}")


if __name__ == "__main__":
    main()
