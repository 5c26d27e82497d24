"""The bundled traces open in h5py with the dtypes traces/SCHEMA.md gives, and bf16/fp8 values
decode with numpy alone. Usage: check_h5py.py BUNDLED_DIR MOESIM TMP_DIR (ctest runs it)."""
import os
import subprocess
import sys

import h5py
import numpy as np

bundled, moesim, tmp = sys.argv[1:4]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def bf16_to_f32(a):
    # bf16 is the high half of a float32.
    return (a.astype(np.uint32) << 16).view(np.float32)


def fp8_to_f32(a, fnuz):
    # e4m3: 4 exponent bits (bias 7, or 8 for fnuz), 3 mantissa bits; no infinities.
    a = a.astype(np.int32)
    sign = np.where(a & 0x80, -1.0, 1.0)
    e, m = (a >> 3) & 0xF, a & 7
    bias = 8 if fnuz else 7
    v = np.where(e == 0, m / 8.0 * 2.0 ** (1 - bias), (1 + m / 8.0) * 2.0 ** (e - bias))
    v = sign * v
    nan = (a == 0x80) if fnuz else ((a & 0x7F) == 0x7F)
    return np.where(nan, np.nan, v).astype(np.float32)


def check_trace(path, token_dtype):
    with h5py.File(path, "r") as f:
        name = os.path.basename(path)
        check(text(f.attrs["format"]) == "moesim-trace", f"{name}: format")
        check(int(f.attrs["schema_version"]) == 1, f"{name}: schema_version")
        check(text(f.attrs["command"]).startswith("moesim gen "), f"{name}: command")
        c = f["config"].attrs
        R, E, K, H = (int(c[k]) for k in ("num_ranks", "num_experts", "top_k", "hidden"))
        check(text(c["token_dtype"]) == token_dtype, f"{name}: token_dtype {text(c['token_dtype'])}")
        check(text(f["config/placement"].attrs["kind"]) in ("contiguous", "explicit", "eplb"), f"{name}: placement")
        for k in ("seed", "distribution", "scale"):
            check(k in f["generator/weights"].attrs, f"{name}: generator/weights@{k}")
        L = int(f["layers"].attrs["num_layers"])
        for layer in range(L):
            lp = f"layers/{layer}"
            if "weights" in f[lp]:
                w1 = f[lp + "/weights/w1"]
                check(w1.dtype == np.uint16 and text(w1.attrs["dtype"]) == "bfloat16", f"{name}: w1 dtype")
                check(np.isfinite(bf16_to_f32(w1[...])).all(), f"{name}: w1 finite")
            for r in range(R):
                g = f[f"{lp}/ranks/{r}"]
                T = int(g.attrs["num_tokens"])
                ids, w = g["topk_ids"], g["topk_weights"]
                check(ids.dtype == np.int32 and ids.shape == (T, K), f"{name}: {g.name}/topk_ids")
                check(w.dtype == np.float32 and w.shape == (T, K), f"{name}: {g.name}/topk_weights")
                check(text(ids.attrs["axes"]) == "token,slot", f"{name}: topk_ids axes")
                check(((ids[...] >= -1) & (ids[...] < E)).all(), f"{name}: ids in range")
                if "x" not in g:
                    continue
                x = g["x"]
                check(x.shape == (T, H) and text(x.attrs["axes"]) == "token,hidden", f"{name}: {x.name} shape")
                if token_dtype == "bfloat16":
                    check(x.dtype == np.uint16 and text(x.attrs["dtype"]) == "bfloat16", f"{name}: x dtype")
                    v = bf16_to_f32(x[...])
                else:
                    fnuz = token_dtype.endswith("fnuz")
                    check(x.dtype == np.uint8 and text(x.attrs["dtype"]) == token_dtype, f"{name}: x dtype")
                    v = fp8_to_f32(x[...], fnuz)
                    check(np.abs(v).max() <= (240.0 if fnuz else 448.0), f"{name}: fp8 range")
                    s = g["x_scales"]
                    check(s.dtype == np.float32 and s.shape[0] == T, f"{name}: x_scales")
                check(np.isfinite(v).all() and np.abs(v).max() > 0, f"{name}: x values")


check_trace(os.path.join(bundled, "default.h5"), "bfloat16")
check_trace(os.path.join(bundled, "seed-ep8.h5"), "bfloat16")
for dt, name in (("fp8", "float8_e4m3fn"), ("fp8_fnuz", "float8_e4m3fnuz")):
    out = os.path.join(tmp, f"h5py_{dt}.h5")
    subprocess.run([moesim, "gen", "-o", out, "--token-dtype", dt], check=True, stdout=subprocess.DEVNULL)
    check_trace(out, name)

for f in failures:
    print("FAIL:", f)
print("ok" if not failures else f"{len(failures)} failures")
sys.exit(1 if failures else 0)
