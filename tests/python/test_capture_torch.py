"""Small MoE blocks written in plain torch (torch_blocks.py), shaped like transformers 5's (a router, fused 3-D
experts called with (hidden_states, top_k_index, top_k_weights), shared experts), are captured
through moesim_capture.hf; `moesim golden --numerics fp32` of the trace must match each block's
own fp32 output and an independent numpy computation of the block from the trace's own datasets
(the families of schema v2: Qwen2-MoE's shared-expert gate, GPT-OSS's biases and clamped SwiGLU,
DeepSeek-V3's weights holding the routed scaling factor), and the blocks the schema cannot express
must be refused with their message.
Usage: test_capture_torch.py MOESIM TMP_DIR (ctest runs it; exit 77, skipped, without torch)."""
import os
import sys

from capture_testlib import check, finish, run, tmp

try:
    import torch
except ImportError:
    print("skipped: torch is not installed (Debian: python3-torch)")
    sys.exit(77)

import h5py
import numpy as np

from moesim_capture import CaptureError, TraceConfig, TraceWriter
from moesim_capture.hf import MoECapture
from torch_blocks import (ClampedExperts, GptOssBlock, GptOssExperts, HiddenScaleBlock, KeywordBlock, Llama4Block,
                          Llama4Experts, Qwen2MoeBlock, SigmoidSharedBlock, SoftmaxBlock)


def golden_error(block, name, num_ranks=1, batch=(2, 5), x_scale=1.0):
    """Max |golden - block| / max |block| over the captured forward."""
    transposed = getattr(block.experts, "is_transposed", False) or isinstance(block.experts, (Llama4Experts,
                                                                                                GptOssExperts))
    x = torch.randn(*batch, block.experts.gate_up_proj.shape[1 if transposed else -1]) * x_scale
    with torch.no_grad(), MoECapture(block) as cap:
        out = block(x)
    out = out[0] if isinstance(out, tuple) else out
    path = os.path.join(tmp, f"capture_{name}.h5")
    gold = os.path.join(tmp, f"capture_{name}_golden.h5")
    cap.write(path, num_ranks=num_ranks)
    code, msg = run("validate", path)
    check(code == 0, f"{name}: validate: {msg}")
    code, msg = run("golden", path, "-o", gold, "--numerics", "fp32")
    check(code == 0, f"{name}: golden: {msg}")
    if code:
        return float("inf"), path
    with h5py.File(gold, "r") as g, h5py.File(path, "r") as t:
        got = np.concatenate([g[f"layers/0/ranks/{i}/final_out"][...] for i in range(num_ranks)])
        stored = np.concatenate([t[f"layers/0/ranks/{i}/captured/final_out"][...] for i in range(num_ranks)])
    want = out.reshape(-1, out.shape[-1]).numpy()
    check(np.array_equal(stored, want), f"{name}: captured/final_out is not the block's output")
    return float(np.abs(got - want).max() / np.abs(want).max()), path


def _values(ds):
    a = ds[...]
    if ds.attrs.get("dtype") in (b"bfloat16", "bfloat16"):
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def numpy_block(path, gate=True, stats=None):
    """The block's output computed from the trace alone, written from traces/SCHEMA.md in numpy
    float32: per token, the weighted routed experts (biases after both projections, the trace's
    activation), times routed_scaling_factor unless topk_weights include it, plus the shared expert
    scaled by sigmoid(x . shared_gate). gate=False leaves the gate out (to show it matters)."""
    f32 = np.float32
    with h5py.File(path, "r") as t:
        c = dict(t["config"].attrs)
        w = t["layers/0/weights"]
        W = {k: _values(w[k]) for k in w}
        R, I = int(c["num_ranks"]), int(c["intermediate"])
        act = c["activation"].decode() if isinstance(c["activation"], bytes) else c["activation"]
        alpha, limit = f32(c.get("swiglu_alpha", 1.702)), f32(c.get("swiglu_limit", 7.0))
        clamped = [0, 0]

        def ffn(x, w1, w2, b1, b2):
            n = w1.shape[0] // 2
            gu = x @ w1.T + (b1 if b1 is not None else f32(0))
            g, u = gu[..., :n], gu[..., n:]
            if act == "swiglu_oai_and_mul":
                clamped[0] += int((g > limit).sum())
                clamped[1] += int((np.abs(u) > limit).sum())
                g, u = np.minimum(g, limit), np.clip(u, -limit, limit)
                h = (u + f32(1)) * (g * (f32(1) / (f32(1) + np.exp(-(g * alpha)))))
            else:
                h = g / (f32(1) + np.exp(-g)) * u
            return h @ w2.T + (b2 if b2 is not None else f32(0))

        outs = []
        for r in range(R):
            g = t[f"layers/0/ranks/{r}"]
            x, ids, wts = _values(g["x"]), g["topk_ids"][...], g["topk_weights"][...]
            y = np.zeros_like(x)
            for tok in range(x.shape[0]):
                for k in range(ids.shape[1]):
                    e = ids[tok, k]
                    if e >= 0:
                        y[tok] += wts[tok, k] * ffn(x[tok], W["w1"][e], W["w2"][e], W["b1"][e] if "b1" in W else None,
                                                    W["b2"][e] if "b2" in W else None)
            if not int(c["topk_weights_include_scaling"]):
                y = y * f32(c["routed_scaling_factor"])
            if int(c["num_shared_experts"]):
                sh = ffn(x, W["shared_w1"][0], W["shared_w2"][0], W["shared_b1"][0] if "shared_b1" in W else None,
                         W["shared_b2"][0] if "shared_b2" in W else None)
                if int(c["shared_expert_gate"]) and gate:
                    sh = sh * (f32(1) / (f32(1) + np.exp(-(x @ W["shared_gate"]))))[:, None]
                y = y + sh
            outs.append(y)
        if stats is not None:
            stats["clamped"] = clamped
        return np.concatenate(outs)


def golden_of(path, num_ranks):
    with h5py.File(path[:-3] + "_golden.h5", "r") as g:
        return np.concatenate([g[f"layers/0/ranks/{i}/final_out"][...] for i in range(num_ranks)])


torch.manual_seed(7)
cases = [
    ("softmax", SoftmaxBlock(), 1),
    ("softmax_2ranks", SoftmaxBlock(E=8, K=2), 2),
    ("transposed", SoftmaxBlock(transposed=True), 1),
    ("interleaved", SoftmaxBlock(interleaved=True), 1),
    ("gelu", SoftmaxBlock(act=torch.nn.GELU()), 1),
    ("keywords", KeywordBlock(), 1),
    ("sigmoid_shared_folded", SigmoidSharedBlock(), 4),
    ("llama4", Llama4Block(), 1),
    ("llama4_top2", Llama4Block(E=4, K=2), 2),
    ("qwen2_moe_shared_gate", Qwen2MoeBlock(), 2),
    ("gpt_oss", GptOssBlock(), 2),
]
for name, block, ranks in cases:
    try:
        # GPT-OSS: inputs large enough that both clamps of its SwiGLU (limit 7) bite.
        err, path = golden_error(block, name, ranks, x_scale=8.0 if name == "gpt_oss" else 1.0)
    except CaptureError as e:
        check(False, f"{name}: refused: {e}")
        continue
    print(f"{name}: max relative error of moesim golden fp32 vs the block: {err:.3g}")
    check(err < 1e-5, f"{name}: golden differs from the block by {err:.3g} (relative to max |out|)")
    if name in ("sigmoid_shared_folded", "qwen2_moe_shared_gate", "gpt_oss"):
        # The families of schema v2: the golden against numpy from the trace's datasets alone.
        stats = {}
        want = numpy_block(path, stats=stats)
        gold = golden_of(path, ranks)
        indep = float(np.abs(gold - want).max() / np.abs(want).max())
        print(f"{name}: max relative error of moesim golden fp32 vs numpy from the trace: {indep:.3g}")
        check(indep < 1e-5, f"{name}: golden differs from the numpy computation by {indep:.3g}")
    if name == "sigmoid_shared_folded":
        with h5py.File(path, "r") as t:
            c = t["config"].attrs
            check(float(c["routed_scaling_factor"]) == 2.5 and int(c["topk_weights_include_scaling"]) == 1,
                  "DeepSeek-V3: the factor recorded, and marked as already in topk_weights")
            check(int(c["num_shared_experts"]) == 1 and int(c["shared_intermediate"]) == 16, "shared expert config")
            w = t["layers/0/ranks/0/topk_weights"][...]
            check(np.allclose(w.sum(axis=1), 2.5, rtol=1e-5), "stored weights are the router's, factor included")
    if name == "qwen2_moe_shared_gate":
        with h5py.File(path, "r") as t:
            check(int(t["config"].attrs["shared_expert_gate"]) == 1, "qwen2-moe: shared_expert_gate = 1")
            check(np.array_equal(t["layers/0/weights/shared_gate"][...],
                                 block.shared_expert_gate.weight.detach().numpy()[0]), "qwen2-moe: the gate's row stored")
        ungated = numpy_block(path, gate=False)
        miss = float(np.linalg.norm(ungated - want) / np.linalg.norm(want))
        print(f"qwen2_moe_shared_gate: the gate left out: relative L2 error {miss:.3g}")
        check(miss > 0.1, f"qwen2-moe: leaving the gate out changes the output by only {miss:.3g}")
    if name == "gpt_oss":
        with h5py.File(path, "r") as t:
            c = t["config"].attrs
            check(c["activation"] in (b"swiglu_oai_and_mul", "swiglu_oai_and_mul") and int(c["expert_bias"]) == 1
                  and float(c["swiglu_alpha"]) == 1.702 and float(c["swiglu_limit"]) == 7.0,
                  f"gpt-oss config: {dict(c)}")
            ex = block.experts
            want_b1 = torch.cat([ex.gate_up_proj_bias[:, 0::2], ex.gate_up_proj_bias[:, 1::2]], dim=1).detach().numpy()
            check(np.array_equal(t["layers/0/weights/b1"][...], want_b1), "gpt-oss: b1 de-interleaved, gate then up")
            check(np.array_equal(t["layers/0/weights/b2"][...], ex.down_proj_bias.detach().numpy()), "gpt-oss: b2")
        print(f"gpt_oss: gate values above the limit {stats['clamped'][0]}, up values outside it {stats['clamped'][1]}")
        check(min(stats["clamped"]) > 0, f"gpt-oss: the clamps never bit ({stats['clamped']})")
        # bisect on the captured family: an injected fault shrinks to a minimal trace that keeps
        # the biases, the activation and the stored weights every layer then needs.
        small = os.path.join(tmp, "capture_gpt_oss_min.h5")
        code, msg = run("bisect", path, "-o", small, "--numerics", "fp32", "--inject", "0,expert,1,2")
        check(code == 1, f"gpt-oss bisect: exit {code}: {msg}")
        code, msg = run("validate", small)
        check(code == 0, f"gpt-oss minimal trace: validate: {msg}")
        with h5py.File(small, "r") as t:
            check(int(t["config"].attrs["expert_bias"]) == 1 and "b1" in t["layers/0/weights"],
                  "gpt-oss minimal trace keeps its biases")
    if name.startswith("llama4"):
        with h5py.File(path, "r") as t:
            check(int(t["config"].attrs["router_weight_on_input"]) == 1, "llama4: router weight on the input")


biased_gate = Qwen2MoeBlock()
biased_gate.shared_expert_gate = torch.nn.Linear(32, 1)
refusals = [
    (biased_gate, "shared_expert_gate has a bias: moesim's shared-expert gate has none"),
    (torch.nn.Linear(4, 4), "no MoE block found"),
]
for block, message in refusals:
    try:
        MoECapture(block)
        check(False, f"{type(block).__name__}: not refused")
    except CaptureError as e:
        check(message in str(e), f"{type(block).__name__}: message {e!s}, expected it to contain {message!r}")

clamped = SoftmaxBlock()
clamped.experts = ClampedExperts()
for name, block, why in (("hidden scale", HiddenScaleBlock(), "its output differs from moesim's MoE formula"),
                         ("clamped gate", clamped, "block: ClampedExperts._apply_gate is a gated activation moesim does not "
                                                   "have (neither silu_and_mul in either gate/up layout)")):
    with torch.no_grad(), MoECapture(block) as cap:
        block(torch.randn(1, 4, 32))
    path = os.path.join(tmp, f"capture_{name.replace(' ', '_')}.h5")
    try:
        cap.write(path)
        check(False, f"{name}: not refused")
    except CaptureError as e:
        check(why in str(e), f"{name}: message {e}")
    check(not os.path.exists(path), f"{name}: a refused capture left a file")

# bf16 torch tensors round trip exactly: every finite bf16 value as x, every pattern (NaN, inf)
# as recv_x, read back as SCHEMA.md shows (uint16 -> int16 -> torch.bfloat16).

bits = torch.arange(65536, dtype=torch.int32).to(torch.int16)
every = bits.view(torch.bfloat16)
finite = every[torch.isfinite(every.float())]
H = 64
rows = finite.numel() // H
x = finite[:rows * H].reshape(rows, H)
path = os.path.join(tmp, "capture_bf16_roundtrip.h5")
with TraceWriter(path, TraceConfig(num_ranks=1, num_experts=4, top_k=2, hidden=H, intermediate=8)) as w:
    w.add_rank(0, 0, x, torch.zeros(rows, 2, dtype=torch.int64) + torch.tensor([0, 3]), torch.rand(rows, 2))
    w.add_captured(0, 0, recv_x=every.reshape(-1, H), final_out=x)
code, out = run("validate", path)
check(code == 0, f"bf16 round trip: validate: {out}")
with h5py.File(path, "r") as f:
    back = torch.from_numpy(f["layers/0/ranks/0/x"][...].view(np.int16)).view(torch.bfloat16)
    check(torch.equal(back.view(torch.int16), x.view(torch.int16)), "bf16: x bits round trip")
    allback = torch.from_numpy(f["layers/0/ranks/0/captured/recv_x"][...].view(np.int16)).reshape(-1)
    check(torch.equal(allback, bits), "bf16: all 65536 patterns round trip in recv_x")
    check(f["layers/0/ranks/0/captured/final_out"].attrs["dtype"] == b"bfloat16", "bf16 output tensor keeps its dtype")
try:
    with TraceWriter(path + "2", TraceConfig(num_ranks=1, num_experts=4, top_k=2, hidden=H, intermediate=8)) as w:
        w.add_rank(0, 0, x.float() + 1e-3, torch.zeros(rows, 2, dtype=torch.int64), torch.rand(rows, 2))
    check(False, "float32 tensor with non-bf16 values into a bf16 trace: not refused")
except CaptureError as e:
    check("dtype is float32, expected bfloat16 (its values do not convert without loss)" in str(e), f"lossy bf16: {e}")
try:
    with TraceWriter(path + "2", TraceConfig(num_ranks=1, num_experts=4, top_k=2, hidden=H, intermediate=8,
                                             token_dtype="float32")) as w:
        w.add_rank(0, 0, torch.randn(3, H).half(), torch.zeros(3, 2, dtype=torch.int64), torch.rand(3, 2, dtype=torch.float64))
    check(False, "float64 weights not float32-exact: not refused")
except CaptureError as e:
    check(str(e).endswith("/topk_weights: dtype is float64, expected float32 (its values do not convert without loss)"), f"f64: {e}")

# The hooks are removed on exit: a later forward is not recorded.
block = SoftmaxBlock()
with torch.no_grad():
    with MoECapture(block) as cap:
        block(torch.randn(1, 3, 32))
    block(torch.randn(1, 3, 32))
check(len(cap.calls) == 1 and "forward" not in block.__dict__, "hooks detach on exit")

finish("ok")
