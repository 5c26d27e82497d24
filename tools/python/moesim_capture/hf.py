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

- expert biases `gate_up_proj_bias` [E, 2I] and `down_proj_bias` [E, H] (GPT-OSS), laid out as
  the weights' rows; a shared expert's Linear biases;
- a gate function of the experts' own (`experts._apply_gate`, which transformers 5 gives every
  fused experts class): it is probed on a fixed row under both gate/up layouts (concatenated,
  interleaved) against act(gate) * up and, where the experts have `alpha` and `limit`, GPT-OSS's
  clamped SwiGLU (swiglu_oai_and_mul); the one that matches gives the activation and the layout;
- Qwen2-MoE's and Qwen3-Next's `block.shared_expert_gate` (Linear(H, 1)): its weight row is the
  trace's shared_gate.

Routed scaling: DeepSeek-V2/V3, dots1, GLM4-MoE and LFM2 routers multiply the weights by
routed_scaling_factor before the experts see them, so the stored weights include it: the trace
records the factor with topk_weights_include_scaling = 1. A family that scales the routed sum
instead is detected by the self-check below and gets the factor with
topk_weights_include_scaling = 0.

Every capture is checked before it is written: the block's output must equal what moesim computes
from the captured input, routing and weights (float64 here, relative L2 error under 1e-4 for
float32 blocks, 2e-2 otherwise). A block computing something the schema cannot express is
refused with a message naming the feature, before or at this check."""
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
    """Refusals that need no forward pass."""
    cls = type(block).__name__
    gate = getattr(block, "shared_expert_gate", None)
    if gate is not None:
        torch = _torch()
        if not isinstance(gate, torch.nn.Linear) or gate.out_features != 1:
            raise CaptureError(f"{name} ({cls}): shared_expert_gate {type(gate).__name__} is not a Linear(hidden, 1)")
        if gate.bias is not None:
            raise CaptureError(f"{name} ({cls}): shared_expert_gate has a bias: moesim's shared-expert gate has none")
    ex = getattr(block, "experts", None)
    if ex is None or isinstance(ex, _torch().nn.ModuleList):
        raise CaptureError(f"{name} ({cls}): experts kept as a per-expert ModuleList (transformers 4.x layout): "
                           f"capture needs transformers 5's fused experts (gate_up_proj, down_proj)")
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
                w.add_weights(li, l["w1"], l["w2"], l.get("shared_w1"), l.get("shared_w2"), b1=l.get("b1"),
                              b2=l.get("b2"), shared_b1=l.get("shared_b1"), shared_b2=l.get("shared_b2"),
                              shared_gate=l.get("shared_gate"))
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
    b1 = _first_attr(ex, ("gate_up_proj_bias", "gate_up_bias"))
    b2 = _first_attr(ex, ("down_proj_bias", "down_bias"))
    if (b1 is None) != (b2 is None):
        raise CaptureError(f"{name}: experts have a bias on one projection only")
    if b1 is not None:
        b1, b2 = b1.detach(), b2.detach()
        if b1.shape != (E, rows) or b2.shape != (E, H):
            raise CaptureError(f"{name}: expert biases {list(b1.shape)}, {list(b2.shape)}, expected [{E}, {rows}], "
                               f"[{E}, {H}]")
    act, interleaved = _gate_function(ex, name, rows // 2)
    if interleaved:   # interleaved gate/up rows -> gate block, up block
        gu = torch.cat([gu[:, 0::2], gu[:, 1::2]], dim=1)
        if b1 is not None:
            b1 = torch.cat([b1[:, 0::2], b1[:, 1::2]], dim=1)
    biases = None if b1 is None else (b1.contiguous(), b2.contiguous())
    return gu.contiguous(), dn.contiguous(), biases, act


def _first_attr(obj, names):
    for n in names:
        v = getattr(obj, n, None)
        if v is not None:
            return v
    return None


def _swiglu_oai(g, u, alpha, limit):
    g = g.clamp(max=limit)
    u = u.clamp(min=-limit, max=limit)
    return (u + 1) * (g * _torch().sigmoid(g * alpha))


_ACT_FNS = {"silu": lambda v: _torch().nn.functional.silu(v), "gelu": lambda v: _torch().nn.functional.gelu(v),
            "gelu_tanh": lambda v: _torch().nn.functional.gelu(v, approximate="tanh")}


def _gate_function(ex, name, I):
    """(activation, interleaved): moesim's gated activation and whether gate and up rows alternate.
    Without _apply_gate: act_fn and `is_concatenated`. With it: the candidate that reproduces
    _apply_gate on a fixed probe row under one of the two layouts."""
    torch = _torch()
    act_fn = getattr(ex, "act_fn", None)
    act = activation_name(act_fn, name) if act_fn is not None else None
    apply_gate = getattr(ex, "_apply_gate", None)
    if apply_gate is None:
        if act is None:
            raise CaptureError(f"{name}: experts {type(ex).__name__} have neither act_fn nor _apply_gate")
        return (act + "_and_mul", {}), getattr(ex, "is_concatenated", True) is False
    candidates = []
    if act is not None:
        candidates.append((act + "_and_mul", lambda g, u: _ACT_FNS[act](g) * u, {}))
    alpha, limit = getattr(ex, "alpha", None), getattr(ex, "limit", None)
    if isinstance(alpha, (int, float)) and isinstance(limit, (int, float)):
        candidates.append(("swiglu_oai_and_mul", lambda g, u: _swiglu_oai(g, u, alpha, limit),
                           dict(swiglu_alpha=float(alpha), swiglu_limit=float(limit))))
    # Values on both sides of every clamp a gate function might have, gate and up values unalike.
    gen = torch.Generator().manual_seed(9)
    probe = (torch.randn(3, 2 * I, generator=gen, dtype=torch.float64) * 6).to(torch.float32)
    with torch.no_grad():   # on the experts' device, in case _apply_gate uses tensors of its own
        got = apply_gate(probe.to(ex.gate_up_proj.device)).to(device="cpu", dtype=torch.float64)
    layouts = (("concatenated", probe[:, :I], probe[:, I:]), ("interleaved", probe[:, 0::2], probe[:, 1::2]))
    for act_name, fn, params in candidates:
        for layout, g, u in layouts:
            want = fn(g.to(torch.float64), u.to(torch.float64))
            if got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-6):
                return (act_name, params), layout == "interleaved"
    raise CaptureError(f"{name}: {type(ex).__name__}._apply_gate is a gated activation moesim does not have (neither "
                       f"{', '.join(c[0] for c in candidates) or 'act_fn(gate) * up'} in either gate/up layout)")


def _shared(block, name, act):
    """(w1 [1, 2Is, H], w2 [1, H, Is], biases (b1 [1, 2Is], b2 [1, H]) or None), or None."""
    sh = getattr(block, "shared_experts", None)
    if sh is None:
        sh = getattr(block, "shared_expert", None)
    if sh is None:
        return None
    torch = _torch()
    lins = []
    for p in ("gate_proj", "up_proj", "down_proj"):
        lin = getattr(sh, p, None)
        if not isinstance(lin, torch.nn.Linear):
            raise CaptureError(f"{name}: shared expert {type(sh).__name__} has no Linear {p}")
        lins.append(lin)
    sact = getattr(sh, "act_fn", None) or getattr(sh, "activation_fn", None)
    if sact is not None and activation_name(sact, name + " shared expert") + "_and_mul" != act:
        raise CaptureError(f"{name}: the shared expert's activation differs from the routed experts' (a trace has "
                           "one)")
    gate, up, down = lins
    w1 = torch.cat([gate.weight.detach(), up.weight.detach()], dim=0)[None]
    biases = None
    if any(l.bias is not None for l in lins):
        z = lambda l, n: l.bias.detach() if l.bias is not None else torch.zeros(n, dtype=l.weight.dtype, device=l.weight.device)
        biases = (torch.cat([z(gate, gate.out_features), z(up, up.out_features)])[None].contiguous(),
                  z(down, down.out_features)[None].contiguous())
    return w1.contiguous(), down.weight.detach()[None].contiguous(), biases


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
                           f"that a trace cannot express)")
    return ids, w, False


def _layer(name, block, call, verify, pre_weighted):
    torch = _torch()
    H = call.x.shape[-1]
    x = call.x.reshape(-1, H)
    out = call.out.reshape(-1, H)
    if out.shape != x.shape:
        raise CaptureError(f"{name}: block output {list(call.out.shape)} does not match its input {list(call.x.shape)}")
    w1, w2, biases, (act, act_params) = _expert_weights(block, name, H, pre_weighted)
    E, I = w1.shape[0], w1.shape[1] // 2
    shared = _shared(block, name, act)
    if shared is not None and act == "swiglu_oai_and_mul":
        raise CaptureError(f"{name}: a shared expert with the routed experts' clamped SwiGLU: its MLP computes "
                           "act(gate) * up, and a trace has one activation")
    ids, weights, on_input = _routing(block, call, name, E)
    token_dtype = _dtype(x, "token", name, ("float32", "bfloat16"))
    weight_dtype = _dtype(w1, "weight", name, ("float32", "bfloat16"))
    weights = weights.to(torch.float32)
    has_bias = biases is not None or (shared is not None and shared[2] is not None)
    gate = getattr(block, "shared_expert_gate", None)
    if gate is not None and shared is None:
        raise CaptureError(f"{name}: shared_expert_gate without a shared expert")
    cfg = dict(num_experts=E, top_k=ids.shape[1], hidden=H, intermediate=I, activation=act,
               token_dtype=token_dtype, weight_dtype=weight_dtype, num_shared_experts=0 if shared is None else 1,
               shared_intermediate=0 if shared is None else shared[1].shape[2], routed_scaling_factor=1.0,
               router_weight_on_input=on_input, library="", library_version="", expert_bias=has_bias,
               shared_expert_gate=gate is not None, topk_weights_include_scaling=False, **act_params)
    factor = float(getattr(getattr(block, "config", None), "routed_scaling_factor", None) or
                   getattr(getattr(block, "gate", None), "routed_scaling_factor", None) or 1.0)
    layer = dict(name=name, x=x, ids=ids.to(torch.int32), weights=weights, out=out, w1=w1, w2=w2, config=cfg)
    if has_bias:   # a side without biases gets zeros (adding 0 changes no value)
        layer["b1"], layer["b2"] = biases if biases is not None else (w1.new_zeros(E, 2 * I), w1.new_zeros(E, H))
    if shared is not None:
        layer["shared_w1"], layer["shared_w2"] = shared[0], shared[1]
        if has_bias:
            Is = shared[1].shape[2]
            layer["shared_b1"], layer["shared_b2"] = shared[2] if shared[2] is not None else (
                w1.new_zeros(1, 2 * Is), w1.new_zeros(1, H))
    if gate is not None:
        layer["shared_gate"] = gate.weight.detach().reshape(-1).contiguous()
    if factor != 1.0:   # folded into the weights (DeepSeek-V3's router) unless the check says otherwise
        cfg["routed_scaling_factor"], cfg["topk_weights_include_scaling"] = factor, True
    if verify:
        err = _self_check(layer)
        tol = 1e-4 if token_dtype == weight_dtype == "float32" else 2e-2
        if err > tol and factor != 1.0:
            cfg["topk_weights_include_scaling"] = False   # the block scales the routed sum instead
            if _self_check(layer) > tol:
                cfg["topk_weights_include_scaling"] = True
        if _self_check(layer) > tol:
            raise CaptureError(f"{name} ({type(block).__name__}): its output differs from moesim's MoE formula on the "
                               f"captured routing and weights (relative L2 error {err:.3g}): the block computes "
                               f"something a trace cannot express")
    cfg["library_settings"] = {"hf_block": type(block).__name__}
    return layer


def _ffn(x, w1, w2, act, b1=None, b2=None, alpha=1.702, limit=7.0):
    I = w1.shape[0] // 2
    gu = x @ w1.T
    if b1 is not None:
        gu = gu + b1
    g, u = gu[:, :I], gu[:, I:]
    h = _swiglu_oai(g, u, alpha, limit) if act == "swiglu_oai_and_mul" else _ACT_FNS[act[:-8]](g) * u
    y = h @ w2.T
    return y + b2 if b2 is not None else y


def reference_output(layer):
    """What moesim computes for a captured layer, in float64 torch (the hook's self-check)."""
    torch = _torch()
    d = torch.float64
    c = layer["config"]
    act = c["activation"]
    params = dict(alpha=c.get("swiglu_alpha", 1.702), limit=c.get("swiglu_limit", 7.0))
    x = layer["x"].to(d)
    ids, w = layer["ids"].long(), layer["weights"].to(d)
    w1, w2 = layer["w1"].to(d), layer["w2"].to(d)
    b1 = layer["b1"].to(d) if "b1" in layer else None
    b2 = layer["b2"].to(d) if "b2" in layer else None
    on_input = c["router_weight_on_input"]
    y = torch.zeros_like(x)
    for k in range(ids.shape[1]):
        for e in torch.unique(ids[:, k]).tolist():
            if e < 0:
                continue
            rows = (ids[:, k] == e).nonzero().reshape(-1)
            wk = w[rows, k, None]
            bb = dict(b1=None if b1 is None else b1[e], b2=None if b2 is None else b2[e], **params)
            y[rows] += (_ffn(x[rows] * wk, w1[e], w2[e], act, **bb) if on_input
                        else wk * _ffn(x[rows], w1[e], w2[e], act, **bb))
    if not c["topk_weights_include_scaling"]:
        y = y * c["routed_scaling_factor"]
    if "shared_w1" in layer:
        sb = dict(b1=layer["shared_b1"][0].to(d), b2=layer["shared_b2"][0].to(d)) if "shared_b1" in layer else {}
        s = _ffn(x, layer["shared_w1"][0].to(d), layer["shared_w2"][0].to(d), act, **sb, **params)
        if "shared_gate" in layer:
            s = torch.sigmoid(x @ layer["shared_gate"].to(d))[:, None] * s
        y = y + s
    return y


def _self_check(layer):
    torch = _torch()
    ref = reference_output(layer)
    got = layer["out"].to(torch.float64)
    return float(torch.linalg.norm(got - ref) / max(float(torch.linalg.norm(ref)), 1e-30))
