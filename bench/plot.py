#!/usr/bin/env python3
"""plot.py: turns flashcl-bench JSON (--format json / -o FILE.json) into PNG charts in the style
of the FlashAttention papers: grouped bars of throughput per sequence length and algorithm (one
panel per head dim and causal setting, skipped rows marked), runtime and device memory against
sequence length, and where the results sit under the device's measured roofline.

    python3 bench/plot.py results.json -o DIR [--name PREFIX] [--only speed,summary]
    python3 bench/plot.py results.json --markdown     # summary tables for a results page

Writes PREFIX-speed.png, PREFIX-runtime.png, PREFIX-memory.png, PREFIX-roofline.png and
PREFIX-summary.png (all four in one figure, sized for a README). Needs python3-matplotlib and
python3-numpy (Debian) or `pip install matplotlib numpy`.
"""
import argparse
import json
import os
import sys

try:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    import numpy as np
except ImportError as e:
    sys.exit(f"plot.py: {e}: install python3-matplotlib and python3-numpy (Debian) or "
             f"`pip install matplotlib numpy` for {sys.executable}")

COLORS = {"standard": "#4c72b0", "fa1": "#dd8452", "fa2": "#8172b3", "auto": "#55a868"}
LABELS = {"standard": "Standard", "fa1": "FlashAttention", "fa2": "FlashAttention-2", "auto": "auto"}
FIGURES = ("speed", "runtime", "memory", "roofline", "summary")


def load(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        sys.exit(f"plot.py: cannot read {path}: {e}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        # The bench's other outputs (CSV, the table) are the usual mistake: say which file is wanted.
        if path.lower().endswith(".csv") or text.lstrip().startswith(("algo", "#")) or "," in text.split("\n", 1)[0]:
            sys.exit(f"plot.py: {path} looks like CSV or table output; plot.py reads flashcl-bench's JSON: "
                     f"run flashcl-bench with --format json or -o FILE.json")
        sys.exit(f"plot.py: {path} is not flashcl-bench JSON ({e}); run flashcl-bench with -o FILE.json")
    if "results" not in doc or "context" not in doc:
        sys.exit(f"plot.py: {path} is not flashcl-bench JSON (no 'context'/'results')")
    return doc["context"], doc["results"]


def algos_of(rows):
    order = ["standard", "fa1", "fa2", "auto"]
    present = {r["algo"] for r in rows}
    return [a for a in order if a in present]


def dtype_of(r):
    return r.get("dtype", "f32")


def groups_of(rows):
    """(head_dim, causal, dtype) panels in sweep order."""
    seen = []
    for r in rows:
        key = (r["head_dim"], r["causal"], dtype_of(r))
        if key not in seen:
            seen.append(key)
    return seen


def seq_label(n):
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def title_of(context):
    dev = context["device"]
    return f"flashcl {context['library_version']} ({context['git_commit']}) on {dev['name']} ({dev['platform']})"


def shape_note(rows):
    r = rows[0]
    dtypes = sorted({dtype_of(x) for x in rows})
    return f"B={r['batch']}, H={r['heads']}, {'/'.join(dtypes)} storage, forward"


def group_label(d, causal, dtype, with_dtype):
    return f"d={d}{', causal' if causal else ''}{', ' + dtype if with_dtype else ''}"


def throughput_unit(rows):
    best = max((r["tflops"] or 0.0) for r in rows if r["status"] == "ok") if rows else 0.0
    return ("TFLOP/s", 1.0) if best >= 1.0 else ("GFLOP/s", 1e3)


def speed_panel(ax, rows, algos, group, unit, scale):
    """Grouped bars as in the FlashAttention papers, value on each bar, 'skip' where a row could not run."""
    head_dim, causal, dtype = group
    sel = [r for r in rows if (r["head_dim"], r["causal"], dtype_of(r)) == group]
    seqs = sorted({r["seqlen_q"] for r in sel})
    x = np.arange(len(seqs))
    width = 0.8 / max(len(algos), 1)
    top = max([(r["tflops"] or 0.0) * scale for r in sel] + [1e-9])
    for i, algo in enumerate(algos):
        for j, n in enumerate(seqs):
            match = [r for r in sel if r["algo"] == algo and r["seqlen_q"] == n]
            if not match:
                continue
            r = match[0]
            xpos = x[j] + (i - (len(algos) - 1) / 2) * width
            if r["status"] == "ok":
                v = r["tflops"] * scale
                ax.bar(xpos, v, width, color=COLORS.get(algo), label=LABELS.get(algo, algo) if j == 0 else None)
                ax.text(xpos, v + top * 0.01, f"{v:.3g}", ha="center", va="bottom", fontsize=6, rotation=90)
            else:
                ax.text(xpos, top * 0.02, "skip" if r["status"] == "skipped" else "error", ha="center",
                        va="bottom", fontsize=6, rotation=90, color="gray")
    ax.set_xticks(x)
    ax.set_xticklabels([seq_label(n) for n in seqs])
    ax.set_xlabel("sequence length")
    ax.set_ylabel(f"speed ({unit})")
    ax.set_ylim(0, top * 1.25)
    ax.set_title(f"head dim {head_dim}, {'causal' if causal else 'no causal mask'}, {dtype}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def series(rows, algo, group, field):
    pts = sorted((r["seqlen_q"], r[field]) for r in rows
                 if r["algo"] == algo and (r["head_dim"], r["causal"], dtype_of(r)) == group
                 and r["status"] == "ok" and r.get(field) is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def seq_axis(ax, rows):
    """Log2 sequence-length axis labelled 512, 1k, 2k ... at the lengths measured."""
    seqs = sorted({r["seqlen_q"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(seqs)
    ax.set_xticklabels([seq_label(n) for n in seqs])
    ax.minorticks_off()
    ax.set_xlabel("sequence length")


def line_style(index):
    return ["-", "--", ":", "-."][index % 4]


def runtime_panel(ax, rows, algos, groups):
    many = len({g[2] for g in groups}) > 1
    for gi, g in enumerate(groups):
        for algo in algos:
            xs, ys = series(rows, algo, g, "median_ms")
            if xs:
                ax.plot(xs, ys, line_style(gi), marker="o", ms=3, color=COLORS.get(algo),
                        label=f"{LABELS.get(algo, algo)}, {group_label(*g, many)}")
    seq_axis(ax, rows)
    ax.set_yscale("log")
    ax.set_ylabel("median device time (ms)")
    ax.set_title("runtime", fontsize=9)
    ax.grid(alpha=0.3, which="both")


def memory_panel(ax, rows, algos, groups):
    """Device memory a call needs; hollow markers: rows skipped for lack of it."""
    many = len({g[2] for g in groups}) > 1
    for gi, g in enumerate(groups):
        for algo in algos:
            sel = sorted((r for r in rows if r["algo"] == algo and (r["head_dim"], r["causal"], dtype_of(r)) == g
                          and r.get("device_bytes")), key=lambda r: r["seqlen_q"])
            if not sel:
                continue
            xs = [r["seqlen_q"] for r in sel]
            ys = [r["device_bytes"] / 2**20 for r in sel]
            ax.plot(xs, ys, line_style(gi), color=COLORS.get(algo),
                    label=f"{LABELS.get(algo, algo)}, {group_label(*g, many)}")
            for r, y in zip(sel, ys):
                ax.plot(r["seqlen_q"], y, "o", ms=4, color=COLORS.get(algo),
                        fillstyle="full" if r["status"] == "ok" else "none")
    seq_axis(ax, rows)
    ax.set_yscale("log")
    ax.set_ylabel("device memory (MiB)")
    ax.set_title("memory (hollow: skipped)", fontsize=9)
    ax.grid(alpha=0.3, which="both")


def roofline_panel(ax, rows, algos, context):
    """Achieved GFLOP/s against arithmetic intensity (FLOPs / modelled bytes) under the measured ceilings."""
    ceil = context.get("ceilings")
    ok = [r for r in rows if r["status"] == "ok" and r.get("io_bytes")]
    if not ok:
        return
    ai = [r["flops"] / r["io_bytes"] for r in ok]
    if ceil:
        peak, bw = ceil["fma_gflops"], ceil["copy_gbs"]
        xs = np.logspace(np.log10(min(ai + [peak / bw]) / 4), np.log10(max(ai + [peak / bw]) * 4), 200)
        ax.plot(xs, np.minimum(peak, xs * bw), "k-", lw=1)
        ax.text(xs[-1], peak, f"FMA {peak:.0f} GFLOP/s", ha="right", va="bottom", fontsize=7)
        ax.text(xs[0], xs[0] * bw, f"copy {bw:.1f} GB/s", ha="left", va="bottom", fontsize=7, rotation=30)
    for algo in algos:
        sel = [r for r in ok if r["algo"] == algo]
        if sel:
            ax.scatter([r["flops"] / r["io_bytes"] for r in sel], [r["tflops"] * 1e3 for r in sel],
                       s=[8 + 4 * np.log2(r["seqlen_q"] / 256 + 1) ** 2 for r in sel],
                       color=COLORS.get(algo), label=LABELS.get(algo, algo), alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs per modelled byte")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("roofline (marker size: sequence length)", fontsize=9)
    ax.grid(alpha=0.3, which="both")


def peak_panel(ax, rows, algos, groups):
    """% of the measured FMA peak against sequence length; hollow markers: % of the FMA probe taken
    around the row, i.e. of what the row actually had on a shared machine."""
    many = len({g[2] for g in groups}) > 1
    for gi, g in enumerate(groups):
        for algo in algos:
            xs, ys = series(rows, algo, g, "pct_fma_peak")
            if xs:
                ax.plot(xs, ys, line_style(gi), marker="o", ms=3, color=COLORS.get(algo),
                        label=f"{LABELS.get(algo, algo)}, {group_label(*g, many)}")
            probed = sorted((r["seqlen_q"], 100 * r["tflops"] * 1e3 / r["probe_gflops"]) for r in rows
                            if r["algo"] == algo and (r["head_dim"], r["causal"], dtype_of(r)) == g
                            and r["status"] == "ok" and r.get("probe_gflops"))
            if probed:
                ax.plot([p[0] for p in probed], [p[1] for p in probed], "o", ms=4, fillstyle="none",
                        color=COLORS.get(algo))
    seq_axis(ax, rows)
    ax.set_ylabel("% of measured FMA peak")
    ax.set_ylim(bottom=0)
    ax.set_title("% of FMA ceiling (hollow: of the FMA probe)", fontsize=9)
    ax.grid(alpha=0.3)


def markdown(context, rows):
    """One table per (dtype, head dim, causal): per sequence length, each algorithm's throughput and
    median time, fa2's speedup over standard, fa2's share of the FMA ceiling and of the FMA probe
    (what the row actually had on a shared machine), and that share itself."""
    algos = algos_of(rows)
    unit, scale = throughput_unit(rows)
    ceil = context.get("ceilings") or {}
    out = []
    if ceil:
        out.append(f"Ceilings: FMA {ceil['fma_gflops']:.1f} GFLOP/s ({ceil['fma_variant']}), "
                   f"copy {ceil['copy_gbs']:.1f} GB/s ({ceil['copy_variant']}).\n")
    for g in groups_of(rows):
        d, causal, dtype = g
        sel = [r for r in rows if (r["head_dim"], r["causal"], dtype_of(r)) == g]
        out.append(f"**{dtype}, d = {d}, {'causal' if causal else 'no mask'}** ({shape_note(sel)}); "
                   f"cells: {unit} (median ms); n=: timed runs when fewer than --repeat\n")
        out.append("| N | " + " | ".join(LABELS.get(a, a) for a in algos)
                   + " | fa2 vs standard | fa2 % of FMA ceiling | fa2 % of FMA probe | device share (probe) |")
        out.append("|---:|" + "---:|" * (len(algos) + 4))
        for n in sorted({r["seqlen_q"] for r in sel}):
            by = {a: next((r for r in sel if r["algo"] == a and r["seqlen_q"] == n), None) for a in algos}
            cells = []
            for a in algos:
                r = by[a]
                if r is None:
                    cells.append("")
                elif r["status"] != "ok":
                    cells.append(f"{r['status']}: {r['note']}")
                else:
                    runs = "" if r.get("runs", 0) >= context["timing"]["repeat"] else f", n={r.get('runs')}"
                    cells.append(f"{r['tflops'] * scale:.3g} ({r['median_ms']:.1f}{runs})")
            std, fa2 = by.get("standard"), by.get("fa2")
            ok = lambda r: r is not None and r["status"] == "ok"  # noqa: E731
            ratio = f"{std['median_ms'] / fa2['median_ms']:.1f}x" if ok(std) and ok(fa2) else "-"
            peak = f"{fa2['pct_fma_peak']:.1f}%" if ok(fa2) and fa2.get("pct_fma_peak") is not None else "-"
            probe = fa2.get("probe_gflops") if ok(fa2) else None
            of_probe = f"{100 * fa2['tflops'] * 1e3 / probe:.1f}%" if probe else "-"
            share = f"{100 * probe / ceil['fma_gflops']:.0f}%" if probe and ceil else "-"
            out.append(f"| {n} | " + " | ".join(cells) + f" | {ratio} | {peak} | {of_probe} | {share} |")
        out.append("")
    print("\n".join(out))


def save(fig, path):
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KiB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("json", help="flashcl-bench JSON output")
    ap.add_argument("-o", "--outdir", default=".", help="directory for the PNGs (default: .)")
    ap.add_argument("--name", default=None, help="file name prefix (default: the JSON file's name)")
    ap.add_argument("--only", default=",".join(FIGURES), help="comma list of: " + ", ".join(FIGURES))
    ap.add_argument("--markdown", action="store_true", help="print summary tables (Markdown) instead of plotting")
    args = ap.parse_args()
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    bad = [w for w in wanted if w not in FIGURES]
    if bad:
        sys.exit(f"plot.py: --only: unknown figure(s) {', '.join(bad)} (choose from {', '.join(FIGURES)})")

    context, rows = load(args.json)
    if not rows:
        sys.exit("plot.py: the JSON has no results")
    if args.markdown:
        markdown(context, rows)
        return
    os.makedirs(args.outdir, exist_ok=True)
    prefix = os.path.join(args.outdir, args.name or os.path.splitext(os.path.basename(args.json))[0])
    algos, groups = algos_of(rows), groups_of(rows)
    unit, scale = throughput_unit(rows)
    title = title_of(context)

    if "speed" in wanted:
        fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
        for ax, g in zip(axes[0], groups):
            speed_panel(ax, rows, algos, g, unit, scale)
        axes[0][0].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"Attention forward speed: {title}\n{shape_note(rows)}", fontsize=9)
        fig.tight_layout()
        save(fig, f"{prefix}-speed.png")
    for name, panel in (("runtime", runtime_panel), ("memory", memory_panel), ("roofline", None)):
        if name not in wanted:
            continue
        if name == "roofline":
            fig, axes = plt.subplots(1, 2, figsize=(10, 4))
            roofline_panel(axes[0], rows, algos, context)
            peak_panel(axes[1], rows, algos, groups)
            axes[0].legend(fontsize=7)
            axes[1].legend(fontsize=6)
        else:
            fig, ax = plt.subplots(figsize=(6, 4))
            panel(ax, rows, algos, groups)
            ax.legend(fontsize=6)
        fig.suptitle(f"{title}\n{shape_note(rows)}", fontsize=8)
        fig.tight_layout()
        save(fig, f"{prefix}-{name}.png")
    if "summary" in wanted:
        fig = plt.figure(figsize=(14, 7.5))
        grid = fig.add_gridspec(2, max(len(groups), 4) * 1)
        top_span = max(len(groups), 4) // len(groups)
        for i, g in enumerate(groups):
            ax = fig.add_subplot(grid[0, i * top_span:(i + 1) * top_span])
            speed_panel(ax, rows, algos, g, unit, scale)
            if i == 0:
                ax.legend(fontsize=7, loc="upper left")
        bottom = [fig.add_subplot(grid[1, i]) for i in range(4)]
        runtime_panel(bottom[0], rows, algos, groups)
        memory_panel(bottom[1], rows, algos, groups)
        roofline_panel(bottom[2], rows, algos, context)
        peak_panel(bottom[3], rows, algos, groups)
        bottom[0].legend(fontsize=5)
        fig.suptitle(f"Attention forward: {title}; {shape_note(rows)}", fontsize=10)
        fig.tight_layout()
        save(fig, f"{prefix}-summary.png")


if __name__ == "__main__":
    main()
