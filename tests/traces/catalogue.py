#!/usr/bin/python3
"""A catalogue of malformed traces, each made from the bundled default trace by one change
(a dataset removed, reshaped, retyped or given a bad value; an attribute removed or out of range;
links, truncations, files that are no HDF5), run through every command that reads a trace.
Each run must: exit 2, print one line on stderr that starts "moesim CMD: " and names the file,
write no output, and leave the input byte for byte as it was; none may crash, hang or use more
memory than checked_run.py's bound.

usage: catalogue.py MOESIM SOURCE_DIR TMP_DIR"""
import os
import shutil
import sys

import h5py
import numpy as np

import checked_run

moesim, source, tmp = sys.argv[1], sys.argv[2], os.path.join(sys.argv[3], "catalogue")
base = os.path.join(source, "traces", "bundled", "default.h5")
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
RANKS = [f"layers/{l}/ranks/{r}" for l in range(2) for r in range(4)]
variants = []  # (name, function changing an h5py.File open for writing)


def replace(f, path, data, attrs=None):
    old = dict(f[path].attrs) if path in f else {}
    del f[path]
    f[path] = data
    for k, v in (old if attrs is None else attrs).items():
        f[path].attrs[k] = v


def add(name, fn):
    variants.append((name, fn))


for rp in RANKS:
    tag = rp.replace("/", "_")
    for ds in ("topk_ids", "topk_weights", "x"):
        p = f"{rp}/{ds}"
        add(f"{tag}_{ds}_missing", lambda f, p=p: f.__delitem__(p))
        add(f"{tag}_{ds}_short", lambda f, p=p: replace(f, p, f[p][:-1]))
        add(f"{tag}_{ds}_retyped", lambda f, p=p, ds=ds: replace(
            f, p, f[p][()].astype(np.float64 if ds == "topk_ids" else np.int32)))
    add(f"{tag}_id_99", lambda f, p=f"{rp}/topk_ids": f[p].__setitem__((1, 1), 99))
    add(f"{tag}_id_-5", lambda f, p=f"{rp}/topk_ids": f[p].__setitem__((2, 0), -5))
    add(f"{tag}_weight_nan", lambda f, p=f"{rp}/topk_weights": f[p].__setitem__((3, 2), np.nan))
    add(f"{tag}_weight_inf", lambda f, p=f"{rp}/topk_weights": f[p].__setitem__((0, 3), np.inf))
    add(f"{tag}_x_nan", lambda f, p=f"{rp}/x": f[p].__setitem__((1, 5), 0x7FC0))
    add(f"{tag}_x_dtype_f16", lambda f, p=f"{rp}/x": f[p].attrs.__setitem__("dtype", "float16"))
    add(f"{tag}_x_dtype_missing", lambda f, p=f"{rp}/x": f[p].attrs.__delitem__("dtype"))
    for label, v in (("missing", None), ("negative", -1), ("huge", 2**40), ("string", "ten"), ("off_by_one", 1)):
        def fn(f, rp=rp, v=v, label=label):
            if v is None:
                del f[rp].attrs["num_tokens"]
            elif label == "off_by_one":
                f[rp].attrs["num_tokens"] = int(f[rp].attrs["num_tokens"]) + 1
            else:
                f[rp].attrs["num_tokens"] = v
        add(f"{tag}_num_tokens_{label}", fn)

for key in ("activation", "hidden", "intermediate", "num_experts", "num_ranks", "top_k", "token_dtype",
            "weight_dtype", "scale_block"):
    add(f"config_{key}_missing", lambda f, k=key: f["config"].attrs.__delitem__(k))
for key, values in (("hidden", (0, -1, 2**40, 64)), ("num_ranks", (0, 3, -2)), ("top_k", (0, 100, 5)),
                    ("num_experts", (0, 15, 2**30)), ("intermediate", (0, 33)), ("scale_block", (0, -128)),
                    ("activation", ("bogus", "")), ("token_dtype", ("fp4", "int8")), ("weight_dtype", ("fp4",)),
                    ("routed_scaling_factor", (np.nan, 1e308, -2.0)), ("router_weight_on_input", (7,)),
                    ("num_shared_experts", (-1, 1))):
    for v in values:
        add(f"config_{key}_{v}", lambda f, k=key, v=v: f["config"].attrs.__setitem__(k, v))
add("root_format", lambda f: f.attrs.__setitem__("format", "moesim-golden"))
add("root_format_missing", lambda f: f.attrs.__delitem__("format"))
add("root_schema_3", lambda f: f.attrs.__setitem__("schema_version", 3))
for v in (0, 3, -1):
    add(f"num_layers_{v}", lambda f, v=v: f["layers"].attrs.__setitem__("num_layers", v))
for l in range(2):
    for w in ("w1", "w2"):
        p = f"layers/{l}/weights/{w}"
        add(f"l{l}_{w}_missing", lambda f, p=p: f.__delitem__(p))
        add(f"l{l}_{w}_short", lambda f, p=p: replace(f, p, f[p][:-1]))
        add(f"l{l}_{w}_retyped", lambda f, p=p: replace(f, p, f[p][()].astype(np.int32), {}))
        add(f"l{l}_{w}_nan", lambda f, p=p: f[p].__setitem__((0, 0, 0), 0x7FC0))
add("generator_distribution", lambda f: f["generator/weights"].attrs.__setitem__("distribution", "cauchy"))
add("generator_scale_negative", lambda f: f["generator/weights"].attrs.__setitem__("scale", -1.0))
add("generator_scale_huge", lambda f: f["generator/weights"].attrs.__setitem__("scale", 1e300))
add("placement_kind", lambda f: f["config/placement"].attrs.__setitem__("kind", "spiral"))
add("placement_logical_0", lambda f: f["config/placement"].attrs.__setitem__("num_logical", 0))
add("mori_max_tokens_negative", lambda f: f["config/mori"].attrs.__setitem__("max_num_inp_token_per_rank", -1))
add("mori_max_tokens_huge", lambda f: f["config/mori"].attrs.__setitem__("max_num_inp_token_per_rank", 2**40))
add("mori_gpus_per_node_0", lambda f: f["config/mori"].attrs.__setitem__("gpus_per_node", 0))
add("soft_link", lambda f: f.__setitem__("layers/0/cfg", h5py.SoftLink("/config")))
add("hard_link_cycle", lambda f: f.__setitem__("layers/0/loop", f["layers"]))
add("external_link", lambda f: f.__setitem__("layers/0/ext", h5py.ExternalLink("other.h5", "/")))
add("captured_dataset", lambda f: f.__setitem__("layers/0/ranks/1/captured", np.zeros(4, np.int32)))
add("captured_total_recv_huge", lambda f: f.create_group("layers/0/ranks/1/captured").attrs.__setitem__(
    "total_recv", 2**40))
add("deep_groups", lambda f: f.create_group("layers/0/" + "/".join(["d"] * 40)))

raw = []  # (name, bytes)
data = open(base, "rb").read()
for k in range(1, 11):
    raw.append((f"truncated_{k}", data[: len(data) * k // 11]))
raw += [("empty", b""), ("text", b"this is not a trace\n"), ("hdf5_magic_only", data[:8])]

paths = []
for name, fn in variants:
    p = os.path.join(tmp, name + ".h5")
    shutil.copy(base, p)
    with h5py.File(p, "a") as f:
        fn(f)
    paths.append(p)
for name, b in raw:
    p = os.path.join(tmp, name + ".h5")
    open(p, "wb").write(b)
    paths.append(p)

out = os.path.join(tmp, "out.h5")
commands = [("validate", []), ("info", []), ("run", ["-o", out]), ("golden", ["-o", out]), ("diagnose", []),
            ("bisect", ["--consumer", "all-k", "-o", out])]
failures, runs = [], 0
for p in paths:
    messages = {}  # command -> its error without the "moesim CMD: " prefix
    for cmd, extra in commands:
        runs += 1
        what, message = checked_run.run(moesim, cmd, p, extra, {2}, tmp)
        if what:
            failures.append(f"{cmd} {os.path.basename(p)}: {what}")
        elif message:
            messages[cmd] = message
    # What validate rejects, every command rejects with the same words.
    if "validate" in messages:
        for cmd, m in messages.items():
            if m != messages["validate"]:
                failures.append(f"{cmd} {os.path.basename(p)}: says {m!r} where validate says {messages['validate']!r}")
print(f"{len(paths)} malformed inputs x {len(commands)} commands = {runs} runs, {len(failures)} failures")
for line in failures[:40]:
    print("  " + line)
sys.exit(1 if failures or len(paths) < 250 else 0)
