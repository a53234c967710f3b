"""Opening a DiskStorage directory: checked once, at construction, with errors that name the path.

Rules of this module (with ``rows.py`` and ``loopread.py``, the only ones that import diskcache):

* Whatever is wrong with a directory is a ``ValueError`` naming it (and its database), raised at
  construction: a missing or unwritable directory, a file where it should be, a database SQLite
  cannot read, and a damaged one that diskcache would misread (issue 11: random bytes, a
  truncated file, a broken ``Settings`` table gave ``UnicodeDecodeError``, ``TypeError`` or
  ``AttributeError``, or opened and failed later; issue 19: random bytes in the schema gave
  ``UnicodeDecodeError`` from sqlite3 itself, so ``DAMAGE`` names both). A database that opens
  but holds damaged pages is not refused here (finding them would mean reading all of it): a
  read that meets one is a miss, and the rest of the cache still works.
* Nothing in a database configures this storage: every diskcache setting is given explicitly,
  and a ``Settings`` table holding anything else (an unknown name, a value of the wrong type, a
  negative size) is damage. diskcache would otherwise run a ``sqlite_*`` row as a PRAGMA and turn
  any other row into an attribute of the cache.
* ``read_only=True`` opens a ``ReadOnlyCache``: diskcache's own ``Cache`` writes its settings
  whenever it opens a database, so a cache that must not change (a read-only directory) is read
  without it, through a read-only SQLite connection; every write raises ``PermissionError``.
* Every connection opened here is closed on every path (issue 26: Python 3.13 warns for one left
  to the garbage collector): a ``Cache`` whose construction fails closes the connection diskcache
  opened first (``_cache``), and the loop's cache is on a connection any thread may close
  (``_loop_reader``: diskcache 5.6's ``_local`` holder replaced, checked on diskcache 5.6.3).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

import diskcache  # type: ignore[import-untyped]
from diskcache.core import DBNAME, DEFAULT_SETTINGS, METADATA  # type: ignore[import-untyped]

from .loopread import LoopRead
from .rows import BytesDisk

__all__ = ["DAMAGE", "Opening", "ReadOnlyCache", "open_caches"]

# What sqlite3 raises for a damaged database: its own errors, and UnicodeDecodeError when SQLite's
# message quotes damaged bytes ("malformed database schema ... near "\xbe3"", issue 19).
DAMAGE = (sqlite3.Error, UnicodeDecodeError)


@dataclass(frozen=True, slots=True)
class Opening:
    """How a directory is opened: ``DiskStorage``'s options, already checked (see its doc)."""

    max_bytes: int  # recorded in diskcache's settings; rows.evict keeps it
    lock_timeout: float  # the worker's wait for another process's lock
    loop_timeout: float  # the loop's wait, after which a read moves to the thread
    create: bool  # False: the directory must hold a cache already
    read_only: bool  # a ReadOnlyCache for the worker, no cache for the loop


def open_caches(path: Path, opening: Opening) -> tuple[Any, LoopRead | None]:
    """The worker's cache and the loop's reads on one directory; ValueError naming the path.

    ``read_only``: a ``ReadOnlyCache`` for the worker and no cache for the loop; nothing in the
    directory is created or changed. ``create=False``: the directory must hold a cache already.
    """
    lock_timeout = opening.lock_timeout
    if path.exists() and not path.is_dir():
        raise ValueError(f"DiskStorage directory {str(path)!r} exists and is not a directory")
    if opening.read_only or not opening.create:
        if not path.is_dir():
            raise ValueError(f"DiskStorage directory {str(path)!r} does not exist")
        if not os.access(path, os.R_OK | os.X_OK):
            raise ValueError(f"DiskStorage directory {str(path)!r} is not readable")
        reader = ReadOnlyCache(path, lock_timeout)  # also checks that it holds a cache
        if opening.read_only:
            return reader, None
        reader.close()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise ValueError(
            f"DiskStorage directory {str(path)!r} cannot be created: {reason}"
        ) from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ValueError(f"DiskStorage directory {str(path)!r} is not readable and writable")
    if (path / DBNAME).exists():
        _check_existing(path, lock_timeout)
    settings = _settings(opening.max_bytes)
    try:
        writer = _cache(path, lock_timeout, settings)
        writer.close()  # this thread's connection; the worker thread opens its own
        loop_reader = _loop_reader(path, opening.loop_timeout, settings)
    except Exception as exc:  # whatever a damaged database makes diskcache raise (module rules)
        raise _cannot_hold_a_cache(path, exc) from None
    return writer, LoopRead(loop_reader)


def _cache(path: Path, timeout: float, settings: dict[str, Any]) -> Any:
    """A ``diskcache.Cache``, whose connection is closed if building it fails: diskcache opens
    it first and would leave it to the garbage collector (issue 26; 3.13 warns there)."""
    cache = diskcache.Cache.__new__(diskcache.Cache)
    try:
        cache.__init__(str(path), timeout=timeout, disk=BytesDisk, **settings)
    except BaseException:
        if hasattr(cache, "_local"):  # it got as far as its connection
            cache.close()
        raise
    return cache


def _loop_reader(path: Path, timeout: float, settings: dict[str, Any]) -> Any:
    """The loop's cache, on a connection that any thread may close (issue 26): the storage may
    be closed from another thread than the one that built it, whose connection diskcache binds
    to its thread. DiskIO still reads through it on the building thread only (threads.py)."""
    reader = _cache(path, timeout, settings)
    reader.close()
    # diskcache keeps its connection in a threading.local (``_local.con``, ``_local.pid``, read
    # by its ``_con``): a plain namespace instead, so that the thread closing it finds it too.
    con = sqlite3.connect(
        path / DBNAME, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    reader._local = SimpleNamespace(con=con, pid=os.getpid())
    try:
        for key, value in settings.items():  # the per-connection pragmas, as diskcache's _con
            if key.startswith("sqlite_"):
                reader.reset(key, value, update=False)
    except BaseException:
        reader.close()
        raise
    return reader


def _settings(max_bytes: int) -> dict[str, Any]:
    """Every diskcache setting, so that none is taken from the database (module rules)."""
    return {
        **DEFAULT_SETTINGS,
        # Recorded only: diskcache's own cull is off, rows.evict keeps the bound.
        "size_limit": max_bytes,
        "cull_limit": 0,
        # Reads must stay pure reads (no write transaction per hit, which other policies need);
        # this policy's index on store_time is the order evict() walks.
        "eviction_policy": "least-recently-stored",
        "statistics": 0,
        "tag_index": 0,
        "sqlite_journal_mode": "wal",  # readers are never blocked by a writer
        # The WAL file is outside diskcache's size accounting: checkpoint it at an eighth of the
        # bound (SQLite's default of 1,000 pages at most) and truncate it back to that size.
        "sqlite_wal_autocheckpoint": max(16, min(1000, max_bytes // 8 // 4096)),
        "sqlite_journal_size_limit": max(64 * 1024, min(4 * 1024 * 1024, max_bytes // 8)),
    }


# What each setting diskcache may have written holds; anything else in the table is damage.
_SETTING_TYPES: dict[str, type] = {
    key: type(value) for key, value in {**_settings(1), **METADATA}.items()
}
_COLUMNS = frozenset(
    {"rowid", "key", "raw", "store_time", "expire_time", "access_time", "access_count", "tag"}
    | {"size", "mode", "filename", "value"}
)


def _check_existing(path: Path, timeout: float) -> None:
    """Refuse a database that SQLite or diskcache would misread (ValueError naming the path)."""
    try:
        con = sqlite3.connect(path / DBNAME, timeout=timeout, isolation_level=None)
    except DAMAGE as exc:
        raise _cannot_hold_a_cache(path, exc) from None
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
        if tables:  # an empty database becomes a cache
            _check_tables(con, path, tables)
    except DAMAGE as exc:
        raise _cannot_hold_a_cache(path, exc) from None
    finally:
        con.close()


def _check_tables(con: sqlite3.Connection, path: Path, tables: set[str]) -> None:
    """The tables of a diskcache database, with nothing in its settings that could configure
    anything: diskcache applies every row of ``Settings`` when it opens a connection (a
    ``sqlite_*`` row is run as a PRAGMA, any other becomes an attribute of the cache, ``volume``
    included), and adds ``size`` to every volume it measures (issue 11)."""
    if "Cache" in tables and "Settings" not in tables:
        raise _damaged(path, "it has a Cache table but no Settings table")
    if "Settings" in tables:
        for key, value in con.execute("SELECT key, value FROM Settings"):
            expected = _SETTING_TYPES.get(key) if type(key) is str else None
            if expected is None:
                raise _damaged(path, f"an unknown setting {key!r}")
            negative = isinstance(value, int) and value < 0
            if type(value) is not expected or (key in METADATA and negative):
                raise _damaged(path, f"the setting {key!r} holds {value!r}")
    if "Cache" in tables:
        columns = {row[1] for row in con.execute("PRAGMA table_info(Cache)")}
        missing = _COLUMNS - columns
        if missing:
            raise _damaged(path, f"its Cache table lacks {', '.join(sorted(missing))}")


def _damaged(path: Path, what: str) -> ValueError:
    return ValueError(
        f"DiskStorage directory {str(path)!r} holds a damaged cache: {what} "
        f"(its database is {str(path / DBNAME)!r}; remove the directory to start afresh)"
    )


def _cannot_hold_a_cache(path: Path, exc: BaseException) -> ValueError:
    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ValueError(
        f"DiskStorage directory {str(path)!r} cannot hold a cache: {cause} "
        f"(its database is {str(path / DBNAME)!r})"
    )


class ReadOnlyCache:
    """The reads of ``diskcache.Cache`` that DiskStorage uses, on a read-only SQLite connection.

    The queries are diskcache's own (the fast path of ``Cache.get``, ``iterkeys``), and ``_sql``
    runs those of ``rows.py`` (``volume``); every write raises ``PermissionError``. Built in
    one thread and then used by the worker thread alone, one call at a time.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.directory = str(path)  # as diskcache.Cache.directory
        self._disk = BytesDisk(str(path))
        database = path / DBNAME
        if not database.is_file():
            raise ValueError(
                f"DiskStorage directory {str(path)!r} holds no cache (it has no {DBNAME})"
            )
        try:
            self._con, tables = _connect_read_only(database, timeout)
        except DAMAGE as exc:
            raise _cannot_hold_a_cache(path, exc) from None
        try:
            if not {"Settings", "Cache"} <= tables:
                raise ValueError(
                    f"DiskStorage directory {str(path)!r} holds no cache "
                    f"(its {DBNAME} is not a diskcache database)"
                )
            _check_tables(self._con, path, tables)
        except DAMAGE as exc:
            self._con.close()
            raise _cannot_hold_a_cache(path, exc) from None
        except BaseException:
            self._con.close()
            raise
        self._sql = self._con.execute  # what rows.py's own queries run on

    def get(self, key: str, read: bool = False, tag: bool = False) -> Any:
        db_key, raw = self._disk.put(key)
        rows = self._con.execute(
            "SELECT tag, mode, filename, value FROM Cache WHERE key = ? AND raw = ?"
            " AND (expire_time IS NULL OR expire_time > ?)",
            (db_key, raw, time.time()),
        ).fetchall()
        if not rows:
            return (None, None) if tag else None
        ((db_tag, mode, filename, db_value),) = rows
        try:
            value = self._disk.fetch(mode, filename, db_value, read)
        except OSError:  # the file went with its row, removed by a writer meanwhile
            return (None, None) if tag else None
        return (value, db_tag) if tag else value

    def iterkeys(self) -> list[Any]:
        rows = self._con.execute("SELECT key, raw FROM Cache ORDER BY key ASC, raw ASC")
        return [self._disk.get(key, raw) for key, raw in rows]

    def close(self) -> None:
        self._con.close()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise PermissionError(f"DiskStorage {self.directory!r} was opened read-only")

    set = delete = clear = expire = transact = _transact = _refuse


def _connect_read_only(database: Path, timeout: float) -> tuple[sqlite3.Connection, set[str]]:
    """A read-only connection, and the names of the database's tables.

    A reader of a WAL database needs its ``-wal`` and ``-shm`` files, and creates them when they
    are missing (SQLite leaves them behind). Where it may not (a directory we may not write) and
    there is no ``-wal`` file (no writer has the database open: the log was checkpointed into it),
    the database file holds every committed row: it is then read as immutable, without them.
    """
    uri = database.absolute().as_uri()
    wal = database.with_name(database.name + "-wal")
    for query in ("mode=ro", "mode=ro&immutable=1"):
        con = sqlite3.connect(
            f"{uri}?{query}",
            uri=True,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,  # built here, then used by the worker thread alone
        )
        try:
            return con, {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
        except sqlite3.OperationalError:
            con.close()
            if query != "mode=ro" or wal.exists() or os.access(database.parent, os.W_OK):
                raise
        except BaseException:
            con.close()
            raise
    raise AssertionError("unreachable")  # pragma: no cover
