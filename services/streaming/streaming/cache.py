"""A bounded on-disk cache of media objects, least recently used out first.

Several gunicorn workers share one directory, so nothing is kept in memory:
a file's mtime is its last use, downloads land under a temporary name and
are renamed into place (readers never see half a file), and eviction may
remove a file another worker is sending — Linux keeps it readable until closed.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, IO

Fetch = Callable[[str, IO[bytes]], None]  # write object `key` into the open file


class NotFound(Exception):
    pass


def cache_name(key: str) -> str:
    return key.replace("/", "__")


class MediaCache:
    def __init__(self, directory: str | Path, max_bytes: int, fetch: Fetch):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.fetch = fetch
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.dir.mkdir(parents=True, exist_ok=True)

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def open(self, key: str) -> IO[bytes]:
        """An open file with the object's bytes, fetched on first use."""
        path = self.dir / cache_name(key)
        try:
            f = open(path, "rb")
            try:
                os.utime(path)
            except FileNotFoundError:  # evicted meanwhile; the open file still reads
                pass
            return f
        except FileNotFoundError:
            pass
        with self._lock(key):  # one download per key per worker
            try:
                return open(path, "rb")
            except FileNotFoundError:
                pass
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out:
                    self.fetch(key, out)
                f = open(tmp, "rb")
                if os.fstat(f.fileno()).st_size <= self.max_bytes:
                    os.replace(tmp, path)
                else:  # too big to keep: serve it once from the unlinked temp file
                    os.unlink(tmp)
                return f
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            finally:
                self.evict()

    def entries(self) -> list[os.DirEntry]:
        return [e for e in os.scandir(self.dir) if e.is_file() and not e.name.startswith(".")]

    def size(self) -> int:
        return sum(e.stat().st_size for e in self.entries())

    def evict(self) -> None:
        """Delete least recently used files until the cache fits max_bytes."""
        entries = []
        for e in self.entries():
            try:
                st = e.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime_ns, st.st_size, e.path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            total -= size
