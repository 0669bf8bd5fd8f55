"""A cache of values derived from tensors (shared by morph3d.model and morph3d.render)."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Hashable

import torch


class TensorCache:
    """Values derived from a tensor, reused while that same tensor object is unmodified.

    Entries are keyed by the tensor's identity plus a caller key, checked against the tensor's
    version counter (in-place edits invalidate them) and dropped when the tensor is freed.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[int, Hashable], tuple[weakref.ref, int, Any]] = {}
        self._lock = threading.Lock()

    def get(self, tensor: torch.Tensor, key: Hashable, make: Callable[[], Any]) -> Any:
        try:
            version = tensor._version
        except RuntimeError:  # inference tensors have no version counter: do not cache
            return make()
        slot = (id(tensor), key)
        with self._lock:
            entry = self._entries.get(slot)
        if entry is not None and entry[0]() is tensor and entry[1] == version:
            return entry[2]
        value = make()
        entries = self._entries

        def _drop(ref: weakref.ref, slot=slot) -> None:
            current = entries.get(slot)
            if current is not None and current[0] is ref:
                entries.pop(slot, None)

        with self._lock:
            entries[slot] = (weakref.ref(tensor, _drop), version, value)
        return value


__all__ = ["TensorCache"]
