"""A bounded on-disk cache of media objects, least recently used out first.

Several gunicorn workers share one directory, so nothing is kept in memory:
a file's mtime is its last use, downloads land under a temporary name and
are renamed into place (readers never see half a file), and eviction may
remove a file another worker is sending — Linux keeps it readable until closed.
Only two small things live in memory, per worker: a download lock per key while
a thread holds or waits for it, and the keys the store lacked in the last
MISS_TTL seconds (at most MAX_MISSES), so unknown ids do not each cost a request.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, IO

Fetch = Callable[[str, IO[bytes]], None]  # write object `key` into the open file

MISS_TTL = 10.0  # seconds a key the store lacks is answered from memory; an upload shows after this
MAX_MISSES = 10_000  # keys remembered as missing, oldest forgotten first


class NotFound(Exception):
    pass


def cache_name(key: str) -> str:
    return key.replace("/", "__")


class MediaCache:
    def __init__(self, directory: str | Path, max_bytes: int, fetch: Fetch,
                 miss_ttl: float = MISS_TTL, max_misses: int = MAX_MISSES, clock=time.monotonic):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.fetch = fetch
        self.miss_ttl = miss_ttl
        self.max_misses = max_misses
        self.clock = clock
        self._locks: dict[str, list] = {}  # key -> [lock, threads holding or waiting for it]
        self._misses: OrderedDict[str, float] = OrderedDict()  # key -> when the store lacked it, oldest first
        self._guard = threading.Lock()
        self.dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self, key: str):
        """Hold key's download lock; it is dropped with its last user, so bogus keys leave nothing behind."""
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def _known_missing(self, key: str) -> bool:
        with self._guard:
            return self._misses.get(key, float("-inf")) > self.clock() - self.miss_ttl

    def _remember_missing(self, key: str) -> None:
        """Oldest first out: past max_misses, and the expired ones whenever a miss is recorded."""
        with self._guard:
            now = self.clock()
            self._misses[key] = now
            self._misses.move_to_end(key)
            while self._misses and (len(self._misses) > self.max_misses
                                    or next(iter(self._misses.values())) <= now - self.miss_ttl):
                self._misses.popitem(last=False)

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
        with self._locked(key):  # one download per key per worker
            try:
                return open(path, "rb")
            except FileNotFoundError:
                pass
            if self._known_missing(key):
                raise NotFound(key)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out:
                    try:
                        self.fetch(key, out)
                    except NotFound:
                        self._remember_missing(key)
                        raise
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
