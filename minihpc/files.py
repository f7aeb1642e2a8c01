"""Writing the project's files on the host: two ways, for two kinds of reader."""

from __future__ import annotations

import os
from pathlib import Path


def write_if_changed(path: Path, text: str) -> bool:
    """Write in place (bind mounts see the same inode); report whether it changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write(text)
    return True


def replace(path: Path, text: str) -> None:
    """Write `path` whole or not at all: a reader meanwhile (an ssh reading its
    config, a node reading the class) never sees it half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
