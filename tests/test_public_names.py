"""The one public door (docs/architecture.md): every public name is importable from the package."""

from __future__ import annotations

import json
import subprocess
import sys

# The public names the README promises today. RedisStorage joins this list with the
# issue that adds it.
DESIGN_NAMES = {
    "CachePolicy",
    "CachedResponse",
    "CoalesceMiddleware",
    "CoalescingSession",
    "DiskStorage",
    "MemoryStorage",
    "Outcome",
    "SingleFlight",
    "Snapshot",
    "Storage",
    "TieredStorage",
    "WaitTimeout",
    "coalesce_middleware",
}

# Run in a fresh interpreter: the faces and DiskStorage are imported lazily, on first use, and in
# this process other tests have imported them already.
CHECK = """
import importlib, json, sys
import coalesce_client

problems = []
for name in coalesce_client.__all__:
    try:
        exec(f"from coalesce_client import {name}")
    except Exception as exc:  # a lazy import may fail with anything
        problems.append(f"{name}: not importable ({exc!r})")
        continue
    obj = getattr(coalesce_client, name)
    home = getattr(obj, "__module__", None)
    if isinstance(home, str) and home.startswith("coalesce_client."):
        # A class or function: the module that defines it binds the same object to the name.
        if getattr(importlib.import_module(home), name, None) is not obj:
            problems.append(f"{name}: not the object {home} defines")
    else:
        # A type alias (CacheStatus) knows no module of its own: some submodule must bind it.
        owners = [
            m for m, mod in sys.modules.items()
            if m.startswith("coalesce_client.") and getattr(mod, name, None) is obj
        ]
        if not owners:
            problems.append(f"{name}: defined by no submodule")
star = {}
try:
    exec("from coalesce_client import *", star)
except Exception as exc:
    problems.append(f"a star import fails: {exc!r}")
else:
    missing = sorted(set(coalesce_client.__all__) - set(star))
    if missing:
        problems.append(f"not bound by a star import: {missing}")
print(json.dumps({"all": coalesce_client.__all__, "problems": problems}))
"""


def test_every_public_name_is_importable_and_is_the_object_its_module_defines() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["problems"] == []
    names = result["all"]
    assert len(names) == len(set(names)), names  # no name listed twice
    assert set(names) >= DESIGN_NAMES, sorted(DESIGN_NAMES - set(names))
