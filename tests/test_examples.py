"""Every example runs as written (each starts its own local origin) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_server_middleware_example() -> None:
    out = run_example("server_middleware.py")
    assert "200 concurrent requests: handler ran 1 time(s)" in out
    assert "X-Cache: 1 MISS, 199 COALESCED or HIT; the next request: HIT" in out


def test_every_example_has_a_test() -> None:
    tested = {
        line.split('"')[1]
        for line in Path(__file__).read_text().splitlines()
        if "run_example(" in line and '"' in line and "def " not in line
    }
    present = {p.name for p in EXAMPLES.glob("*.py")}
    if present - tested:
        pytest.fail(f"examples without a test: {sorted(present - tested)}")
