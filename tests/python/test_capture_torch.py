"""Small MoE blocks written here in plain torch, shaped like transformers 5's (a router, fused 3-D
experts called with (hidden_states, top_k_index, top_k_weights), shared experts), are captured
through moesim_capture.hf; `moesim golden --numerics fp32` of the trace must match each block's
own fp32 output, and the blocks schema v1 cannot express must be refused with their message.
Usage: test_capture_torch.py MOESIM TMP_DIR (ctest runs it; exit 77, skipped, without torch)."""
import os
import sys

from capture_testlib import check, finish, run, tmp

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("skipped: torch is not installed (Debian: python3-torch)")
    sys.exit(77)

import h5py
import numpy as np

from moesim_capture import CaptureError
from moesim_capture.hf import MoECapture



class Experts(torch.nn.Module):
    """transformers 5's fused experts: gate_up_proj [E, 2I, H] (gate rows first), down_proj [E, H, I]."""

    def __init__(self, E, H, I, act=F.silu, transposed=False, interleaved=False):
        super().__init__()
        shape1, shape2 = ((E, H, 2 * I), (E, I, H)) if transposed else ((E, 2 * I, H), (E, H, I))
        self.gate_up_proj = torch.nn.Parameter(torch.randn(*shape1) / H ** 0.5)
        self.down_proj = torch.nn.Parameter(torch.randn(*shape2) / I ** 0.5)
        self.act_fn, self.is_transposed, self.is_concatenated = act, transposed, not interleaved

    def ffn(self, e, x):
        gu = self.gate_up_proj[e].T if self.is_transposed else self.gate_up_proj[e]
        dn = self.down_proj[e].T if self.is_transposed else self.down_proj[e]
        h = x @ gu.T
        g, u = (h[:, 0::2], h[:, 1::2]) if not self.is_concatenated else h.chunk(2, dim=-1)
        return (self.act_fn(g) * u) @ dn.T

    def forward(self, hidden_states, top_k_index, top_k_weights):
        out = torch.zeros_like(hidden_states)
        for e in range(self.gate_up_proj.shape[0]):
            tok, slot = torch.where(top_k_index == e)
            if tok.numel():
                out.index_add_(0, tok, self.ffn(e, hidden_states[tok]) * top_k_weights[tok, slot, None])
        return out


class MLP(torch.nn.Module):
    def __init__(self, H, I):
        super().__init__()
        self.gate_proj = torch.nn.Linear(H, I, bias=False)
        self.up_proj = torch.nn.Linear(H, I, bias=False)
        self.down_proj = torch.nn.Linear(I, H, bias=False)
        self.act_fn = torch.nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class SoftmaxBlock(torch.nn.Module):
    """Mixtral / Qwen3-MoE / OLMoE shape: softmax top-k, normalized; returns (out, logits)."""

    def __init__(self, E=8, K=2, H=32, I=16, **kw):
        super().__init__()
        self.gate = torch.nn.Linear(H, E, bias=False)
        self.experts = Experts(E, H, I, **kw)
        self.top_k = K

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        logits = self.gate(x)
        w, ids = torch.topk(F.softmax(logits, dim=-1), self.top_k, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        return self.experts(x, ids, w).view(b, s, h), logits


class KeywordBlock(SoftmaxBlock):
    """Calls its experts by keyword, in another order, and returns a tensor (no tuple)."""

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        w, ids = torch.topk(F.softmax(self.gate(x), dim=-1), self.top_k, dim=-1)
        return self.experts(top_k_weights=w, hidden_states=x, top_k_index=ids).view(b, s, h)


class SigmoidSharedBlock(torch.nn.Module):
    """DeepSeek-V3 / GLM4-MoE shape: sigmoid scores, routed_scaling_factor folded into the weights
    the experts get, one shared expert added."""

    def __init__(self, E=16, K=4, H=32, I=8, factor=2.5):
        super().__init__()
        self.gate = torch.nn.Linear(H, E, bias=False)
        self.gate.routed_scaling_factor = factor
        self.experts = Experts(E, H, I)
        self.shared_experts = MLP(H, 2 * I)
        self.top_k, self.factor = K, factor

    def forward(self, hidden_states):
        shape = hidden_states.shape
        x = hidden_states.view(-1, shape[-1])
        scores = torch.sigmoid(self.gate(x))
        ids = torch.topk(scores, self.top_k, dim=-1, sorted=False)[1]
        w = scores.gather(1, ids)
        w = w / w.sum(dim=-1, keepdim=True) * self.factor
        return self.experts(x, ids, w).view(*shape) + self.shared_experts(hidden_states)


class Llama4Router(torch.nn.Linear):
    def __init__(self, H, E, K):
        super().__init__(H, E, bias=False)
        self.top_k = K

    def forward(self, x):
        logits = super().forward(x)
        top, ids = torch.topk(logits, self.top_k, dim=1)
        scores = torch.full_like(logits, float("-inf")).scatter_(1, ids, top)
        return torch.sigmoid(scores), logits


class Llama4Experts(torch.nn.Module):
    def __init__(self, E, H, I):
        super().__init__()
        self.gate_up_proj = torch.nn.Parameter(torch.randn(E, H, 2 * I) / H ** 0.5)
        self.down_proj = torch.nn.Parameter(torch.randn(E, I, H) / I ** 0.5)
        self.act_fn = torch.nn.SiLU()

    def forward(self, hidden_states):
        x = hidden_states.view(self.gate_up_proj.shape[0], -1, self.gate_up_proj.shape[1])
        g, u = torch.bmm(x, self.gate_up_proj).chunk(2, dim=-1)
        return torch.bmm(u * self.act_fn(g), self.down_proj).view(-1, self.gate_up_proj.shape[1])


class Llama4Block(torch.nn.Module):
    """Llama4 shape: sigmoid scores applied to the input of every expert, transposed experts."""

    def __init__(self, E=4, K=1, H=32, I=16):
        super().__init__()
        self.router = Llama4Router(H, E, K)
        self.experts = Llama4Experts(E, H, I)
        self.shared_expert = MLP(H, I)
        self.top_k = K

    def forward(self, hidden_states):
        x = hidden_states.reshape(-1, hidden_states.shape[-1])
        scores, logits = self.router(x)
        routed = x.repeat(scores.shape[1], 1) * scores.transpose(0, 1).reshape(-1, 1)
        out = self.experts(routed).reshape(scores.shape[1], -1, x.shape[1]).sum(dim=0)
        return out + self.shared_expert(x), logits


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


class SharedGateBlock(SigmoidSharedBlock):
    """Qwen2-MoE shape: the shared expert is scaled by sigmoid(x @ shared_expert_gate)."""

    def __init__(self):
        super().__init__(factor=1.0)
        self.shared_expert_gate = torch.nn.Linear(32, 1, bias=False)


class BiasExperts(Experts):
    def __init__(self):
        super().__init__(8, 32, 16)
        self.gate_up_proj_bias = torch.nn.Parameter(torch.zeros(8, 32))


class HiddenScaleBlock(SoftmaxBlock):
    """Something the schema cannot express that no attribute gives away: output scaled by 0.5."""

    def forward(self, hidden_states):
        out, logits = super().forward(hidden_states)
        return out * 0.5, logits


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

hidden = HiddenScaleBlock()
with torch.no_grad(), MoECapture(hidden) as cap:
    hidden(torch.randn(1, 4, 32))
try:
    cap.write(os.path.join(tmp, "capture_hidden_scale.h5"))
    check(False, "hidden scale: not refused")
except CaptureError as e:
    check("its output differs from moesim's MoE formula" in str(e), f"hidden scale: message {e}")
check(not os.path.exists(os.path.join(tmp, "capture_hidden_scale.h5")), "hidden scale: a refused capture left a file")

# bf16 torch tensors round trip exactly: every finite bf16 value as x, every pattern (NaN, inf)
# as recv_x, read back as SCHEMA.md shows (uint16 -> int16 -> torch.bfloat16).
from moesim_capture import TraceConfig, TraceWriter

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
