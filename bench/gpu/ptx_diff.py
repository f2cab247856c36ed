#!/usr/bin/env python3
"""ptx_diff.py: whether a kernel change leaves the NVIDIA code as it was, checked without a GPU.

Compiles the programs of kernels/programs.txt from two kernel trees with clang-14 for nvptx64 (the
OpenCL C front end NVIDIA's compiler also starts from), under -D option sets like those the host
passes (src/plan/forward_programs.cpp's mma_program, flash_options and common_options; every
option string the plans choose is recorded in tests/data/plan_options.txt), and compares each kernel's PTX body. Identical bodies mean the change is a
rewording for this compiler (a shared macro or helper folded away); a difference names the
program and option set to A/B on the GPU (bench/gpu/ab.sh), since clang's PTX is evidence about
NVIDIA's driver compiler, not proof. OpenCL C's plain `inline` (C99) emits no body for a function
the optimiser did not inline, so the PTX would hold only a call to it: -fgnu89-inline makes clang
emit every body, and what is compared is the kernel entry and each function it reaches through
calls, by name, with runs of white space as one space.

Usage: bench/gpu/ptx_diff.py [--recorded REGEX] BASE_KERNELS [NEW_KERNELS]   (NEW: this tree's kernels/)
  e.g. mkdir -p /tmp/base && git archive HEAD~1 kernels | tar -x -C /tmp/base
       bench/gpu/ptx_diff.py /tmp/base/kernels
  --recorded REGEX: instead of the option grids below, every distinct (program, options) pair that
       the recording tests/data/plan_options.txt holds for the simulated NVIDIA devices, for the
       programs whose name matches REGEX (e.g. 'decode_' or '.'): exactly what the planner builds.
Exit status 0 when every body matches, 1 when one differs, 2 when a program does not compile.
"""
import itertools
import os
import re
import subprocess
import sys
import tempfile

# opencl-c.h included by name rather than through -finclude-default-header, whose builtin table
# lacks vload_half/vstore_half: with the full header the fp16 programs compile too (those builtins
# stay calls to external functions, the same in both trees).
CLANG = ["clang-14", "-x", "cl", "-cl-std=CL1.2", "-target", "nvptx64-nvidia-nvcl", "-include",
         "/usr/lib/llvm-14/lib/clang/14.0.6/include/opencl-c.h", "-D__OPENCL_VERSION__=120", "-Dasm=__asm__",
         "-fgnu89-inline", "-O2", "-S"]
RECORDING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "plan_options.txt")


def grid(**axes):
    """Every combination of the given values, as dicts of -D options."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


# The tensor-core programs: the shapes mma_plan.cpp picks (MT, STAGES, BC, LAZY_RESCALE) at the
# head dims it takes, with the aligned loads and stores a dense call gets.
MMA_IO = dict(WARPS=[4], VEC_LOAD=[1], PAIR_IO=[1], O_VEC_STORE=[1], FOLD_SCALE=[1])
# The portable programs: fp32 and bf16 under the variant switches that change their code paths.
VARIANTS = [{}, dict(CAUSAL=1), dict(WINDOW=1), dict(CAUSAL=1, MASK_KIND=1), dict(MASK_KIND=2, HALF_UNITS=1),
            dict(VARLEN=1, GQA=1, CAUSAL=1), dict(SOFTCAP=1, ALIBI=1, HALF_UNITS=1)]
TEAM = dict(TPR=8, D_PAD=64, BR=64, BC=64, TM=4)
PROGRAMS = {
    "fa2_mma_f16": grid(DTYPE=[1, 2], HEAD_DIM=[64, 128], CAUSAL=[0, 1], MT=[1, 2], STAGES=[1, 2], BC=[64],
                        LAZY_RESCALE=[0, 1], **MMA_IO),
    "fa2_mma_wgmma": grid(DTYPE=[1], HEAD_DIM=[64], CAUSAL=[0, 1], MT=[1], STAGES=[2], BC=[64, 128],
                          LAZY_RESCALE=[1], MBAR_TRY_WAIT=[1], ARCH_PTX_RETARGET=[1], **MMA_IO),
    "fa2_mma_tf32": grid(DTYPE=[0], HEAD_DIM=[64, 128], CAUSAL=[0, 1], MT=[1], STAGES=[1, 2], BC=[64],
                         LAZY_RESCALE=[1], **MMA_IO),
    "fa2_mma_e4m3": grid(DTYPE=[3], OUT_DTYPE=[1, 2], HEAD_DIM=[64, 128], CAUSAL=[0, 1], MT=[1, 2], STAGES=[2],
                         BC=[64], LAZY_RESCALE=[1], QUAD_IO=[1], **MMA_IO),
    "fa2": [dict(DTYPE=t, HEAD_DIM=64, **TEAM, **v) for t in (0, 2) for v in VARIANTS],
    "fa1": [dict(DTYPE=t, HEAD_DIM=64, **dict(TEAM, BR=32, BC=32, TM=2), **v) for t in (0, 2) for v in VARIANTS],
    "fa2_cpu": [dict(DTYPE=t, HEAD_DIM=64, D_PAD=64, BR=16, BC=32, RM=4, CG=4, VW=8, **v) for t in (0, 2)
                for v in VARIANTS],
    "standard": [dict(DTYPE=t, HEAD_DIM=64, GEMM_WG_X=16, GEMM_WG_Y=16, GEMM_RM=4, GEMM_RN=4, GEMM_KP=16,
                      GEMM_A_T=0, SOFTMAX_WG=128, SOFTMAX_VW=4, **v) for t in (0, 2) for v in VARIANTS],
    "backward": [dict(DTYPE=t, HEAD_DIM=64, WG_SIZE=128, **dict(TEAM, BR=32, BC=32, TM=2), **v) for t in (0, 2)
                 for v in VARIANTS],
}


def recorded(pattern):
    """{program: [options, ...]} of the recording's NVIDIA rows ("<kind> nvidia... : program | -D...")."""
    programs = {}
    for line in open(RECORDING):
        m = re.match(r"^\S+ (nvidia\S*) .*?: (\w+)(?: \([^)]*\))? \| (.*)$", line.rstrip("\n"))
        if not m or not re.search(pattern, m.group(2)):
            continue
        options = dict(re.findall(r"-D(\w+)=(\S+)", m.group(3)))
        sets = programs.setdefault(m.group(2), [])
        if options not in sets:
            sets.append(options)
    return programs


def manifest(kernels):
    programs = {}
    for line in open(os.path.join(kernels, "programs.txt")):
        m = re.match(r"^([A-Za-z_]\w*):(.*)$", line)
        if m:
            programs[m.group(1)] = m.group(2).split()
    return programs


def compile_ptx(kernels, files, options, scratch):
    source = os.path.join(scratch, "program.cl")
    with open(source, "w") as out:
        for f in files:
            out.write(open(os.path.join(kernels, f)).read() + "\n")
    ptx = os.path.join(scratch, "program.ptx")
    flags = [f"-D{k}={v}" for k, v in options.items()]
    run = subprocess.run(CLANG + ["-o", ptx, *flags, source], capture_output=True, text=True)
    if run.returncode != 0:
        return None, run.stderr[-1500:]
    return reachable(open(ptx).read()), ""


def local_names(line):
    """Numbers that count across the module (call sequences, the function's index in labels and
    in its local depot) dropped, so a function compares equal wherever it sits."""
    line = re.sub(r"callseq \d+", "callseq", line)
    line = re.sub(r"\bLBB\d+_", "LBB_", line)
    return re.sub(r"__local_depot\d+", "__local_depot", line)


def reachable(ptx):
    """{name: body} of each .entry and every function it calls, directly or not, white space squeezed."""
    bodies, name, depth, lines = {}, None, 0, []
    for line in ptx.splitlines():
        m = re.match(r"^(?:\.visible\s+|\.weak\s+)?\.(?:entry|func)\s+(?:\([^)]*\)\s*)?(\w+)", line)
        if m and depth == 0:
            name, lines = m.group(1), []
        if name is not None:
            lines.append(local_names(re.sub(r"\s+", " ", line).strip()))
            depth += line.count("{") - line.count("}")
            if depth == 0 and "}" in line:  # the end of a definition (declarations have no braces)
                bodies[name] = "\n".join(lines)
                name = None
    calls = {n: set(re.findall(r"call(?:\.uni)?\s*(?:\([^)]*\),)?\s*(\w+),", b.replace("\n", " "))) for n, b in bodies.items()}
    todo = [n for n, b in bodies.items() if ".entry" in b.split("\n", 1)[0]]
    seen = {}
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen[n] = bodies.get(n, "(no body)")
        todo.extend(calls.get(n, ()))
    return seen


def main():
    args = sys.argv[1:]
    programs = PROGRAMS
    if args[:1] == ["--recorded"] and len(args) >= 2:
        programs, args = recorded(args[1]), args[2:]
    if len(args) not in (1, 2):
        sys.exit(__doc__)
    base = args[0]
    new = args[1] if len(args) == 2 else os.path.join(os.path.dirname(__file__), "..", "..", "kernels")
    base_programs, new_programs = manifest(base), manifest(new)
    same = differ = broken = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name, option_sets in programs.items():
            if name not in new_programs or name not in base_programs:
                print(f"{name}: not in both manifests, skipped")
                continue
            for options in option_sets:
                a, err_a = compile_ptx(base, base_programs[name], options, scratch)
                b, err_b = compile_ptx(new, new_programs[name], options, scratch)
                label = f"{name} " + " ".join(f"{k}={v}" for k, v in options.items())
                if a is None or b is None:
                    broken += 1
                    print(f"DOES NOT COMPILE ({'base' if a is None else 'new'}): {label}\n{err_a or err_b}")
                elif a == b:
                    same += 1
                else:
                    differ += 1
                    print(f"DIFFERS: {label}")
    print(f"{same} identical, {differ} different, {broken} not compiled")
    sys.exit(2 if broken else 1 if differ else 0)


if __name__ == "__main__":
    main()
