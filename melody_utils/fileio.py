"""Writing files safely: atomically, concurrently, with the user's umask.

Every file the package writes (checkpoints, the training state, histories, the parse
cache) goes through :func:`atomic_write_bytes` or :func:`atomic_writer`: the data go
to a temporary file with a unique name in the target folder, then one ``os.replace``
puts it in place. A reader never sees half a file, two processes writing the same
file at once both succeed (the last rename wins), and the file gets the permissions
any other new file would get (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def _open_unique(folder: Path, name: str) -> tuple[int, Path]:
    """Create a new, unique temporary file next to ``name`` (mode 0o666 & ~umask)."""
    for _ in range(100):
        tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(f"could not create a unique temporary file in {folder}")


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """Context manager yielding a binary file whose content replaces ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_unique(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_writer(path) as fh:
        fh.write(data)
