"""TraceWriter (numpy + h5py only): what it writes validates in moesim and reads back bit for bit
(bf16 patterns, float32 holding bf16 values, fp8 codes of both formats, stale receive rows), and
every check refuses bad input with its exact one-line message, leaving no file behind.
Usage: test_capture_writer.py MOESIM TMP_DIR (ctest runs it)."""
import os

import h5py
import numpy as np

from capture_testlib import check, finish, run, tmp
from moesim_capture import CaptureError, Patterns, TraceConfig, TraceWriter



def validate(path):
    return run("validate", path)


R, E, K, H, I = 2, 8, 2, 16, 8
T = [3, 5]


def cfg(**kw):
    base = dict(num_ranks=R, num_experts=E, top_k=K, hidden=H, intermediate=I)
    base.update(kw)
    return TraceConfig(**base)


def origin_x(r, t_count, dtype="bfloat16"):
    """Token values that say where they came from: rank r (< 2), token t (< 8), column j (< 16)
    -> r + t/8 + j/128, 7 fraction bits: exact in bf16."""
    t = np.arange(t_count)[:, None]
    j = np.arange(H)[None, :]
    v = (r + t / 8.0 + j / 128.0).astype(np.float32)
    return v


def bf16_bits(v):
    return (np.asarray(v, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def ids_of(r, t_count):
    return ((np.arange(t_count)[:, None] * K + np.arange(K)[None, :] + r) % E).astype(np.int64)


def weights_of(t_count):
    return np.full((t_count, K), 1.0 / K, np.float32)


# ---- a good capture: bf16 tokens given as float32 holding bf16 values (converted exactly) and as
# patterns, stale rows past total_recv (garbage ids, NaN weights) kept as they are.
good = os.path.join(tmp, "writer_good.h5")
with TraceWriter(good, cfg(library="mori", mori=dict(max_num_inp_token_per_rank=8)), command="test") as w:
    for r in range(R):
        x = origin_x(r, T[r])
        w.add_rank(0, r, x if r == 0 else Patterns(bf16_bits(x), "bfloat16"), ids_of(r, T[r]), weights_of(T[r]))
        n = 4
        rid = np.full((n + 2, K), 99, np.int32)   # rows past total_recv: stale, never checked
        rid[:n] = ids_of(r, n) % E
        rw = np.full((n + 2, K), np.nan, np.float32)
        rw[:n] = 0.5
        w.add_captured(0, r, recv_x=Patterns(np.full((n + 2, H), 0x7FC0, np.uint16), "bfloat16"), recv_topk_ids=rid,
                       recv_weights=rw, src_token_pos=np.arange(n, dtype=np.int64), total_recv=n, buffer_rows=16,
                       combine_out=np.zeros((T[r], H), np.float64))
    w.add_weights(0, np.ones((4, 2 * I, H), np.float32), np.ones((4, H, I), np.float32), first_expert=4)
    w.add_weights(0, np.full((4, 2 * I, H), 0.5, np.float32), np.full((4, H, I), 0.25, np.float32))
code, out = validate(good)
check(code == 0, f"good capture: validate: {out}")
with h5py.File(good, "r") as f:
    for r in range(R):
        x = f[f"layers/0/ranks/{r}/x"]
        check(x.dtype == np.uint16 and x.attrs["dtype"] in (b"bfloat16", "bfloat16"), f"rank {r}: x stored as bf16 patterns")
        check(np.array_equal(x[...], bf16_bits(origin_x(r, T[r]))), f"rank {r}: x bits")
        check(int(f[f"layers/0/ranks/{r}"].attrs["num_tokens"]) == T[r], f"rank {r}: num_tokens")
        check(f[f"layers/0/ranks/{r}/captured/recv_topk_ids"][-1, 0] == 99, f"rank {r}: stale rows kept")
    w1 = f["layers/0/weights/w1"][...]
    check(np.array_equal(w1[4:], bf16_bits(np.ones((4, 2 * I, H)))) and np.array_equal(w1[:4], bf16_bits(np.full((4, 2 * I, H), 0.5))),
          "weights written by expert ranges land at their experts")
    check(f.attrs["format"] in (b"moesim-trace", "moesim-trace") and isinstance(f.attrs["format"], bytes),
          "format is a fixed-length string")
    check(f["config"].attrs["top_k"].dtype == np.int64 and f["config"].attrs["routed_scaling_factor"].dtype == np.float64,
          "int64 and float64 attributes")

# ---- every finite bf16 pattern round trips, as x; every pattern (NaN, inf) as recv_x.
allbits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
exp_all_ones = (allbits & 0x7F80) == 0x7F80
finite = allbits[~exp_all_ones]
rows = len(finite) // H
path = os.path.join(tmp, "writer_bf16_all.h5")
with TraceWriter(path, cfg(num_ranks=1, hidden=H)) as w:
    w.add_rank(0, 0, Patterns(finite[:rows * H].reshape(rows, H), "bfloat16"), np.zeros((rows, K), np.int32) + [0, 1],
               np.zeros((rows, K), np.float32))
    w.add_captured(0, 0, recv_x=Patterns(allbits.reshape(-1, H), "bfloat16"))
code, out = validate(path)
check(code == 0, f"bf16 all patterns: validate: {out}")
with h5py.File(path, "r") as f:
    check(np.array_equal(f["layers/0/ranks/0/x"][...].reshape(-1), finite[:rows * H]), "bf16: every finite pattern round trips")
    check(np.array_equal(f["layers/0/ranks/0/captured/recv_x"][...].reshape(-1), allbits), "bf16: every pattern round trips in recv_x")

# ---- fp8 codes of both formats round trip with their scales (NaN codes refused in x).
for fmt, nan in (("float8_e4m3fn", {0x7F, 0xFF}), ("float8_e4m3fnuz", {0x80})):
    codes = np.array([c for c in range(256) if c not in nan], np.uint8)
    n = len(codes) // H
    q = codes[:n * H].reshape(n, H)
    s = (np.arange(n, dtype=np.float32)[:, None] + 1) / 64
    path = os.path.join(tmp, f"writer_{fmt}.h5")
    with TraceWriter(path, cfg(num_ranks=1, token_dtype=fmt, scale_block=H)) as w:
        w.add_rank(0, 0, Patterns(q, fmt), np.zeros((n, K), np.int32) + [2, 3], np.ones((n, K), np.float32), x_scales=s)
    code, out = validate(path)
    check(code == 0, f"{fmt}: validate: {out}")
    with h5py.File(path, "r") as f:
        x = f["layers/0/ranks/0/x"]
        check(x.dtype == np.uint8 and np.array_equal(x[...], q) and x.attrs["dtype"] in (fmt, fmt.encode()), f"{fmt}: codes round trip")
        check(np.array_equal(f["layers/0/ranks/0/x_scales"][...], s), f"{fmt}: scales round trip")

# ---- refusals: each bad call, its exact message, no file left.
bad = os.path.join(tmp, "writer_bad.h5")
P = bad
x0, ids0, w0 = origin_x(0, 3), ids_of(0, 3), weights_of(3)


def rank0(w, **kw):
    args = dict(x=x0, topk_ids=ids0, topk_weights=w0)
    args.update(kw)
    w.add_rank(0, 0, args.pop("x"), args.pop("topk_ids"), args.pop("topk_weights"), **args)


def full(w):
    rank0(w)
    w.add_rank(0, 1, origin_x(1, 5), ids_of(1, 5), weights_of(5))


nan_x = x0.copy()
nan_x[1, 2] = np.nan
ids_bad = ids0.copy()
ids_bad[2, 1] = 8
lossy = x0.copy()
lossy[0, 3] += 1e-3
cases = [
    ("top_k above E", dict(top_k=9), None, f"{P}: /config: attribute 'top_k' = 9 out of range [1, 8]"),
    ("unknown activation", dict(activation="relu"), None,
     f"{P}: /config: attribute 'activation' = 'relu' is not one of silu_and_mul, gelu_and_mul, gelu_tanh_and_mul, swiglu_oai_and_mul, silu, gelu, gelu_tanh"),
    ("unknown token dtype", dict(token_dtype="float16"), None,
     f"{P}: /config: attribute 'token_dtype' = 'float16' is not one of float32, bfloat16, float8_e4m3fn, float8_e4m3fnuz"),
    ("E not a multiple of R", dict(num_ranks=3), None,
     f"{P}: /config/placement: contiguous placement needs num_experts 8 to be a multiple of num_ranks 3"),
    ("shared experts without their size", dict(num_shared_experts=1), None,
     f"{P}: /config: attribute 'shared_intermediate' = 0 out of range [1, 1048576]"),
    ("eplb map out of range", dict(placement="eplb", expert_to_rank=[0] * 8, physical_to_logical=[0, 1, 2, 3, 0, 1, 2, 9], num_logical=4),
     None, f"{P}: /config/placement/physical_to_logical: index [7]: 9 out of range [0, 4)"),
    ("unknown MORI setting", dict(mori=dict(max_tokens=4)), None,
     f"{P}: /config/mori: unknown setting 'max_tokens' (expected max_num_inp_token_per_rank, max_total_recv_tokens, kernel_type, gpus_per_node)"),
    ("x hidden size", {}, lambda w: rank0(w, x=origin_x(0, 3)[:, :15]), f"{P}: /layers/0/ranks/0/x: shape [3, 15], expected [T, 16]"),
    ("x float32 not bf16-exact", {}, lambda w: rank0(w, x=lossy),
     f"{P}: /layers/0/ranks/0/x: dtype is float32, expected bfloat16 (its values do not convert without loss)"),
    ("x integers", {}, lambda w: rank0(w, x=np.zeros((3, H), np.int64)), f"{P}: /layers/0/ranks/0/x: dtype is int64, expected bfloat16"),
    ("x not finite", {}, lambda w: rank0(w, x=nan_x), f"{P}: /layers/0/ranks/0/x: index [1, 2]: value nan is not finite"),
    ("fp32 x as fp8", dict(token_dtype="fp8"), lambda w: rank0(w, x=x0, x_scales=np.ones((3, 1), np.float32)),
     f"{P}: /layers/0/ranks/0/x: dtype is float32, expected float8_e4m3fn"),
    ("fp8 codes of the other format", dict(token_dtype="fp8"), lambda w: rank0(w, x=Patterns(np.zeros((3, H), np.uint8), "float8_e4m3fnuz")),
     f"{P}: /layers/0/ranks/0/x: dtype is float8_e4m3fnuz, expected float8_e4m3fn"),
    ("fp8 NaN code", dict(token_dtype="fp8"), lambda w: rank0(w, x=Patterns(np.full((3, H), 0x7F, np.uint8), "fp8")),
     f"{P}: /layers/0/ranks/0/x: index [0, 0]: value nan is not finite"),
    ("fp8 without scales", dict(token_dtype="fp8"), lambda w: rank0(w, x=Patterns(np.zeros((3, H), np.uint8), "fp8")),
     f"{P}: /layers/0/ranks/0/x_scales: missing (fp8 tokens need their scales)"),
    ("fp8 scales shape", dict(token_dtype="fp8", scale_block=8),
     lambda w: rank0(w, x=Patterns(np.zeros((3, H), np.uint8), "fp8"), x_scales=np.ones((3, 1), np.float32)),
     f"{P}: /layers/0/ranks/0/x_scales: shape [3, 1], expected [3, 2]"),
    ("scales for bf16 tokens", {}, lambda w: rank0(w, x_scales=np.ones((3, 1), np.float32)),
     f"{P}: /layers/0/ranks/0/x_scales: given for bfloat16 tokens (only fp8 tokens have scales)"),
    ("id out of range", {}, lambda w: rank0(w, topk_ids=ids_bad), f"{P}: /layers/0/ranks/0/topk_ids: index [2, 1]: id 8 out of range [-1, 8)"),
    ("id below -1", {}, lambda w: rank0(w, topk_ids=ids0 - 5), f"{P}: /layers/0/ranks/0/topk_ids: index [0, 0]: id -5 out of range [-1, 8)"),
    ("ids as floats", {}, lambda w: rank0(w, topk_ids=ids0.astype(np.float32)),
     f"{P}: /layers/0/ranks/0/topk_ids: dtype is float32, expected an integer type (int32)"),
    ("id past int32", {}, lambda w: rank0(w, topk_ids=ids0 + 2 ** 40), f"{P}: /layers/0/ranks/0/topk_ids: index [0, 0]: 1099511627776 does not fit int32"),
    ("ids shape", {}, lambda w: rank0(w, topk_ids=ids0[:, :1]), f"{P}: /layers/0/ranks/0/topk_ids: shape [3, 1], expected [3, 2]"),
    ("weights shape", {}, lambda w: rank0(w, topk_weights=w0[:2]), f"{P}: /layers/0/ranks/0/topk_weights: shape [2, 2], expected [3, 2]"),
    ("weights not finite", {}, lambda w: rank0(w, topk_weights=np.array([[1, 0], [0, np.inf], [0, 0]], np.float32)),
     f"{P}: /layers/0/ranks/0/topk_weights: index [1, 1]: value inf is not finite"),
    ("weights float64 not float32-exact", {}, lambda w: rank0(w, topk_weights=np.full((3, 2), 0.1)),
     f"{P}: /layers/0/ranks/0/topk_weights: dtype is float64, expected float32 (its values do not convert without loss)"),
    ("rank out of range", {}, lambda w: w.add_rank(0, 2, x0, ids0, w0), f"{P}: /layers/0/ranks: rank 2 is not in [0, 2)"),
    ("layer out of range", {}, lambda w: w.add_rank(1, 0, x0, ids0, w0), f"{P}: /layers: layer 1 out of range [0, 1)"),
    ("rank twice", {}, lambda w: (rank0(w), rank0(w)), f"{P}: /layers/0/ranks/0: written twice"),
    ("rank never written", {}, lambda w: (rank0(w), w.close()), f"{P}: /layers/0/ranks/1: never written (add_rank)"),
    ("w1 shape", {}, lambda w: w.add_weights(0, np.zeros((8, I, H), np.float32), np.zeros((8, H, I), np.float32)),
     f"{P}: /layers/0/weights/w1: shape [8, 8, 16], expected [n, 16, 16]"),
    ("w2 shape", {}, lambda w: w.add_weights(0, np.zeros((8, 2 * I, H), np.float32), np.zeros((8, I, H), np.float32)),
     f"{P}: /layers/0/weights/w2: shape [8, 8, 16], expected [8, 16, 8]"),
    ("experts past L", {}, lambda w: w.add_weights(0, np.zeros((4, 2 * I, H), np.float32), np.zeros((4, H, I), np.float32), first_expert=6),
     f"{P}: /layers/0/weights/w1: experts [6, 10) out of range [0, 8)"),
    ("expert twice", {}, lambda w: [w.add_weights(0, np.zeros((4, 2 * I, H), np.float32), np.zeros((4, H, I), np.float32), first_expert=f)
                                    for f in (0, 2)], f"{P}: /layers/0/weights/w1: expert 2 written twice"),
    ("expert never written", {}, lambda w: (full(w), w.add_weights(0, np.zeros((4, 2 * I, H), np.float32), np.zeros((4, H, I), np.float32)), w.close()),
     f"{P}: /layers/0/weights/w1: expert 4 never written"),
    ("weights not finite", {}, lambda w: w.add_weights(0, np.full((8, 2 * I, H), np.nan, np.float32), np.zeros((8, H, I), np.float32)),
     f"{P}: /layers/0/weights/w1: index [0, 0, 0]: value nan is not finite"),
    ("weights in another dtype", dict(weight_dtype="float32"), lambda w: w.add_weights(0, Patterns(np.zeros((8, 2 * I, H), np.uint8), "fp8"), None),
     f"{P}: /layers/0/weights: w1 and w2 go together"),
    ("shared weights missing", dict(num_shared_experts=1, shared_intermediate=4),
     lambda w: (full(w), w.add_weights(0, np.zeros((8, 2 * I, H), np.float32), np.zeros((8, H, I), np.float32)), w.close()),
     f"{P}: /layers/0/weights/shared_w1: missing (num_shared_experts is 1)"),
    ("shared weights without shared experts", {},
     lambda w: w.add_weights(0, shared_w1=np.zeros((1, 8, H), np.float32), shared_w2=np.zeros((1, H, 4), np.float32)),
     f"{P}: /layers/0/weights/shared_w1: given, but num_shared_experts is 0"),
    ("captured before its rank", {}, lambda w: w.add_captured(0, 0, total_recv=0),
     f"{P}: /layers/0/ranks/0/captured: add_rank(0, 0) must come first"),
    ("recv row counts differ", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_x=x0, recv_topk_ids=np.zeros((2, K), np.int32))),
     f"{P}: /layers/0/ranks/0/captured/recv_topk_ids: has 2 rows, other recv datasets 3"),
    ("total_recv past the rows", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_x=x0, total_recv=4)),
     f"{P}: /layers/0/ranks/0/captured: total_recv 4 exceeds the 3 rows captured"),
    ("total_recv negative", {}, lambda w: (rank0(w), w.add_captured(0, 0, total_recv=-1)),
     f"{P}: /layers/0/ranks/0/captured: attribute 'total_recv' = -1 is not a count (a non-negative integer)"),
    ("recv id out of range in a valid row", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_topk_ids=ids_bad, total_recv=3)),
     f"{P}: /layers/0/ranks/0/captured/recv_topk_ids: index [2, 1]: id 8 out of range [-1, 8)"),
    ("recv weight not finite in a valid row", {},
     lambda w: (rank0(w), w.add_captured(0, 0, recv_weights=np.array([[0, 0], [np.nan, 0]], np.float32))),
     f"{P}: /layers/0/ranks/0/captured/recv_weights: index [1, 0]: value nan is not finite"),
    ("recv_x hidden", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_x=x0[:, :8])),
     f"{P}: /layers/0/ranks/0/captured/recv_x: shape [3, 8], expected [N, 16]"),
    ("src_token_pos shorter than total_recv", {},
     lambda w: (rank0(w), w.add_captured(0, 0, recv_x=x0, src_token_pos=np.arange(2), total_recv=3)),
     f"{P}: /layers/0/ranks/0/captured/src_token_pos: has 2 entries, fewer than total_recv 3"),
    ("unknown encoding", {}, lambda w: (rank0(w), w.add_captured(0, 0, src_token_pos=np.arange(2), encoding="packed")),
     f"{P}: /layers/0/ranks/0/captured/src_token_pos: encoding 'packed' is not one of flat, legacy, pair"),
    ("combine_out rows", {}, lambda w: (rank0(w), w.add_captured(0, 0, combine_out=np.zeros((4, H), np.float32))),
     f"{P}: /layers/0/ranks/0/captured/combine_out: shape [4, 16], expected [3, 16]"),
    ("final_out integers", {}, lambda w: (rank0(w), w.add_captured(0, 0, final_out=np.zeros((3, H), np.int32))),
     f"{P}: /layers/0/ranks/0/captured/final_out: dtype is int32, expected float32 or float64 or float16 or bfloat16 or float8_e4m3fn or float8_e4m3fnuz"),
    ("total_recv past the layer's pairs", {}, lambda w: (full(w), w.add_captured(0, 0, total_recv=17), w.close()),
     f"{P}: /layers/0/ranks/0/captured: total_recv 17 exceeds the layer's 16 (token, expert) pairs"),
    ("hidden not an integer", dict(hidden=16.0), None, f"{P}: /config: attribute 'hidden' = 16.0 is not an integer"),
    ("routed scaling out of range", dict(routed_scaling_factor=-1), None,
     f"{P}: /config: attribute 'routed_scaling_factor' = -1.0 out of range [0, 1000]"),
    ("library not ASCII", dict(library="m\u00f6ri"), None, f"{P}: /config: 'm\u00f6ri' is not a plain ASCII string"),
    ("contiguous with a map", dict(expert_to_rank=[0] * 8), None,
     f"{P}: /config/placement: contiguous placement takes no expert_to_rank or physical_to_logical"),
    ("contiguous num_logical", dict(num_logical=4), None, f"{P}: /config/placement: contiguous placement has num_logical 8, not 4"),
    ("explicit map missing", dict(placement="explicit", expert_to_rank=[0] * 8), None,
     f"{P}: /config/placement/physical_to_logical: missing (explicit placement)"),
    ("map shape", dict(placement="explicit", expert_to_rank=[0] * 7, physical_to_logical=list(range(8))), None,
     f"{P}: /config/placement/expert_to_rank: expected int [8], got int64 [7]"),
    ("map rank out of range", dict(placement="explicit", expert_to_rank=[0] * 7 + [2], physical_to_logical=list(range(8))), None,
     f"{P}: /config/placement/expert_to_rank: index [7]: 2 out of range [0, 2)"),
    ("num_logical above E", dict(placement="eplb", expert_to_rank=[0] * 8, physical_to_logical=[0] * 8, num_logical=9), None,
     f"{P}: /config/placement: attribute 'num_logical' = 9 out of range [1, 8]"),
    ("unknown MORI kernel", dict(mori=dict(kernel_type="Fast")), None,
     f"{P}: /config/mori: attribute 'kernel_type' = 'Fast' is not one of IntraNode, InterNode, InterNodeV1, InterNodeV1LL, AsyncLL, IntraNodeLL"),
    ("MORI count negative", dict(mori=dict(max_num_inp_token_per_rank=-1)), None,
     f"{P}: /config/mori: attribute 'max_num_inp_token_per_rank' = -1 out of range [0, 16777216]"),
    ("unknown weight dtype", dict(weight_dtype="fp8"), None,
     f"{P}: /config: attribute 'weight_dtype' = 'float8_e4m3fn' is not one of float32, bfloat16"),
    ("patterns of an unknown dtype", {}, lambda w: rank0(w, x=Patterns(np.zeros((3, H), np.uint16), "int16")),
     "Patterns: dtype 'int16' is not bfloat16, float16, float8_e4m3fn or float8_e4m3fnuz"),
    ("patterns in the wrong container", {}, lambda w: rank0(w, x=Patterns(np.zeros((3, H), np.uint8), "bf16")),
     "Patterns: bfloat16 patterns must be uint16, got uint8"),
    ("x not 2-D", {}, lambda w: rank0(w, x=x0.reshape(1, 3, H)), f"{P}: /layers/0/ranks/0/x: shape [1, 3, 16], expected [T, 16]"),
    ("w2 without w1", {}, lambda w: w.add_weights(0, None, np.zeros((8, H, I), np.float32)), f"{P}: /layers/0/weights: w1 and w2 go together"),
    ("shared_w2 missing", dict(num_shared_experts=1, shared_intermediate=4), lambda w: w.add_weights(0, shared_w1=np.zeros((1, 8, H), np.float32)),
     f"{P}: /layers/0/weights: shared_w1 and shared_w2 go together"),
    ("shared_w1 shape", dict(num_shared_experts=1, shared_intermediate=4),
     lambda w: w.add_weights(0, shared_w1=np.zeros((1, 4, H), np.float32), shared_w2=np.zeros((1, H, 4), np.float32)),
     f"{P}: /layers/0/weights/shared_w1: shape [1, 4, 16], expected [1, 8, 16]"),
    ("shared_w2 shape", dict(num_shared_experts=1, shared_intermediate=4),
     lambda w: w.add_weights(0, shared_w1=np.zeros((1, 8, H), np.float32), shared_w2=np.zeros((1, 4, H), np.float32)),
     f"{P}: /layers/0/weights/shared_w2: shape [1, 4, 16], expected [1, 16, 4]"),
    ("routed weights missing beside shared ones", dict(num_shared_experts=1, shared_intermediate=4),
     lambda w: (full(w), w.add_weights(0, shared_w1=np.zeros((1, 8, H), np.float32), shared_w2=np.zeros((1, H, 4), np.float32)), w.close()),
     f"{P}: /layers/0/weights/w1: missing (shared weights were stored)"),
    # schema v2's families: biases, the shared gate, the SwiGLU parameters
    ("biases without expert_bias", {},
     lambda w: w.add_weights(0, np.zeros((8, 2 * I, H), np.float32), np.zeros((8, H, I), np.float32),
                             b1=np.zeros((8, 2 * I), np.float32), b2=np.zeros((8, H), np.float32)),
     f"{P}: /layers/0/weights/b1: given, but expert_bias is 0"),
    ("expert_bias without biases", dict(expert_bias=True),
     lambda w: w.add_weights(0, np.zeros((8, 2 * I, H), np.float32), np.zeros((8, H, I), np.float32)),
     f"{P}: /layers/0/weights/b1: expert_bias is 1: biases go with their weights"),
    ("b1 shape", dict(expert_bias=True),
     lambda w: w.add_weights(0, np.zeros((8, 2 * I, H), np.float32), np.zeros((8, H, I), np.float32),
                             b1=np.zeros((8, I), np.float32), b2=np.zeros((8, H), np.float32)),
     f"{P}: /layers/0/weights/b1: shape [8, 8], expected [8, 16]"),
    ("expert_bias and no stored weights", dict(expert_bias=True), lambda w: (full(w), w.close()),
     f"{P}: /layers/0/weights/b1: missing (expert_bias = 1 needs stored weights with it: add_weights)"),
    ("shared gate without shared experts", dict(shared_expert_gate=True), None,
     f"{P}: /config: attribute 'shared_expert_gate' = 1 needs num_shared_experts > 0"),
    ("shared gate shape", dict(shared_expert_gate=True, num_shared_experts=1, shared_intermediate=4),
     lambda w: w.add_weights(0, shared_gate=np.zeros((1, H), np.float32)),
     f"{P}: /layers/0/weights/shared_gate: shape [1, 16], expected [16]"),
    ("shared gate not asked for", dict(num_shared_experts=1, shared_intermediate=4),
     lambda w: w.add_weights(0, shared_gate=np.zeros(H, np.float32)),
     f"{P}: /layers/0/weights/shared_gate: given, but shared_expert_gate is 0"),
    ("swiglu limit out of range", dict(activation="swiglu_oai_and_mul", swiglu_limit=0.0), None,
     f"{P}: /config: attribute 'swiglu_limit' = 0.0 out of range (0, 1e+06]"),
    ("captured twice", {}, lambda w: (rank0(w), w.add_captured(0, 0, total_recv=1), w.add_captured(0, 0, total_recv=1)),
     f"{P}: /layers/0/ranks/0/captured: written twice"),
    ("recv_x not 2-D", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_x=x0.reshape(-1))),
     f"{P}: /layers/0/ranks/0/captured/recv_x: expected 2 dimensions, found 1"),
    ("recv_x dtype", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_x=np.zeros((3, H), np.int16))),
     f"{P}: /layers/0/ranks/0/captured/recv_x: dtype is int16, expected bfloat16"),
    ("recv scales for bf16", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_scales=np.ones((3, 1), np.float32))),
     f"{P}: /layers/0/ranks/0/captured/recv_scales: given for bfloat16 tokens (only fp8 tokens have scales)"),
    ("recv scales shape", dict(token_dtype="fp8", scale_block=8),
     lambda w: (rank0(w, x=Patterns(np.zeros((3, H), np.uint8), "fp8"), x_scales=np.ones((3, 2), np.float32)),
                w.add_captured(0, 0, recv_scales=np.ones((3, 1), np.float32))),
     f"{P}: /layers/0/ranks/0/captured/recv_scales: shape [3, 1], expected [N, 2]"),
    ("recv weights shape", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_weights=np.zeros((3, 3), np.float32))),
     f"{P}: /layers/0/ranks/0/captured/recv_weights: shape [3, 3], expected [3, 2]"),
    ("recv ids shape", {}, lambda w: (rank0(w), w.add_captured(0, 0, recv_topk_ids=np.zeros((3, 3), np.int32))),
     f"{P}: /layers/0/ranks/0/captured/recv_topk_ids: shape [3, 3], expected [3, 2]"),
    ("src_token_pos not 1-D", {}, lambda w: (rank0(w), w.add_captured(0, 0, src_token_pos=np.zeros((2, 2), np.int64))),
     f"{P}: /layers/0/ranks/0/captured/src_token_pos: expected a 1-D array of at most 1073741824 entries, got shape [2, 2]"),
    ("src_token_pos as floats", {}, lambda w: (rank0(w), w.add_captured(0, 0, src_token_pos=np.zeros(2, np.float32))),
     f"{P}: /layers/0/ranks/0/captured/src_token_pos: dtype is float32, expected an integer type (int64)"),
    ("buffer_rows not a count", {}, lambda w: (rank0(w), w.add_captured(0, 0, buffer_rows=2.5)),
     f"{P}: /layers/0/ranks/0/captured: attribute 'buffer_rows' = 2.5 is not a count (a non-negative integer)"),
    ("expert_out hidden", {}, lambda w: (rank0(w), w.add_captured(0, 0, expert_out=np.zeros((5, 8), np.float32))),
     f"{P}: /layers/0/ranks/0/captured/expert_out: shape [5, 8], expected [rows, 16]"),
    ("num_layers out of range", {}, lambda w: TraceWriter(P + "x", cfg(), num_layers=0),
     f"{P}x: /layers: attribute 'num_layers' = 0 out of range [1, 65536]"),
    ("unknown weight distribution", {}, lambda w: TraceWriter(P + "x", cfg(), weight_distribution="cauchy"),
     f"{P}x: /generator/weights: distribution 'cauchy' is not uniform or normal"),
    ("weight scale out of range", {}, lambda w: TraceWriter(P + "x", cfg(), weight_scale=2000),
     f"{P}x: /generator/weights: scale 2000 out of range [0, 1000]"),
    ("part ranks out of range", {}, lambda w: TraceWriter(P + "x", cfg(), ranks=[1, 2]),
     f"{P}x: ranks [1, 2] must be a non-empty subset of [0, 2)"),
    ("rank of another part", {}, lambda w: TraceWriter(P + "x", cfg(), ranks=[1]).add_rank(0, 0, x0, ids0, w0),
     f"{P}x: /layers/0/ranks: rank 0 is not in this part's ranks [1]"),
    ("config not a TraceConfig", {}, lambda w: TraceWriter(P + "x", dict(num_ranks=1)), f"{P}x: config must be a TraceConfig"),
]
for name, config_kw, act, message in cases:
    try:
        w = TraceWriter(bad, cfg(**config_kw))
        try:
            act(w)
            w.close()
            check(False, f"{name}: not refused")
        except CaptureError as e:
            check(str(e) == message, f"{name}: message\n  {e}\nexpected\n  {message}")
        finally:
            w.discard()
    except CaptureError as e:
        check(act is None and str(e) == message, f"{name}: message\n  {e}\nexpected\n  {message}")
    check("\n" not in message, f"{name}: one line")
    for f in os.listdir(tmp):   # writers a case opened and dropped: close their files
        if f.startswith("writer_bad.h5x"):
            os.remove(os.path.join(tmp, f))
    left = [f for f in os.listdir(tmp) if f.startswith("writer_bad.h5")]
    check(not left, f"{name}: left {left} behind")

for path, message in ((os.path.join(tmp, "no_such_folder", "t.h5"), "cannot write: folder"), (tmp, "cannot write: it is a folder")):
    try:
        TraceWriter(path, cfg())
        check(False, f"{path}: not refused")
    except CaptureError as e:
        check(str(e).startswith(path + ": " + message), f"output {path}: message {e}")

# A refused capture inside `with` leaves nothing, and an earlier file at the path is untouched.
with open(bad, "wb") as f:
    f.write(b"earlier")
try:
    with TraceWriter(bad, cfg()) as w:
        rank0(w, topk_ids=ids_bad)
except CaptureError:
    pass
with open(bad, "rb") as f:
    check(f.read() == b"earlier", "a refused capture replaced an earlier file")
os.remove(bad)

finish(f"ok ({len(cases)} refusals)")
