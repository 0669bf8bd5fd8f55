"""morph3d's bundled data files, installed as the package ``morph3d.assets``.

In the source tree they live in the top-level ``assets/`` folder, which ``setup.py`` maps to
``morph3d.assets`` (``package_data`` lists the file types that ship). Code finds them through
:func:`path` only, so an editable install and an installed wheel behave the same.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path


def path(name: str) -> Path:
    """Path of the bundled file ``name`` (e.g. ``"open_face_model.npz"``); it may be missing
    from a broken install, so callers check ``is_file()`` and name the fix (reinstall morph3d)."""
    return Path(str(importlib.resources.files(__name__).joinpath(name)))
