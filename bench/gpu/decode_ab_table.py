#!/usr/bin/env python3
"""decode_ab_table.py: the table bench/gpu/decode_ab.sh prints, from the files it left in OUT_DIR.

default.csv / wide.csv: `flashcl-bench --decode --csv` rows (no header) of the default decode and
of FLASHCL_DECODE=lanes-wide, two rounds per shape, alternating; the median over the rounds (K/V
GB/s) counts for each. e4m3.csv: the same rows with the form's name first and the cache dtype
last. sdpa.json: PyTorch's rows (sdpa_decode.py). Prints, per (B, cache, page): K/V TB/s default
and new, new / default, paged / contiguous of each form, new / FA2 and new's share of the copy
ceiling; then the e4m3 rows per form (TB/s by the e4m3 bytes, and / default). Issue 22's bars:
paged / contiguous >= 0.95 for pages >= 16; >= 1.0x FA2 at B 8; >= 70 % of copy at B 1, >= 32k.

Usage: decode_ab_table.py OUT_DIR"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decode_table import median_rows  # noqa: E402  (decode.sh's table reads the same CSV rows)


def tb(r):
    return float(r["gbs"]) / 1e3 if r else None


def ratio(a, b):
    return f"{a / b:.3f}" if a and b else "-"


def main():
    out = sys.argv[1]
    old, new = median_rows(f"{out}/default.csv", longer=True), median_rows(f"{out}/wide.csv", longer=True)
    fa2 = {}
    if os.path.exists(f"{out}/sdpa.json"):
        for r in json.load(open(f"{out}/sdpa.json")):
            if r.get("kv_tb_per_s") and r.get("backend") == "flash":
                fa2[(r["batch"], r["cache"])] = r["kv_tb_per_s"]
    if not old and not new:
        print("no flashcl rows: see tests.log")
        return
    copy = max(float(r["copy_gbs"]) for r in list(old.values()) + list(new.values())) / 1e3
    print(f"fp16 K/V TB/s, Nq 1, H 32/8, d 128; default vs FLASHCL_DECODE=lanes-wide; copy ceiling {copy:.2f} TB/s")
    head = (f"{'B':>2} {'cache':>6} {'page':>4} {'splits':>6} | {'default':>7} {'new':>7} {'new/def':>7} | "
            f"{'def p/c':>7} {'new p/c':>7} | {'FA2':>6} {'new/FA2':>7} {'new%copy':>8}")
    print(head)
    print("-" * len(head))
    for key in sorted(set(old) | set(new), key=lambda k: (-k[1], k[2], k[3])):
        _, b, cache, page = key
        o, n = tb(old.get(key)), tb(new.get(key))
        oc, nc = tb(old.get(("", b, cache, 0))), tb(new.get(("", b, cache, 0)))
        f = fa2.get((b, cache))
        splits = (new.get(key) or old.get(key))["splits"]
        print(f"{b:>2} {cache:>6} {page:>4} {splits:>6} | {o or 0:7.3f} {n or 0:7.3f} {ratio(n, o):>7} | "
              f"{ratio(o, oc) if page else '':>7} {ratio(n, nc) if page else '':>7} | "
              f"{f or 0:6.3f} {ratio(n, f):>7} {100 * n / copy if n and copy else 0:7.0f}%")
    e = median_rows(f"{out}/e4m3.csv", with_form=True, longer=True)
    if e:
        forms = sorted({k[0] for k in e}, key=lambda x: (x != "default", x))
        print("\ne4m3 caches, contiguous: K/V TB/s by the e4m3 bytes (median ms in brackets), and / default")
        print(f"{'B':>2} {'cache':>6} | " + " | ".join(f"{x:>24}" for x in forms))
        for b, cache in sorted({(k[1], k[2]) for k in e}, key=lambda k: (-k[0], k[1])):
            base = tb(e.get(("default", b, cache, 0)))
            cells = []
            for x in forms:
                r = e.get((x, b, cache, 0))
                cells.append(f"{tb(r):6.3f} ({float(r['median_ms']):.3f}) {ratio(tb(r), base):>5}" if r else f"{'-':>24}")
            print(f"{b:>2} {cache:>6} | " + " | ".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
