#!/usr/bin/env python3
"""sass.py: the machine code of the kernels flashcl built on an NVIDIA device, read on any machine.

On NVIDIA's OpenCL driver a program's binary is its PTX, and flashcl's disk cache keeps it
($FLASHCL_CACHE_DIR; file format in src/program/disk_cache.cpp). For every cached program in CACHE_DIR
this writes NAME.ptx and NAME.options to OUT_DIR and, where CUDA's ptxas and nvdisasm are on PATH
(nvdisasm also comes as PyPI's nvidia-cuda-nvdisasm), NAME.sass, then prints one line per kernel:
registers, spills and the instruction counts the notes (docs/perf/nvidia-h100.md, v6) reasoned
with. The driver's own ptxas may differ in small ways (it also adds 128 bytes of shared memory).

Usage: bench/gpu/sass.py CACHE_DIR OUT_DIR [--arch sm_90a]
"""
import argparse
import pathlib
import re
import shutil
import struct
import subprocess
import sys

MAGIC = b"FLASHCL-BIN 1\n"
# SASS opcodes worth counting (by full opcode): tensor-core issue, ex2, barriers and waits, async
# copies, ldmatrix, global loads and stores by width (2-byte ones move Q and O one element at a
# time), spill traffic
COUNTED = ("HGMMA", "HMMA", "MUFU.EX2", "BAR.SYNC", "WARPGROUP.DEPBAR", "LDGSTS", "LDSM", "LDG", "STG", "STL", "LDL")


def read_entry(path):
    """(key, binary) of one cache file, or None when it is not one."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return None
    at = len(MAGIC)
    (key_len,) = struct.unpack_from("<Q", data, at)
    key = data[at + 8:at + 8 + key_len].decode(errors="replace")
    at += 8 + key_len
    (bin_len,) = struct.unpack_from("<Q", data, at)
    return key, data[at + 8:at + 8 + bin_len]


def counts(sass):
    """{full opcode: count} for the opcodes that start with one of COUNTED."""
    out = {}
    for op in re.findall(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Za-z0-9_.]*)", sass, re.M):
        if any(op == c or op.startswith(c + ".") for c in COUNTED):
            out[op] = out.get(op, 0) + 1
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache_dir", type=pathlib.Path)
    parser.add_argument("out_dir", type=pathlib.Path)
    parser.add_argument("--arch", default="sm_90a")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    ptxas, nvdisasm = shutil.which("ptxas"), shutil.which("nvdisasm")
    if not ptxas or not nvdisasm:
        print("ptxas or nvdisasm not on PATH: writing PTX only", file=sys.stderr)
    for path in sorted(args.cache_dir.glob("*.bin")):
        entry = read_entry(path)
        if entry is None or b".version" not in entry[1][:4096]:
            continue  # not a flashcl cache file, or not PTX (another vendor's binary)
        key, ptx = entry
        options = next((line[len("options "):] for line in key.splitlines() if line.startswith("options ")), "")
        name = path.stem
        (args.out_dir / f"{name}.ptx").write_bytes(ptx.rstrip(b"\0"))
        (args.out_dir / f"{name}.options").write_text(options + "\n")
        defines = " ".join(d[2:] for d in options.split() if d.startswith("-D") and "=" in d)
        if not ptxas or not nvdisasm:
            print(f"{name}  {defines}")
            continue
        cubin = args.out_dir / f"{name}.cubin"
        report = subprocess.run([ptxas, f"-arch={args.arch}", "-v", str(args.out_dir / f"{name}.ptx"), "-o", str(cubin)],
                                capture_output=True, text=True)
        if report.returncode != 0:
            print(f"{name}  {defines}  ptxas failed: {report.stderr.strip().splitlines()[-1:]}")
            continue
        regs = re.search(r"Used (\d+) registers", report.stderr)
        spills = re.search(r"(\d+) bytes spill stores", report.stderr)
        sass = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True).stdout
        (args.out_dir / f"{name}.sass").write_text(sass)
        found = ", ".join(f"{k} {v}" for k, v in sorted(counts(sass).items()))
        print(f"{name}  {defines}  | {regs.group(1) if regs else '?'} registers, "
              f"{spills.group(1) if spills else '?'} B spilled | {found}")


if __name__ == "__main__":
    main()
