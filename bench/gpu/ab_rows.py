"""ab_rows.py: the rows the GPU A/B scripts read back from what they ran, one reader each, so the
scripts' tables differ only in their columns. backward_rounds reads flashcl-bench --backward's
tables as bwd_ab.sh, bwd_wgmma_ab.sh and bwd_kernels_ab.sh collect them (one "== FORM round R" header before each
run), fa2_reference the FlashAttention-2 rows of sdpa_train.py's JSON, fp8_rounds flashcl-bench
--dtype e4m3's tables as fp8_ab.sh and fp8_wgmma_ab.sh write them (bench-FORM-ROUND.txt). The
scripts import it from their heredocs (sys.path: bench/gpu, from the repository root)."""
import glob
import json
import os
import re
import statistics

nan = float("nan")


def median(xs):
    return statistics.median(xs) if xs else nan


def mean(xs):
    return sum(xs) / len(xs) if xs else nan


def backward_rounds(ab_txt, forms):
    """({form: {(dtype, d, causal): [backward TFLOP/s per round]}}, the same for forward+backward)."""
    bwd = {f: {} for f in forms}
    fwd_bwd = {f: {} for f in forms}
    form = None
    for line in open(ab_txt):
        f = line.split()
        if line.startswith("== "):
            form = f[1]  # a form not asked for is passed over
            continue
        if form in bwd and len(f) >= 11 and f[0].isdigit() and f[5] == "|":
            key = (f[3], int(f[1]), f[2] == "yes")
            bwd[form].setdefault(key, []).append(float(f[7]))
            fwd_bwd[form].setdefault(key, []).append(float(f[10]))
    return bwd, fwd_bwd


def fa2_reference(sdpa_json):
    """{(dtype, d, causal): (backward TFLOP/s, forward+backward TFLOP/s)} of PyTorch's flash backend;
    empty (with a line saying why) when the file is missing or unreadable."""
    try:
        rows = json.load(open(sdpa_json))
    except Exception as e:
        rows = []
        print("no sdpa_train.json:", e)
    return {(r["dtype"], r["head_dim"], r["causal"]): (r["bwd_tflops"], r["fwd_bwd_tflops"])
            for r in rows if r.get("backend") == "flash" and "bwd_tflops" in r}


def fp8_rounds(out_dir):
    """({(form, (d, causal)): [e4m3 TFLOP/s per round]}, {(d, causal): [fp16 TFLOP/s]}) from
    out_dir/bench-FORM-ROUND.txt; runs with --no-fp16 add nothing to the second."""
    fp8, f16 = {}, {}
    for path in glob.glob(os.path.join(out_dir, "bench-*-*.txt")):
        form = os.path.basename(path)[6:-4].rsplit("-", 1)[0]
        for line in open(path):
            m = re.match(r"\s*(\d+)\s+(\d+)\s+(\w+)\s*\|\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\|\s*(\S+)\s+(\S+)", line)
            if not m:
                continue
            key = (int(m.group(2)), m.group(3))
            fp8.setdefault((form, key), []).append(float(m.group(5)))
            try:
                f16_tflops = float(m.group(8))
            except ValueError:  # "-" or "n/a": no fp16 run beside
                continue
            f16.setdefault(key, []).append(f16_tflops)
    return fp8, f16
