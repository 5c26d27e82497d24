"""Tensors in, stored arrays out: torch tensors or numpy arrays become the arrays traces/SCHEMA.md
stores (bf16 as uint16 patterns, fp8 as uint8 codes), without loss or not at all."""
import numpy as np

from .errors import CaptureError

FP8 = ("float8_e4m3fn", "float8_e4m3fnuz")
FLOATS = ("float32", "float64", "float16", "bfloat16") + FP8
_PATTERN_TYPE = {"bfloat16": np.uint16, "float16": np.uint16, "float8_e4m3fn": np.uint8, "float8_e4m3fnuz": np.uint8}
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp8": "float8_e4m3fn", "fp8_fnuz": "float8_e4m3fnuz",
            "fp16": "float16", "half": "float16", "float": "float32", "double": "float64"}


def dtype_name(name):
    """The schema's name for a dtype name or alias (`bf16` -> `bfloat16`)."""
    return _ALIASES.get(name, name)


class Patterns:
    """Bit patterns of a dtype numpy lacks: uint16 for bfloat16/float16, uint8 for fp8 codes."""

    def __init__(self, bits, dtype):
        dtype = dtype_name(dtype)
        if dtype not in _PATTERN_TYPE:
            raise CaptureError(f"Patterns: dtype '{dtype}' is not bfloat16, float16, float8_e4m3fn or float8_e4m3fnuz")
        bits = np.asarray(bits)
        if bits.dtype != _PATTERN_TYPE[dtype]:
            raise CaptureError(f"Patterns: {dtype} patterns must be {np.dtype(_PATTERN_TYPE[dtype]).name}, got "
                               f"{bits.dtype}")
        self.bits, self.dtype = bits, dtype

    @property
    def shape(self):
        return self.bits.shape


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def as_array(value):
    """(array, dtype name) of a torch tensor, numpy array or Patterns; bf16/fp16/fp8 as patterns."""
    if isinstance(value, Patterns):
        return np.ascontiguousarray(value.bits), value.dtype
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        name = str(t.dtype).replace("torch.", "")
        if name == "bfloat16":
            return t.view(torch.int16).numpy().view(np.uint16), name
        if name in FP8:
            return t.view(torch.uint8).numpy(), name
        if name == "float16":
            return t.numpy().view(np.uint16), name
        if name == "bool":
            return t.numpy(), name
        return t.numpy(), name
    a = np.ascontiguousarray(np.asarray(value))
    if a.dtype == np.float16:
        return a.view(np.uint16), "float16"
    return a, a.dtype.name


def to_float32(bits, dtype):
    """float32 values of stored data (exact for every dtype but float64)."""
    if dtype == "float32":
        return bits
    if dtype == "float64":
        return bits.astype(np.float32)
    if dtype == "bfloat16":
        return (bits.astype(np.uint32) << 16).view(np.float32)
    if dtype == "float16":
        return bits.view(np.float16).astype(np.float32)
    if dtype in FP8:
        return _fp8_values(bits, dtype == "float8_e4m3fnuz")
    raise CaptureError(f"not a float dtype: {dtype}")


def _fp8_values(codes, fnuz):
    a = codes.astype(np.int32)
    sign = np.where(a & 0x80, -1.0, 1.0)
    e, m = (a >> 3) & 0xF, a & 7
    bias = 8 if fnuz else 7
    v = sign * np.where(e == 0, m / 8.0 * 2.0 ** (1 - bias), (1 + m / 8.0) * 2.0 ** (e - bias))
    nan = (a == 0x80) if fnuz else ((a & 0x7F) == 0x7F)
    return np.where(nan, np.nan, v).astype(np.float32)


def first_bad(mask):
    """Index of the first True of a mask, as `[i, j]`."""
    idx = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _not_finite(bits, dtype):
    """Mask of the non-finite values, read from the bits (no float copy of a large weight tensor)."""
    if dtype == "bfloat16":
        return (bits & 0x7F80) == 0x7F80
    if dtype == "float16":
        return (bits & 0x7C00) == 0x7C00
    if dtype == "float8_e4m3fn":
        return (bits & 0x7F) == 0x7F
    if dtype == "float8_e4m3fnuz":
        return bits == 0x80
    return ~np.isfinite(bits)


def _check_finite(bits, dtype, where):
    bad = _not_finite(bits, dtype)
    if bad.any():
        at = np.unravel_index(int(np.argmax(bad)), bad.shape)
        value = to_float32(bits[at].reshape(1), dtype)[0] if dtype != "float64" else bits[at]
        raise CaptureError(f"{where}: index {first_bad(bad)}: value {value} is not finite")


def store(value, wanted, where, finite=True):
    """The stored array and dtype name for `value` as one of the `wanted` dtypes, converted only
    where the conversion is exact (bf16 -> float32, float32 holding bf16 values -> bf16, ...)."""
    bits, have = as_array(value)
    if have not in FLOATS:
        raise CaptureError(f"{where}: dtype is {have}, expected {' or '.join(wanted)}")
    if have in wanted:
        out, name = bits, have
    else:
        out, name = _convert_exact(bits, have, wanted, where)
    if finite:
        _check_finite(out, name, where)
    return out, name


def _convert_exact(bits, have, wanted, where):
    expected = " or ".join(wanted)
    if have in FP8 or all(w in FP8 for w in wanted):
        raise CaptureError(f"{where}: dtype is {have}, expected {expected}")
    v = to_float32(bits, have) if have != "float64" else bits
    for w in wanted:
        if w == "float32":
            f = v.astype(np.float32)
            if have != "float64" or np.array_equal(f.astype(np.float64), v, equal_nan=True):
                return f, "float32"
        if w == "float64":
            return v.astype(np.float64), "float64"
        if w == "bfloat16":
            f = v.astype(np.float32)
            u = f.view(np.uint32)
            exact32 = have != "float64" or np.array_equal(f.astype(np.float64), v, equal_nan=True)
            if exact32 and not (u & 0xFFFF).any():
                return (u >> 16).astype(np.uint16), "bfloat16"
    raise CaptureError(f"{where}: dtype is {have}, expected {expected} (its values do not convert without loss)")


def integers(value, where, dtype=np.int32):
    """An integer array as `dtype`, refused if it is not integer or does not fit."""
    a, have = as_array(value)
    if not np.issubdtype(a.dtype, np.integer):
        raise CaptureError(f"{where}: dtype is {have}, expected an integer type ({np.dtype(dtype).name})")
    info = np.iinfo(dtype)
    if a.size and (a.min() < info.min or a.max() > info.max):
        bad = (a < info.min) | (a > info.max)
        raise CaptureError(f"{where}: index {first_bad(bad)}: "
                           f"{int(a[np.unravel_index(int(np.argmax(bad)), bad.shape)])} "
                           f"does not fit {np.dtype(dtype).name}")
    return a.astype(dtype)
