#!/usr/bin/env python3
"""Joins flashcl-bench JSON files with sdpa.py's JSON and prints one table: TFLOP/s per path and
the ratios that matter (fa2 over PyTorch's best backend of the same dtype, fa2 over fa1, fa2 over
standard)."""
import json
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: compare.py SDPA_JSON FLASHCL_JSON...")
    sdpa = json.load(open(sys.argv[1]))
    rows = []
    for path in sys.argv[2:]:
        rows += json.load(open(path))["results"]
    shapes = sorted({(r["dtype"], r["head_dim"], r["seqlen_q"], r["batch"], r["heads"], r["causal"]) for r in rows})
    print(f"{'dtype':5} {'d':>4} {'N':>6} {'B':>3} {'causal':6} | {'standard':>8} {'fa1':>7} {'fa2':>7} |"
          f" {'torch best':>16} {'flash':>6} | {'fa2/torch':>9} {'fa2/flash':>9} {'fa2/fa1':>7} {'fa2/std':>7}")
    for dtype, d, n, b, h, causal in shapes:
        got = {r["algo"]: r for r in rows if (r["dtype"], r["head_dim"], r["seqlen_q"], r["batch"], r["heads"],
                                              r["causal"]) == (dtype, d, n, b, h, causal)}
        tf = {a: (got[a]["tflops"] if a in got and got[a].get("status") == "ok" else None) for a in ("standard", "fa1", "fa2")}
        torch_rows = [s for s in sdpa if s["dtype"] == dtype and s["head_dim"] == d and s["seqlen"] == n
                      and s["causal"] == causal and s["tflops"]]
        best = max(torch_rows, key=lambda s: s["tflops"], default=None)
        flash = next((s["tflops"] for s in torch_rows if s["backend"] == "flash"), None)
        fmt = lambda x: f"{x:7.1f}" if x else "      -"
        ratio = lambda x, y: f"{x / y:7.2f}x" if x and y else "       -"
        best_text = f"{best['tflops']:6.1f} {best['backend']:>9}" if best else "               -"
        print(f"{dtype:5} {d:4} {n:6} {b:3} {str(causal):6} | {fmt(tf['standard']):>8} {fmt(tf['fa1'])} {fmt(tf['fa2'])} |"
              f" {best_text:>16} {fmt(flash):>6} | {ratio(tf['fa2'], best['tflops'] if best else None):>9}"
              f" {ratio(tf['fa2'], flash):>9}"
              f" {ratio(tf['fa2'], tf['fa1'])} {ratio(tf['fa2'], tf['standard'])}")


if __name__ == "__main__":
    main()
