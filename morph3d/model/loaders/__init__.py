"""Loaders for real 3DMM files; each returns a canonical model dict (``morph3d.model.canonical``).

:func:`load_canonical` is the one entry point: it recognises a file by its extension *and* its
content and calls the matching loader. :func:`format_name` reports what it recognised.

======================  =============================================  ==========================
format name             file                                           loader
======================  =============================================  ==========================
``open``                the string ``'open'``: the embedded default    ``canonical.load``
                        model ``assets/open_face_model.npz``
``canonical``           ``.npz`` written by ``canonical.save``         ``canonical.load``
``bfm2009``             ``.mat`` with ``shapeMU`` (01_MorphableModel)  :func:`bfm.load_bfm2009`
``bfm_front``           ``.mat`` with ``meanshape``/``idBase``         :func:`bfm.load_bfm_front`
``flame``               ``.pkl`` (or ``.npz``) with FLAME's keys       :func:`flame.load_flame`
``sfm``                 eos cereal ``.bin`` (Surrey Face Model)        :func:`sfm.load_sfm`
======================  =============================================  ==========================

Unknown or corrupt files raise :class:`~morph3d.model.canonical.ModelFormatError` naming the
file and the problem; a missing file raises ``FileNotFoundError``.
"""
from __future__ import annotations

import inspect
import pickletools
import struct
import zipfile
from pathlib import Path

from morph3d import assets
from morph3d.model import canonical
from morph3d.model.canonical import ModelFormatError

from . import bfm, flame, sfm
from ._common import fail, mat_names

OPEN_MODEL = "open"
OPEN_MODEL_FILE = "open_face_model.npz"
FORMATS = ("open", "canonical", "bfm2009", "bfm_front", "flame", "sfm")
_LOADERS = {"bfm2009": bfm.load_bfm2009, "bfm_front": bfm.load_bfm_front, "flame": flame.load_flame,
            "sfm": sfm.load_sfm}
_EXTENSIONS = {".npz": "zip", ".mat": "mat", ".pkl": "pickle", ".pickle": "pickle", ".bin": "cereal"}

__all__ = ["load_canonical", "format_name", "open_model_path", "FORMATS", "OPEN_MODEL", "ModelFormatError"]


def open_model_path() -> Path:
    """Path of the embedded open face model; ``FileNotFoundError`` with advice when it is missing."""
    path = assets.path(OPEN_MODEL_FILE)
    if path.is_file():
        return path
    raise FileNotFoundError(
        f"the embedded open face model ({OPEN_MODEL_FILE}) is missing from morph3d's assets "
        f"(looked in {path.parent}); reinstall morph3d or "
        "pass a model file (BFM, FLAME, SFM or a canonical .npz) instead of 'open'")


def _content_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is: zip, mat, hdf5, pickle, cereal or None."""
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:8] == b"\x89HDF\r\n\x1a\n" or head.startswith(b"MATLAB 7.3"):
        return "hdf5"
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return "mat"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if sfm.is_eos_model(head) or sfm.is_blendshapes_file(head):
        return "cereal"
    return None


def _pickle_has_flame_keys(path: Path) -> bool:
    """Scan a pickle's opcodes (building no objects) for two of FLAME's distinctive dict keys, so a
    FLAME file with a key missing still reaches the loader and its precise message."""
    wanted = {"v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights"}
    seen = set()
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if isinstance(arg, str) and arg in wanted:
                    seen.add(arg)
                    if len(seen) >= 2:
                        return True
    except Exception as exc:  # genops raises ValueError on corrupt or truncated data
        fail(path, f"not a readable pickle ({type(exc).__name__}: {exc})")
    return False


def format_name(source) -> str:
    """Which format ``source`` is: one of :data:`FORMATS`. Raises ModelFormatError if none."""
    if isinstance(source, str) and source == OPEN_MODEL:
        return "open"
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.is_dir():
        fail(path, "is a directory, not a model file")
    with open(path, "rb") as f:
        head = f.read(128)
    if not head:
        fail(path, "is empty")
    by_ext = _EXTENSIONS.get(path.suffix.lower())
    by_content = _content_kind(head)
    if by_ext is None and by_content is None:
        fail(path, f"unknown model file type {path.suffix or '(no extension)'!r}; expected a canonical "
                   "or FLAME .npz, a BFM .mat, a FLAME .pkl or an eos/SFM .bin")
    kind = by_ext or by_content
    if kind == "mat" and by_content == "hdf5":
        fail(path, "MATLAB v7.3 (HDF5) .mat files are not supported; re-save with save(..., '-v7')")
    if by_content is not None and by_content != kind:
        fail(path, f"the extension says {kind} but the content looks like {by_content}")

    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = {n[:-4] if n.endswith(".npy") else n for n in z.namelist()}
        except zipfile.BadZipFile as exc:
            fail(path, f"not a readable .npz file ({exc})")
        if "format_version" in names:
            return "canonical"
        if set(flame.FLAME_KEYS) <= names:
            return "flame"
        fail(path, f"a .npz that is neither a morph3d canonical model nor a FLAME model "
                   f"(entries {sorted(names)})")
    if kind == "mat":
        names = mat_names(path)
        if not names:
            fail(path, "not a readable MATLAB .mat file")
        if "shapeMU" in names:
            return "bfm2009"
        if "meanshape" in names or "idBase" in names:
            return "bfm_front"
        fail(path, f"a .mat file that is neither BFM 2009 (shapeMU) nor Deep3DFaceRecon's "
                   f"BFM_model_front (meanshape, idBase); variables {sorted(names)}")
    if kind == "pickle":
        if _pickle_has_flame_keys(path):
            return "flame"
        fail(path, "a pickle without FLAME's keys (v_template, shapedirs, posedirs, J_regressor, ...)")
    # cereal .bin
    if sfm.is_eos_model(head):
        return "sfm"
    if sfm.is_blendshapes_file(head):
        fail(path, "is an eos expression-blendshapes file, not a model: load the model .bin and pass "
                   "this as blendshapes_file=")
    k = struct.unpack("<i", head[:4])[0] if len(head) >= 4 else 0
    size = path.stat().st_size
    if 0 < k < 10000 and (size - 4) % (12 * (k + 1)) == 0:
        fail(path, "looks like Guo et al.'s Exp_Pca.bin (BFM expressions): load 01_MorphableModel.mat "
                   "and pass this as expression_file=")
    fail(path, "a .bin file that is not an eos/SFM cereal MorphableModel")


def load_canonical(source, **options) -> dict:
    """Load any supported model (see module docstring) as a validated canonical dict.

    ``options`` go to the format's loader (e.g. ``expression_file=`` for BFM 2009,
    ``num_identity=`` for FLAME, ``blendshapes_file=`` for SFM); canonical files take none.
    """
    fmt = format_name(source)
    if fmt in ("open", "canonical"):
        if options:
            raise TypeError(f"{source}: a {fmt} model takes no loader options (got {sorted(options)})")
        return canonical.load(open_model_path() if fmt == "open" else Path(source))
    loader = _LOADERS[fmt]
    try:
        inspect.signature(loader).bind(source, **options)
    except TypeError as exc:
        raise TypeError(f"{source}: unsupported option for a {fmt} model ({exc})") from None
    try:
        return loader(source, **options)
    except (ModelFormatError, FileNotFoundError):
        raise
    except (ValueError, TypeError, KeyError, IndexError, EOFError, struct.error, OSError) as exc:
        raise ModelFormatError(f"{source}: unreadable {fmt} model ({type(exc).__name__}: {exc})") from exc
