"""The bundled traces open in h5py with the dtypes traces/SCHEMA.md gives, and bf16/fp8 values
decode with numpy alone; the weight generator reimplemented from SCHEMA.md's text gives
default.h5's stored weights bit for bit; h5py-written v1 and v2 captures validate.
Usage: check_h5py.py BUNDLED_DIR MOESIM TMP_DIR (ctest runs it)."""
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
        check(int(f.attrs["schema_version"]) == 2, f"{name}: schema_version")
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



def write_capture(path, version):
    """A captured trace written the way traces/SCHEMA.md shows (variable-length UTF-8 strings)."""
    R, E, K, H, I, T, N = 2, 8, 2, 16, 8, 3, 8
    rng = np.random.default_rng(0)

    def bf16(a):
        return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)

    with h5py.File(path, "w") as f:
        f.attrs.update(format="moesim-trace", schema_version=version, command="captured from a test")
        c = f.create_group("config")
        c.attrs.update(num_ranks=R, num_experts=E, top_k=K, hidden=H, intermediate=I,
                       activation="silu_and_mul", token_dtype="bfloat16", weight_dtype="bfloat16",
                       scale_block=128, num_shared_experts=0, shared_intermediate=0,
                       routed_scaling_factor=2.5, router_weight_on_input=0,
                       library="mori", library_version="abc")
        if version >= 2:   # schema v2's model-family attributes (a v1 file has none)
            c.attrs.update(topk_weights_include_scaling=0, expert_bias=0, shared_expert_gate=0)
        c.create_group("placement").attrs.update(kind="contiguous", num_logical=E)
        c.create_group("mori").attrs.update(max_num_inp_token_per_rank=4, max_total_recv_tokens=0,
                                            kernel_type="IntraNode", gpus_per_node=8)
        f.create_group("generator/weights").attrs.update(seed=0, distribution="normal", scale=1.0)
        f.create_group("layers").attrs["num_layers"] = 1
        f.create_group("layers/0").attrs["step"] = 0
        for r in range(R):
            g = f.create_group(f"layers/0/ranks/{r}")
            g.attrs["num_tokens"] = T
            x = g.create_dataset("x", data=bf16(rng.normal(size=(T, H))), compression="gzip")
            x.attrs["dtype"] = "bfloat16"
            g.create_dataset("topk_ids", data=np.array([[0, 5], [1, 2], [7, -1]], dtype=np.int32))
            g.create_dataset("topk_weights", data=np.full((T, K), 0.5, dtype=np.float32))
            cap = g.create_group("captured")
            cap.attrs.update(total_recv=3, buffer_rows=N)
            cap.create_dataset("recv_x", data=bf16(rng.normal(size=(N, H)))).attrs["dtype"] = "bfloat16"
            cap.create_dataset("recv_topk_ids", data=np.zeros((N, K), dtype=np.int32))
            cap.create_dataset("recv_weights", data=np.zeros((N, K), dtype=np.float32))
            pos = cap.create_dataset("src_token_pos", data=np.arange(3, dtype=np.int64))
            pos.attrs["encoding"] = "flat"
            out = cap.create_dataset("combine_out", data=bf16(rng.normal(size=(T, H))))
            out.attrs["dtype"] = "bfloat16"


# The generator as traces/SCHEMA.md words it, reimplemented from the text: default.h5's stored
# weights (uniform, bf16) are those values, bit for bit. Checks the text's mix64 (SplitMix64's
# increment added first) and its two roundings (double to float, then float to bf16).
M64 = (1 << 64) - 1


def mix64(z, inc=0x9E3779B97F4A7C15):
    """SplitMix64's finalizer, on a Python int or a numpy uint64 array."""
    if isinstance(z, np.ndarray):
        with np.errstate(over="ignore"):
            z = z + np.uint64(inc)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
    z = (z + inc) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def stream_of(seed, keys, inc):
    h = mix64(seed, inc)
    for k in keys:
        h = mix64(h ^ mix64((k + 0x632BE59BD9B4E019) & M64, inc), inc)
    return h


def float_to_bf16_bits(f):   # round to nearest even (finite values)
    b = f.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def generated_uniform_bf16(seed, keys, n, std, inc=0x9E3779B97F4A7C15):
    i = np.arange(n, dtype=np.uint64)
    st = np.uint64(stream_of(seed, keys, inc))
    u = (mix64(st ^ mix64(i, inc), inc) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return float_to_bf16_bits((np.sqrt(3.0) * std) * (2.0 * u - 1.0))   # double -> float -> bf16


with h5py.File(os.path.join(bundled, "default.h5"), "r") as f:
    c = f["config"].attrs
    H, I = int(c["hidden"]), int(c["intermediate"])
    seed = int(f["generator/weights"].attrs["seed"])
    check(text(f["generator/weights"].attrs["distribution"]) == "uniform", "default.h5: uniform weights")
    for layer, e in ((0, 3), (1, 11)):
        w1 = f[f"layers/{layer}/weights/w1"][e].reshape(-1)
        w2 = f[f"layers/{layer}/weights/w2"][e].reshape(-1)
        got1 = generated_uniform_bf16(seed, (2, layer, e), w1.size, 1 / np.sqrt(H))
        got2 = generated_uniform_bf16(seed, (3, layer, e), w2.size, 1 / np.sqrt(I))
        check(np.array_equal(got1, w1) and np.array_equal(got2, w2),
              f"default.h5 layer {layer} expert {e}: SCHEMA.md's generator does not give the stored weights "
              f"({int((got1 != w1).sum())} of {w1.size} w1 values differ)")
        # The text before it was fixed (no increment) gives other weights almost everywhere.
        wrong = generated_uniform_bf16(seed, (2, layer, e), w1.size, 1 / np.sqrt(H), inc=0)
        check((wrong != w1).mean() > 0.9, f"layer {layer} expert {e}: mix64 without its increment matches too often")

for version in (1, 2):   # the reader still accepts schema v1 files
    capture = os.path.join(tmp, f"h5py_capture_v{version}.h5")
    write_capture(capture, version)
    v = subprocess.run([moesim, "validate", capture], capture_output=True, text=True)
    check(v.returncode == 0 and v.stdout == "ok\n", f"h5py-written v{version} capture: {v.stdout}{v.stderr}")
# v2 requires its attributes: a v2 file without one is refused, naming it.
with h5py.File(capture, "a") as f:
    del f["config"].attrs["expert_bias"]
v = subprocess.run([moesim, "validate", capture], capture_output=True, text=True)
check(v.returncode == 2 and (v.stdout + v.stderr).strip() ==
      f"moesim validate: {capture}: /config: missing attribute 'expert_bias'",
      f"v2 capture without expert_bias: {v.returncode} {v.stderr}")

for f in failures:
    print("FAIL:", f)
print("ok" if not failures else f"{len(failures)} failures")
sys.exit(1 if failures else 0)
