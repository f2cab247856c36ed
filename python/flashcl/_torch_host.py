"""Host views of PyTorch tensors for the calls that run through numpy (CPU tensors, and the staged
fallbacks): the conversion (and the window rule) that flashcl.torch and its fp8 module share, kept apart
from both so that neither has to import the other for it.
"""

from typing import Optional

import torch
from torch import Tensor


def window_side(w) -> int:
    """One side of flash-attn's window_size as the library takes it: a side past int32 reaches past
    any sequence (the same as int32's largest); one below -1 stays an error the library names (-1 is
    unbounded)."""
    return max(min(int(w), 2**31 - 1), -2)


def numpy_of(t: Optional[Tensor], dtype: torch.dtype = torch.float32):
    """A host numpy view of t in `dtype` (no copy when t already is a dense CPU tensor of it); None stays None."""
    if t is None:
        return None
    return t.detach().to(device="cpu", dtype=dtype).contiguous().numpy()
