"""Test helpers: write pickles with the structure of NVIDIA ``network-snapshot-*.pkl`` files, and malicious ones.

NVIDIA's persistent classes reduce to ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = {type, version, module_src, class_name, state}``; ``state`` is the module's ``__dict__``. We emit the
same opcodes by registering a throw-away ``torch_utils.persistence`` module only while pickling.
"""
import collections
import contextlib
import os
import pickle
import sys
import types


@contextlib.contextmanager
def _fake_persistence_module():
    pkg, mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called: the loader must not import this module
        raise AssertionError("fake persistence module used at load time")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg.persistence = mod
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence")}
    sys.modules.update({"torch_utils": pkg, "torch_utils.persistence": mod})
    try:
        yield mod
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Persisted:
    """Pickles as an NVIDIA persistent object of ``class_name`` with the given ``state`` dict."""

    def __init__(self, class_name, state, reconstruct):
        self.class_name, self.state, self.reconstruct = class_name, state, reconstruct

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src="# source not included", class_name=self.class_name,
                    state=self.state)
        return self.reconstruct, (meta,)


def _as_persisted(module, reconstruct, class_name=None, init_kwargs=None):
    """Module tree -> nested Persisted objects with ``_parameters``, ``_buffers``, ``_modules``."""
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(module._parameters),
        "_buffers": collections.OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_modules": collections.OrderedDict(
            (n, _as_persisted(m, reconstruct)) for n, m in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": dict(init_kwargs or {}),
    }
    return Persisted(class_name or type(module).__name__, state, reconstruct)


def write_nvidia_snapshot(path, G, D, g_kwargs=None, d_kwargs=None, G_raw=None):
    """Write ``{G, D, G_ema, augment_pipe, training_set_kwargs}`` like stylegan2-ada's training loop."""
    with _fake_persistence_module() as mod:
        rec = mod._reconstruct_persistent_obj
        data = {
            "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "resolution": G.resolution},
            "G": _as_persisted(G_raw if G_raw is not None else G, rec, "Generator", g_kwargs),
            "D": _as_persisted(D, rec, "Discriminator", d_kwargs),
            "G_ema": _as_persisted(G, rec, "Generator", g_kwargs),
            "augment_pipe": None,
        }
        with open(path, "wb") as f:
            pickle.dump(data, f)


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def write_malicious_pickle(path, kind, marker):
    """A pickle that, if unpickled naively, creates ``marker`` (via os.system or builtins.eval/exec)."""
    if kind == "os.system":
        payload = _Evil(os.system, f"touch {marker}")
    elif kind == "eval":
        payload = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
    else:
        payload = _Evil(exec, f"open({str(marker)!r}, 'w').close()")
    with open(path, "wb") as f:
        pickle.dump({"G_ema": payload}, f)
