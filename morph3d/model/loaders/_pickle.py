"""Reading model pickles (FLAME, its landmark embeddings) safely and without chumpy.

FLAME's ``.pkl`` files are Python 2 pickles that hold numpy arrays, a scipy sparse matrix and
chumpy ``Ch`` objects. :func:`load_pickle` only lets those classes through: chumpy classes become a
small stand-in that keeps the pickled state (a plain ``Ch`` keeps its array in ``state['x']``),
torch tensors (DECA stores its unused dynamic contour embedding as tensors) become a placeholder,
and any other global (``os.system``, ...) is refused, so a model file can never run code.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ._common import fail

_NUMPY = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}
_BUILTINS = {
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
    ("__builtin__", "set"), ("builtins", "set"), ("__builtin__", "frozenset"), ("builtins", "frozenset"),
    ("collections", "OrderedDict"), ("_codecs", "encode"),
}
_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}
_TORCH = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
          ("torch.storage", "_load_from_bytes"), ("torch", "FloatStorage"), ("torch", "LongStorage"),
          ("torch", "IntStorage"), ("torch", "DoubleStorage")}


class ChumpyStandIn:
    """Takes the place of a pickled chumpy object; ``state`` is what chumpy pickled."""

    chumpy_class = "chumpy.ch.Ch"

    def __setstate__(self, state):
        self.state = state


class Unsupported:
    """Placeholder for an object this reader does not rebuild (torch tensors)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return Unsupported()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._standins: dict[str, type] = {}

    def find_class(self, module, name):
        if module == "chumpy" or module.startswith("chumpy."):
            key = f"{module}.{name}"
            if key not in self._standins:
                self._standins[key] = type(name, (ChumpyStandIn,), {"chumpy_class": key})
            return self._standins[key]
        if (module, name) in _NUMPY or (module, name) in _BUILTINS:
            return super().find_class(module, name)
        if module.startswith("scipy.sparse") and name in _SPARSE:
            import scipy.sparse

            return getattr(scipy.sparse, name)
        if (module, name) in _TORCH:
            return Unsupported()
        raise pickle.UnpicklingError(f"the pickle refers to '{module}.{name}', which no model file "
                                     "contains; refusing to load it")


def load_pickle(path: Path, data: bytes | None = None):
    """Unpickle a model file (or the pickled payload ``data`` read from it) with the restricted reader."""
    import io

    try:
        if data is None:
            with open(path, "rb") as f:
                return _RestrictedUnpickler(f, path).load()
        return _RestrictedUnpickler(io.BytesIO(data), path).load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated data, bad opcodes, refused globals
        fail(path, f"not a readable model pickle ({type(exc).__name__}: {exc})")


def load_npy_object(path: Path):
    """Read a ``.npy`` file; object arrays (a pickled dict, as DECA's embedding) go through the
    restricted unpickler instead of ``np.load(allow_pickle=True)``."""
    from numpy.lib import format as npformat

    try:
        with open(path, "rb") as f:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = npformat.read_array_header_2_0(f)
            else:
                fail(path, f".npy format version {version} is not supported")
            if not dtype.hasobject:
                f.seek(0)
                return np.load(f, allow_pickle=False)
            payload = f.read()
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as exc:
        fail(path, f"not a readable .npy file ({exc})")
    obj = load_pickle(path, payload)
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        return obj.item()
    return obj


def to_array(path, key: str, value) -> np.ndarray:
    """The numpy array behind a pickled value: ndarray, sparse matrix or plain chumpy ``Ch``."""
    if isinstance(value, ChumpyStandIn):
        state = getattr(value, "state", None)
        if not isinstance(state, dict) or "x" not in state:
            fail(path, f"'{key}' is a chumpy {value.chumpy_class} expression, which cannot be "
                       "evaluated without chumpy; re-save the model with plain arrays")
        return to_array(path, key, state["x"])
    if isinstance(value, Unsupported):
        fail(path, f"'{key}' is stored as a torch tensor, which this reader does not rebuild")
    if hasattr(value, "__dict__") and type(value).__module__.startswith("scipy.sparse"):
        return _sparse_to_dense(path, key, value)
    try:
        a = np.asarray(value)
    except Exception as exc:
        fail(path, f"'{key}' is not an array ({type(value).__name__}: {exc})")
    if a.dtype.hasobject:
        fail(path, f"'{key}' is not a numeric array (got {type(value).__name__})")
    return a


def _sparse_to_dense(path, key: str, m) -> np.ndarray:
    """Rebuild a pickled scipy sparse matrix from its raw fields (pickles from old scipy keep
    ``data/indices/indptr/_shape`` or ``data/row/col/_shape``), then densify."""
    import scipy.sparse

    d = m.__dict__
    shape = d.get("_shape", d.get("shape"))
    fmt = type(m).__name__[:3]
    try:
        if fmt in ("csc", "csr"):
            cls = scipy.sparse.csc_matrix if fmt == "csc" else scipy.sparse.csr_matrix
            rebuilt = cls((np.asarray(d["data"]), np.asarray(d["indices"]), np.asarray(d["indptr"])),
                          shape=tuple(int(s) for s in shape))
        else:
            rebuilt = scipy.sparse.coo_matrix(
                (np.asarray(d["data"]), (np.asarray(d["row"]), np.asarray(d["col"]))),
                shape=tuple(int(s) for s in shape))
        return np.asarray(rebuilt.toarray())
    except Exception as exc:
        fail(path, f"'{key}' is a damaged sparse matrix ({type(exc).__name__}: {exc})")
