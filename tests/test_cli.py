"""The coalesce-client command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coalesce_client", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_shows_the_stampede_and_the_cure() -> None:
    out = run("demo", "--requests", "60", "--urls", "3", "--delay", "0.01")
    assert out.returncode == 0, out.stderr
    rows = {line[:17].strip(): line[17:].split() for line in out.stdout.splitlines()[2:5]}
    # requests, upstream, hits, coalesced
    assert rows["plain aiohttp"][:4] == ["60", "60", "0", "0"]
    assert rows["coalesce (cold)"][:4] == ["60", "3", "0", "57"]
    assert rows["coalesce (warm)"][:4] == ["60", "0", "60", "0"]


def test_bad_demo_options_are_one_clear_line_and_a_non_zero_exit() -> None:
    out = run("demo", "--requests", "0")
    assert out.returncode == 2
    assert "--requests" in out.stderr
    assert "must be at least 1" in out.stderr
