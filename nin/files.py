"""Writing files so that a reader never sees half of one, and run folders that are never
overwritten by accident."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nin.errors import Arg, ArgumentError, arg

__all__ = [
    "atomic_write",
    "umask",
    "remove_orphans",
    "check_writable_folder",
    "format_version",
    "TEMP_SUFFIX",
]

TEMP_SUFFIX = ".tmp"  # atomic_write's temporary files: `<name>.<random>.tmp`


def umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file.
    The file gets the mode a plain `open` would give it (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~umask())  # mkstemp's 0600 would survive the rename
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_orphans(folder) -> list[Path]:
    """Delete the temporary files a killed `atomic_write` left in `folder`; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    orphans = [p for p in folder.glob(f"*.*{TEMP_SUFFIX}") if p.is_file()]
    for p in orphans:
        p.unlink()
    return orphans


def check_writable_folder(path, what: str | Arg = arg("out_dir")) -> Path:
    """Create `path` if needed and prove a file can be written there, before any work;
    `what` names the folder in the refusal (the argument that gave it, by default `out_dir`)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ArgumentError(
            "{what} {path} is a file, not a folder; give a folder name (it is created if missing)",
            what=what,
            path=path,
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".nin-probe.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ArgumentError(
            "{what} {path} cannot be written ({why}); choose a folder you can write to",
            what=what,
            path=path,
            why=err.strerror or err,
        ) from None
    return path


def save_npz(path, arrays: dict, key: str, meta: dict) -> None:
    """Named arrays plus a JSON `meta` as the entry `key`, in one .npz written atomically."""
    import io
    import json

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{key: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}, **arrays)
    atomic_write(Path(path), buf.getvalue())


def load_npz(path) -> dict:
    """Every entry of an .npz, read into memory (raises what NumPy raises on a bad file).
    Never unpickles: an entry that holds a pickle (an object array) raises ValueError."""
    import numpy as np

    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def json_entry(arrays: dict, key: str) -> dict:
    """The JSON entry `key` that `save_npz` wrote, taken out of `arrays`."""
    import json

    return json.loads(arrays.pop(key).tobytes().decode())


def format_version(meta: dict, path, reads: int, what: str, error: type[Exception]) -> int:
    """The `format_version` a file's JSON `meta` gives (1 when absent: files from before
    versions were written). A version newer than `reads`, the newest this nin reads, raises
    `error` naming the file, both versions and the fix: a newer nin."""
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise error(
            f"{path} gives format_version {version!r}, which no nin writes: it is not a {what}"
        )
    if version > reads:
        raise error(
            f"{path} is a {what} of format version {version}, and this nin reads versions up "
            f"to {reads}: upgrade nin to read it"
        )
    return version
