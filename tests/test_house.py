"""The house rules (issue 18), proved on the package's source with ``ast``: nothing is imported.

Rules of this module:

* Each rule is a plain function from parsed modules to violations; a violation names
  ``file:line`` and the rule it breaks. ``docs/architecture.md`` says why each rule exists.
* Each rule runs twice: on the package as it is (``test_the_package_keeps_the_rule``), and on a
  small tree written to a temporary directory (``test_a_rule_*``), where a snippet that breaks the
  rule must be caught at its line and one that keeps it must pass. So a rule that can no longer
  fail, or that fails clean code, is found out here and not by a reviewer.
* Imports are every ``import`` statement of a module, wherever it stands (in a function, under
  ``if TYPE_CHECKING:``), relative ones resolved against the module's package as Python does.
  Imports by a computed name (``importlib.import_module``) are not seen: the package uses them
  only in its doors, for laziness.
* Fast: the package and the tests are read once per run and parsed only where a rule needs the
  tree; only the files that mention a formatter switch or a design note are tokenized.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import sys
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "coalesce_client"
REPO = Path(__file__).resolve().parent.parent

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # from ``def`` to its last line, decorators excluded
MAX_PARAMETERS = 5  # besides ``self`` / ``cls``: positional, keyword-only, *args and **kwargs
MAX_PARTIAL_ARGUMENTS = 3  # arguments a ``functools.partial`` binds (the callable not counted)

# Public callables whose options are the public API (issue 18: "public constructors and
# factories excepted"), by qualified name, with the reason. Only callables that really take more
# than MAX_PARAMETERS are listed (a test keeps it so). Not listed because they need no exception:
# ``coalesce_middleware`` (a name for ``CoalesceMiddleware``), ``CachePolicy`` (a dataclass:
# fields, no ``def``), ``MemoryStorage`` and ``TieredStorage`` (3 and 3), and the request methods
# of ``CoalescingSession`` (``request(method, url, **kwargs)``: 3).
WIDE_PUBLIC = {
    "CoalescingSession.__init__": "the session's documented options, then aiohttp.ClientSession's "
    "own as **client_session_kwargs",
    "CoalesceMiddleware.__init__": "coalesce_middleware(...)'s documented options "
    "(coalesce_middleware is this class)",
    "ClientMiddleware.__init__": "client_middleware(...)'s documented options "
    "(client_middleware is this class)",
    "DiskStorage.__init__": "DiskStorage's documented options",
    "RedisStorage.__init__": "RedisStorage's documented options",
}

# Files users and contributors do not have, named without spelling them here (this file is
# scanned too): the design notes the project began from. docs/architecture.md replaces them.
_NOTES = ("DES" + "IGN", "STY" + "LE")
_NOTE = re.compile(rf"\b(?:{'|'.join(_NOTES)})\b")
_FORMATTER_OFF = re.compile(r"#\s*fmt:\s*(?:skip|off)\b")
# What reads a clock (spec/ is handed ``now`` instead), as dotted names after import aliases.
_CLOCKS = frozenset(
    {
        *(f"time.{name}" for name in ("time", "time_ns", "monotonic", "monotonic_ns")),
        *(f"time.{name}" for name in ("perf_counter", "perf_counter_ns")),
        *(f"datetime.datetime.{name}" for name in ("now", "utcnow", "today")),
        "datetime.date.today",
    }
)


# -- the source, parsed ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Module:
    name: str  # dotted, as imported: coalesce_client.core.coalescer
    path: str  # relative to the tree's root, for messages: coalesce_client/core/coalescer.py
    is_package: bool  # an __init__.py: its relative imports start from itself
    source: str

    @property
    def tree(self) -> ast.Module:
        return _parse(self.source, self.path)


@dataclass(frozen=True, slots=True)
class Violation:
    where: str  # file:line
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.rule} ({self.detail})"


Modules = tuple[Module, ...]
Check = Callable[[Modules], list[Violation]]


def load(root: Path, folder: str = PACKAGE) -> Modules:
    """Every ``.py`` file under ``root/folder``, parsed."""
    modules = []
    for file in sorted((root / folder).rglob("*.py")):
        rel = file.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        source = file.read_text(encoding="utf-8")
        modules.append(Module(".".join(parts), rel.as_posix(), is_package, source))
    return tuple(modules)


@functools.cache
def _parse(source: str, path: str) -> ast.Module:
    """Parsed once, when a rule first needs the tree (the note rule reads only the text)."""
    return ast.parse(source, filename=path)


@functools.cache
def package() -> Modules:
    return load(REPO)


@functools.cache
def suite() -> Modules:
    return load(REPO, "tests")


def at(module: Module, line: int) -> str:
    return f"{module.path}:{line}"


# -- import directions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Import:
    target: str  # absolute dotted name: the module imported, or the package a name came from
    line: int


def imports_of(module: Module, known: frozenset[str]) -> Iterator[Import]:
    """Every import of ``module``; ``from X import name`` is ``X.name`` when that is a module of
    the tree (``known``), else ``X``."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            yield from (Import(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield Import(name if name in known else base, node.lineno)


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <dots><name> import ...`` in ``module``."""
    if node.level == 0:
        return node.module or ""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    parts = package.split(".")
    up = node.level - 1
    if up >= len(parts):
        return "." * node.level + (node.module or "")  # beyond the top: no name of ours
    base = ".".join(parts[: len(parts) - up])
    return f"{base}.{node.module}" if node.module else base


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _top(name: str) -> str:
    return name.partition(".")[0]


def _stdlib(name: str) -> bool:
    return _top(name) in sys.stdlib_module_names


def _ours(*layers: str) -> Callable[[str], bool]:
    """Whether a name is in one of these layers of the package (``""``: the public door)."""
    prefixes = tuple(f"{PACKAGE}.{layer}" if layer else PACKAGE for layer in layers)
    return lambda name: any(
        name == prefix if prefix == PACKAGE else within(name, prefix) for prefix in prefixes
    )


_FACES = _ours("client", "client_mw", "server", "cli", "")  # "": the door, which reaches every face
# The storage package's own door imports MemoryStorage and TieredStorage, so it is concrete too.
_CONCRETE = ("storage.memory", "storage.disk", "storage.redis", "storage.tiered")


def _concrete_storage(name: str) -> bool:
    return name == f"{PACKAGE}.storage" or any(
        name.startswith(f"{PACKAGE}.{stem}") for stem in _CONCRETE
    )


@dataclass(frozen=True, slots=True)
class Direction:
    layer: str  # the modules it applies to: a module or package under PACKAGE
    rule: str
    forbidden: Callable[[str], bool]  # of an imported name: out of bounds for the layer?


DIRECTIONS = (
    Direction(
        "spec",
        "spec/ imports only the standard library and spec/",
        lambda name: not (_stdlib(name) or _ours("spec")(name)),
    ),
    Direction("spec", "spec/ does not import asyncio", lambda name: _top(name) == "asyncio"),
    Direction(
        "options",
        "options.py imports only the standard library and spec/",
        lambda name: not (_stdlib(name) or _ours("spec")(name)),
    ),
    Direction("storage", "storage/ imports no face (client/, server/, cli/, the door)", _FACES),
    Direction("storage", "storage/ imports no core/", _ours("core")),
    Direction(
        "core",
        "core/ imports no HTTP framework (aiohttp, yarl, multidict)",
        lambda name: _top(name) in ("aiohttp", "yarl", "multidict"),
    ),
    Direction(
        "core",
        "core/ imports no concrete storage, only storage's protocols and records",
        _concrete_storage,
    ),
    Direction("core", "core/ imports no face (client/, server/, cli/, the door)", _FACES),
    Direction(
        "metrics",
        "metrics/ imports only the standard library, metrics/ and its own libraries",
        lambda name: within(name, PACKAGE) and not _ours("metrics")(name),
    ),
    Direction(
        "core",
        "core/ imports no concrete metrics sink, only metrics/base.py",
        lambda name: _ours("metrics")(name) and name != f"{PACKAGE}.metrics.base",
    ),
    Direction("client", "client/ imports neither server/ nor cli/", _ours("server", "cli")),
    Direction("server", "server/ imports neither client/ nor cli/", _ours("client", "cli")),
    Direction("client_mw", "client_mw/ imports neither server/ nor cli/", _ours("server", "cli")),
    Direction(
        "cli",
        "cli/ uses the library through its door: of the package, only coalesce_client, "
        "options.py and cli/",
        lambda name: within(name, PACKAGE) and not _ours("", "options", "cli")(name),
    ),
)


def direction_violations(modules: Modules) -> list[Violation]:
    known = frozenset(m.name for m in modules)
    found: list[Violation] = []
    for module in modules:
        rules = [d for d in DIRECTIONS if within(module.name, f"{PACKAGE}.{d.layer}")]
        for imported in imports_of(module, known) if rules else ():
            found.extend(
                Violation(at(module, imported.line), d.rule, f"imports {imported.target}")
                for d in rules
                if d.forbidden(imported.target)
            )
    return found


def clock_violations(modules: Modules) -> list[Violation]:
    """spec/ never reads a clock: ``now`` is a parameter."""
    found: list[Violation] = []
    for module in modules:
        if not within(module.name, f"{PACKAGE}.spec"):
            continue
        aliases = _aliases(module.tree)
        for node in ast.walk(module.tree):
            name = _dotted(node, aliases)
            if name in _CLOCKS:
                line = getattr(node, "lineno", 0)
                found.append(Violation(at(module, line), "spec/ never reads a clock", name))
    return found


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it was imported as (``import time as t``: t -> time)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases[_top(alias.name)] = _top(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The imported name an expression stands for (``t.time`` -> ``time.time``), or None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return None if base is None else f"{base}.{node.attr}"
    return None


# -- sizes -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Function:
    module: Module
    qualname: str  # as ``__qualname__``: Class.method, outer.<locals>.inner
    node: ast.FunctionDef | ast.AsyncFunctionDef
    method: bool  # defined in a class body


def functions(module: Module) -> Iterator[Function]:
    def visit(node: ast.AST, prefix: str, in_class: bool) -> Iterator[Function]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield Function(module, prefix + child.name, child, in_class)
                yield from visit(child, f"{prefix}{child.name}.<locals>.", False)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.", True)
            else:
                yield from visit(child, prefix, in_class)

    return visit(module.tree, "", False)


def parameters(function: Function) -> list[str]:
    """The parameters that count: all of them but a method's ``self`` or ``cls``."""
    args = function.node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    static = any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.node.decorator_list
    )
    positional = args.posonlyargs or args.args
    if function.method and not static and positional:
        names.remove(positional[0].arg)
    return names


def module_size_violations(modules: Modules) -> list[Violation]:
    return [
        Violation(
            at(m, MAX_MODULE_LINES + 1),
            f"no module over {MAX_MODULE_LINES} lines",
            f"{len(m.source.splitlines())} lines",
        )
        for m in modules
        if len(m.source.splitlines()) > MAX_MODULE_LINES
    ]


def function_size_violations(modules: Modules) -> list[Violation]:
    found: list[Violation] = []
    for module in modules:
        for f in functions(module):
            lines = (f.node.end_lineno or f.node.lineno) - f.node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                rule = f"no function over {MAX_FUNCTION_LINES} lines"
                found.append(Violation(at(module, f.node.lineno), rule, f"{f.qualname}: {lines}"))
    return found


def parameter_violations(modules: Modules) -> list[Violation]:
    found: list[Violation] = []
    rule = f"no function with more than {MAX_PARAMETERS} parameters besides self"
    for module in modules:
        for f in functions(module):
            names = parameters(f)
            if len(names) > MAX_PARAMETERS and f.qualname not in WIDE_PUBLIC:
                detail = f"{f.qualname}({', '.join(names)}): {len(names)}"
                found.append(Violation(at(module, f.node.lineno), rule, detail))
    return found


def partial_violations(modules: Modules) -> list[Violation]:
    found: list[Violation] = []
    rule = f"no functools.partial of more than {MAX_PARTIAL_ARGUMENTS} arguments"
    for module in modules:
        aliases = _aliases(module.tree)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call) and _dotted(node.func, aliases) == "functools.partial":
                bound = max(len(node.args) - 1, 0) + len(node.keywords)
                if bound > MAX_PARTIAL_ARGUMENTS:
                    found.append(Violation(at(module, node.lineno), rule, f"{bound} bound"))
    return found


# -- comments and strings --------------------------------------------------------------------------


def _tokens(module: Module, kinds: frozenset[int]) -> Iterator[tokenize.TokenInfo]:
    for token in tokenize.generate_tokens(io.StringIO(module.source).readline):
        if token.type in kinds:
            yield token


_COMMENTS = frozenset({tokenize.COMMENT})
# Strings: docstrings included; Python 3.12 splits an f-string into parts.
_TEXT = frozenset({tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)})


def formatter_violations(modules: Modules) -> list[Violation]:
    """The formatter is never told to look away (``# fmt: skip``, ``# fmt: off``)."""
    return [
        Violation(at(m, token.start[0]), "no # fmt: skip (nor fmt: off)", token.string.strip())
        for m in modules
        if "fmt:" in m.source
        for token in _tokens(m, _COMMENTS)
        if _FORMATTER_OFF.search(token.string)
    ]


def note_violations(modules: Modules) -> list[Violation]:
    """No docstring, string or comment names the design notes users do not have."""
    return [
        Violation(
            at(m, token.start[0] + token.string[: match.start()].count("\n")),
            "name docs/architecture.md, not the design notes outside the repository",
            match.group(),
        )
        for m in modules
        if _NOTE.search(m.source)
        for token in _tokens(m, _TEXT)
        for match in _NOTE.finditer(token.string)
    ]


# -- the package as it is --------------------------------------------------------------------------


def _none(found: list[Violation]) -> None:
    if found:
        listing = "\n".join(f"  {v}" for v in found)
        pytest.fail(f"{len(found)} violation(s):\n{listing}", pytrace=False)


# Every rule, by what it keeps; the design-notes rule reads the tests too.
RULES: dict[str, Check] = {
    "imports point downward": direction_violations,
    "spec reads no clock": clock_violations,
    "modules are small": module_size_violations,
    "functions are short": function_size_violations,
    "functions take few parameters": parameter_violations,
    "partials bind few arguments": partial_violations,
    "the formatter is never told to look away": formatter_violations,
    "no design notes are named": note_violations,
}


@pytest.mark.parametrize("check", RULES.values(), ids=RULES.keys())
def test_the_package_keeps_the_rule(check: Check) -> None:
    _none(check(package() + suite() if check is note_violations else package()))


def test_every_wide_public_callable_is_real_and_wide() -> None:
    """The allow-list holds only what needs it: each name exists and takes more than 5."""
    widths = {f.qualname: len(parameters(f)) for m in package() for f in functions(m)}
    stale = {name: widths.get(name) for name in WIDE_PUBLIC if widths.get(name, 0) <= 5}
    assert not stale, f"WIDE_PUBLIC lists callables that are missing or not wide: {stale}"


# -- each rule on a tree of its own ----------------------------------------------------------------

# The smallest package every case starts from: clean under every rule.
SKELETON = {
    f"{folder}__init__.py": ""
    for folder in ("", "spec/", "core/", "storage/", "storage/disk/", "client/", "server/", "cli/")
} | {name: "" for name in ("options.py", "spec/fields.py", "storage/base.py", "core/records.py")}


def build(root: Path, files: dict[str, str]) -> Modules:
    for name, source in {**SKELETON, **files}.items():
        file = root / PACKAGE / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(source, encoding="utf-8")
    return load(root)


def test_the_skeleton_is_clean(tmp_path: Path) -> None:
    modules = build(tmp_path, {})
    for check in RULES.values():
        assert check(modules) == []


@pytest.mark.parametrize(
    ("path", "statement", "expected"),
    [
        ("core/x.py", "from . import records", "coalesce_client.core.records"),
        ("core/x.py", "from . import Call", "coalesce_client.core"),
        ("core/__init__.py", "from .records import Call", "coalesce_client.core.records"),
        ("core/__init__.py", "from . import records", "coalesce_client.core.records"),
        ("storage/disk/x.py", "from ...spec import fields", "coalesce_client.spec.fields"),
        ("storage/disk/x.py", "from ..base import Storage", "coalesce_client.storage.base"),
        ("cli/x.py", "from .. import options", "coalesce_client.options"),
        ("cli/x.py", "from .. import DiskStorage", "coalesce_client"),
        ("x.py", "import a.b as c", "a.b"),
        ("x.py", "from a.b import c", "a.b"),
        ("x.py", "from .... import c", "...."),
    ],
)
def test_imports_resolve_as_python_does(
    tmp_path: Path, path: str, statement: str, expected: str
) -> None:
    modules = build(tmp_path, {path: f"def f():\n    {statement}\n"})
    module = next(m for m in modules if m.path == f"{PACKAGE}/{path}")
    found = list(imports_of(module, frozenset(m.name for m in modules)))
    assert found == [Import(expected, 2)]


@dataclass(frozen=True, slots=True)
class Case:
    path: str  # a file of the tree, under the package
    bad: str  # breaks the rule at ``line``
    line: int
    good: str  # keeps it


_TC = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    "
_DEF = "def f():\n    "
_METHOD = "class C:\n    async def m(self):\n"
_CLOSURE = "class C:\n    def m(self):\n        def f"
_STATIC = "class C:\n    @staticmethod\n    def m"
_CLASS = "class C:\n    @classmethod\n    def m"
_PASS = ":\n        pass\n"
_WIDE_INIT = "    def __init__(self, a, b, c, d, e, g):\n        pass\n"
_PARTIAL = "from functools import partial\n"

CASES: dict[Check, dict[str, Case]] = {
    direction_violations: {
        "spec imports a framework": Case(
            "spec/x.py", "import re\nimport aiohttp\n", 2, "import re\nfrom . import fields\n"
        ),
        "spec imports upward": Case(
            "spec/x.py", "from ..core import records\n", 1, "from . import fields\n"
        ),
        "spec imports asyncio in a function": Case(
            "spec/x.py", _DEF + "import asyncio\n", 2, _DEF + "import dataclasses\n"
        ),
        "spec imports storage for typing": Case(
            "spec/x.py", _TC + "from ..storage.base import S\n", 3, _TC + "from .fields import T\n"
        ),
        "options imports core": Case(
            "options.py",
            "from .core import records\n",
            1,
            "import math\nfrom .spec import fields\n",
        ),
        "storage imports a face": Case(
            "storage/x.py",
            "from ..client import session\n",
            1,
            "import diskcache\nfrom .base import S\n",
        ),
        "storage imports the door": Case(
            "storage/x.py", "from .. import CoalescingSession\n", 1, "from .. import options\n"
        ),
        "storage/disk imports core": Case(
            "storage/disk/x.py", "from ...core import writer\n", 1, "from ...spec import fields\n"
        ),
        "core imports multidict": Case(
            "core/x.py",
            "from multidict import CIMultiDict\n",
            1,
            "import asyncio\nfrom .. import options\n",
        ),
        "core imports yarl in a function": Case(
            "core/x.py", _DEF + "import yarl\n", 2, _DEF + "import urllib.parse\n"
        ),
        "core imports memory storage": Case(
            "core/x.py", "from ..storage.memory import M\n", 1, "from ..storage.base import S\n"
        ),
        "core imports the storage door": Case(
            "core/x.py", "from ..storage import Tiered\n", 1, "from ..storage.codec import decode\n"
        ),
        "core imports redis storage absolutely": Case(
            "core/x.py",
            "import coalesce_client.storage.redis\n",
            1,
            "import coalesce_client.spec\n",
        ),
        "core imports disk storage for typing": Case(
            "core/x.py",
            _TC + "from ..storage.disk import D\n",
            3,
            _TC + "from ..spec import fields\n",
        ),
        "core imports a face": Case(
            "core/x.py", "from ..server import middleware\n", 1, "from . import records\n"
        ),
        "client imports server": Case(
            "client/x.py",
            "from ..server.middleware import M\n",
            1,
            "from ..storage.memory import M\n",
        ),
        "server imports client": Case(
            "server/x.py",
            "import coalesce_client.client.session\n",
            1,
            "from aiohttp import web\nfrom ..core import records\n",
        ),
        "cli imports core": Case(
            "cli/x.py",
            "from ..core.records import Stats\n",
            1,
            "from .. import CoalescingSession\n",
        ),
        "cli imports a face's module": Case(
            "cli/x.py", "from ..client.session import S\n", 1, "from ..options import check\n"
        ),
    },
    clock_violations: {
        "time.time": Case(
            "spec/x.py", "import time\nt = time.time()\n", 2, "import time\ntime.gmtime(0)\n"
        ),
        "an aliased monotonic": Case(
            "spec/x.py",
            "from time import monotonic as m\nm()\n",
            2,
            "from time import gmtime as m\nm()\n",
        ),
        "datetime.now, not called": Case(
            "spec/x.py",
            "from datetime import datetime\nnow = datetime.now\n",
            2,
            "from datetime import datetime\nd = datetime.fromtimestamp(0)\n",
        ),
    },
    module_size_violations: {
        "401 lines": Case("core/x.py", "x = 1\n" * 401, 401, "x = 1\n" * 400),
    },
    function_size_violations: {
        # The good one is 60 lines from def to end: its decorators do not count.
        "61 lines": Case(
            "core/x.py",
            "@d\ndef f():\n" + "    x = 1\n" * 60,
            2,
            "@d\n@d\n" + _DEF + "x = 1\n" * 59,
        ),
        "a method of 61 lines": Case(
            "core/x.py", _METHOD + "        x = 1\n" * 60, 2, _METHOD + "        x = 1\n" * 59
        ),
    },
    parameter_violations: {
        "six": Case(
            "core/x.py",
            "def f(a, b, c, d, e, g): ...\n",
            1,
            "class C:\n    def m(self, a, b, c, d, e): ...\n",
        ),
        "six of every kind": Case(
            "core/x.py",
            "def f(a, /, b, *c, d, e, **g): ...\n",
            1,
            "def f(a, /, b, *c, d, **e): ...\n",
        ),
        "six in a class method": Case(
            "core/x.py",
            _CLASS + "(cls, a, b, c, d, e, g)" + _PASS,
            3,
            _CLASS + "(cls, a, b, c, d, e)" + _PASS,
        ),
        "six in a static method": Case(
            "core/x.py",
            _STATIC + "(a, b, c, d, e, g)" + _PASS,
            3,
            _STATIC + "(a, b, c, d, e)" + _PASS,
        ),
        "a closure's self counts": Case(
            "core/x.py",
            _CLOSURE + "(self, a, b, c, d, e): ...\n",
            3,
            _CLOSURE + "(a, b, c, d, e): ...\n",
        ),
        "a public constructor's options": Case(
            "client/x.py",
            "class Session:\n" + _WIDE_INIT,
            2,
            "class CoalescingSession:\n" + _WIDE_INIT,
        ),
    },
    partial_violations: {
        "four": Case(
            "core/x.py",
            _PARTIAL + "partial(f, 1, 2, 3, x=4)\n",
            2,
            _PARTIAL + "partial(f, 1, 2, x=3)\n",
        ),
        "four, aliased": Case(
            "core/x.py",
            "import functools as ft\nft.partial(f, a, b, c, d)\n",
            2,
            "import functools as ft\nft.partial(f, a, b, c)\n",
        ),
        "four, renamed": Case(
            "core/x.py",
            "from functools import partial as p\np(f, a, b, c, d)\n",
            2,
            "from functools import partialmethod as p\np(f, a, b, c, d)\n",
        ),
    },
    formatter_violations: {
        "fmt: skip": Case(
            "core/x.py", "x = 1\ny = [1,2]  # fmt: skip\n", 2, "y = '# fmt: skip'  # a string\n"
        ),
        "fmt: off": Case("core/x.py", "# fmt: off\nx = [1,2]\n", 1, "# fmt\nx = [1, 2]\n"),
    },
    note_violations: {
        "in a docstring": Case(
            "core/x.py",
            f'"""Rules.\n\nAs {_NOTES[0]}.md says.\n"""\n',
            3,
            '"""See docs/architecture.md."""\n',
        ),
        "in a comment": Case(
            "core/x.py", f"x = 1\ny = 2  # {_NOTES[1]}, rule 2\n", 2, "x = 1  # design, style\n"
        ),
        "in an f-string": Case(
            "core/x.py", f"x = 1\ny = f'see {_NOTES[0]}.md {{x}}'\n", 2, "DESIGNS = f'{1}'\n"
        ),
    },
}


@pytest.mark.parametrize(
    ("check", "case"),
    [
        pytest.param(check, case, id=f"{check.__name__}: {name}")
        for check, cases in CASES.items()
        for name, case in cases.items()
    ],
)
def test_a_rule_catches_what_breaks_it_and_passes_what_keeps_it(
    tmp_path: Path, check: Check, case: Case
) -> None:
    bad = check(build(tmp_path / "bad", {case.path: case.bad}))
    assert [v.where for v in bad] == [f"{PACKAGE}/{case.path}:{case.line}"], bad
    assert check(build(tmp_path / "good", {case.path: case.good})) == []


def test_every_rule_has_cases() -> None:
    assert set(CASES) == set(RULES.values())
