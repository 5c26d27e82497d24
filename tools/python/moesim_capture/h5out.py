"""HDF5 storage conventions of traces/SCHEMA.md: fixed-length ASCII strings, int64 and float64
attributes, datasets of 4096 bytes or more chunked by whole rows (near 256 KiB) with shuffle and
deflate 4, no timestamps."""
import numpy as np

PATTERN_DTYPES = ("bfloat16", "float16", "float8_e4m3fn", "float8_e4m3fnuz")


def set_attr(obj, name, value):
    if isinstance(value, str):
        raw = value.encode("ascii")
        obj.attrs.create(name, np.array(raw, dtype=f"S{max(1, len(raw))}"))
    elif isinstance(value, (bool, np.bool_)):
        obj.attrs.create(name, np.int64(int(value)))
    elif isinstance(value, (int, np.integer)):
        obj.attrs.create(name, np.int64(value))
    else:
        obj.attrs.create(name, np.float64(value))


def write_dataset(group, name, data, axes=None, dtype=None):
    """One dataset; `dtype` is the schema name for bf16/fp16/fp8 patterns (the `dtype` attribute)."""
    data = np.ascontiguousarray(data)
    ds = group.create_dataset(name, data=data, track_times=False, **_layout(data.shape, data.dtype))
    if dtype in PATTERN_DTYPES:
        set_attr(ds, "dtype", dtype)
    if axes:
        set_attr(ds, "axes", axes)
    return ds


def create_empty(group, name, shape, np_dtype, axes=None, dtype=None):
    """A dataset filled later by slices (expert weights written by several ranks)."""
    ds = group.create_dataset(name, shape=shape, dtype=np_dtype, track_times=False,
                              **_layout(shape, np.dtype(np_dtype)))
    if dtype in PATTERN_DTYPES:
        set_attr(ds, "dtype", dtype)
    if axes:
        set_attr(ds, "axes", axes)
    return ds


def _layout(shape, np_dtype):
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if nbytes < 4096 or not shape or shape[0] == 0:
        return {}
    row = np_dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, min(shape[0], 262144 // max(1, row)))
    return dict(chunks=(rows,) + tuple(shape[1:]), shuffle=True, compression="gzip", compression_opts=4)


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)
