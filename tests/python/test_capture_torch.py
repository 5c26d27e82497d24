"""Small MoE blocks written in plain torch (torch_blocks.py), shaped like transformers 5's (a router, fused 3-D
experts called with (hidden_states, top_k_index, top_k_weights), shared experts), are captured
through moesim_capture.hf; `moesim golden --numerics fp32` of the trace must match each block's
own fp32 output, and the blocks schema v1 cannot express must be refused with their message.
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
from torch_blocks import (BiasExperts, ClampedExperts, HiddenScaleBlock, KeywordBlock, Llama4Block, Llama4Experts,
                          SharedGateBlock, SigmoidSharedBlock, SoftmaxBlock)


def golden_error(block, name, num_ranks=1, batch=(2, 5)):
    """Max |golden - block| / max |block| over the captured forward."""
    x = torch.randn(*batch, block.experts.gate_up_proj.shape[-1] if not getattr(block.experts, "is_transposed", False)
                    and not isinstance(block.experts, Llama4Experts) else block.experts.gate_up_proj.shape[1])
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
]
for name, block, ranks in cases:
    try:
        err, path = golden_error(block, name, ranks)
    except CaptureError as e:
        check(False, f"{name}: refused: {e}")
        continue
    print(f"{name}: max relative error of moesim golden fp32 vs the block: {err:.3g}")
    check(err < 1e-5, f"{name}: golden differs from the block by {err:.3g} (relative to max |out|)")
    if name == "sigmoid_shared_folded":
        with h5py.File(path, "r") as t:
            c = t["config"].attrs
            check(float(c["routed_scaling_factor"]) == 1.0, "folded factor: the trace must not apply it again")
            check(t["config/library_settings"].attrs["hf_weights_include_routed_scaling"] in (b"2.5", "2.5"),
                  "folded factor recorded in library_settings")
            check(int(c["num_shared_experts"]) == 1 and int(c["shared_intermediate"]) == 16, "shared expert config")
    if name.startswith("llama4"):
        with h5py.File(path, "r") as t:
            check(int(t["config"].attrs["router_weight_on_input"]) == 1, "llama4: router weight on the input")


biased = SoftmaxBlock()
biased.experts = BiasExperts()
refusals = [
    (SharedGateBlock(), "per-token shared-expert gate (sigmoid(x @ shared_expert_gate) scales the shared expert): "
                        "schema v1 cannot express it (issue 9)"),
    (biased, "expert biases (gate_up_proj_bias): schema v1 has no expert biases (issue 9)"),
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
for name, block, why in (("hidden scale", HiddenScaleBlock(), "the block computes something schema v1 cannot express"),
                         ("clamped gate", clamped, "the block computes a custom gated activation (ClampedExperts._apply_gate, "
                                                   "e.g. GPT-OSS's clamped SwiGLU, issue 9) schema v1 cannot express")):
    with torch.no_grad(), MoECapture(block) as cap:
        block(torch.randn(1, 4, 32))
    path = os.path.join(tmp, f"capture_{name.replace(' ', '_')}.h5")
    try:
        cap.write(path)
        check(False, f"{name}: not refused")
    except CaptureError as e:
        check("its output differs from moesim's MoE formula" in str(e) and str(e).endswith(why), f"{name}: message {e}")
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
