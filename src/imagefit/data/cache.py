"""What imagefit computes once per image (phase-1 features, audit embeddings): a vector store on disk.

One SQLite database, `vectors.sqlite` under $IMAGEFIT_CACHE or ~/.cache/imagefit, holds float32
arrays by (space, file content hash). A *space* names everything a vector depends on besides
the image bytes (model weights, preprocessing, augmentation seed ...). The store is:
- safe for concurrent runs: SQLite's locking (write-ahead log, a busy timeout); a lock is waited for,
  never taken for damage;
- written as it is computed: a killed run keeps every batch it committed;
- bounded: past $IMAGEFIT_CACHE_GB (default 5) the least recently used spaces are dropped;
- self-healing: a damaged database is moved aside and started anew, and the vectors recomputed.
`imagefit cache info` and `imagefit cache clear` show and empty it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_LIMIT_GB = 5.0
_WAIT_S = 120  # how long a run waits for another one's write before it goes on without the cache
_CHUNK = 500  # hashes per SELECT (SQLite's host-parameter limit is 999 on old builds)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (space TEXT, hash TEXT, shape TEXT, data BLOB, PRIMARY KEY (space, hash));
CREATE TABLE IF NOT EXISTS spaces (space TEXT PRIMARY KEY, kind TEXT, bytes INTEGER, last_used REAL);
"""


def cache_root() -> Path:
    """$IMAGEFIT_CACHE when set, else ~/.cache/imagefit (read at each call, so tests and tools can point it)."""
    return Path(os.environ.get("IMAGEFIT_CACHE") or Path.home() / ".cache" / "imagefit")


def limit_bytes() -> int:
    """The store's size limit: $IMAGEFIT_CACHE_GB gigabytes (default 5)."""
    try:
        return int(float(os.environ.get("IMAGEFIT_CACHE_GB", DEFAULT_LIMIT_GB)) * 1e9)
    except ValueError:
        return int(DEFAULT_LIMIT_GB * 1e9)


def digest(*parts) -> str:
    """A short stable name for JSON-able parts (model, weights, transform ...)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class SpaceInfo:
    space: str
    kind: str
    rows: int
    bytes: int
    last_used: float


_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary codes; extended codes carry them in the low byte)


def _busy(error: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY/LOCKED: another process holds the file for a moment (damage is a DatabaseError of its own).

    Python 3.11+ gives the error's SQLite code; 3.10 only its text."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(error) or "busy" in str(error)


class VectorStore:
    """Float32 vectors by (space, file hash) in one SQLite file; see the module docstring."""

    def __init__(self, root: Path | None = None):
        self.path = Path(root or cache_root()) / "vectors.sqlite"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _WAIT_S
        set_aside = False
        while True:
            connection = sqlite3.connect(self.path, timeout=_WAIT_S)
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")  # needs the file alone: no busy timeout here
                connection.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as error:  # locked by another run, not damage: wait for it
                connection.close()
                if not _busy(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            except sqlite3.DatabaseError:
                connection.close()
                if set_aside:
                    raise
                self._set_aside()
                set_aside = True
        try:
            with connection:  # one transaction: committed on success, rolled back on error
                yield connection
        finally:
            connection.close()

    def _unavailable(self, error: sqlite3.OperationalError) -> None:
        """Locked past the wait, or a disk error: the run goes on without the cache, which stays as it is."""
        warnings.warn(f"the vector cache {self.path} could not be used ({error}); computing without it", stacklevel=3)

    def _set_aside(self) -> None:
        """Move a damaged database out of the way (kept for a look), so a new one starts."""
        aside = self.path.with_name(f"vectors.damaged-{int(time.time())}.sqlite")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(f"{aside}{suffix}")
        warnings.warn(f"the vector cache {self.path} was damaged; moved to {aside} and recomputing", stacklevel=3)

    def get(self, space: str, hashes: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of SPACE for those of `hashes` it holds."""
        return dict(self.each(space, hashes))

    def each(self, space: str, hashes: list[str]) -> Iterator[tuple[str, np.ndarray]]:
        """(hash, vector) for those of `hashes` SPACE holds, one at a time (no second copy of a large table)."""
        wanted = list(dict.fromkeys(hashes))
        try:
            with self._connect() as db:
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = db.execute(
                        f"SELECT hash, shape, data FROM vectors WHERE space = ? AND hash IN ({marks})", [space, *chunk]
                    )
                    for file_hash, shape, data in rows:
                        yield file_hash, np.frombuffer(data, dtype=np.float32).reshape(json.loads(shape))
                db.execute("UPDATE spaces SET last_used = ? WHERE space = ?", (time.time(), space))
        except sqlite3.OperationalError as error:
            self._unavailable(error)
        except sqlite3.DatabaseError:
            self._set_aside()

    def put(self, space: str, vectors: dict[str, np.ndarray], *, kind: str = "") -> None:
        """Store vectors of SPACE (one transaction), then drop the least recently used spaces past the limit."""
        if not vectors:
            return
        rows = [
            (space, file_hash, json.dumps(list(v.shape)), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for file_hash, v in vectors.items()
        ]
        added = sum(len(row[3]) for row in rows)
        try:
            with self._connect() as db:
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
                db.execute(
                    "INSERT INTO spaces VALUES (?, ?, ?, ?) ON CONFLICT(space) DO UPDATE SET "
                    "bytes = bytes + excluded.bytes, last_used = excluded.last_used",
                    (space, kind, added, time.time()),
                )
                self._evict(db, keep=space)
        except sqlite3.OperationalError as error:
            self._unavailable(error)
        except sqlite3.DatabaseError:
            self._set_aside()

    def _evict(self, db: sqlite3.Connection, *, keep: str) -> None:
        total = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM spaces").fetchone()[0]
        limit = limit_bytes()
        for space, size in db.execute("SELECT space, bytes FROM spaces ORDER BY last_used").fetchall():
            if total <= limit:
                break
            if space == keep:
                continue
            db.execute("DELETE FROM vectors WHERE space = ?", (space,))
            db.execute("DELETE FROM spaces WHERE space = ?", (space,))
            total -= size

    def info(self) -> list[SpaceInfo]:
        """Every space: what it holds, how big it is and when it was last used."""
        if not self.path.exists():
            return []
        with self._connect() as db:
            counts = dict(db.execute("SELECT space, COUNT(*) FROM vectors GROUP BY space").fetchall())
            return [
                SpaceInfo(space, kind, counts.get(space, 0), size, used)
                for space, kind, size, used in db.execute("SELECT * FROM spaces ORDER BY last_used DESC")
            ]

    def clear(self) -> int:
        """Empty the store; the bytes it held."""
        held = sum(s.bytes for s in self.info())
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return held
