#!/usr/bin/python3
"""Seeded random byte changes to a small generated trace (1 to 40 bytes each, anywhere in the
file, so HDF5's own metadata is hit), plus the damaged files under tests/fuzz/regressions, run
through validate, info, diff and golden. Some changed files are still valid traces; what may
not happen is a crash, a hang, a multi-line or anonymous error, an output left after an error,
a changed input, or memory beyond checked_run.py's bound. HDF5 1.10 itself crashes on some of
these files: moesim must contain that (traces/contained.hpp) and still answer in one line.

usage: byte_flips.py MOESIM SOURCE_DIR TMP_DIR [COUNT]"""
import glob
import os
import random
import shutil
import subprocess
import sys

import checked_run

moesim, source, tmp = sys.argv[1], sys.argv[2], os.path.join(sys.argv[3], "byte_flips")
count = int(sys.argv[4]) if len(sys.argv) > 4 else 200
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
base = os.path.join(tmp, "base.h5")
# A relative output path: the file records its command line, so an absolute one would move every
# byte with the build folder, and the same seeds would damage other bytes on another machine.
subprocess.run([os.path.abspath(moesim), "gen", "-o", "base.h5", "--ranks", "2", "--experts", "4", "--top-k", "2",
                "--hidden", "16", "--intermediate", "8", "--tokens", "4"], check=True, capture_output=True, cwd=tmp)
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
failures, runs, errors, crashes = [], 0, 0, set()
for p in paths:
    for cmd, extra, allowed in commands:
        runs += 1
        what, message = checked_run.run(moesim, cmd, p, extra, allowed, tmp)
        errors += message is not None
        if what:
            failures.append(f"{cmd} {os.path.basename(p)}: {what}")
        elif message and "HDF5 library crashed" in message:
            crashes.add(os.path.relpath(p, tmp) if p.startswith(tmp) else os.path.relpath(p, source))
print(f"{len(paths)} damaged inputs x {len(commands)} commands = {runs} runs: {errors} one-line errors, "
      f"{len(failures)} failures; libhdf5 crashed on {len(crashes)} inputs, contained: {' '.join(sorted(crashes))}")
for line in failures[:40]:
    print("  " + line)
sys.exit(1 if failures else 0)
