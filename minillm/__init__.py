"""minillm: a small deep-learning framework that teaches how LLMs (T5) are built, fine-tuned and
evaluated. Read it in this order: backend.py, autograd.py, ops/, nn/, models/t5.py, generation.py,
peft/, optim/, training/, metrics/, evaluation/, and then the speed chapter: fast/, kernels/
(see README.md and docs/architecture.md)."""
from . import ops
from .autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad, tensor
from .backend import DEFAULT_DTYPE, Device, cuda_available, get_array_module, get_rng, manual_seed, to_device
from .fast import fast_paths, fast_paths_enabled, register_all as _register_fast_paths
from .fast.threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Function", "tensor", "no_grad", "enable_grad", "is_grad_enabled", "ops",
    "Device", "cuda_available", "get_array_module", "get_rng", "manual_seed", "to_device",
    "set_num_threads", "get_num_threads", "fast_paths", "fast_paths_enabled",
    "DEFAULT_DTYPE", "__version__",
]

_register_fast_paths()
