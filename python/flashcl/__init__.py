"""flashcl: FlashAttention in OpenCL for Python. ``flashcl.attention`` runs on numpy arrays (host)
and pyopencl Arrays (on the caller's queue); ``flashcl.torch`` has flash-attn 2's functions for
PyTorch tensors; ``flashcl.attention_with_kvcache`` is the KV-cache (decode) step on pyopencl
Arrays, fp8 caches included; importing ``flashcl.transformers`` registers "flashcl" as a Hugging Face
attention implementation. The C++ API itself is ``flashcl._flashcl``; its errors are raised as
``flashcl.Error`` (a RuntimeError with ``.status``, a ``flashcl.Status``).
"""

from ._flashcl import Algorithm, DType, Error, Status, version
from .functional import attention, attention_backward, devices, quantize_fp8, session
from .kvcache import attention_with_kvcache

__version__ = version()
__all__ = ["attention", "attention_backward", "attention_with_kvcache", "devices", "quantize_fp8", "session", "Error",
           "Status", "Algorithm", "DType", "__version__"]
