"""What the subcommands share: the usage error, opening a disk cache, and counting in words.

Rules: bad input is raised as ``UsageError`` with a message that fits one line on stderr, and
``main()`` turns it into exit status 2; a directory that ``DiskStorage`` refuses is bad input, not a
crash. A directory becomes a cache only when it is new or empty: one that holds other files must
hold a cache already (``open_disk``, for every subcommand), so that the user's own files never
become a cache. A disk cache is opened here, before the subcommand's event loop starts, because
opening it may block briefly; diskcache is imported only then, so ``--help`` and bad arguments
never load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from .. import DiskStorage


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


def open_disk(directory: Path, *, create: bool = True, read_only: bool = False) -> DiskStorage:
    """The cache in ``directory``. ``create``: a missing or empty directory becomes one (a
    directory that holds other files must hold a cache already); else it must be one."""
    from .. import DiskStorage

    if not create and not directory.is_dir():
        raise UsageError(f"no cache directory at {directory}")
    adopt = create and not _holds_files(directory)
    try:
        return DiskStorage(directory, create=adopt, read_only=read_only)
    except ValueError as exc:
        if create and not adopt:
            raise UsageError(f"{exc}, and is not empty: give a new or empty directory") from None
        raise UsageError(str(exc)) from None


def _holds_files(directory: Path) -> bool:
    try:
        return directory.is_dir() and any(directory.iterdir())
    except OSError:  # unreadable: DiskStorage says so, naming it
        return False


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 entry``, ``2 entries``: the count and its noun, singular for 1 alone."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def unreachable(value: NoReturn) -> NoReturn:
    """Close a dispatch over a closed set of cases (``typing.assert_never`` is Python 3.11+)."""
    raise AssertionError(value)
