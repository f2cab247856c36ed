#!/usr/bin/env python3
"""decode_table.py: the table bench/gpu/decode.sh prints, from the files it left in OUT_DIR.

flashcl.csv (and base.csv with BASE) hold `flashcl-bench --decode --csv` rows without headers,
two rounds per shape: the median over the rounds counts (K/V GB/s and ms; PyTorch's side is one
median of its runs, so flashcl's best round would have flattered it). sdpa.json holds PyTorch's rows
(sdpa_decode.py). For each (batch, cache length, layout) it prints flashcl's K/V TB/s, its share
of flashcl-bench's copy ceiling, PyTorch FlashAttention-2's and cuDNN's TB/s on the same shape
(contiguous: PyTorch has no paged SDPA), flashcl / FA2, flashcl / cuDNN, paged / contiguous, and
new / base (base: the label given, by default another tree's flashcl-bench); then the split-count
sweep (sweep.csv). Bars (issue 22): / FA2 >= 1.0 everywhere at
B = 8; paged / contiguous >= 0.95; at B = 1 and >= 32k keys, >= 70 % of the copy ceiling.

Usage: decode_table.py OUT_DIR [BASE_LABEL]"""
import csv
import json
import os
import statistics
import sys

COLUMNS = ["device", "cache", "batch", "heads", "heads_kv", "head_dim", "dtype", "seqlen_q", "new_tokens", "layout",
           "page_size", "splits", "median_ms", "min_ms", "kv_mb", "gbs", "copy_gbs", "max_err"]


def median_rows(path, with_form=False, longer=False):
    """(form, batch, cache, page) -> the first round's row with its K/V GB/s and median_ms replaced by
    their medians over the rounds (for two rounds, their means). with_form: each
    row starts with its form's name (else the form is ""); longer: rows may carry columns after
    COLUMNS (the cache dtype, with --cache-dtype), else only rows of COLUMNS' length count.
    decode_ab_table.py reads its files with this too."""
    rounds = {}
    if not os.path.exists(path):
        return rounds
    with open(path) as f:
        for row in csv.reader(f):
            form = row.pop(0) if with_form and row else ""
            if len(row) < len(COLUMNS) or (len(row) > len(COLUMNS) and not longer) or row[0] == "device":
                continue
            r = dict(zip(COLUMNS, row))
            rounds.setdefault((form, int(r["batch"]), int(r["cache"]), int(r["page_size"])), []).append(r)
    medians = {}
    for key, rows in rounds.items():
        medians[key] = dict(rows[0])
        for column in ("gbs", "median_ms"):
            medians[key][column] = str(statistics.median(float(r[column]) for r in rows))
    return medians


def read_bench(path):
    """(batch, cache, page) -> the row of the rounds' medians."""
    return {key[1:]: r for key, r in median_rows(path).items()}


def main():
    out = sys.argv[1]
    new, base = read_bench(f"{out}/flashcl.csv"), read_bench(f"{out}/base.csv")
    torch = {}
    if os.path.exists(f"{out}/sdpa.json"):
        for r in json.load(open(f"{out}/sdpa.json")):
            if r.get("kv_tb_per_s"):
                torch[(r["backend"], r["batch"], r["cache"])] = r["kv_tb_per_s"]
    if not new:
        print("no flashcl rows: see tests.log")
        return
    if base:
        print(f"base: {sys.argv[2] if len(sys.argv) > 2 else 'base.csv'}")
    copy = max(float(r["copy_gbs"]) for r in new.values()) / 1e3
    torch_copy = torch.get(("copy", 0, 0))
    print(f"K/V TB/s (fp16, Nq 1, H 32/8, d 128); copy ceiling: flashcl-bench {copy:.2f} TB/s, PyTorch "
          + (f"{torch_copy:.2f} TB/s (%copy columns: flashcl-bench's / PyTorch's)" if torch_copy else "-"))
    head = f"{'B':>2} {'cache':>6} {'page':>4} {'splits':>6} | {'flashcl':>7} {'%copy':>11} | {'FA2':>5} {'cuDNN':>5} | " \
           f"{'/FA2':>5} {'/cuDNN':>6} {'/contig':>7} | {'base':>5} {'/base':>5}"
    print(head)
    print("-" * len(head))
    for key in sorted(new, key=lambda k: (-k[0], k[1], k[2])):
        b, n, page = key
        r = new[key]
        tbs = float(r["gbs"]) / 1e3
        fa2, cudnn = torch.get(("flash", b, n)), torch.get(("cudnn", b, n))
        contig = new.get((b, n, 0))
        old = base.get(key)
        fmt = lambda x, w, p=2: f"{x:{w}.{p}f}" if x else " " * (w - 1) + "-"
        pct = f"{100 * tbs / copy if copy else 0:4.0f}%/" + (f"{100 * tbs / torch_copy:4.0f}%" if torch_copy else "    -")
        print(f"{b:2d} {n:6d} {page:4d} {int(r['splits']):6d} | {tbs:7.3f} {pct:>11} | "
              f"{fmt(fa2, 5)} {fmt(cudnn, 5)} | {fmt(fa2 and tbs / fa2, 5)} {fmt(cudnn and tbs / cudnn, 6)} "
              f"{fmt(contig and tbs / (float(contig['gbs']) / 1e3), 7)} | "
              f"{fmt(old and float(old['gbs']) / 1e3, 5)} {fmt(old and tbs * 1e3 / float(old['gbs']), 5)}")
    if os.path.exists(f"{out}/sweep.csv"):
        print("\nforced split counts, contiguous (TB/s):")
        rows = [dict(zip(COLUMNS, row)) for row in csv.reader(open(f"{out}/sweep.csv")) if len(row) == len(COLUMNS)]
        single = [r for r in rows if r["device"].startswith("lanes-pipelined")]
        rows = [r for r in rows if not r["device"].startswith("lanes-pipelined")]
        for n in sorted({int(r["cache"]) for r in rows}):
            for b in sorted({int(r["batch"]) for r in rows}, reverse=True):
                line = "  ".join(f"{r['splits']}: {float(r['gbs']) / 1e3:.3f}" for r in rows
                                 if int(r["batch"]) == b and int(r["cache"]) == n)
                print(f"  B {b} {n:6d}: {line}")
        if single:
            print("\nlanes-pipelined (next tile's loads in flight) / lanes, 32k keys, the planner's splits:")
        for r in single:
            key = (int(r["batch"]), int(r["cache"]), int(r["page_size"]))
            tbs = float(r["gbs"]) / 1e3
            lanes = float(new[key]["gbs"]) / 1e3 if key in new else 0.0
            print(f"  B {key[0]} page {key[2]:3d}: {tbs:.3f} TB/s vs {lanes:.3f}" + (f" ({tbs / lanes:.3f}x)" if lanes else ""))


if __name__ == "__main__":
    main()
