"""hf_families.py (the script the lead runs on a machine with transformers) against a stub
`transformers` package written here from torch_blocks.py: families that capture (one with
Qwen2-MoE's shared-expert gate), one whose model fails but whose MoE block alone captures, one whose block
computes something the schema cannot express (flagged), the rest absent (skipped). The table,
the per-family isolation and the exit code are checked; without transformers the script skips
with exit 0. Usage: test_capture_hf_script.py MOESIM TMP_DIR (exit 77, skipped, without torch)."""
import os
import subprocess
import sys

from capture_testlib import PACKAGE, check, finish, moesim, tmp

try:
    import torch  # noqa: F401 (the stub models are torch modules)
except ImportError:
    print("skipped: torch is not installed (Debian: python3-torch)")
    sys.exit(77)

here = os.path.dirname(os.path.abspath(__file__))
stub = os.path.join(tmp, "stub_transformers")
STUB_INIT = r'''
"""A stand-in for transformers with a few families built from torch_blocks."""
import torch
from torch_blocks import HiddenScaleBlock, Qwen2MoeBlock, SoftmaxBlock

__version__ = "stub"


class _Config:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Model(torch.nn.Module):
    block = SoftmaxBlock

    def __init__(self, config):
        super().__init__()
        self.embed = torch.nn.Embedding(config.vocab_size, 32)
        self.layers = torch.nn.ModuleList([self.block() for _ in range(config.num_hidden_layers)])

    def forward(self, input_ids):
        h = self.embed(input_ids)
        for layer in self.layers:
            out = layer(h)
            h = h + (out[0] if isinstance(out, tuple) else out)
        return h


class MixtralConfig(_Config):
    pass


class MixtralForCausalLM(_Model):
    pass


class Qwen2MoeConfig(_Config):
    pass


class Qwen2MoeForCausalLM(_Model):
    block = Qwen2MoeBlock


class OlmoeConfig(_Config):
    pass


class OlmoeForCausalLM(_Model):
    def forward(self, input_ids):
        raise RuntimeError("attention is broken in this stub")


class DeepseekV3Config(_Config):
    pass


class DeepseekV3ForCausalLM(_Model):
    block = HiddenScaleBlock
'''
STUB_OLMOE = r'''
from torch_blocks import SoftmaxBlock


class OlmoeSparseMoeBlock(SoftmaxBlock):
    def __init__(self, config):
        super().__init__(H=config.hidden_size)
'''
os.makedirs(os.path.join(stub, "transformers", "models", "olmoe"), exist_ok=True)
for rel, text in (("__init__.py", STUB_INIT), ("models/__init__.py", ""), ("models/olmoe/__init__.py", ""),
                  ("models/olmoe/modeling_olmoe.py", STUB_OLMOE)):
    with open(os.path.join(stub, "transformers", rel), "w") as f:
        f.write(text)

script = os.path.join(here, "hf_families.py")
env = dict(os.environ, PYTHONPATH=os.pathsep.join([stub, here, PACKAGE]))
traces = os.path.join(tmp, "hf_script")   # family-named traces, kept apart from other tests' files
os.makedirs(traces, exist_ok=True)
r = subprocess.run([sys.executable, script, moesim, "--tmp", traces], env=env, capture_output=True, text=True)
out = r.stdout
rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ") and "---" not in line}
check(r.returncode == 1, f"exit {r.returncode} (a flagged family must fail the run): {out}{r.stderr[-2000:]}")
check("ok (2 MoE block call(s))" in rows.get("mixtral", ""), f"mixtral row: {rows.get('mixtral')}")
err = rows.get("mixtral", "|||").split("|")[3].strip()
check(err != "" and float(err) < 1e-5, f"mixtral error {err!r}")
check("ok (2 MoE block call(s))" in rows.get("qwen2_moe", "") and "[expected" not in rows.get("qwen2_moe", ""),
      f"qwen2_moe row (shared-expert gate): {rows.get('qwen2_moe')}")
check("ok (1 MoE block call(s)) [block OlmoeSparseMoeBlock alone; the model failed: RuntimeError: attention is broken"
      in rows.get("olmoe", ""), f"olmoe row: {rows.get('olmoe')}")
check("refused: " in rows.get("deepseek_v3", "") and "[expected ok]" in rows.get("deepseek_v3", ""),
      f"deepseek_v3 row: {rows.get('deepseek_v3')}")
for family in ("qwen3_moe", "deepseek_v2", "glm4_moe", "llama4", "gpt_oss"):
    check("skipped: not in this transformers" in rows.get(family, ""), f"{family} row: {rows.get(family)}")

r = subprocess.run([sys.executable, script, moesim], env=dict(os.environ, PYTHONPATH=PACKAGE), capture_output=True,
                   text=True)
check(r.returncode == 0 and r.stdout.startswith("skipped: transformers is not installed"),
      f"without transformers: exit {r.returncode}: {r.stdout}{r.stderr}")
finish()
