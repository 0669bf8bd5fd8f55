"""Restricted unpickler for NVIDIA ``network-snapshot-*.pkl`` files (stylegan2-ada-pytorch, StyleGAN3).

Those pickles store every network object through ``torch_utils.persistence._reconstruct_persistent_obj``
with a meta dict ``{type, version, module_src, class_name, state}``: the module's Python source and its
``__dict__``. We intercept that call and keep only ``class_name`` and ``state`` (init kwargs, parameters,
buffers, sub-modules) as a ``PersistentRecord``; the source is never executed and neither ``dnnlib`` nor
``torch_utils`` is imported. Only the few globals below can be loaded; anything else (``os.system``,
``builtins.eval``, arbitrary classes) stops the load with ``UnsafePickleError``.
"""
import collections
import io
import pickle
from dataclasses import dataclass, field

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for a global outside the allow-list."""


@dataclass
class PersistentRecord:
    """What a persistent NVIDIA object carries, minus its source code."""
    class_name: str
    state: dict = field(default_factory=dict)

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> dict:
        """Flatten the parameters and buffers of this module tree into ``{dotted.name: tensor}``."""
        out = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if isinstance(value, torch.Tensor):
                    out[prefix + name] = value.detach()
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentRecord):
                out.update(child.tensors(prefix + name + "."))
        return out


def _reconstruct_persistent_obj(meta):
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: record, never execute."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise UnsafePickleError("malformed persistent object in the pickle (expected a class meta dict)")
    return PersistentRecord(str(meta.get("class_name")), dict(meta["state"]))


def _load_storage_from_bytes(data: bytes):
    """``torch.storage._load_from_bytes`` with torch's weights-only loader (no code execution)."""
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _numpy_global(name: str):
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:
        from numpy.core import multiarray
    return getattr(multiarray, name)


def _allowed() -> dict:
    table = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): dict,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "scalar")] = _numpy_global("scalar")
        table[(mod, "_reconstruct")] = _numpy_global("_reconstruct")
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals (plus torch dtypes and numpy dtype classes)."""

    _table = None

    def find_class(self, module: str, name: str):
        if RestrictedUnpickler._table is None:
            RestrictedUnpickler._table = _allowed()
        if (module, name) in self._table:
            return self._table[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy >= 1.25 dtype classes
            import numpy.dtypes
            return getattr(numpy.dtypes, name)
        if module.startswith("dnnlib.tflib"):
            raise UnsafePickleError("this is a TensorFlow StyleGAN2 pickle; convert it first with "
                                    "stylegan2-ada-pytorch's legacy.py or rosinality's convert_weight.py")
        raise UnsafePickleError(f"refusing to load '{module}.{name}' from the pickle: only network "
                                f"weights are read (the file may be malicious or not a StyleGAN2 snapshot)")

    def persistent_load(self, pid):
        raise UnsafePickleError("the pickle uses persistent ids; it is not a network snapshot (try torch.load)")


def restricted_load(fileobj):
    """Unpickle ``fileobj`` with ``RestrictedUnpickler``."""
    return RestrictedUnpickler(fileobj).load()
