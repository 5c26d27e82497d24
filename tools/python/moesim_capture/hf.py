"""Hooks for Hugging Face transformers MoE blocks (transformers 5 layout: fused 3-D experts).

    with MoECapture(model) as cap:      # or a single block
        model(input_ids)
    cap.write("trace.h5")              # one layer per captured block call

What is read, per block (transformers 5.x, src/transformers/models/<family>/modeling_<family>.py):
- the block's input and output (its forward; a tuple output's first element);
- the experts module `block.experts` with `gate_up_proj` [E, 2I, H] (gate rows, then up rows) and
  `down_proj` [E, H, I]; transposed ([E, H, 2I], [E, I, H]; `is_transposed`,
  `experts_are_transposed`, or Llama4TextExperts) and interleaved (`is_concatenated` False) layouts
  are turned into moesim's;
- routing: the (hidden_states, top_k_index, top_k_weights) the block passes to its experts, that
  is the ids and the weights actually applied ([T, K], or DeepSeek-V2's [T, E] gathered at the
  ids). Llama4 passes its experts pre-weighted rows instead: its router returns (scores [T, E],
  logits), the ids are topk(logits, top_k) (the router's own call) and the weights the scores
  there, applied to the input (router_weight_on_input);
- shared experts: `block.shared_experts` / `block.shared_expert` (gate_proj, up_proj, down_proj).

Routed scaling: DeepSeek-V2/V3 and GLM4-MoE routers multiply the weights by
routed_scaling_factor before the experts see them, so the stored weights include it and the
trace's routed_scaling_factor is 1 (the factor is recorded in library_settings
hf_weights_include_routed_scaling). A family that scales the routed sum instead is detected by the
self-check below and gets the factor in the config.

Every capture is checked before it is written: the block's output must equal what moesim computes
from the captured input, routing and weights (float64 here, relative L2 error under 1e-4 for
float32 blocks, 2e-2 otherwise). A block computing something schema v1 cannot express is refused
with a message naming the feature, before or at this check (issue 9 lists them: Qwen2-MoE's and
Qwen3-Next's per-token shared-expert gate, GPT-OSS's expert biases and clamped SwiGLU)."""
import inspect

import numpy as np

from .config import TraceConfig
from .errors import CaptureError
from .writer import TraceWriter

_SILU = ("SiLU", "SiLUActivation", "SiLUActivationFunction")
_GELU = ("GELUActivation",)
_GELU_TANH = ("PytorchGELUTanh", "GELUTanh", "NewGELUActivation", "GELUPytorchTanh", "FastGELUActivation")


def _torch():
    import torch
    return torch


def activation_name(act, where):
    """moesim's name (without `_and_mul`) of an activation module or function."""
    torch = _torch()
    F = torch.nn.functional
    if act is F.silu:
        return "silu"
    if act is F.gelu:
        return "gelu"
    name = type(act).__name__
    if isinstance(act, torch.nn.GELU):
        return "gelu_tanh" if getattr(act, "approximate", "none") == "tanh" else "gelu"
    if name in _SILU:
        return "silu"
    if name in _GELU and not getattr(act, "use_gelu_python", False):
        return "gelu"
    if name in _GELU_TANH:
        return "gelu_tanh"
    raise CaptureError(f"{where}: activation {name} is not one moesim has (SiLU, GELU, GELU tanh)")


def _refuse_unsupported(block, name):
    """Refusals that need no forward pass: the features schema v1 lacks (issue 9)."""
    cls = type(block).__name__
    if getattr(block, "shared_expert_gate", None) is not None:
        raise CaptureError(f"{name} ({cls}): per-token shared-expert gate (sigmoid(x @ shared_expert_gate) scales the "
                           f"shared expert): schema v1 cannot express it (issue 9)")
    ex = getattr(block, "experts", None)
    if ex is None or isinstance(ex, _torch().nn.ModuleList):
        raise CaptureError(f"{name} ({cls}): experts kept as a per-expert ModuleList (transformers 4.x layout): "
                           f"capture needs transformers 5's fused experts (gate_up_proj, down_proj)")
    # GPT-OSS has both biases and a gate function of its own: name the second one too.
    gate = " (and a gated activation of its own, _apply_gate)" if hasattr(ex, "_apply_gate") else ""
    for b in ("gate_up_proj_bias", "down_proj_bias", "gate_up_bias", "down_bias"):
        if getattr(ex, b, None) is not None:
            raise CaptureError(f"{name} ({cls}): expert biases ({b}){gate}: schema v1 has no expert biases (issue 9)")
    if getattr(ex, "has_bias", False):
        raise CaptureError(f"{name} ({cls}): expert biases{gate}: schema v1 has no expert biases (issue 9)")
    if not hasattr(ex, "gate_up_proj") or not hasattr(ex, "down_proj"):
        raise CaptureError(f"{name} ({cls}): experts module {type(ex).__name__} has no gate_up_proj/down_proj")
    if getattr(ex, "has_gate", True) is False:
        raise CaptureError(f"{name} ({cls}): non-gated fused experts are not supported by the hook")


def is_moe_block(m):
    ex = getattr(m, "experts", None)
    if ex is None or not isinstance(ex, _torch().nn.Module):
        return False
    return hasattr(ex, "gate_up_proj") or isinstance(ex, _torch().nn.ModuleList)


def _takes_routing(experts):
    try:
        params = [p for p in inspect.signature(experts.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True
    every = inspect.signature(experts.forward).parameters.values()
    return len(params) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in every)


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _wrap(module, attr, hook):
    """Replaces module.<attr> (an instance attribute shadowing the class method); returns the undo."""
    original = getattr(module, attr)
    had = attr in module.__dict__

    def wrapper(*args, **kwargs):
        return hook(original, *args, **kwargs)

    setattr(module, attr, wrapper)

    def undo():
        if had:
            setattr(module, attr, original)
        else:
            delattr(module, attr)
    return undo


class _Call:
    """One block forward: its input and output, and the routing its experts or router saw (detached copies)."""

    def __init__(self):
        self.x = self.out = self.ids = self.weights = self.experts_in = self.router = None


class MoECapture:
    def __init__(self, module, verify=True):
        """`module`: a model (every MoE block in it is hooked) or one block."""
        self.verify = verify
        self.blocks = []
        if is_moe_block(module):
            named = [("block", module)]
        else:
            named = [(n, m) for n, m in module.named_modules() if is_moe_block(m)]
        if not named:
            raise CaptureError(f"{type(module).__name__}: no MoE block found (a module with an `experts` child holding "
                               f"gate_up_proj and down_proj)")
        self.pre_weighted = {}   # id(block) -> True when its experts take pre-weighted rows (Llama4)
        for name, block in named:
            _refuse_unsupported(block, name)
            self.blocks.append((name, block))
            self.pre_weighted[id(block)] = not _takes_routing(block.experts)
        self.calls = []  # (block name, block, _Call)
        self._undo = []

    def __enter__(self):
        for name, block in self.blocks:
            self._attach(name, block)
        return self

    def __exit__(self, *exc):
        self.detach()
        return False

    def detach(self):
        while self._undo:
            self._undo.pop()()

    def _attach(self, name, block):
        torch = _torch()
        state = {}
        llama4 = self.pre_weighted[id(block)]
        if llama4 and not hasattr(block, "router"):
            raise CaptureError(f"{name} ({type(block).__name__}): experts take pre-weighted rows but the block has no "
                               "router")

        def on_block(fwd, *args, **kwargs):
            call = _Call()
            x = args[0] if args else kwargs.get("hidden_states")
            call.x = x.detach().clone()
            state["call"] = call
            out = fwd(*args, **kwargs)
            call.out = _first_tensor(out).detach().clone()
            state.pop("call", None)
            self.calls.append((name, block, call))
            return out

        try:
            signature = inspect.signature(block.experts.forward)
        except (TypeError, ValueError):
            signature = None

        def on_experts(fwd, *args, **kwargs):
            call = state.get("call")
            if call is not None and not llama4:
                # (hidden_states, top_k_index, top_k_weights) by position or by any parameter names.
                vals = list(args)
                if signature is not None and kwargs:
                    try:
                        vals = [v for v in signature.bind_partial(*args, **kwargs).arguments.values()
                                if isinstance(v, torch.Tensor)]
                    except TypeError:
                        pass
                if len(vals) < 3:
                    raise CaptureError(f"{name}: experts called without (hidden_states, top_k_index, top_k_weights)")
                call.experts_in, call.ids, call.weights = (v.detach().clone() for v in vals[:3])
            return fwd(*args, **kwargs)

        def on_router(fwd, *args, **kwargs):
            out = fwd(*args, **kwargs)
            call = state.get("call")
            if call is not None:
                if not isinstance(out, (tuple, list)) or len(out) < 2:
                    raise CaptureError(f"{name}: router returns {type(out).__name__}, expected (scores, logits) as "
                                       "Llama4Router does")
                call.router = (out[0].detach().clone(), out[1].detach().clone())
            return out

        self._undo.append(_wrap(block, "forward", on_block))
        self._undo.append(_wrap(block.experts, "forward", on_experts))
        if llama4:
            self._undo.append(_wrap(block.router, "forward", on_router))

    # ---- turning calls into a trace ----

    def layers(self):
        """One dict per captured call: x, ids, weights, out (numpy-ready torch tensors), w1, w2,
        shared_w1, shared_w2 (moesim layout) and the config fields it implies."""
        return [_layer(name, block, call, self.verify, self.pre_weighted[id(block)])
                for name, block, call in self.calls]

    def write(self, path, num_ranks=1, command="captured by moesim_capture.hf", calls=None):
        """Writes the captured calls (all, or the indices in `calls`) as the layers of one trace;
        tokens are split into num_ranks contiguous chunks (virtual ranks). The block outputs are
        stored as captured/final_out. Returns the path."""
        layers = self.layers()
        if calls is not None:
            layers = [layers[i] for i in calls]
        if not layers:
            raise CaptureError(f"{path}: nothing captured (run a forward pass inside the `with` block)")
        cfg = layers[0]["config"]
        for i, l in enumerate(layers[1:], 1):
            for k in cfg:
                if k != "library_settings" and l["config"][k] != cfg[k]:
                    raise CaptureError(f"{path}: captured call {i} ({l['name']}) has {k} {l['config'][k]}, "
                                       f"call 0 ({layers[0]['name']}) {cfg[k]}: write them to separate traces")
        cfg = dict(cfg, library_settings=dict(cfg["library_settings"], hf_modules=",".join(l["name"] for l in layers)))
        config = TraceConfig(num_ranks=num_ranks, **cfg)
        torch = _torch()
        with TraceWriter(path, config, num_layers=len(layers), command=command) as w:
            for li, l in enumerate(layers):
                T = l["x"].shape[0]
                bounds = [T * r // num_ranks for r in range(num_ranks + 1)]
                for r in range(num_ranks):
                    a, b = bounds[r], bounds[r + 1]
                    w.add_rank(li, r, l["x"][a:b], l["ids"][a:b], l["weights"][a:b].to(torch.float32))
                    w.add_captured(li, r, final_out=l["out"][a:b])
                w.add_weights(li, l["w1"], l["w2"], l.get("shared_w1"), l.get("shared_w2"))
        return path


def _dtype(t, what, where, allowed):
    name = str(t.dtype).replace("torch.", "")
    if name not in allowed:
        raise CaptureError(f"{where}: {what} dtype {name} is not one moesim stores ({', '.join(allowed)})")
    return name


def _expert_weights(block, name, H, pre_weighted):
    torch = _torch()
    ex = block.experts
    gu, dn = ex.gate_up_proj.detach(), ex.down_proj.detach()
    if gu.dim() != 3 or dn.dim() != 3:
        raise CaptureError(f"{name}: gate_up_proj {list(gu.shape)} / down_proj {list(dn.shape)} are not 3-D")
    transposed = getattr(ex, "is_transposed", None)
    if transposed is None:
        transposed = getattr(ex, "experts_are_transposed", None)
    if transposed is None:
        if pre_weighted:
            transposed = True          # Llama4TextExperts: bmm(x, gate_up_proj)
        elif gu.shape[2] == H and gu.shape[1] != H:
            transposed = False
        elif gu.shape[1] == H and gu.shape[2] != H:
            transposed = True
        else:
            transposed = False         # 2I == H: transformers' default layout
    if transposed:
        gu, dn = gu.transpose(1, 2), dn.transpose(1, 2)
    E, rows, h = gu.shape
    if h != H or rows % 2 or dn.shape != (E, H, rows // 2):
        raise CaptureError(f"{name}: expert weights gate_up {list(gu.shape)}, down {list(dn.shape)} do not fit hidden "
                           f"{H}")
    if getattr(ex, "is_concatenated", True) is False:
        gu = torch.cat([gu[:, 0::2], gu[:, 1::2]], dim=1)   # interleaved gate/up rows -> gate block, up block
    return gu.contiguous(), dn.contiguous()


def _shared(block, name, act):
    sh = getattr(block, "shared_experts", None)
    if sh is None:
        sh = getattr(block, "shared_expert", None)
    if sh is None:
        return None
    torch = _torch()
    for p in ("gate_proj", "up_proj", "down_proj"):
        lin = getattr(sh, p, None)
        if not isinstance(lin, torch.nn.Linear):
            raise CaptureError(f"{name}: shared expert {type(sh).__name__} has no Linear {p}")
        if lin.bias is not None:
            raise CaptureError(f"{name}: shared expert {p} has a bias: schema v1 has no expert biases (issue 9)")
    sact = getattr(sh, "act_fn", None) or getattr(sh, "activation_fn", None)
    if sact is not None and activation_name(sact, name + " shared expert") != act:
        raise CaptureError(f"{name}: the shared expert's activation differs from the routed experts' (schema v1 has "
                           "one)")
    w1 = torch.cat([sh.gate_proj.weight.detach(), sh.up_proj.weight.detach()], dim=0)[None]
    return w1.contiguous(), sh.down_proj.weight.detach()[None].contiguous()


def _routing(block, call, name, E):
    torch = _torch()
    T = call.x.reshape(-1, call.x.shape[-1]).shape[0]
    if call.router is not None:   # Llama4: scores [T, E] zero off the top-k, logits [T, E]
        scores, logits = call.router
        k = getattr(block, "top_k", None) or getattr(block.router, "top_k", None)
        if k is None:
            raise CaptureError(f"{name}: Llama4-style block without top_k")
        ids = torch.topk(logits, k, dim=1)[1]
        weights = scores.gather(1, ids)
        back = torch.zeros_like(scores).scatter_(1, ids, weights)
        if not torch.equal(back, scores):
            raise CaptureError(f"{name}: router scores are not zero outside its top-{k} (not Llama4's router)")
        return ids, weights, True
    if call.ids is None:
        raise CaptureError(f"{name}: the block never called its experts with routing")
    ids, w = call.ids.reshape(T, -1), call.weights.reshape(T, -1)
    if w.shape[1] == E and ids.shape[1] != E:
        w = w.gather(1, ids)     # DeepSeek-V2 style dense [T, E] weights
    if not torch.equal(call.experts_in.reshape(T, -1), call.x.reshape(T, -1)):
        raise CaptureError(f"{name}: the experts see a different input than the block (a scaling before the experts "
                           f"that schema v1 cannot express)")
    return ids, w, False


def _layer(name, block, call, verify, pre_weighted):
    torch = _torch()
    H = call.x.shape[-1]
    x = call.x.reshape(-1, H)
    out = call.out.reshape(-1, H)
    if out.shape != x.shape:
        raise CaptureError(f"{name}: block output {list(call.out.shape)} does not match its input {list(call.x.shape)}")
    w1, w2 = _expert_weights(block, name, H, pre_weighted)
    E, I = w1.shape[0], w1.shape[1] // 2
    act = activation_name(block.experts.act_fn, name)
    shared = _shared(block, name, act)
    ids, weights, on_input = _routing(block, call, name, E)
    token_dtype = _dtype(x, "token", name, ("float32", "bfloat16"))
    weight_dtype = _dtype(w1, "weight", name, ("float32", "bfloat16"))
    weights = weights.to(torch.float32)
    cfg = dict(num_experts=E, top_k=ids.shape[1], hidden=H, intermediate=I, activation=act + "_and_mul",
               token_dtype=token_dtype, weight_dtype=weight_dtype, num_shared_experts=0 if shared is None else 1,
               shared_intermediate=0 if shared is None else shared[1].shape[2], routed_scaling_factor=1.0,
               router_weight_on_input=on_input, library="", library_version="")
    factor = float(getattr(getattr(block, "config", None), "routed_scaling_factor", None) or
                   getattr(getattr(block, "gate", None), "routed_scaling_factor", None) or 1.0)
    settings = {"hf_block": type(block).__name__}
    layer = dict(name=name, x=x, ids=ids.to(torch.int32), weights=weights, out=out, w1=w1, w2=w2, config=cfg)
    if shared is not None:
        layer["shared_w1"], layer["shared_w2"] = shared
    if verify:
        err = _self_check(layer, act, 1.0)
        tol = 1e-4 if token_dtype == weight_dtype == "float32" else 2e-2
        if err > tol and factor != 1.0 and _self_check(layer, act, factor) <= tol:
            cfg["routed_scaling_factor"] = factor
        elif err > tol:
            # A gate function of its own is the likely cause (GPT-OSS's clamped SwiGLU); transformers
            # may give every experts class one, so it is named here, not refused up front.
            why = (f"a custom gated activation ({type(block.experts).__name__}._apply_gate, e.g. GPT-OSS's clamped "
                   f"SwiGLU, issue 9)" if hasattr(block.experts, "_apply_gate") else "something")
            raise CaptureError(f"{name} ({type(block).__name__}): its output differs from moesim's MoE formula on the "
                               f"captured routing and weights (relative L2 error {err:.3g}): the block computes {why} "
                               f"schema v1 cannot express")
    if factor != 1.0 and cfg["routed_scaling_factor"] == 1.0:
        settings["hf_weights_include_routed_scaling"] = repr(factor)
    cfg["library_settings"] = settings
    return layer


def _ffn(x, w1, w2, act):
    torch = _torch()
    F = torch.nn.functional
    I = w1.shape[0] // 2
    g = x @ w1[:I].T
    u = x @ w1[I:].T
    a = {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda v: F.gelu(v, approximate="tanh")}[act](g)
    return (a * u) @ w2.T


def reference_output(layer, act, scale=1.0):
    """What moesim computes for a captured layer, in float64 torch (the hook's self-check)."""
    torch = _torch()
    d = torch.float64
    x = layer["x"].to(d)
    ids, w = layer["ids"].long(), layer["weights"].to(d)
    w1, w2 = layer["w1"].to(d), layer["w2"].to(d)
    on_input = layer["config"]["router_weight_on_input"]
    y = torch.zeros_like(x)
    for k in range(ids.shape[1]):
        for e in torch.unique(ids[:, k]).tolist():
            if e < 0:
                continue
            rows = (ids[:, k] == e).nonzero().reshape(-1)
            wk = w[rows, k, None]
            y[rows] += _ffn(x[rows] * wk, w1[e], w2[e], act) if on_input else wk * _ffn(x[rows], w1[e], w2[e], act)
    y = y * scale
    if "shared_w1" in layer:
        y = y + _ffn(x, layer["shared_w1"][0].to(d), layer["shared_w2"][0].to(d), act)
    return y


def _self_check(layer, act, scale):
    torch = _torch()
    ref = reference_output(layer, act, scale)
    got = layer["out"].to(torch.float64)
    return float(torch.linalg.norm(got - ref) / max(float(torch.linalg.norm(ref)), 1e-30))
