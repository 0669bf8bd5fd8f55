"""Loads the compiled extension ``morph3d._C`` and exposes ``torch.ops.morph3d``.

Python ops call :func:`ops` rather than importing ``morph3d._C`` themselves, so a
missing build fails with one clear message instead of an obscure AttributeError.
"""
import torch

_loaded = None


def ops():
    """Return ``torch.ops.morph3d`` after making sure the C++ kernels are loaded."""
    global _loaded
    if _loaded is None:
        try:
            from morph3d import _C  # noqa: F401  (import registers the ops)
        except ImportError as exc:  # pragma: no cover - only on a broken install
            raise ImportError(
                "morph3d's compiled kernels (morph3d._C) are missing or were built against another "
                "torch. Rebuild them from the repository root with "
                "`pip install --no-build-isolation -e .` (see README)."
            ) from exc
        _loaded = _C
    return torch.ops.morph3d


def built_with_cuda() -> bool:
    """True when the CUDA kernels were compiled into morph3d._C."""
    ops()
    return bool(_loaded.with_cuda)
