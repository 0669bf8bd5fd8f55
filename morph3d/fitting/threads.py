"""Intra-op thread count for a block of torch work.

The fitting steps are many small tensor operations (and, photometrically, a 224 px render): extra
intra-op threads add synchronisation and, when the cores are shared with other work, cost 10-25x in
wall time (measured on a loaded 2-core machine). Library calls leave torch's global setting alone
unless asked (``FitPipeline(threads=N)``, ``morph3d fit --threads N``), and restore it afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int | None):
    """Run the block with ``count`` intra-op threads (None: leave the setting alone)."""
    if count is not None and count < 1:
        raise ValueError(f"the thread count must be at least 1, got {count}")
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
