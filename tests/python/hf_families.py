"""Hugging Face transformers MoE families through moesim_capture.hf and `moesim golden`.

    /usr/bin/python3 tests/python/hf_families.py build/moesim [--tmp DIR] [--device cpu] [--only mixtral,...]

For each family: a small model built from a config with random weights (nothing downloaded), fp32,
every MoE block hooked, one forward pass, the capture written as a trace, `moesim golden
--numerics fp32` run on it, and its final_out compared with the blocks' own outputs. Prints one
row per family: status (ok, refused: a feature the trace schema lacks, error: what went wrong, or
skipped: this transformers has no such family) and the max relative error (max |golden - block| /
max |block| over all captured blocks). One family failing does not stop the others.
Exit 0 when transformers is missing (nothing to check) or every family did what it is expected to
(captured within 1e-4, or refused when the schema cannot express it); 1 otherwise."""
import argparse
import os
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "python"))

TOLERANCE = 1e-4
# Sizes only; every other setting is the family's default (head_dim too: DeepSeek derives its own).
SMALL = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=64, tie_word_embeddings=False)

# family: (config class, model class, config kwargs, expected: "ok" or "refused"). Expert
# intermediate sizes of 24 keep 2I (48) apart from H (64), so no layout is ambiguous by shape.
FAMILIES = {
    "mixtral": ("MixtralConfig", "MixtralForCausalLM",
                dict(intermediate_size=24, num_local_experts=8, num_experts_per_tok=2), "ok"),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM",
                  dict(intermediate_size=64, moe_intermediate_size=24, shared_expert_intermediate_size=32,
                       num_experts=8, num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[],
                       norm_topk_prob=False), "ok"),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(intermediate_size=64, moe_intermediate_size=24, num_experts=8, num_experts_per_tok=2,
                       decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True), "ok"),
    "deepseek_v2": ("DeepseekV2Config", "DeepseekV2ForCausalLM",
                    dict(intermediate_size=64, moe_intermediate_size=24, n_routed_experts=8, n_shared_experts=1,
                         num_experts_per_tok=2, first_k_dense_replace=1, routed_scaling_factor=2.0, q_lora_rank=None,
                         kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
                         num_key_value_heads=4), "ok"),
    "deepseek_v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM",
                    dict(intermediate_size=64, moe_intermediate_size=24, n_routed_experts=8, n_shared_experts=1,
                         num_experts_per_tok=2, first_k_dense_replace=1, n_group=2, topk_group=1,
                         routed_scaling_factor=2.5, norm_topk_prob=True, q_lora_rank=16, kv_lora_rank=16,
                         qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, num_key_value_heads=4), "ok"),
    "olmoe": ("OlmoeConfig", "OlmoeForCausalLM",
              dict(intermediate_size=24, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False), "ok"),
    "glm4_moe": ("Glm4MoeConfig", "Glm4MoeForCausalLM",
                 dict(intermediate_size=64, moe_intermediate_size=24, n_routed_experts=8, n_shared_experts=1,
                      num_experts_per_tok=2, first_k_dense_replace=1, n_group=1, topk_group=1,
                      routed_scaling_factor=2.5, norm_topk_prob=True, partial_rotary_factor=0.5), "ok"),
    "llama4": ("Llama4TextConfig", "Llama4ForCausalLM",
               dict(intermediate_size=24, intermediate_size_mlp=64, num_local_experts=4, num_experts_per_tok=1,
                    interleave_moe_layer_step=1, use_qk_norm=False), "ok"),
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM",
                dict(intermediate_size=24, num_local_experts=4, num_experts_per_tok=2,
                     layer_types=["sliding_attention", "full_attention"], sliding_window=16), "ok"),
}


def make_config(transformers, family):
    conf_cls, model_cls, kw, _ = FAMILIES[family]
    if not hasattr(transformers, conf_cls) or not hasattr(transformers, model_cls):
        return None
    config = getattr(transformers, conf_cls)(**{**SMALL, **kw})
    try:
        config._experts_implementation = "eager"   # the reference loop; the hooks see the same inputs either way
    except Exception:
        pass
    return config


def find_block(transformers, torch, family, config, device):
    """A MoE block of the family built alone from the config: the fallback when the whole model
    fails for a reason that is not the MoE block's (attention, rope, a config check)."""
    import importlib

    from moesim_capture.hf import is_moe_block

    module = importlib.import_module(f"{transformers.__name__}.models.{family}.modeling_{family}")
    for name in sorted(dir(module)):
        cls = getattr(module, name)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)) or "Experts" in name:
            continue
        if not any(name.endswith(t) for t in ("SparseMoeBlock", "MoE", "Moe", "MLP", "MoeBlock")):
            continue
        try:
            block = cls(config)
        except Exception:
            continue
        if is_moe_block(block):
            return block.to(device=device, dtype=torch.float32).eval()
    return None


def randomize_blocks(cap, torch):
    # from_config's init is small (std 0.02) and leaves some tensors zero: give every MoE block
    # weights whose routing and outputs are not degenerate.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, block in cap.blocks:
            for p in block.parameters():
                fan_in = p.shape[-1] if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def max_rel_error(trace, golden, h5py, np):
    worst = 0.0
    with h5py.File(trace, "r") as t, h5py.File(golden, "r") as g:
        R = int(t["config"].attrs["num_ranks"])
        for l in range(int(t["layers"].attrs["num_layers"])):
            want = np.concatenate([t[f"layers/{l}/ranks/{r}/captured/final_out"][...] for r in range(R)])
            got = np.concatenate([g[f"layers/{l}/ranks/{r}/final_out"][...] for r in range(R)])
            worst = max(worst, float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30)))
    return worst


def capture_and_replay(module, forward, family, moesim, tmp, torch, h5py, np):
    """(status, max relative error) of one module's capture through golden."""
    from moesim_capture.hf import MoECapture

    cap = MoECapture(module)
    randomize_blocks(cap, torch)
    with torch.no_grad(), cap:
        forward()
    trace = os.path.join(tmp, f"{family}.h5")
    golden = os.path.join(tmp, f"{family}_golden.h5")
    cap.write(trace, command=f"hf_families.py {family}")
    r = subprocess.run([moesim, "golden", trace, "-o", golden, "--numerics", "fp32", "--threads", "4"],
                       capture_output=True, text=True)
    if r.returncode:
        return f"error: moesim golden exit {r.returncode}: {(r.stdout + r.stderr).strip()}", None
    err = max_rel_error(trace, golden, h5py, np)
    status = "ok" if err <= TOLERANCE else f"error: relative error {err:.3g} above {TOLERANCE}"
    return f"{status} ({len(cap.calls)} MoE block call(s))", err


def run_family(family, moesim, tmp, device, transformers, torch):
    import h5py
    import numpy as np

    from moesim_capture import CaptureError

    expected = FAMILIES[family][3]
    config = make_config(transformers, family)
    if config is None:
        return "skipped: not in this transformers", None, ""
    try:
        torch.manual_seed(0)
        model = getattr(transformers, FAMILIES[family][1])(config).to(device=device, dtype=torch.float32).eval()
        ids = torch.randint(0, SMALL["vocab_size"], (2, 8), generator=torch.Generator().manual_seed(2)).to(device)
        status, err = capture_and_replay(model, lambda: model(input_ids=ids), family, moesim, tmp, torch, h5py, np)
        return status, err, expected
    except CaptureError as e:
        return f"refused: {e}", None, expected
    except Exception as e:   # the model failed; try its MoE block alone
        model_error = f"{type(e).__name__}: {e}".replace("\n", " ")[:200]
        traceback.print_exc()
    block = find_block(transformers, torch, family, config, device)
    if block is None:
        return f"error: model failed ({model_error}) and no MoE block class was found", None, expected
    x = torch.randn(2, 8, SMALL["hidden_size"], generator=torch.Generator().manual_seed(3)).to(device)
    try:
        status, err = capture_and_replay(block, lambda: block(x), family, moesim, tmp, torch, h5py, np)
    except CaptureError as e:
        status, err = f"refused: {e}", None
    return f"{status} [block {type(block).__name__} alone; the model failed: {model_error}]", err, expected


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("moesim", help="the moesim binary")
    ap.add_argument("--tmp", help="folder for the traces (default: a temporary one)")
    ap.add_argument("--device", default="cpu", help="torch device the models run on (default cpu)")
    ap.add_argument("--only", help="comma-separated families (default: all of %s)" % ", ".join(FAMILIES))
    args = ap.parse_args()
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"skipped: {e.name} is not installed (this script needs torch and transformers)")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False   # fp32 on a GPU must be fp32
    torch.backends.cudnn.allow_tf32 = False
    families = args.only.split(",") if args.only else list(FAMILIES)
    tmp = args.tmp or tempfile.mkdtemp(prefix="hf_families_")
    os.makedirs(tmp, exist_ok=True)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {args.device}, traces in {tmp}")
    rows, bad = [], 0
    for family in families:
        if family not in FAMILIES:
            rows.append((family, "error: unknown family", None))
            bad += 1
            continue
        try:
            status, err, expected = run_family(family, args.moesim, tmp, args.device, transformers, torch)
        except Exception as e:   # one family's failure must not stop the others
            status, err, expected = f"error: {type(e).__name__}: {e}".replace("\n", " "), None, FAMILIES[family][3]
            traceback.print_exc()
        kind = status.split(":")[0].split(" ")[0]
        if kind != "skipped" and kind != expected:
            bad += 1
            status += f"  [expected {expected}]"
        rows.append((family, status, err))
    print()
    print("| family | status | max rel error vs block fp32 |")
    print("|---|---|---|")
    for family, status, err in rows:
        print(f"| {family} | {status} | {'' if err is None else f'{err:.3g}'} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
