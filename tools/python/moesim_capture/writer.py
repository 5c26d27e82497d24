"""TraceWriter: torch tensors or numpy arrays in, a trace of traces/SCHEMA.md out. Every input is
checked (shape, dtype, id range, finiteness) before anything is written, and refused with one line
naming the file, the dataset and the index, so a bad capture fails at capture time. The file is
written under a temporary name and renamed into place by close(); a failed capture leaves nothing.

A part file (ranks=[...]) holds the ranks one process captured; `python3 -m moesim_capture merge`
joins the parts into one trace (merge.py)."""
import os

import h5py
import numpy as np

from .config import TraceConfig
from .errors import CaptureError
from .h5out import create_empty, set_attr, write_dataset
from .tensors import FLOATS, as_array, first_bad, integers, store

TRACE_FORMAT = "moesim-trace"
PART_FORMAT = "moesim-trace-part"
ENCODINGS = ("flat", "legacy", "pair")
MAX_TOKENS = 2 ** 24
MAX_ROWS = 2 ** 30
SCHEMA_VERSION = 2


class TraceWriter:
    def __init__(self, path, config, num_layers=1, ranks=None, command="", weight_seed=0,
                 weight_distribution="normal", weight_scale=1.0):
        """`config`: a TraceConfig. `ranks`: the ranks this process writes (a part file), or None
        for a whole trace. Weights not stored for a layer come from the generator spec
        (weight_seed, weight_distribution, weight_scale)."""
        self.path = str(path)
        if not isinstance(config, TraceConfig):
            raise CaptureError(f"{self.path}: config must be a TraceConfig")
        self.config = c = config.checked(f"{self.path}: /config")
        if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or \
                not 1 <= num_layers <= 65536:
            raise CaptureError(f"{self.path}: /layers: attribute 'num_layers' = {num_layers!r} out of range [1, 65536]")
        self.num_layers = int(num_layers)
        if weight_distribution not in ("uniform", "normal"):
            raise CaptureError(f"{self.path}: /generator/weights: distribution '{weight_distribution}' is not uniform "
                               "or normal")
        if not 0.0 <= float(weight_scale) <= 1000.0:
            raise CaptureError(f"{self.path}: /generator/weights: scale {weight_scale} out of range [0, 1000]")
        if ranks is None:
            self.ranks = list(range(c.num_ranks))
        else:
            self.ranks = sorted({int(r) for r in ranks})
            bad = [r for r in self.ranks if not 0 <= r < c.num_ranks]
            if not self.ranks or bad:
                raise CaptureError(f"{self.path}: ranks {list(ranks)} must be a non-empty subset of [0, {c.num_ranks})")
        self.part = ranks is not None
        _check_output(self.path)
        self._tmp = f"{self.path}.tmp{os.getpid()}"
        self._f = h5py.File(self._tmp, "w")
        self.tokens = {}           # (layer, rank) -> T_r
        self.total_recv = {}       # (layer, rank) -> total_recv
        self.written = {}          # (layer, dataset) -> bool mask of experts written
        try:
            self._write_head(command, int(weight_seed), weight_distribution, float(weight_scale))
        except BaseException:
            self.discard()
            raise

    # ---- what a capture adds ----

    def add_rank(self, layer, rank, x, topk_ids, topk_weights, x_scales=None, step=None):
        """One rank's input to dispatch: x [T, H] (token_dtype), x_scales [T, B] (fp8 tokens),
        topk_ids [T, K] (global physical ids, -1 for none), topk_weights [T, K] (float32, the
        router weights without routed_scaling_factor)."""
        c = self.config
        g = self._rank_path(layer, rank)
        if (layer, rank) in self.tokens:
            raise CaptureError(f"{self.path}: {g}: written twice")
        xs, xname = store(x, [c.token_dtype], f"{self.path}: {g}/x")
        if xs.ndim != 2 or xs.shape[1] != c.hidden:
            raise CaptureError(f"{self.path}: {g}/x: shape {list(xs.shape)}, expected [T, {c.hidden}]")
        T = xs.shape[0]
        if T > MAX_TOKENS:
            raise CaptureError(f"{self.path}: {g}: attribute 'num_tokens' = {T} out of range [0, {MAX_TOKENS}]")
        if T * c.hidden > 2 ** 33:
            raise CaptureError(f"{self.path}: {g}: absurd size: {T} tokens x hidden {c.hidden}")
        scales = None
        if c.is_fp8:
            if x_scales is None:
                raise CaptureError(f"{self.path}: {g}/x_scales: missing (fp8 tokens need their scales)")
            scales = self._float32(x_scales, f"{g}/x_scales", (T, c.scale_blocks))
        elif x_scales is not None:
            raise CaptureError(f"{self.path}: {g}/x_scales: given for {c.token_dtype} tokens (only fp8 tokens have "
                               "scales)")
        ids = self._ids(topk_ids, f"{g}/topk_ids", (T, c.top_k), T)
        w = self._float32(topk_weights, f"{g}/topk_weights", (T, c.top_k))
        if step is not None:
            self._layer_group(layer).attrs["step"] = np.int64(step)
        grp = self._f.require_group(g)
        set_attr(grp, "num_tokens", T)
        write_dataset(grp, "x", xs, "token,hidden", xname)
        if scales is not None:
            write_dataset(grp, "x_scales", scales, "token,block")
        write_dataset(grp, "topk_ids", ids, "token,slot")
        write_dataset(grp, "topk_weights", w, "token,slot")
        self.tokens[(layer, rank)] = T

    def add_weights(self, layer, w1=None, w2=None, shared_w1=None, shared_w2=None, first_expert=0, b1=None, b2=None,
                    shared_b1=None, shared_b2=None, shared_gate=None):
        """Expert weights in moesim's layout: w1 [n, 2I (gated: gate rows then up rows) or I, H],
        w2 [n, H, I] for logical experts [first_expert, first_expert + n) (a rank may write only
        its own experts); shared_w1 [S, 2Is or Is, H], shared_w2 [S, H, Is], all of them.
        expert_bias: b1 [n, 2I or I] (gate then up, as w1's rows) and b2 [n, H] with w1/w2,
        shared_b1 [S, 2Is or Is] and shared_b2 [S, H] with the shared ones. shared_expert_gate:
        shared_gate [H], the vector x . shared_gate is taken with."""
        c = self.config
        base = f"{self._layer_path(layer)}/weights"
        L = c.num_logical
        todo = []
        for name, v, pair in (("b1", b1, w1), ("b2", b2, w1), ("shared_b1", shared_b1, shared_w1),
                              ("shared_b2", shared_b2, shared_w1)):
            if v is not None and not c.expert_bias:
                raise CaptureError(f"{self.path}: {base}/{name}: given, but expert_bias is 0")
            if c.expert_bias and (v is None) != (pair is None):
                raise CaptureError(f"{self.path}: {base}/{name}: expert_bias is 1: biases go with their weights")
        if shared_gate is not None:
            if not c.shared_expert_gate:
                raise CaptureError(f"{self.path}: {base}/shared_gate: given, but shared_expert_gate is 0")
            a, dname = store(shared_gate, [c.weight_dtype], f"{self.path}: {base}/shared_gate")
            if a.shape != (c.hidden,):
                raise CaptureError(f"{self.path}: {base}/shared_gate: shape {list(a.shape)}, expected [{c.hidden}]")
            todo.append(("shared_gate", a[None], dname, 1, 0))   # one "expert": written once
        if (w1 is None) != (w2 is None):
            raise CaptureError(f"{self.path}: {base}: w1 and w2 go together")
        if w1 is not None:
            a1, n1 = store(w1, [c.weight_dtype], f"{self.path}: {base}/w1")
            a2, n2 = store(w2, [c.weight_dtype], f"{self.path}: {base}/w2")
            n = a1.shape[0] if a1.ndim == 3 else -1
            if a1.ndim != 3 or a1.shape[1:] != (c.w1_rows, c.hidden):
                raise CaptureError(f"{self.path}: {base}/w1: shape {list(a1.shape)}, expected [n, {c.w1_rows}, "
                                   f"{c.hidden}]")
            if a2.shape != (n, c.hidden, c.intermediate):
                raise CaptureError(f"{self.path}: {base}/w2: shape {list(a2.shape)}, expected [{n}, {c.hidden}, "
                                   f"{c.intermediate}]")
            if not 0 <= first_expert <= L - n:
                raise CaptureError(f"{self.path}: {base}/w1: experts [{first_expert}, {first_expert + n}) out of "
                                   f"range [0, {L})")
            todo += [("w1", a1, n1, L, first_expert), ("w2", a2, n2, L, first_expert)]
            if c.expert_bias:
                todo += self._biases(base, "b1", b1, "b2", b2, n, c.w1_rows, L, first_expert)
        if (shared_w1 is None) != (shared_w2 is None):
            raise CaptureError(f"{self.path}: {base}: shared_w1 and shared_w2 go together")
        if shared_w1 is not None:
            S = c.num_shared_experts
            if S == 0:
                raise CaptureError(f"{self.path}: {base}/shared_w1: given, but num_shared_experts is 0")
            s1, m1 = store(shared_w1, [c.weight_dtype], f"{self.path}: {base}/shared_w1")
            s2, m2 = store(shared_w2, [c.weight_dtype], f"{self.path}: {base}/shared_w2")
            if s1.shape != (S, c.shared_w1_rows, c.hidden):
                raise CaptureError(f"{self.path}: {base}/shared_w1: shape {list(s1.shape)}, expected [{S}, "
                                   f"{c.shared_w1_rows}, {c.hidden}]")
            if s2.shape != (S, c.hidden, c.shared_intermediate):
                raise CaptureError(f"{self.path}: {base}/shared_w2: shape {list(s2.shape)}, expected [{S}, "
                                   f"{c.hidden}, {c.shared_intermediate}]")
            todo += [("shared_w1", s1, m1, S, 0), ("shared_w2", s2, m2, S, 0)]
            if c.expert_bias:
                todo += self._biases(base, "shared_b1", shared_b1, "shared_b2", shared_b2, S, c.shared_w1_rows, S, 0)
        for name, a, dname, total, first in todo:
            mask = self.written.get((layer, name))
            if mask is not None and mask[first:first + a.shape[0]].any():
                e = first + int(np.argmax(mask[first:first + a.shape[0]]))
                raise CaptureError(f"{self.path}: {base}/{name}: expert {e} written twice")
        grp = self._f.require_group(base)
        for name, a, dname, total, first in todo:
            if name == "shared_gate":
                write_dataset(grp, name, a[0], None, dname)   # no axes, like the other weights
                self.written[(layer, name)] = np.ones(1, dtype=bool)
                continue
            if name not in grp:
                create_empty(grp, name, (total,) + a.shape[1:], a.dtype, dtype=dname)
                self.written[(layer, name)] = np.zeros(total, dtype=bool)
            grp[name][first:first + a.shape[0]] = a
            self.written[(layer, name)][first:first + a.shape[0]] = True

    def _biases(self, base, n1, v1, n2, v2, n, rows1, total, first):
        c = self.config
        a1, d1 = store(v1, [c.weight_dtype], f"{self.path}: {base}/{n1}")
        a2, d2 = store(v2, [c.weight_dtype], f"{self.path}: {base}/{n2}")
        for name, a, want in ((n1, a1, (n, rows1)), (n2, a2, (n, c.hidden))):
            if a.shape != want:
                raise CaptureError(f"{self.path}: {base}/{name}: shape {list(a.shape)}, expected {list(want)}")
        return [(n1, a1, d1, total, first), (n2, a2, d2, total, first)]

    def add_captured(self, layer, rank, recv_x=None, recv_scales=None, recv_topk_ids=None, recv_weights=None,
                     src_token_pos=None, encoding="flat", total_recv=None, buffer_rows=None, expert_out=None,
                     combine_out=None, final_out=None):
        """The receive side of rank `rank` (add_rank first): the library's buffers as it returned
        them. Rows past total_recv are stale and kept as they are; only rows [0, total_recv) of the
        ids and weights are checked."""
        c = self.config
        g = self._rank_path(layer, rank) + "/captured"
        if (layer, rank) not in self.tokens:
            raise CaptureError(f"{self.path}: {g}: add_rank({layer}, {rank}) must come first")
        if (layer, rank) in self.total_recv:
            raise CaptureError(f"{self.path}: {g}: written twice")
        T, K = self.tokens[(layer, rank)], c.top_k
        out, n = [], None

        def rows_of(name, a):
            nonlocal n
            if a.ndim != 2:
                raise CaptureError(f"{self.path}: {g}/{name}: expected 2 dimensions, found {a.ndim}")
            if n is not None and a.shape[0] != n:
                raise CaptureError(f"{self.path}: {g}/{name}: has {a.shape[0]} rows, other recv datasets {n}")
            n = a.shape[0]
            if n > MAX_ROWS:
                raise CaptureError(f"{self.path}: {g}: absurd receive buffer of {n} rows")

        valid = None if total_recv is None else self._count(total_recv, g, "total_recv")
        if recv_x is not None:
            a, name = store(recv_x, [c.token_dtype], f"{self.path}: {g}/recv_x", finite=False)
            rows_of("recv_x", a)
            if a.shape[1] != c.hidden:
                raise CaptureError(f"{self.path}: {g}/recv_x: shape {list(a.shape)}, expected [N, {c.hidden}]")
            out.append(("recv_x", a, "row,hidden", name))
        if recv_scales is not None:
            if not c.is_fp8:
                raise CaptureError(f"{self.path}: {g}/recv_scales: given for {c.token_dtype} tokens (only fp8 tokens "
                                   "have scales)")
            a, _ = store(recv_scales, ["float32"], f"{self.path}: {g}/recv_scales", finite=False)
            rows_of("recv_scales", a)
            if a.shape[1] != c.scale_blocks:
                raise CaptureError(f"{self.path}: {g}/recv_scales: shape {list(a.shape)}, expected [N, "
                                   f"{c.scale_blocks}]")
            out.append(("recv_scales", a, "row,block", None))
        ids = w = None
        if recv_topk_ids is not None:
            ids = integers(recv_topk_ids, f"{self.path}: {g}/recv_topk_ids")
            rows_of("recv_topk_ids", ids)
        if recv_weights is not None:
            w, _ = store(recv_weights, ["float32"], f"{self.path}: {g}/recv_weights", finite=False)
            rows_of("recv_weights", w)
        if valid is not None and n is not None and valid > n:
            raise CaptureError(f"{self.path}: {g}: total_recv {valid} exceeds the {n} rows captured")
        checked = valid if valid is not None else n
        if ids is not None:
            self._check_ids(ids, f"{g}/recv_topk_ids", (n, K), checked)
            out.append(("recv_topk_ids", ids, "row,slot", None))
        if w is not None:
            if w.shape != (n, K):
                raise CaptureError(f"{self.path}: {g}/recv_weights: shape {list(w.shape)}, expected [{n}, {K}]")
            self._check_finite_rows(w, f"{g}/recv_weights", checked)
            out.append(("recv_weights", w, "row,slot", None))
        if src_token_pos is not None:
            pos = integers(src_token_pos, f"{self.path}: {g}/src_token_pos", np.int64)
            if pos.ndim != 1 or pos.shape[0] > MAX_ROWS:
                raise CaptureError(f"{self.path}: {g}/src_token_pos: expected a 1-D array of at most {MAX_ROWS} "
                                   f"entries, got shape {list(pos.shape)}")
            if valid is not None and pos.shape[0] < valid:
                raise CaptureError(f"{self.path}: {g}/src_token_pos: has {pos.shape[0]} entries, fewer than "
                                   f"total_recv {valid}")
            if encoding not in ENCODINGS:
                raise CaptureError(f"{self.path}: {g}/src_token_pos: encoding '{encoding}' is not one of "
                                   f"{', '.join(ENCODINGS)}")
            out.append(("src_token_pos", pos, "row", None))
        for name, value, rows in (("expert_out", expert_out, None), ("combine_out", combine_out, T),
                                  ("final_out", final_out, T)):
            if value is None:
                continue
            a, dname = store(value, list(FLOATS), f"{self.path}: {g}/{name}", finite=False)
            if (a.ndim != 2 or a.shape[1] != c.hidden or a.shape[0] > MAX_ROWS
                    or (rows is not None and a.shape[0] != rows)):
                want = f"[{rows}, {c.hidden}]" if rows is not None else f"[rows, {c.hidden}]"
                raise CaptureError(f"{self.path}: {g}/{name}: shape {list(a.shape)}, expected {want}")
            out.append((name, a, "row,hidden" if rows is None else "token,hidden", dname))
        rows_total = None if buffer_rows is None else self._count(buffer_rows, g, "buffer_rows")

        grp = self._f.require_group(g)
        if valid is not None:
            set_attr(grp, "total_recv", valid)
        if rows_total is not None:
            set_attr(grp, "buffer_rows", rows_total)
        for name, a, axes, dname in out:
            ds = write_dataset(grp, name, a, axes, dname)
            if name == "src_token_pos":
                set_attr(ds, "encoding", encoding)
        self.total_recv[(layer, rank)] = valid if valid is not None else 0

    def set_step(self, layer, step):
        self._layer_group(layer).attrs["step"] = np.int64(step)

    # ---- finishing ----

    def close(self):
        """Checks the capture is complete (every rank of every layer, every expert of stored
        weights), then renames the file into place. Returns the path."""
        if self._f is None:
            return self.path
        try:
            self._check_complete()
            if self.part:
                set_attr(self._f, "part_ranks", ",".join(str(r) for r in self.ranks))
                for (layer, name), mask in self.written.items():
                    self._f[f"{self._layer_path(layer)}/weights/{name}"].attrs.create("written", mask.astype(np.int8))
            self._f.close()
            self._f = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self):
        """Drops the capture: nothing is left at the path or the temporary name."""
        if self._f is not None:
            try:
                self._f.close()
            except Exception:
                pass
            self._f = None
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.close()
        else:
            self.discard()
        return False

    # ---- helpers ----

    def _write_head(self, command, seed, distribution, scale):
        c, f = self.config, self._f
        set_attr(f, "format", PART_FORMAT if self.part else TRACE_FORMAT)
        set_attr(f, "schema_version", SCHEMA_VERSION)
        set_attr(f, "moesim_version", "moesim_capture (python)")
        set_attr(f, "command", command)
        g = f.create_group("config")
        for k in ("num_ranks", "num_experts", "top_k", "hidden", "intermediate", "activation", "token_dtype",
                  "weight_dtype", "scale_block", "num_shared_experts", "shared_intermediate", "routed_scaling_factor",
                  "router_weight_on_input", "library", "library_version", "topk_weights_include_scaling",
                  "expert_bias", "shared_expert_gate"):
            set_attr(g, k, getattr(c, k))
        if c.activation == "swiglu_oai_and_mul":
            set_attr(g, "swiglu_alpha", c.swiglu_alpha)
            set_attr(g, "swiglu_limit", c.swiglu_limit)
        p = g.create_group("placement")
        set_attr(p, "kind", c.placement)
        set_attr(p, "num_logical", c.num_logical)
        if c.placement != "contiguous":
            write_dataset(p, "expert_to_rank", c.expert_to_rank)
            write_dataset(p, "physical_to_logical", c.physical_to_logical)
        if c.mori is not None:
            m = g.create_group("mori")
            for k, v in c.mori.items():
                set_attr(m, k, v)
        if c.library_settings:
            s = g.create_group("library_settings")
            for k, v in sorted(c.library_settings.items()):
                set_attr(s, k, v)
        gw = f.create_group("generator/weights")
        set_attr(gw, "seed", seed - 2 ** 64 if seed >= 2 ** 63 else seed)  # a uint64 seed by its bits
        set_attr(gw, "distribution", distribution)
        set_attr(gw, "scale", scale)
        layers = f.create_group("layers")
        set_attr(layers, "num_layers", self.num_layers)
        for l in range(self.num_layers):
            set_attr(layers.create_group(str(l)), "step", 0)

    def _layer_path(self, layer):
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < self.num_layers:
            raise CaptureError(f"{self.path}: /layers: layer {layer!r} out of range [0, {self.num_layers})")
        return f"/layers/{int(layer)}"

    def _layer_group(self, layer):
        return self._f[self._layer_path(layer)]

    def _rank_path(self, layer, rank):
        base = self._layer_path(layer)
        if rank not in self.ranks:
            where = f"[0, {self.config.num_ranks})" if not self.part else f"this part's ranks {self.ranks}"
            raise CaptureError(f"{self.path}: {base}/ranks: rank {rank!r} is not in {where}")
        return f"{base}/ranks/{int(rank)}"

    def _float32(self, value, ds, shape):
        a, _ = store(value, ["float32"], f"{self.path}: {ds}")
        if a.shape != shape:
            raise CaptureError(f"{self.path}: {ds}: shape {list(a.shape)}, expected {list(shape)}")
        return a

    def _ids(self, value, ds, shape, rows):
        a = integers(value, f"{self.path}: {ds}")
        self._check_ids(a, ds, shape, rows)
        return a

    def _check_ids(self, a, ds, shape, rows):
        E = self.config.num_experts
        if a.shape != shape:
            raise CaptureError(f"{self.path}: {ds}: shape {list(a.shape)}, expected {list(shape)}")
        head = a[:rows]
        bad = (head < -1) | (head >= E)
        if bad.any():
            at = np.unravel_index(int(np.argmax(bad)), bad.shape)
            raise CaptureError(f"{self.path}: {ds}: index {first_bad(bad)}: id {int(head[at])} out of range [-1, {E})")

    def _check_finite_rows(self, a, ds, rows):
        head = a[:rows]
        bad = ~np.isfinite(head)
        if bad.any():
            at = np.unravel_index(int(np.argmax(bad)), bad.shape)
            raise CaptureError(f"{self.path}: {ds}: index {first_bad(bad)}: value {head[at]} is not finite")

    def _count(self, value, g, name):
        a, have = as_array(value)
        if a.size != 1 or not np.issubdtype(a.dtype, np.integer) or int(a.reshape(-1)[0]) < 0:
            raise CaptureError(f"{self.path}: {g}: attribute '{name}' = {value!r} is not a count (a non-negative "
                               "integer)")
        v = int(a.reshape(-1)[0])
        if v > 2 ** 40:
            raise CaptureError(f"{self.path}: {g}: attribute '{name}' = {v} out of range [0, {2 ** 40}]")
        return v

    def _check_complete(self):
        c = self.config
        for l in range(self.num_layers):
            for r in self.ranks:
                if (l, r) not in self.tokens:
                    raise CaptureError(f"{self.path}: /layers/{l}/ranks/{r}: never written (add_rank)")
            for name in ("w1", "w2", "shared_w1", "shared_w2", "b1", "b2", "shared_b1", "shared_b2"):
                mask = self.written.get((l, name))
                if mask is not None and not self.part and not mask.all():
                    e = int(np.argmin(mask))
                    raise CaptureError(f"{self.path}: /layers/{l}/weights/{name}: expert {e} never written")
            routed, shared = (l, "w1") in self.written, (l, "shared_w1") in self.written
            if routed and c.num_shared_experts > 0 and not shared and not self.part:
                raise CaptureError(f"{self.path}: /layers/{l}/weights/shared_w1: missing (num_shared_experts is "
                                   f"{c.num_shared_experts})")
            if shared and not routed and not self.part:
                raise CaptureError(f"{self.path}: /layers/{l}/weights/w1: missing (shared weights were stored)")
            for flag, what in (("expert_bias", "b1"), ("shared_expert_gate", "shared_gate")):
                if getattr(c, flag) and not self.part and (l, what) not in self.written:
                    raise CaptureError(f"{self.path}: /layers/{l}/weights/{what}: missing ({flag} = 1 needs stored "
                                       "weights with it: add_weights)")
            if not self.part:
                pairs = sum(self.tokens[(l, r)] for r in self.ranks) * c.top_k
                for r in self.ranks:
                    if self.total_recv.get((l, r), 0) > pairs:
                        raise CaptureError(f"{self.path}: /layers/{l}/ranks/{r}/captured: total_recv "
                                           f"{self.total_recv[(l, r)]} "
                                           f"exceeds the layer's {pairs} (token, expert) pairs")


def _check_output(path):
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CaptureError(f"{path}: cannot write: it is a folder")
    if not os.path.isdir(folder):
        raise CaptureError(f"{path}: cannot write: folder {os.path.dirname(path) or '.'} does not exist")
