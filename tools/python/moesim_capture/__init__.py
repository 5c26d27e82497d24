"""moesim_capture: write moesim traces (traces/SCHEMA.md) from PyTorch or numpy, merge per-rank
captures, decode library buffers, and hook Hugging Face MoE blocks. Needs numpy and h5py; torch
only for torch tensors and the hooks. Importable from tools/python without installing."""
from .config import TraceConfig
from .errors import CaptureError
from .merge import merge
from .tensors import Patterns
from .writer import TraceWriter

__all__ = ["TraceConfig", "TraceWriter", "CaptureError", "Patterns", "merge"]
