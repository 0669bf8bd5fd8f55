"""Intra-op thread count for a block of torch work.

The fitting steps are many small tensor operations (and, photometrically, a 224 px render): extra
intra-op threads add synchronisation and, when the cores are shared with other work, cost 10-25x in
wall time (measured on a loaded 2-core machine). The fitting runs on one thread by default and
restores the caller's setting afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int | None):
    """Run the block with ``count`` intra-op threads (None: leave the setting alone)."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
