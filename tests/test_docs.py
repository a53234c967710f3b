"""README.md and the documentation site (docs/) are true.

* Every ``python`` code block in README.md and docs/ runs as written, in a fresh interpreter (a
  block that is only an excerpt says so on the line before it, ``<!-- excerpt: why -->``, and is
  skipped by that name).
* The Quick start's two commands are the ones CI runs, in README.md and in Getting started alike.
* The command page's block runs against a local origin; the demo output shown is the demo's own.
* Every public name (``coalesce_client.__all__``) has a reference entry, and every page of docs/ is
  in the site's navigation (``mkdocs build --strict`` in .ci/run checks the links).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import Origin

import coalesce_client
from coalesce_client.client_mw.compat import HAS_MIDDLEWARES

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
FENCE = re.compile(
    r"(?:<!-- excerpt: (?P<excerpt>[^>]*) -->\n)?```(?P<lang>\w*)[^\n]*\n(?P<code>.*?)```", re.S
)


class Block(NamedTuple):
    page: Path
    number: int  # 1-based, among the page's blocks of its language
    code: str
    excerpt: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}#{self.number}"


def blocks(page: Path, language: str) -> list[Block]:
    found = [m for m in FENCE.finditer(page.read_text()) if m["lang"] == language]
    return [Block(page, n, m["code"], m["excerpt"]) for n, m in enumerate(found, 1)]


PYTHON = [block for page in PAGES for block in blocks(page, "python")]


def test_the_pages_have_code_to_run() -> None:
    assert len(PYTHON) >= 10
    assert len(blocks(ROOT / "README.md", "python")) >= 2  # one example per face


@pytest.mark.parametrize("block", PYTHON, ids=[b.name for b in PYTHON])
def test_every_python_block_runs(block: Block) -> None:
    if block.excerpt is not None:
        pytest.skip(f"{block.name} is an excerpt: {block.excerpt}")
    if "client_middleware(" in block.code and not HAS_MIDDLEWARES:
        pytest.skip("client middlewares need aiohttp >= 3.12")
    out = subprocess.run(
        [sys.executable, "-c", block.code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, f"{block.name} failed:\n{block.code}\n{out.stderr}"


@pytest.mark.parametrize("page", ["README.md", "docs/guide/getting-started.md"])
def test_the_quick_start_commands_are_what_ci_runs(page: str) -> None:
    demo, tests = (b.code for b in blocks(ROOT / page, "sh")[:2])
    assert "pip install ." in demo
    assert demo.strip().endswith("coalesce-client demo")
    assert "pip install '.[test]'" in tests
    assert tests.strip().endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-m pip install -q '.[test]'" in ci
    assert '"$py" -m pytest' in ci


async def test_the_command_block_runs(started: Origin, tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text(
        "\n".join(started.url(f"/text?p={i % 4}") for i in range(10)) + "\n"
    )
    (block,) = blocks(DOCS / "guide" / "command.md", "sh")
    commands = [line for line in block.code.splitlines() if line.strip()]
    assert commands[0].startswith("coalesce-client fetch")
    for command in commands:
        argv = [sys.executable, "-m", "coalesce_client", *shlex.split(command)[1:]]
        out = await asyncio.to_thread(
            subprocess.run, argv, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, (command, out.stderr)
    assert len(list((tmp_path / "pages").iterdir())) == 4
    assert started.total == 4


@pytest.mark.parametrize("page", ["README.md", "docs/guide/getting-started.md"])
def test_the_demo_output_shown_is_the_demos_own_format(page: str) -> None:
    shown = blocks(ROOT / page, "text")[0].code.splitlines()
    out = subprocess.run(
        [sys.executable, "-m", "coalesce_client", "demo", "-n", "20", "-u", "5", "--delay", "0.01"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    printed = out.stdout.splitlines()
    assert printed[:2] == shown[:2]  # the same columns
    assert [line[:17] for line in printed[2:5]] == [line[:17] for line in shown[2:5]]
    # The figures quoted in the prose are the ones in the table.
    assert "plain aiohttp          500       500" in shown[2]
    assert "coalesce (cold)        500         5" in shown[3]


def test_every_public_name_has_a_reference_entry() -> None:
    written = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    entries = set(re.findall(r"^::: coalesce_client\.[\w.]*\.(\w+)$", written, re.M))
    public = set(coalesce_client.__all__) | {"PrometheusMetrics", "OpenTelemetryMetrics"}
    public |= {"Metrics", "Recorder"}  # coalesce_client.metrics: the sinks and their protocol
    assert public - entries == set()
    assert entries - public == set()  # only public names


def test_every_page_is_in_the_navigation() -> None:
    nav = set(re.findall(r"([\w/-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - nav == set()
    assert nav - pages == set()


PUBLIC_CONSTRUCTORS = (
    "CachePolicy", "CoalescingSession", "CoalesceMiddleware", "ClientMiddleware", "MemoryStorage",
    "DiskStorage", "TieredStorage", "RedisStorage", "SingleFlight",
)  # fmt: skip


@pytest.mark.parametrize("name", PUBLIC_CONSTRUCTORS)
def test_every_public_constructor_says_what_it_raises(name: str) -> None:
    doc = inspect.cleandoc(getattr(coalesce_client, name).__doc__ or "")  # 3.13 dedents itself
    assert "\nRaises:\n" in doc, f"{name}'s docstring has no Raises section for the reference"
