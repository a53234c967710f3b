"""README.md is true: every code block in it runs, and its Quick start is what CI runs."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import Origin

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_every_python_block_runs() -> None:
    found = blocks("python")
    assert len(found) >= 4
    for block in found:
        out = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, timeout=60, check=False
        )
        assert out.returncode == 0, f"README example failed:\n{block}\n{out.stderr}"


def test_the_quick_start_commands_are_what_ci_runs() -> None:
    demo, tests = blocks("sh")[:2]
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
    commands = [line for line in blocks("sh")[2].splitlines() if line.strip()]
    assert commands[0].startswith("coalesce-client fetch")
    for command in commands:
        argv = [sys.executable, "-m", "coalesce_client", *shlex.split(command)[1:]]
        out = await asyncio.to_thread(
            subprocess.run, argv, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, (command, out.stderr)
    assert len(list((tmp_path / "pages").iterdir())) == 4
    assert started.total == 4


def test_the_demo_output_shown_is_the_demos_own_format() -> None:
    shown = blocks("text")[0].splitlines()
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
