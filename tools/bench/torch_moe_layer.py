#!/usr/bin/env python3
"""The same MoE layer as `moesim bench gpu` measures, written the two ways PyTorch users write it,
timed on the same GPU: the Hugging Face transformers style (a loop over the experts that received
tokens, each a gather, two linears and index_add_ into the output) and a grouped version
(torch._grouped_mm over rows sorted by expert, where the installed torch has it). Values are
random (the speed does not depend on them); the routing is moesim's, read from ROUTING.

usage: torch_moe_layer.py ROUTING TOKENS TOP_K EXPERTS HIDDEN INTER SHARED SHARED_INTER SCALE REPS
ROUTING: int32 ids [TOKENS, TOP_K] then float32 weights [TOKENS, TOP_K], little-endian.
Prints 'eager_ms X' and 'grouped_ms X' (or 'grouped_ms absent: why')."""
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

path = sys.argv[1]
T, K, E, H, I, S, Is = (int(a) for a in sys.argv[2:9])
scale, reps = float(sys.argv[9]), int(sys.argv[10])
raw = np.fromfile(path, dtype=np.uint8)
ids = torch.from_numpy(raw[: T * K * 4].view(np.int32).reshape(T, K).astype(np.int64)).cuda()
wts = torch.from_numpy(raw[T * K * 4 :].view(np.float32).reshape(T, K).copy()).cuda()
g = torch.Generator(device="cuda").manual_seed(0)
bf = torch.bfloat16
x = (torch.randn(T, H, device="cuda", generator=g) * 0.1).to(bf)
w1 = (torch.randn(E, 2 * I, H, device="cuda", generator=g) * H**-0.5).to(bf)
w2 = (torch.randn(E, H, I, device="cuda", generator=g) * I**-0.5).to(bf)
sw1 = [(torch.randn(2 * Is, H, device="cuda", generator=g) * H**-0.5).to(bf) for _ in range(S)]
sw2 = [(torch.randn(H, Is, device="cuda", generator=g) * Is**-0.5).to(bf) for _ in range(S)]


def shared(out):
    for a, b in zip(sw1, sw2):
        gate, up = F.linear(x, a).chunk(2, dim=-1)
        out = out + F.linear(F.silu(gate) * up, b)
    return out


def eager():  # transformers' MoE blocks: one_hot mask, loop over hit experts, index_add_
    out = torch.zeros(T, H, device="cuda", dtype=bf)
    mask = F.one_hot(ids, E).permute(2, 1, 0)
    for e in (mask.sum(dim=(-1, -2)) > 0).nonzero()[:, 0].tolist():
        slot, tok = torch.where(mask[e])
        gate, up = F.linear(x[tok], w1[e]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w2[e]) * wts[tok, slot, None].to(bf)
        out.index_add_(0, tok, y)
    return shared(out * scale if scale != 1 else out)


def grouped():
    flat = ids.flatten()
    order = torch.argsort(flat, stable=True)
    tok = order // K
    offs = torch.cumsum(torch.bincount(flat, minlength=E), 0).to(torch.int32)
    h = torch._grouped_mm(x[tok], w1.transpose(1, 2), offs=offs)
    gate, up = h.chunk(2, dim=-1)
    y = torch._grouped_mm(F.silu(gate) * up, w2.transpose(1, 2), offs=offs) * wts.flatten()[order, None].to(bf)
    out = torch.zeros(T, H, device="cuda", dtype=bf).index_add_(0, tok, y)
    return shared(out * scale if scale != 1 else out)


def median_ms(f):
    f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        f()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2] * 1e3


with torch.no_grad():
    print(f"eager_ms {median_ms(eager):.3f}", flush=True)
    if hasattr(torch, "_grouped_mm"):
        try:
            print(f"grouped_ms {median_ms(grouped):.3f}")
        except RuntimeError as e:
            print(f"grouped_ms absent: {str(e).splitlines()[0]}")
    else:
        print(f"grouped_ms absent: torch {torch.__version__} has no _grouped_mm")
