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


def test_outage_example() -> None:
    out = run_example("outage.py")
    lines = out.splitlines()
    assert "{'200 miss': 1, '200 coalesced': 49} origin: {'200': 1}" in lines[0]
    assert "{'200 revalidated': 1, '200 coalesced': 49} origin: {'200': 1, '304': 1}" in lines[1]
    assert "origin down:        {'200 stale': 50} origin: {'200': 1, '304': 1}" in lines[2]
    assert lines[3] == "stats: 1 miss, 1 revalidated, 50 stale"


def test_every_example_has_a_test() -> None:
    tested = {
        line.split('"')[1]
        for line in Path(__file__).read_text().splitlines()
        if "run_example(" in line and '"' in line and "def " not in line
    }
    present = {p.name for p in EXAMPLES.glob("*.py")}
    if present - tested:
        pytest.fail(f"examples without a test: {sorted(present - tested)}")
