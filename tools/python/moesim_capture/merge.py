"""Joins the part files of a multi-process capture (TraceWriter(..., ranks=[r])) into one trace.
Every part must record the same configuration and layer count; each rank must come from exactly
one part; stored expert weights may be split between parts (each expert written once). The
merged trace goes through TraceWriter again, so it passes every check a direct capture does."""
import h5py
import numpy as np

from .config import TraceConfig
from .errors import CaptureError
from .h5out import text
from .tensors import Patterns
from .writer import PART_FORMAT, TraceWriter

_CONFIG_KEYS = ("num_ranks", "num_experts", "top_k", "hidden", "intermediate", "activation", "token_dtype",
                "weight_dtype", "scale_block", "num_shared_experts", "shared_intermediate", "routed_scaling_factor",
                "router_weight_on_input", "library", "library_version")
_FAMILY_KEYS = ("topk_weights_include_scaling", "expert_bias", "shared_expert_gate", "swiglu_alpha", "swiglu_limit")


def _value(v):
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode()
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def read_config(f, path):
    g = f["config"]
    kw = {k: _value(g.attrs[k]) for k in _CONFIG_KEYS}
    kw["router_weight_on_input"] = bool(kw["router_weight_on_input"])
    kw.update({k: _value(g.attrs[k]) for k in _FAMILY_KEYS if k in g.attrs})  # schema v2
    p = g["placement"]
    kw["placement"] = text(p.attrs["kind"])
    kw["num_logical"] = int(p.attrs["num_logical"])
    if kw["placement"] != "contiguous":
        kw["expert_to_rank"] = p["expert_to_rank"][...]
        kw["physical_to_logical"] = p["physical_to_logical"][...]
    if "mori" in g:
        kw["mori"] = {k: _value(v) for k, v in g["mori"].attrs.items()}
    if "library_settings" in g:
        kw["library_settings"] = {k: _value(v) for k, v in g["library_settings"].attrs.items()}
    return TraceConfig(**kw)


def _tensor(ds):
    a = ds[...]
    return Patterns(a, text(ds.attrs["dtype"])) if "dtype" in ds.attrs else a


def _same_config(a, b):
    for k in a.__dataclass_fields__:
        x, y = getattr(a, k), getattr(b, k)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not np.array_equal(np.asarray(x), np.asarray(y)):
                return k
        elif x != y:
            return k
    return None


def merge(out_path, part_paths, command=None):
    """Writes the merged trace to out_path; returns it. Refuses (CaptureError) parts that disagree,
    overlap or leave a rank out."""
    if not part_paths:
        raise CaptureError(f"{out_path}: merge needs at least one part file")
    files = []
    try:
        for p in part_paths:
            try:
                f = h5py.File(p, "r")
            except OSError as e:
                raise CaptureError(f"{p}: cannot open: {e}") from None
            files.append(f)
            if text(f.attrs.get("format", b"")) != PART_FORMAT:
                raise CaptureError(f"{p}: /: not a moesim part file (attribute 'format' is not '{PART_FORMAT}')")
        first = files[0]
        config = read_config(first, part_paths[0])
        num_layers = int(first["layers"].attrs["num_layers"])
        gw = first["generator/weights"].attrs
        owner = {}
        for p, f in zip(part_paths, files):
            diff = _same_config(config, read_config(f, p))
            if diff:
                raise CaptureError(f"{p}: /config: '{diff}' differs from {part_paths[0]}")
            if int(f["layers"].attrs["num_layers"]) != num_layers:
                raise CaptureError(f"{p}: /layers: num_layers differs from {part_paths[0]}")
            for k in ("seed", "distribution", "scale"):
                if _value(f["generator/weights"].attrs[k]) != _value(gw[k]):
                    raise CaptureError(f"{p}: /generator/weights: '{k}' differs from {part_paths[0]}")
            for r in (int(x) for x in text(f.attrs["part_ranks"]).split(",")):
                if r in owner:
                    raise CaptureError(f"{p}: rank {r} is also in {owner[r]}")
                owner[r] = p
        missing = [r for r in range(config.num_ranks) if r not in owner]
        if missing:
            raise CaptureError(f"{out_path}: rank {missing[0]} is in none of the {len(part_paths)} part files")
        cmd = command if command is not None else text(first.attrs.get("command", b""))
        seed = int(gw["seed"])
        w = TraceWriter(out_path, config, num_layers=num_layers, command=cmd, weight_seed=seed % 2 ** 64,
                        weight_distribution=text(gw["distribution"]), weight_scale=float(gw["scale"]))
        with w:
            for l in range(num_layers):
                steps = {int(f[f"layers/{l}"].attrs.get("step", 0)) for f in files}
                if len(steps) > 1:
                    raise CaptureError(f"{out_path}: /layers/{l}: the parts record different steps {sorted(steps)}")
                w.set_step(l, steps.pop())
                for r in range(config.num_ranks):
                    f = files[part_paths.index(owner[r])]
                    _copy_rank(w, f, l, r)
                for p, f in zip(part_paths, files):
                    _copy_weights(w, f, p, l)
        return out_path
    finally:
        for f in files:
            f.close()


def _copy_rank(w, f, l, r):
    g = f[f"layers/{l}/ranks/{r}"]
    w.add_rank(l, r, _tensor(g["x"]), g["topk_ids"][...], g["topk_weights"][...],
               x_scales=g["x_scales"][...] if "x_scales" in g else None)
    if "captured" not in g:
        return
    cg = g["captured"]
    kw = {k: _tensor(cg[k]) for k in ("recv_x", "recv_scales", "recv_topk_ids", "recv_weights", "src_token_pos",
                                      "expert_out", "combine_out", "final_out") if k in cg}
    if "src_token_pos" in cg:
        kw["encoding"] = text(cg["src_token_pos"].attrs.get("encoding", b"flat"))
    for k in ("total_recv", "buffer_rows"):
        if k in cg.attrs:
            kw[k] = int(cg.attrs[k])
    w.add_captured(l, r, **kw)


def _copy_weights(w, f, p, l):
    base = f"layers/{l}/weights"
    if base not in f:
        return
    g = f[base]
    if "w1" in g:
        m1, m2 = g["w1"].attrs["written"].astype(bool), g["w2"].attrs["written"].astype(bool)
        if not np.array_equal(m1, m2):
            raise CaptureError(f"{p}: /{base}: w1 and w2 hold different experts")
        # Each run of consecutive experts one slice: parts usually hold one contiguous range.
        e = 0
        while e < len(m1):
            if not m1[e]:
                e += 1
                continue
            end = e
            while end < len(m1) and m1[end]:
                end += 1
            biases = {k: _slice(g[k], e, end) for k in ("b1", "b2") if k in g}
            w.add_weights(l, _slice(g["w1"], e, end), _slice(g["w2"], e, end), first_expert=e, **biases)
            e = end
    if "shared_w1" in g:
        biases = {k: _tensor(g[k]) for k in ("shared_b1", "shared_b2") if k in g}
        w.add_weights(l, shared_w1=_tensor(g["shared_w1"]), shared_w2=_tensor(g["shared_w2"]), **biases)
    if "shared_gate" in g:
        w.add_weights(l, shared_gate=_tensor(g["shared_gate"]))


def _slice(ds, a, b):
    v = ds[a:b]
    return Patterns(v, text(ds.attrs["dtype"])) if "dtype" in ds.attrs else v
