"""moesim_capture.decode against moesim's own dispatch models: buffers laid out as MORI, DeepEP low
latency and pplx return them (built from `moesim run` files) decode to the rows, sources, ids and
weights moesim's models produce, and a trace written from the decoded buffers is judged a correct
integration's buffers by `moesim diagnose` (exit 3: buffers consistent, the consumer untested, since
the decoded buffers carry no outputs). Usage: test_capture_decode.py MOESIM TMP_DIR."""
import os
from enum import Enum
from types import SimpleNamespace

import h5py
import numpy as np

from capture_testlib import check, finish, run, tmp
from moesim_capture import CaptureError, Patterns, TraceConfig, TraceWriter, decode
from moesim_capture.merge import read_config



R, E, K, H = 4, 16, 3, 32
E_local = E // R
trace = os.path.join(tmp, "decode_src.h5")
code, out = run("gen", "-o", trace, "--ranks", str(R), "--experts", str(E), "--top-k", str(K), "--hidden", str(H),
                "--intermediate", "16", "--tokens", "5", "--tokens-max", "11", "--seed", "3")
check(code == 0, f"gen: {out}")

with h5py.File(trace, "r") as f:
    config = read_config(f, trace)
    ranks = [{k: f[f"layers/0/ranks/{r}/{k}"][...] for k in ("x", "topk_ids", "topk_weights")} for r in range(R)]
T = [r["x"].shape[0] for r in ranks]
max_tokens = max(T)


def dispatch_of(model, extra=()):
    path = os.path.join(tmp, f"decode_{model}.h5")
    code, out = run("run", trace, "--dispatch", model, "-o", path, *extra)
    check(code == 0, f"run --dispatch {model}: {out}")
    with h5py.File(path, "r") as f:
        return [{k: f[f"layers/0/ranks/{r}/dispatch/{k}"][...] for k in f[f"layers/0/ranks/{r}/dispatch"]} |
                dict(f[f"layers/0/ranks/{r}/dispatch"].attrs) for r in range(R)]


def write_capture(name, library, captured, mori=None):
    """A trace of the generated inputs with `captured[r]` as rank r's receive side."""
    path = os.path.join(tmp, f"decode_{name}_capture.h5")
    c = read_config_copy(library, mori)
    with TraceWriter(path, c, command=f"test_capture_decode {name}") as w:
        for r in range(R):
            w.add_rank(0, r, Patterns(ranks[r]["x"], "bfloat16"), ranks[r]["topk_ids"], ranks[r]["topk_weights"])
            w.add_captured(0, r, **captured[r])
    return path


def read_config_copy(library, mori):
    with h5py.File(trace, "r") as f:
        c = read_config(f, trace)
    c.library, c.mori = library, mori
    return c


# MORI: flat and legacy src_token_pos decode to the run's sources.
for enc in ("flat", "legacy"):
    d = dispatch_of("mori", ["--src-pos-encoding", enc, "--max-tokens", "12"])
    for r in range(R):
        rank, token = decode.mori_src_token_pos(d[r]["src_token_pos"], enc, R, 12, d[r]["total_recv"])
        check(np.array_equal(rank, d[r]["src_rank"]) and np.array_equal(token, d[r]["src_token"]),
              f"mori {enc}: rank {r}: decoded sources differ from the run's")
        again = decode.mori_encode(rank, token, enc, R, 12)
        check(np.array_equal(again, d[r]["src_token_pos"]), f"mori {enc}: encode is not decode's inverse")
    if enc == "flat":
        cap = [dict(recv_x=Patterns(d[r]["recv_x"], "bfloat16"), recv_topk_ids=d[r]["recv_topk_ids"],
                    recv_weights=d[r]["recv_weights"], src_token_pos=d[r]["src_token_pos"], encoding=enc,
                    total_recv=int(d[r]["total_recv"]), buffer_rows=int(d[r]["buffer_rows"])) for r in range(R)]
        path = write_capture("mori", "mori", cap, dict(max_num_inp_token_per_rank=12))
        code, out = run("diagnose", path)
        check(code == 3, f"mori capture: diagnose exit {code}: {out[-400:]}")
        check(out.count("consistent with: mori") == R, f"mori capture: not every rank consistent with mori: {out[:800]}")
try:
    decode.mori_src_token_pos(np.array([R * 12 * R]), "flat", R, 12)
    check(False, "mori: an out-of-range position decoded")
except CaptureError as e:
    check(str(e) == f"src_token_pos: index [0]: {R * 12 * R} does not decode (flat, {R} ranks, max_num_inp_token_per_rank 12)",
          f"mori: message {e}")

# A MORI EpDispatchCombineConfig (its field names; kernel_type an enum) becomes the trace's config.
Kernel = Enum("EpDispatchCombineKernelType", "IntraNode InterNodeV1")
mcfg = SimpleNamespace(world_size=R, num_experts_per_rank=E_local, num_experts_per_token=K, hidden_dim=H,
                       max_num_inp_token_per_rank=12, max_total_recv_tokens=0, kernel_type=Kernel.InterNodeV1,
                       gpu_per_node=2, quant_type="fp8_direct_cast")
tc = TraceConfig(**decode.mori_trace_config(mcfg, 16, token_dtype="bfloat16")).checked()
check((tc.num_ranks, tc.num_experts, tc.top_k, tc.hidden, tc.intermediate) == (R, E, K, H, 16), "mori config: shape")
check(tc.mori == dict(max_num_inp_token_per_rank=12, max_total_recv_tokens=0, kernel_type="InterNodeV1", gpus_per_node=2),
      f"mori config: settings {tc.mori}")
check(tc.library == "mori" and tc.library_settings == {"quant_type": "fp8_direct_cast"}, "mori config: library")

# DeepEP low latency: expert-major buffers with (begin, count) per source rank, source blocks in
# an order other than rank order (DeepEP reserves them with atomics), stale rows after each count.
d = dispatch_of("deepep-ll")
cap_rows = R * max_tokens
captured = []
for r in range(R):
    rows, src_rank, src_token = d[r]["recv_x"], d[r]["src_rank"], d[r]["src_token"]
    begin_of = d[r]["expert_begin"]
    recv_x = np.full((E_local, cap_rows, H), 0x7FC0, np.uint16)   # stale: bf16 NaN
    src_info = np.full((E_local, cap_rows), -1, np.int32)
    layout = np.zeros((E_local, R), np.int64)
    counts = np.zeros(E_local, np.int32)
    order = []   # run-file row index of each buffer row, expert by expert
    for e in range(E_local):
        seg = np.arange(begin_of[e], begin_of[e + 1])
        at = 0
        for s in reversed(range(R)):    # source rank R-1's block first
            mine = seg[src_rank[seg] == s]
            recv_x[e, at:at + len(mine)] = rows[mine]
            src_info[e, at:at + len(mine)] = src_token[mine]
            layout[e, s] = decode.deepep_ll_pack(at, len(mine))
            order.extend(mine.tolist())
            at += len(mine)
        counts[e] = at
    got = decode.deepep_ll(r, Patterns(recv_x, "bfloat16"), counts, src_info, layout, [x["topk_ids"] for x in ranks],
                           [x["topk_weights"] for x in ranks], max_tokens, E)
    order = np.array(order, np.int64)
    check(np.array_equal(got["recv_x"].bits, rows[order]), f"deepep-ll: rank {r}: rows differ")
    check(np.array_equal(got["src_token_pos"], d[r]["src_token_pos"][order]), f"deepep-ll: rank {r}: src_token_pos differ")
    check(np.array_equal(got["recv_topk_ids"], d[r]["recv_topk_ids"][order]), f"deepep-ll: rank {r}: ids differ")
    check(np.array_equal(got["recv_weights"], d[r]["recv_weights"][order]), f"deepep-ll: rank {r}: weights differ")
    check(got["total_recv"] == d[r]["total_recv"] and got["buffer_rows"] == E_local * cap_rows, f"deepep-ll: rank {r}: counts")
    b, c = decode.deepep_ll_ranges(layout)
    check(np.array_equal(decode.deepep_ll_pack(b, c), layout), "deepep-ll: pack is not ranges' inverse")
    captured.append(got)
path = write_capture("deepep_ll", "deepep", captured, dict(max_num_inp_token_per_rank=max_tokens))
code, out = run("diagnose", path, "--dispatch", "deepep-ll")
check(code == 3, f"deepep-ll capture: diagnose exit {code}: {out[-400:]}")
check(out.count("consistent with: deepep-ll") == R, f"deepep-ll capture: not every rank consistent with deepep-ll: {out[:800]}")

# pplx: valid rows of each expert, in expert order.
d = dispatch_of("pplx")
for r in range(R):
    begin_of = d[r]["expert_begin"]
    buf = np.zeros((E_local, cap_rows, H), np.uint16)
    counts = np.diff(begin_of).astype(np.int32)
    for e in range(E_local):
        buf[e, :counts[e]] = d[r]["recv_x"][begin_of[e]:begin_of[e + 1]]
    got = decode.pplx(Patterns(buf, "bfloat16"), counts)
    check(np.array_equal(got["recv_x"].bits, d[r]["recv_x"]) and got["total_recv"] == d[r]["total_recv"],
          f"pplx: rank {r}: rows differ")
    check(np.array_equal(decode.pplx_row_experts(counts), d[r]["target_expert"] - r * E_local),
          f"pplx: rank {r}: row experts differ")
try:
    decode.pplx(np.zeros((2, 3, H), np.float32), [1, 4])
    check(False, "pplx: a count past the capacity decoded")
except CaptureError as e:
    check(str(e) == "out_expert_x: counts [1, 4] do not fit 2 experts of 3 rows", f"pplx: message {e}")

finish("ok")
