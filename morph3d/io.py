"""Writing output files: one atomic-write helper, and checks that a destination is writable before any
work is done."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Union

Writer = Union[bytes, str, Callable[[Path], object]]


class OutputPathError(ValueError):
    """An output cannot be written there (missing or read-only folder, a folder in the way of a file)."""


def partial_path(path: Path) -> Path:
    """The temporary file :func:`atomic_write` writes before renaming: hidden, beside ``path``, same
    suffix (so writers that pick the format by suffix, e.g. ``np.savez`` or PIL, keep working)."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")


def atomic_write(path: str | os.PathLike, data: Writer) -> Path:
    """Write ``path`` atomically: readers see the old file or the complete new one, never a part.

    data: bytes or str (written as is, str as UTF-8), or a function called with the temporary path that
    writes the file there. The temporary file is removed whatever happens (errors, Ctrl-C, SIGTERM in
    the CLI), so an interrupted write leaves nothing behind.
    """
    path = Path(path)
    tmp = partial_path(path)
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        elif isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            data(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _writable(folder: Path) -> bool:
    # os.access also answers False on a read-only file system, for root too
    return os.access(folder, os.W_OK | os.X_OK)


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Raise :class:`OutputPathError` unless ``path`` is a writable folder or can be created as one.

    Nothing is created; the nearest existing ancestor of a missing folder must be writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path}: exists and is not a folder; choose a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{option} {path}: {existing} is a file, so the folder cannot be created there")
    if not _writable(existing):
        what = "folder" if existing == path else f"cannot be created: {existing}"
        raise OutputPathError(f"{option} {path}: {what} is not writable (read-only or no permission); "
                              "choose another folder")
    return path


def check_output_file(path: str | os.PathLike, option: str = "output") -> Path:
    """Raise :class:`OutputPathError` unless the file ``path`` can be (re)written: its folder exists and is
    writable, and ``path`` itself is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise OutputPathError(f"{option} {path}: folder {folder} does not exist; create it first")
    if not _writable(folder):
        raise OutputPathError(f"{option} {path}: folder {folder} is not writable (read-only or no permission); "
                              "choose another location")
    return path


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


__all__ = ["OutputPathError", "atomic_write", "check_output_dir", "check_output_file", "file_sha256",
           "partial_path"]
