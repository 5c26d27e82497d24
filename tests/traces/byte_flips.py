#!/usr/bin/python3
"""Seeded random byte changes to a small generated trace (1 to 40 bytes each, anywhere in the
file, so HDF5's own metadata is hit), plus the damaged files under tests/fuzz/regressions, run
through validate, info, diff and golden. Some changed files are still valid traces; what may
not happen is a crash, a hang, a multi-line or anonymous error, an output left after an error,
or a changed input. HDF5 1.10 itself crashes on some of these files: moesim must contain that
(traces/contained.hpp) and still answer in one line.

usage: byte_flips.py MOESIM SOURCE_DIR TMP_DIR [COUNT]"""
import glob
import hashlib
import os
import random
import shutil
import subprocess
import sys

moesim, source, tmp = sys.argv[1], sys.argv[2], os.path.join(sys.argv[3], "byte_flips")
count = int(sys.argv[4]) if len(sys.argv) > 4 else 200
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
base = os.path.join(tmp, "base.h5")
subprocess.run([moesim, "gen", "-o", base, "--ranks", "2", "--experts", "4", "--top-k", "2", "--hidden", "16",
                "--intermediate", "8", "--tokens", "4"], check=True, capture_output=True)
data = open(base, "rb").read()

paths = sorted(glob.glob(os.path.join(source, "tests", "fuzz", "regressions", "*", "*.h5")))
for i in range(count):
    r = random.Random(100000 + i)
    b = bytearray(data)
    for _ in range(r.randint(1, 40)):
        b[r.randrange(len(b))] = r.randrange(256)
    p = os.path.join(tmp, f"flip{100000 + i}.h5")
    open(p, "wb").write(b)
    paths.append(p)

out = os.path.join(tmp, "out.h5")
commands = [("validate", [], {0, 2}), ("info", [], {0, 2}), ("diff", [base], {0, 1, 2}),
            ("golden", ["-o", out], {0, 2})]
failures, runs, errors, crashes_contained = [], 0, 0, 0
for p in paths:
    before = hashlib.sha256(open(p, "rb").read()).hexdigest()
    for cmd, extra, allowed in commands:
        runs += 1
        try:
            r = subprocess.run([moesim, cmd, p] + extra, capture_output=True, text=True, timeout=60,
                               errors="replace")
        except subprocess.TimeoutExpired:
            failures.append(f"{cmd} {p}: hung (60 s)")
            continue
        err = r.stderr.splitlines()
        what = None
        if r.returncode not in allowed:
            what = f"exit {r.returncode}"
        elif r.returncode == 2 and (len(err) != 1 or not err[0].startswith(f"moesim {cmd}: ") or p not in err[0]):
            what = f"stderr is not one line naming the file: {r.stderr!r}"
        elif r.returncode == 2 and any(n.startswith("out.h5") for n in os.listdir(tmp)):
            what = "an output was written"
        elif hashlib.sha256(open(p, "rb").read()).hexdigest() != before:
            what = "the input changed"
        errors += r.returncode == 2
        crashes_contained += "HDF5 library crashed" in r.stderr
        if what:
            failures.append(f"{cmd} {os.path.basename(p)}: {what}")
        for n in os.listdir(tmp):
            if n.startswith("out.h5"):
                os.remove(os.path.join(tmp, n))
print(f"{len(paths)} damaged inputs x {len(commands)} commands = {runs} runs: {errors} one-line errors "
      f"({crashes_contained} of them HDF5 crashes contained), {len(failures)} failures")
for line in failures[:40]:
    print("  " + line)
sys.exit(1 if failures else 0)
