"""The layer configuration a trace records (/config in traces/SCHEMA.md), checked against the
ranges moesim's reader accepts."""
from dataclasses import dataclass, field

import numpy as np

from .errors import CaptureError
from .tensors import dtype_name

ACTIVATIONS = ("silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul", "swiglu_oai_and_mul", "silu", "gelu",
               "gelu_tanh")
TOKEN_DTYPES = ("float32", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz")
WEIGHT_DTYPES = ("float32", "bfloat16")
PLACEMENTS = ("contiguous", "explicit", "eplb")
MORI_KERNELS = ("IntraNode", "InterNode", "InterNodeV1", "InterNodeV1LL", "AsyncLL", "IntraNodeLL")


@dataclass
class TraceConfig:
    num_ranks: int
    num_experts: int
    top_k: int
    hidden: int
    intermediate: int
    activation: str = "silu_and_mul"
    token_dtype: str = "bfloat16"
    weight_dtype: str = "bfloat16"
    scale_block: int = 128
    num_shared_experts: int = 0
    shared_intermediate: int = 0
    routed_scaling_factor: float = 1.0
    router_weight_on_input: bool = False
    library: str = ""
    library_version: str = ""
    placement: str = "contiguous"
    expert_to_rank: object = None       # int [E], explicit/eplb
    physical_to_logical: object = None  # int [E], explicit/eplb
    num_logical: int = 0                # L; 0 means E (contiguous) or max(physical_to_logical) + 1
    mori: dict = None                   # max_num_inp_token_per_rank, max_total_recv_tokens, kernel_type, gpus_per_node
    library_settings: dict = field(default_factory=dict)
    # schema v2's model families (traces/SCHEMA.md)
    topk_weights_include_scaling: bool = False  # topk_weights already hold routed_scaling_factor
    expert_bias: bool = False                   # add_weights takes b1, b2 (and shared_b1, shared_b2)
    shared_expert_gate: bool = False            # add_weights takes shared_gate [H]
    swiglu_alpha: float = 1.702                 # swiglu_oai_and_mul only
    swiglu_limit: float = 7.0

    @property
    def gated(self):
        return self.activation.endswith("_and_mul")

    @property
    def w1_rows(self):
        return 2 * self.intermediate if self.gated else self.intermediate

    @property
    def shared_w1_rows(self):
        return 2 * self.shared_intermediate if self.gated else self.shared_intermediate

    @property
    def scale_blocks(self):
        return -(-self.hidden // self.scale_block)

    @property
    def is_fp8(self):
        return self.token_dtype.startswith("float8")

    def checked(self, where="/config"):
        """A normalized copy (dtype aliases resolved, arrays as int32), or CaptureError."""
        c = TraceConfig(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        c.token_dtype, c.weight_dtype = dtype_name(c.token_dtype), dtype_name(c.weight_dtype)
        for flag in ("router_weight_on_input", "topk_weights_include_scaling", "expert_bias", "shared_expert_gate"):
            setattr(c, flag, bool(getattr(c, flag)))

        def rng(name, lo, hi):
            v = getattr(c, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise CaptureError(f"{where}: attribute '{name}' = {v!r} is not an integer")
            if not lo <= v <= hi:
                raise CaptureError(f"{where}: attribute '{name}' = {v} out of range [{lo}, {hi}]")
            setattr(c, name, int(v))

        rng("num_ranks", 1, 65536)
        rng("num_experts", 1, 2 ** 20)
        rng("top_k", 1, min(64, c.num_experts))
        for n in ("hidden", "intermediate", "scale_block"):
            rng(n, 1, 2 ** 20)
        rng("num_shared_experts", 0, 64)
        rng("shared_intermediate", 1 if c.num_shared_experts > 0 else 0, 2 ** 20)
        for name, v, allowed in (("activation", c.activation, ACTIVATIONS),
                                 ("token_dtype", c.token_dtype, TOKEN_DTYPES),
                                 ("weight_dtype", c.weight_dtype, WEIGHT_DTYPES),
                                 ("placement", c.placement, PLACEMENTS)):
            if v not in allowed:
                raise CaptureError(f"{where}: attribute '{name}' = '{v}' is not one of {', '.join(allowed)}")
        c.routed_scaling_factor = float(c.routed_scaling_factor)
        if not 0.0 <= c.routed_scaling_factor <= 1000.0:
            raise CaptureError(f"{where}: attribute 'routed_scaling_factor' = {c.routed_scaling_factor} out of range "
                               "[0, 1000]")
        if c.shared_expert_gate and c.num_shared_experts == 0:
            raise CaptureError(f"{where}: attribute 'shared_expert_gate' = 1 needs num_shared_experts > 0")
        for name, hi in (("swiglu_alpha", 1000.0), ("swiglu_limit", 1e6)):
            v = float(getattr(c, name))
            if not 0.0 < v <= hi:
                raise CaptureError(f"{where}: attribute '{name}' = {v} out of range (0, {hi:g}]")
            setattr(c, name, v)
        for s in (c.library, c.library_version, *c.library_settings.keys(), *c.library_settings.values()):
            if not isinstance(s, str) or not s.isascii() or "\0" in s:
                raise CaptureError(f"{where}: {s!r} is not a plain ASCII string")
        self._check_placement(c, where)
        if c.mori is not None:
            c.mori = self._check_mori(dict(c.mori), where + "/mori")
        return c

    @staticmethod
    def _check_placement(c, where):
        E, R = c.num_experts, c.num_ranks
        if c.placement == "contiguous":
            if E % R:
                raise CaptureError(f"{where}/placement: contiguous placement needs num_experts {E} to be a multiple "
                                   f"of num_ranks {R}")
            if c.expert_to_rank is not None or c.physical_to_logical is not None:
                raise CaptureError(f"{where}/placement: contiguous placement takes no expert_to_rank or "
                                   "physical_to_logical")
            if c.num_logical not in (0, E):
                raise CaptureError(f"{where}/placement: contiguous placement has num_logical {E}, not {c.num_logical}")
            c.num_logical = E
            return
        for name, hi in (("expert_to_rank", R), ("physical_to_logical", None)):
            a = getattr(c, name)
            if a is None:
                raise CaptureError(f"{where}/placement/{name}: missing ({c.placement} placement)")
            a = np.asarray(a)
            if not np.issubdtype(a.dtype, np.integer) or a.shape != (E,):
                raise CaptureError(f"{where}/placement/{name}: expected int [{E}], got {a.dtype} {list(a.shape)}")
            setattr(c, name, a.astype(np.int32))
        L = c.num_logical or int(c.physical_to_logical.max()) + 1
        if not 1 <= L <= E:
            raise CaptureError(f"{where}/placement: attribute 'num_logical' = {L} out of range [1, {E}]")
        c.num_logical = L
        for name, hi in (("expert_to_rank", R), ("physical_to_logical", L)):
            a = getattr(c, name)
            bad = (a < 0) | (a >= hi)
            if bad.any():
                i = int(np.argmax(bad))
                raise CaptureError(f"{where}/placement/{name}: index [{i}]: {int(a[i])} out of range [0, {hi})")

    @staticmethod
    def _check_mori(m, where):
        known = {"max_num_inp_token_per_rank": 0, "max_total_recv_tokens": 0, "kernel_type": "IntraNode",
                 "gpus_per_node": 8}
        for k in m:
            if k not in known:
                raise CaptureError(f"{where}: unknown setting '{k}' (expected {', '.join(known)})")
        out = {**known, **m}
        for k, lo, hi in (("max_num_inp_token_per_rank", 0, 2 ** 24), ("max_total_recv_tokens", 0, 2 ** 40),
                          ("gpus_per_node", 1, 65536)):
            v = out[k]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise CaptureError(f"{where}: attribute '{k}' = {v!r} out of range [{lo}, {hi}]")
            out[k] = int(v)
        if out["kernel_type"] not in MORI_KERNELS:
            raise CaptureError(f"{where}: attribute 'kernel_type' = '{out['kernel_type']}' is not one of "
                               f"{', '.join(MORI_KERNELS)}")
        return out
