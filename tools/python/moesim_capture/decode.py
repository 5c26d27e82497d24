"""Library buffers -> the captured side of a trace (TraceWriter.add_captured's arguments).

- MORI: get_dispatch_src_token_pos() values, `flat` (srcPe * MaxNumTokensToSend + token,
  MaxNumTokensToSend = R * max_num_inp_token_per_rank; MORI at HEAD) or `legacy`
  (srcPe * max_num_inp_token_per_rank + token; before 2026-04). Rows are already flat.
- DeepEP low latency: recv_x [E_local, R * max_tokens, H], packed_recv_count [E_local],
  packed_recv_src_info [E_local, R * max_tokens] (the source token), packed_recv_layout_range
  [E_local, R] int64 (count in the low 32 bits, begin in the high 32, as DeepEP's pack2 writes it).
- pplx: out_expert_x [E_local, max_tokens * num_dp, H] with out_expert_num_tokens [E_local].

Expert-major layouts are flattened expert by expert (rows [0, count) of each), the order moesim's
deepep-ll and pplx models use; such rows carry the `pair` encoding
(srcPe * max_tokens + token) * K + slot and, as in moesim's models, the row's local expert at
the slot it was sent for and -1 elsewhere (weights: the source's weight there, 0 elsewhere)."""
import numpy as np

from .errors import CaptureError
from .tensors import Patterns, as_array


def _ints(a, name):
    a, have = as_array(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise CaptureError(f"{name}: dtype is {have}, expected an integer type")
    return a.astype(np.int64)


def mori_src_token_pos(pos, encoding, num_ranks, max_num_inp_token_per_rank, total_recv=None):
    """(src_rank, src_token) int64 arrays for the first total_recv positions."""
    pos = _ints(pos, "src_token_pos").reshape(-1)
    if total_recv is not None:
        pos = pos[:int(total_recv)]
    m = int(max_num_inp_token_per_rank)
    if m <= 0 or num_ranks <= 0:
        raise CaptureError("src_token_pos: max_num_inp_token_per_rank and num_ranks must be positive")
    if encoding == "flat":
        stride = num_ranks * m
    elif encoding == "legacy":
        stride = m
    else:
        raise CaptureError(f"src_token_pos: encoding '{encoding}' is not flat or legacy (MORI's encodings)")
    rank, token = pos // stride, pos % stride
    bad = (pos < 0) | (rank >= num_ranks) | (token >= m)
    if bad.any():
        i = int(np.argmax(bad))
        raise CaptureError(f"src_token_pos: index [{i}]: {int(pos[i])} does not decode ({encoding}, "
                           f"{num_ranks} ranks, max_num_inp_token_per_rank {m})")
    return rank, token


def mori_encode(src_rank, src_token, encoding, num_ranks, max_num_inp_token_per_rank):
    """The inverse of mori_src_token_pos (for tests and synthetic captures)."""
    r, t, m = np.asarray(src_rank, np.int64), np.asarray(src_token, np.int64), int(max_num_inp_token_per_rank)
    if encoding == "flat":
        return r * (num_ranks * m) + t
    if encoding == "legacy":
        return r * m + t
    raise CaptureError(f"src_token_pos: encoding '{encoding}' is not flat or legacy")


def deepep_ll_ranges(layout_range):
    """(begin, count) int64 arrays [E_local, R] of packed_recv_layout_range."""
    v = _ints(layout_range, "packed_recv_layout_range").astype(np.uint64)
    return (v >> np.uint64(32)).astype(np.int64), (v & np.uint64(0xFFFFFFFF)).astype(np.int64)


def deepep_ll_pack(begin, count):
    """The inverse of deepep_ll_ranges."""
    return ((np.asarray(begin, np.uint64) << np.uint64(32)) | np.asarray(count, np.uint64)).astype(np.int64)


def _flatten(recv_x, counts, name):
    bits, dtype = as_array(recv_x)
    if bits.ndim != 3:
        raise CaptureError(f"{name}: expected [E_local, capacity, H], got shape {list(bits.shape)}")
    n_local, cap, H = bits.shape
    counts = _ints(counts, name + " counts").reshape(-1)
    if counts.shape[0] != n_local or (counts < 0).any() or (counts > cap).any():
        raise CaptureError(f"{name}: counts {counts.tolist()} do not fit {n_local} experts of {cap} rows")
    rows = np.concatenate([bits[e, :counts[e]] for e in range(n_local)]) if n_local else bits.reshape(0, H)
    out = Patterns(rows, dtype) if dtype in ("bfloat16", "float16", "float8_e4m3fn", "float8_e4m3fnuz") else rows
    return out, counts, n_local * cap


def deepep_ll(rank, recv_x, recv_count, src_info, layout_range, topk_ids, topk_weights,
              num_max_dispatch_tokens_per_rank, num_experts, recv_scales=None):
    """add_captured arguments for rank `rank` of a DeepEP low-latency dispatch. `topk_ids` and
    `topk_weights` are every rank's routing (lists of [T_r, K]): the slot a row was sent for is
    the k-th occurrence of its expert in the source token's ids (k = how many rows of that
    (token, expert) came before it)."""
    R = len(topk_ids)
    ids = [_ints(t, "topk_ids") for t in topk_ids]
    ws = [np.asarray(as_array(w)[0], np.float32) for w in topk_weights]
    K = ids[0].shape[1]
    rows, counts, buffer_rows = _flatten(recv_x, recv_count, "recv_x")
    n_local = counts.shape[0]
    begin, count = deepep_ll_ranges(layout_range)
    info = _ints(src_info, "src_info")
    m = int(num_max_dispatch_tokens_per_rank)
    n = int(counts.sum())
    pos = np.empty(n, np.int64)
    rid = np.full((n, K), -1, np.int32)
    rw = np.zeros((n, K), np.float32)
    row = 0
    for e in range(n_local):
        g = rank * n_local + e
        src_rank = np.full(counts[e], -1, np.int64)
        for s in range(R):
            b, c = int(begin[e, s]), int(count[e, s])
            if c and (b < 0 or b + c > counts[e]):
                raise CaptureError(f"packed_recv_layout_range: [{e}, {s}]: range [{b}, {b + c}) outside expert {e}'s "
                                   f"{counts[e]} rows")
            src_rank[b:b + c] = s
        used = {}
        for i in range(counts[e]):
            s, t = int(src_rank[i]), int(info[e, i])
            if s < 0:
                raise CaptureError(f"packed_recv_layout_range: row {i} of expert {e} is in no source rank's range")
            if not 0 <= t < ids[s].shape[0]:
                raise CaptureError(f"src_info: [{e}, {i}]: token {t} out of range [0, {ids[s].shape[0]}) of rank {s}")
            k_used = used.get((s, t), 0)
            slots = np.nonzero(ids[s][t] == g)[0]
            if k_used >= len(slots):
                raise CaptureError(f"src_info: [{e}, {i}]: rank {s} token {t} did not route to expert {g} that often")
            k = int(slots[k_used])
            used[(s, t)] = k_used + 1
            pos[row] = (s * m + t) * K + k
            rid[row, k] = e
            rw[row, k] = ws[s][t, k]
            row += 1
    out = dict(recv_x=rows, recv_topk_ids=rid, recv_weights=rw, src_token_pos=pos, encoding="pair",
               total_recv=n, buffer_rows=buffer_rows)
    if recv_scales is not None:
        out["recv_scales"], _, _ = _flatten(recv_scales, recv_count, "recv_scales")
    return out


def pplx(out_expert_x, out_expert_num_tokens, out_expert_x_scale=None):
    """add_captured arguments of a pplx dispatch: the valid rows of each local expert, in expert
    order, plus total_recv and buffer_rows. pplx returns no source positions or ids."""
    rows, counts, buffer_rows = _flatten(out_expert_x, out_expert_num_tokens, "out_expert_x")
    out = dict(recv_x=rows, total_recv=int(counts.sum()), buffer_rows=buffer_rows)
    if out_expert_x_scale is not None:
        out["recv_scales"], _, _ = _flatten(out_expert_x_scale, out_expert_num_tokens, "out_expert_x_scale")
    return out


def pplx_row_experts(out_expert_num_tokens):
    """The local expert of each flattened pplx row."""
    counts = _ints(out_expert_num_tokens, "out_expert_num_tokens").reshape(-1)
    return np.repeat(np.arange(counts.shape[0], dtype=np.int32), counts)


def mori_trace_config(mori_config, intermediate, **kw):
    """TraceConfig keyword arguments from a MORI EpDispatchCombineConfig (the fields SGLang's
    init_mori_op passes: world_size, num_experts_per_rank, num_experts_per_token, hidden_dim,
    max_num_inp_token_per_rank, max_total_recv_tokens, kernel_type, gpu_per_node, quant_type).
    `intermediate` and the rest (activation, dtypes, shared experts, ...) come from the model."""
    c = mori_config
    kernel = getattr(c, "kernel_type", "IntraNode")
    kernel = getattr(kernel, "name", str(kernel))
    out = dict(num_ranks=int(c.world_size), num_experts=int(c.num_experts_per_rank) * int(c.world_size),
               top_k=int(c.num_experts_per_token), hidden=int(c.hidden_dim), intermediate=int(intermediate),
               library="mori",
               mori=dict(max_num_inp_token_per_rank=int(c.max_num_inp_token_per_rank),
                         max_total_recv_tokens=int(getattr(c, "max_total_recv_tokens", 0) or 0),
                         kernel_type=kernel, gpus_per_node=int(getattr(c, "gpu_per_node", 8))),
               library_settings={"quant_type": str(getattr(c, "quant_type", "none"))})
    out.update(kw)
    return out
