"""The key audit of the middleware: what a handler reads that its key does not hold.

Rules of this module (docs/architecture.md, "Observability"; README, web cache poisoning):

* A shared response is right for every request with the same key only if the handler's answer
  depends on nothing else. With ``audit=True`` (or ``"strict"``) the leader's handler runs on its
  request as an audited request: reads of ``request.headers`` (by name, or all of them by
  iteration), ``request.cookies`` (the ``Cookie`` header), ``request.forwarded`` (``Forwarded``)
  and ``request.remote`` (the client's address) are recorded while the handler runs. aiohttp's
  own reads (``content_type``, ``host``...) go through its private fields and are not recorded.
* An input is keyed when the key holds it (``key_headers``, ``Host``, the forwarded headers the
  policy keys, names ``key_func`` declares in a ``reads`` attribute), when its presence makes the
  request bypass (the credential headers, ``Range`` and the preconditions), or when the response
  names it in ``Vary`` (RFC 9111 §4.1). Any other read input is unkeyed: logged at WARNING once
  per route and input; with ``"strict"`` the response is not shared either (its reason:
  ``unkeyed input NAME``).
* The request is audited by switching its class to a subclass for the handler's run, and back
  afterwards: the handler and the middlewares inside ours see the same object, its state and
  match info included. Off by default: it costs a class switch and a wrapper per read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

from ..options import check_header_names
from ..spec.requests import UNSHARED_HEADERS, VALIDATION_HEADERS
from ..spec.vary import ANY, vary_names

__all__ = ["Audit", "Reads", "audit_of"]

log = logging.getLogger("coalesce_client")
REMOTE = "the client's address (request.remote)"
_SLOT = "coalesce_client.audit"  # the reads of one run, in the request's reify cache
_audited: dict[type[web.Request], type[web.Request]] = {}


class Reads:
    """The inputs one handler run read: lower-case header names, and ``REMOTE``."""

    __slots__ = ("cls", "names", "open")

    def __init__(self, cls: type[web.Request]) -> None:
        self.cls = cls  # the request's own class, given back after the run
        self.names: set[str] = set()
        self.open = True  # reads after the run (outer middlewares) are not the handler's

    def add(self, name: str) -> None:
        if self.open:
            self.names.add(name.lower())


class _Headers(Mapping[str, str]):
    """``request.headers`` that records which names are read."""

    __slots__ = ("_h", "_reads")

    def __init__(self, headers: CIMultiDictProxy[str], reads: Reads) -> None:
        self._h = headers
        self._reads = reads

    def __getitem__(self, name: str) -> str:
        self._reads.add(name)
        return self._h[name]

    def get(self, name: str, default: Any = None) -> Any:
        self._reads.add(name)
        return self._h.get(name, default)

    def getone(self, name: str, default: Any = None) -> Any:
        self._reads.add(name)
        return self._h.getone(name) if default is None else self._h.getone(name, default)

    def getall(self, name: str, default: Any = None) -> Any:
        self._reads.add(name)
        return self._h.getall(name) if default is None else self._h.getall(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._reads.add(name)
        return name in self._h

    def __iter__(self) -> Iterator[str]:
        for name in self._h:  # every header, one by one: each is read
            self._reads.add(name)
            yield name

    def __len__(self) -> int:
        return len(self._h)


def _reads_of(request: web.BaseRequest) -> Reads:
    return request._cache[_SLOT]  # type: ignore[no-any-return]


class _AuditedRequest(web.Request):
    """A request whose reads of the inputs a key may miss are recorded (see the module rules)."""

    @property
    def headers(self) -> Mapping[str, str]:  # type: ignore[override]
        return _Headers(super().headers, _reads_of(self))

    @property
    def cookies(self) -> Mapping[str, str]:
        _reads_of(self).add("cookie")
        return super().cookies

    @property
    def forwarded(self) -> tuple[Mapping[str, str], ...]:
        _reads_of(self).add("forwarded")
        return super().forwarded

    @property
    def remote(self) -> str | None:
        _reads_of(self).add(REMOTE)
        return super().remote


def _audited_class(cls: type[web.Request]) -> type[web.Request]:
    found = _audited.get(cls)
    if found is None:  # a request_factory's own subclass keeps its own behaviour
        found = _audited[cls] = type(f"Audited{cls.__name__}", (_AuditedRequest, cls), {})
    return found


class Audit:
    """One middleware's audit: which inputs are keyed, and what was already said.

    ``keyed`` holds lower-case header names; ``strict`` makes an unkeyed read unshareable.
    """

    __slots__ = ("_keyed", "_said", "strict")

    def __init__(self, keyed: Iterable[str], *, strict: bool) -> None:
        always = ("host", *UNSHARED_HEADERS, *VALIDATION_HEADERS)
        self._keyed = frozenset(name.lower() for name in (*keyed, *always))
        self._said: set[tuple[str, str]] = set()
        self.strict = strict

    def watch(self, request: web.Request) -> Reads:
        """Start recording ``request``'s reads; ``done`` must follow, whatever happens."""
        reads = request._cache[_SLOT] = Reads(type(request))
        request.__class__ = _audited_class(reads.cls)
        return reads

    def done(self, request: web.Request, reads: Reads) -> None:
        """Stop recording: the request is itself again."""
        reads.open = False
        request.__class__ = reads.cls

    def verdict(self, request: web.Request, headers: Iterable[tuple[str, str]]) -> str | None:
        """The first unkeyed input of ``request``'s handler run (each logged once per route and
        input), as its reason code, else None. ``headers`` are the response's: a name in its
        ``Vary`` is keyed by the response itself (RFC 9111 §4.1)."""
        reads = request._cache.get(_SLOT)
        if not isinstance(reads, Reads):
            return None
        varied = vary_names(headers)
        if varied == ANY:
            return None  # never stored nor shared anyway
        found = sorted(reads.names - self._keyed - set(varied))
        route = _route(request)
        for name in found:
            if (route, name) not in self._said:
                self._said.add((route, name))
                log.warning(
                    "%s reads %s, which is not in the key nor in Vary: every user gets the first "
                    "user's answer; add it to key_headers or Vary",
                    route,
                    _shown(name),
                )
        return f"unkeyed input {_shown(found[0])}" if found else None


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    where = resource.canonical if resource is not None else request.path
    return f"{request.method} {where}"


def _shown(name: str) -> str:
    return name if name == REMOTE else "-".join(part.capitalize() for part in name.split("-"))


def audit_of(
    audit: object, keyed: tuple[str, ...], key_func: Callable[[web.Request], object] | None
) -> Audit | None:
    """The key audit asked for (``audit.py``), knowing every header the key holds: the key's
    and credential headers, the forwarding headers, and the names ``key_func.reads`` declares."""
    if audit is False:
        return None
    if audit is not True and audit != "strict":
        raise ValueError(f'audit must be True, False or "strict", got {audit!r}')
    declared = check_header_names(getattr(key_func, "reads", ()), "key_func.reads")
    return Audit((*keyed, *declared), strict=audit == "strict")
