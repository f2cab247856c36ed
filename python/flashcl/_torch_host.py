"""Host views of PyTorch tensors for the calls that run through numpy (CPU tensors, and the staged
fallbacks): the conversion that flashcl.torch and its fp8 module share, kept apart from both so that
neither has to import the other for it. (The window rule is functional._window_pair, every entry
point's.)
"""

from typing import Optional

import torch
from torch import Tensor


def numpy_of(t: Optional[Tensor], dtype: torch.dtype = torch.float32):
    """A host numpy view of t in `dtype` (no copy when t already is a dense CPU tensor of it); None stays None."""
    if t is None:
        return None
    return t.detach().to(device="cpu", dtype=dtype).contiguous().numpy()
