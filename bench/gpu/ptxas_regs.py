#!/usr/bin/env python3
"""ptxas_regs.py: registers, spills and shared memory of a program's kernels, without a GPU.

Compiles one program of kernels/programs.txt with clang-14 for nvptx (ptx_diff.py's front end and
-D options) and assembles the PTX with CUDA's ptxas (-v) for an NVIDIA architecture, printing
ptxas's line per kernel. clang's PTX is not NVIDIA's OpenCL compiler's, so the counts are evidence
(a spill, a register budget near 255, __local bytes), not the driver's figures: on the GPU,
`FLASHCL_BUILD_OPTIONS=-cl-nv-verbose FLASHCL_BUILD_LOG=1` prints those (bench/gpu/standard.sh does).
The OpenCL builtins clang leaves as external calls (work-item ids, barrier, exp/log/tanh, fmax,
fma, integer min/max/clamp) get small PTX definitions here, and every `inline` function is forced
inline, so ptxas sees whole kernels.

Usage: bench/gpu/ptxas_regs.py [--arch sm_90] [--ptxas PATH] [--ptx OUT.ptx] PROGRAM [-DKEY=VALUE ...]
  e.g. bench/gpu/ptxas_regs.py standard_mma_f16 -DDTYPE=1 -DHEAD_DIM=128 -DWARPS=4 -DMT=2 -DBC=32 \\
       -DSCORE_BLOCKS=8 -DVEC_LOAD=1 -DPAIR_IO=1 -DSOFTMAX_WG=128 -DSOFTMAX_VW=1 -DSOFTMAX_REGS=32
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ptx_diff  # noqa: E402  (its clang command line and the manifest reader)

PRELUDE = r"""
#define SREG_(name) ({ uint r_; __asm__ volatile("mov.u32 %0, " name ";" : "=r"(r_)); r_; })
#define OVL __attribute__((overloadable))
size_t OVL get_group_id(uint d) { return d == 0 ? SREG_("%%ctaid.x") : d == 1 ? SREG_("%%ctaid.y") : SREG_("%%ctaid.z"); }
size_t OVL get_num_groups(uint d) { return d == 0 ? SREG_("%%nctaid.x") : d == 1 ? SREG_("%%nctaid.y") : SREG_("%%nctaid.z"); }
size_t OVL get_global_id(uint d) { return get_group_id(d) * (d == 0 ? SREG_("%%ntid.x") : d == 1 ? SREG_("%%ntid.y") : SREG_("%%ntid.z")) + (d == 0 ? SREG_("%%tid.x") : d == 1 ? SREG_("%%tid.y") : SREG_("%%tid.z")); }
float OVL vload_half(size_t i, const __global half* p) { ushort h = ((const __global ushort*)p)[i]; float r; __asm__("{ .reg .b16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(r) : "h"(h)); return r; }
float OVL vload_half(size_t i, const __private half* p) { ushort h = ((const __private ushort*)p)[i]; float r; __asm__("{ .reg .b16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(r) : "h"(h)); return r; }
void OVL vstore_half_rte(float x, size_t i, __global half* p) { ushort h; __asm__("{ .reg .b16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }" : "=h"(h) : "f"(x)); ((__global ushort*)p)[i] = h; }
int OVL isnan(float x) { return x != x; }
int OVL isinf(float x) { return __builtin_fabsf(x) == __builtin_inff(); }
float OVL rint(float x) { float r; __asm__("cvt.rni.f32.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
float OVL fabs(float x) { return __builtin_fabsf(x); }
void OVL vstore8(float8 v, size_t i, __private float* p) { p += 8 * i; p[0] = v.s0; p[1] = v.s1; p[2] = v.s2; p[3] = v.s3; p[4] = v.s4; p[5] = v.s5; p[6] = v.s6; p[7] = v.s7; }
void OVL vstore4(float4 v, size_t i, __private float* p) { p += 4 * i; p[0] = v.s0; p[1] = v.s1; p[2] = v.s2; p[3] = v.s3; }
size_t OVL get_local_id(uint d) { return d == 0 ? SREG_("%%tid.x") : d == 1 ? SREG_("%%tid.y") : SREG_("%%tid.z"); }
size_t OVL get_local_size(uint d) { return d == 0 ? SREG_("%%ntid.x") : d == 1 ? SREG_("%%ntid.y") : SREG_("%%ntid.z"); }
void OVL barrier(cl_mem_fence_flags f) { __asm__ volatile("bar.sync 0;" ::: "memory"); }
float OVL exp2(float x) { float r; __asm__("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
float OVL exp(float x) { return exp2(x * 1.442695f); }
float OVL log2(float x) { float r; __asm__("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
float OVL log(float x) { return log2(x) * 0.6931472f; }
float OVL tanh(float x) { float r; __asm__("tanh.approx.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
float OVL native_recip(float x) { float r; __asm__("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r; }
float OVL fmax(float x, float y) { float r; __asm__("max.f32 %0, %1, %2;" : "=f"(r) : "f"(x), "f"(y)); return r; }
float OVL fma(float x, float y, float z) { float r; __asm__("fma.rn.f32 %0, %1, %2, %3;" : "=f"(r) : "f"(x), "f"(y), "f"(z)); return r; }
float OVL fmin(float x, float y) { float r; __asm__("min.f32 %0, %1, %2;" : "=f"(r) : "f"(x), "f"(y)); return r; }
int OVL min(int x, int y) { return x < y ? x : y; }
int OVL max(int x, int y) { return x > y ? x : y; }
uint OVL min(uint x, uint y) { return x < y ? x : y; }
uint OVL max(uint x, uint y) { return x > y ? x : y; }
float OVL min(float x, float y) { return fmin(x, y); }
float OVL max(float x, float y) { return fmax(x, y); }
uint OVL abs(int x) { return x < 0 ? -x : x; }
int OVL clamp(int x, int lo, int hi) { return min(max(x, lo), hi); }
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--ptxas", default="/usr/local/cuda/bin/ptxas")
    ap.add_argument("--maxrregcount", type=int, help="ptxas's register cap (what -cl-nv-maxrregcount asks of NVIDIA's)")
    ap.add_argument("--ptx", help="also write the assembled PTX to this file (to read or count a loop's instructions)")
    ap.add_argument("program")
    args, defines = ap.parse_known_args()  # the -D options are not argparse's
    if any(not d.startswith("-D") for d in defines):
        ap.error("only -DKEY=VALUE options may follow PROGRAM")
    args.defines = defines
    kernels = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "kernels")
    files = ptx_diff.manifest(kernels)[args.program]
    clang = [c for c in ptx_diff.CLANG if c != "-fgnu89-inline"] + ["-Dinline=static inline __attribute__((always_inline))"]
    with tempfile.TemporaryDirectory() as tmp:
        src, ptx = os.path.join(tmp, "program.cl"), os.path.join(tmp, "program.ptx")
        with open(src, "w") as out:
            out.write(PRELUDE + "\n".join(open(os.path.join(kernels, f)).read() for f in files))
        run = subprocess.run(clang + ["-o", ptx, *args.defines, src], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(run.stderr[-2000:])
        text = open(ptx).read()
        # mma.sync with e4m3/e5m2 operands needs PTX ISA 8.4, an arch-specific target (sm_90a: wgmma) 8.0; the rest assembles as 7.8
        version = "8.4" if re.search(r"mma\.sync\S*\.e[45]m[23]", text) else "8.0" if args.arch.endswith("a") else "7.8"
        text = re.sub(r"\.version \d+\.\d+", f".version {version}", text)
        text = re.sub(r"\.target [^\n]*", f".target {args.arch}", text)
        open(ptx, "w").write(text)
        if args.ptx:
            open(args.ptx, "w").write(text)
        cap = [f"--maxrregcount={args.maxrregcount}"] if args.maxrregcount else []
        run = subprocess.run([args.ptxas, f"-arch={args.arch}", "-v", *cap, ptx, "-o", os.path.join(tmp, "program.cubin")],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(run.stderr[-2000:])
        kernel = None
        for line in run.stderr.splitlines():
            m = re.search(r"Compiling entry function '(\w+)'", line)
            if m:
                kernel = m.group(1)
            elif "warning" in line:  # e.g. wgmma serialised (C7510-C7520): the card would run it so too
                print(line.split("ptxas ")[-1].strip())
            elif kernel and ("Used" in line or "spill" in line):
                print(f"{kernel}: {line.split('info    : ')[-1].strip()}")
                if "Used" in line:
                    kernel = None


if __name__ == "__main__":
    main()
