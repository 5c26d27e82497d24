"""MoE blocks in plain torch, shaped like transformers 5's: a router, fused 3-D experts called with
(hidden_states, top_k_index, top_k_weights) or Llama4's pre-weighted rows, shared experts; and
blocks the capture must refuse. Used by test_capture_torch.py and by the stub transformers
package test_capture_hf_script.py runs hf_families.py against."""
import torch
import torch.nn.functional as F


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

    def __init__(self, E=8, K=2, H=32, I=16, normalize=True, **kw):
        super().__init__()
        self.gate = torch.nn.Linear(H, E, bias=False)
        self.experts = Experts(E, H, I, **kw)
        self.top_k, self.normalize = K, normalize

    def forward(self, hidden_states):
        b, s, h = hidden_states.shape
        x = hidden_states.view(-1, h)
        logits = self.gate(x)
        w, ids = torch.topk(F.softmax(logits, dim=-1), self.top_k, dim=-1)
        if self.normalize:
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


class Qwen2MoeBlock(SoftmaxBlock):
    """Qwen2-MoE shape: softmax top-k (not renormalized), and the shared expert's output scaled per
    token by sigmoid(x @ shared_expert_gate) before it is added."""

    def __init__(self, E=8, K=2, H=32, I=8, Is=16):
        super().__init__(E, K, H, I, normalize=False)
        self.shared_expert = MLP(H, Is)
        self.shared_expert_gate = torch.nn.Linear(H, 1, bias=False)

    def forward(self, hidden_states):
        routed, logits = super().forward(hidden_states)
        x = hidden_states.view(-1, hidden_states.shape[-1])
        shared = torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        return routed + shared.view(hidden_states.shape), logits


class GptOssExperts(torch.nn.Module):
    """GPT-OSS's experts: gate_up_proj [E, H, 2I] with gate and up columns interleaved, biases after
    both projections, the clamped SwiGLU; called with dense [T, E] routing weights."""

    def __init__(self, E=4, H=32, I=8, alpha=1.702, limit=7.0):
        super().__init__()
        self.gate_up_proj = torch.nn.Parameter(torch.randn(E, H, 2 * I) / H ** 0.5)
        self.gate_up_proj_bias = torch.nn.Parameter(torch.randn(E, 2 * I) * 0.5)
        self.down_proj = torch.nn.Parameter(torch.randn(E, I, H) / I ** 0.5)
        self.down_proj_bias = torch.nn.Parameter(torch.randn(E, H) * 0.5)
        self.alpha, self.limit = alpha, limit

    def _apply_gate(self, gate_up):
        gate, up = gate_up[..., ::2], gate_up[..., 1::2]
        gate = gate.clamp(min=None, max=self.limit)
        up = up.clamp(min=-self.limit, max=self.limit)
        glu = gate * torch.sigmoid(gate * self.alpha)
        return (up + 1) * glu

    def forward(self, hidden_states, router_indices, routing_weights):
        out = torch.zeros_like(hidden_states)
        for e in range(self.gate_up_proj.shape[0]):
            tok = torch.where((router_indices == e).any(dim=1))[0]
            if tok.numel():
                h = self._apply_gate(hidden_states[tok] @ self.gate_up_proj[e] + self.gate_up_proj_bias[e])
                y = h @ self.down_proj[e] + self.down_proj_bias[e]
                out.index_add_(0, tok, y * routing_weights[tok, e, None])
        return out


class GptOssBlock(torch.nn.Module):
    """GPT-OSS shape: a biased router, softmax over the top-k logits, dense [T, E] scores."""

    def __init__(self, E=4, K=2, H=32, I=8, limit=7.0):
        super().__init__()
        self.router = torch.nn.Linear(H, E)
        self.experts = GptOssExperts(E, H, I, limit=limit)
        self.top_k = K

    def forward(self, hidden_states):
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])
        logits = self.router(x)
        top, ids = torch.topk(logits, self.top_k, dim=-1)
        scores = torch.zeros_like(logits).scatter_(1, ids, F.softmax(top, dim=1))
        return self.experts(x, ids, scores).view(*shape), scores


class HiddenScaleBlock(SoftmaxBlock):
    """Something the schema cannot express that no attribute gives away: output scaled by 0.5."""

    def forward(self, hidden_states):
        out, logits = super().forward(hidden_states)
        return out * 0.5, logits


class ClampedExperts(Experts):
    """GPT-OSS-like gating of its own (clamped SwiGLU), no biases: only the self-check can tell."""

    def __init__(self):
        super().__init__(8, 32, 16)

    def _apply_gate(self, gate_up):
        g, u = gate_up.chunk(2, dim=-1)
        g, u = g.clamp(max=0.5), u.clamp(-0.5, 0.5)
        return (u + 1) * g * torch.sigmoid(1.702 * g)

    def ffn(self, e, x):
        return self._apply_gate(x @ self.gate_up_proj[e].T) @ self.down_proj[e].T
