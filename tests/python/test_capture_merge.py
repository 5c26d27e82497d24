"""Multi-process capture: two processes each write one rank's part file (its tokens, routing,
receive buffers and its own experts' weights), `python3 -m moesim_capture merge` joins them, and
the result validates in moesim with every value where it came from. Parts that disagree, overlap
or leave a rank out are refused with one line and exit 2.
Usage: test_capture_merge.py MOESIM TMP_DIR (ctest runs it)."""
import os
import subprocess
import sys

import h5py
import numpy as np

from capture_testlib import PACKAGE, check, finish, moesim, tmp

env = dict(os.environ, PYTHONPATH=PACKAGE)


# What one rank's process runs: its part of an R=2, E=4 capture, values encoding (rank, token, column).
RANK_PROGRAM = r'''
import sys
import numpy as np
from moesim_capture import TraceConfig, TraceWriter
path, rank, hidden = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
R, E, K, H, I = 2, 4, 2, hidden, 4
T = 3 + rank
c = TraceConfig(num_ranks=R, num_experts=E, top_k=K, hidden=H, intermediate=I, token_dtype="float32",
                weight_dtype="float32", library="mori", mori=dict(max_num_inp_token_per_rank=4),
                num_shared_experts=1, shared_intermediate=2, expert_bias=True, shared_expert_gate=True)
x = (rank * 1000 + np.arange(T)[:, None] * 10 + np.arange(H)[None, :]).astype(np.float32)
ids = (np.arange(T)[:, None] + np.arange(K)[None, :] + rank) % E
w = np.full((T, K), 0.5, np.float32)
with TraceWriter(path, c, ranks=[rank], command="test_capture_merge") as wr:
    wr.add_rank(0, rank, x, ids, w)
    wr.add_captured(0, rank, recv_x=x[:2] + 0.5, recv_topk_ids=ids[:2], recv_weights=w[:2],
                    src_token_pos=np.array([rank * 8, rank * 8 + 1]), total_recv=2, buffer_rows=8,
                    combine_out=x * 2)
    first = rank * (E // R)
    wr.add_weights(0, np.full((E // R, 2 * I, H), first + 1, np.float32), np.full((E // R, H, I), -first - 1, np.float32),
                   first_expert=first, b1=np.full((E // R, 2 * I), first + 0.25, np.float32),
                   b2=np.full((E // R, H), -first - 0.25, np.float32))
    if rank == 0:   # the shared expert, its biases and its gate from one process
        wr.add_weights(0, shared_w1=np.ones((1, 4, H), np.float32), shared_w2=np.ones((1, H, 2), np.float32),
                       shared_b1=np.zeros((1, 4), np.float32), shared_b2=np.full((1, H), 0.5, np.float32),
                       shared_gate=np.arange(H, dtype=np.float32) / H)
'''


def part(rank, path, hidden=8):
    return subprocess.Popen([sys.executable, "-c", RANK_PROGRAM, path, str(rank), str(hidden)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def merge(out, *parts, extra=()):
    r = subprocess.run([sys.executable, "-m", "moesim_capture", "merge", "-o", out, *parts, *extra], env=env,
                       capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


p0, p1 = os.path.join(tmp, "merge_part0.h5"), os.path.join(tmp, "merge_part1.h5")
procs = [part(0, p0), part(1, p1)]   # both ranks at once, as a torchrun job would
for i, p in enumerate(procs):
    out, _ = p.communicate()
    check(p.returncode == 0, f"rank {i} process: {out}")

r = subprocess.run([moesim, "validate", p0], capture_output=True, text=True)
check(r.returncode == 2 and "not a moesim trace" in r.stderr, f"a part file is not a trace to moesim: {r.stderr}")

merged = os.path.join(tmp, "merge_out.h5")
code, out = merge(merged, p1, p0, extra=("--moesim", moesim))   # parts in any order
check(code == 0, f"merge: {out}")
with h5py.File(merged, "r") as f:
    check(f.attrs["format"] == b"moesim-trace", "merged format")
    check(f["config"].attrs["library"] == b"mori" and int(f["config/mori"].attrs["max_num_inp_token_per_rank"]) == 4, "config kept")
    for rank in range(2):
        g = f[f"layers/0/ranks/{rank}"]
        T = 3 + rank
        want = (rank * 1000 + np.arange(T)[:, None] * 10 + np.arange(8)[None, :]).astype(np.float32)
        check(np.array_equal(g["x"][...], want), f"rank {rank}: x from its own process")
        check(np.array_equal(g["captured/combine_out"][...], want * 2), f"rank {rank}: combine_out")
        check(np.array_equal(g["captured/src_token_pos"][...], [rank * 8, rank * 8 + 1]), f"rank {rank}: src_token_pos")
        check(int(g["captured"].attrs["total_recv"]) == 2 and int(g["captured"].attrs["buffer_rows"]) == 8, f"rank {rank}: counts")
    w1 = f["layers/0/weights/w1"][...]
    check([float(w1[e, 0, 0]) for e in range(4)] == [1, 1, 3, 3], f"weights of each rank's experts: {w1[:, 0, 0]}")
    check("written" not in f["layers/0/weights/w1"].attrs, "merged weights carry no part bookkeeping")
    b1, b2 = f["layers/0/weights/b1"][...], f["layers/0/weights/b2"][...]
    check([float(b1[e, 0]) for e in range(4)] == [0.25, 0.25, 2.25, 2.25] and
          [float(b2[e, 0]) for e in range(4)] == [-0.25, -0.25, -2.25, -2.25], f"biases of each rank's experts: {b1[:, 0]}")
    check(np.array_equal(f["layers/0/weights/shared_gate"][...], np.arange(8, dtype=np.float32) / 8) and
          np.array_equal(f["layers/0/weights/shared_b2"][...], np.full((1, 8), 0.5, np.float32)), "shared gate and biases")
    check(int(f["config"].attrs["expert_bias"]) == 1 and int(f["config"].attrs["shared_expert_gate"]) == 1,
          "family attributes kept")

# Refusals.
p1b = os.path.join(tmp, "merge_part1_hidden16.h5")
p = part(1, p1b, hidden=16)
p.communicate()
for name, parts, message in (
    ("a rank left out", (p0,), f"{os.path.join(tmp, 'merge_bad.h5')}: rank 1 is in none of the 1 part files"),
    ("a rank twice", (p0, p1, p0), f"{p0}: rank 0 is also in {p0}"),
    ("configs differ", (p0, p1b), f"{p1b}: /config: 'hidden' differs from {p0}"),
    ("not a part file", (p0, merged), f"{merged}: /: not a moesim part file (attribute 'format' is not 'moesim-trace-part')"),
    ("no such file", (p0, os.path.join(tmp, "nothing.h5")), f"{os.path.join(tmp, 'nothing.h5')}: cannot open:"),
):
    code, out = merge(os.path.join(tmp, "merge_bad.h5"), *parts)
    check(code == 2 and out.startswith(message) and "\n" not in out, f"{name}: exit {code}, message\n  {out}\nexpected\n  {message}")
    check(not any(f.startswith("merge_bad.h5") for f in os.listdir(tmp)), f"{name}: left a file")

finish("ok")
