"""What the subcommands share: the usage error, and opening a disk cache.

Rules: bad input is raised as ``UsageError`` with a message that fits one line on stderr, and
``main()`` turns it into exit status 2; a directory that ``DiskStorage`` refuses is bad input, not a
crash. A disk cache is opened here, before the subcommand's event loop starts, because opening it
may block briefly; diskcache is imported only then, so ``--help`` and bad arguments never load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from .. import DiskStorage


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


def open_disk(directory: Path, *, create: bool = True, read_only: bool = False) -> DiskStorage:
    from .. import DiskStorage

    try:
        return DiskStorage(directory, create=create, read_only=read_only)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def unreachable(value: NoReturn) -> NoReturn:
    """Close a dispatch over a closed set of cases (``typing.assert_never`` is Python 3.11+)."""
    raise AssertionError(value)
