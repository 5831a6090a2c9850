"""Files into a container through the Docker SDK (put_archive), with the owner and modes a
test needs. Directories are made only when named: an entry for an existing one (/root,
/etc) would change its mode."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Mapping
from typing import Any


def put(container: Any, files: Mapping[str, bytes], *, mode: int, dirs: Iterable[str] = (), dir_mode: int = 0o755,
        owner: int = 0) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d.strip("/"))
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, dir_mode, owner, owner
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode, info.uid, info.gid = len(data), mode, owner, owner
            tar.addfile(info, io.BytesIO(data))
    container.put_archive("/", archive.getvalue())
