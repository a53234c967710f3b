"""coalesce_middleware under HTTP load: stored-route throughput vs the bare app, and a stampede.

    python benchmarks/bench_server.py            # full run (about 2 minutes on 2 cores)
    python benchmarks/bench_server.py --quick    # shorter runs, about 30 s
    python benchmarks/bench_server.py --profile  # also: where the middleware's time goes
    python benchmarks/bench_server.py --loadgen python   # the Python load generator, not wrk

No network: every process listens on or talks to 127.0.0.1 only (ports chosen by the OS). Prints
figures only; nothing here is a pass/fail test (the targets are shown as met or missed). The load
comes from ``wrk`` when it is on ``PATH`` (``apt-get install wrk``), else from the Python load
generator below.

Three kinds of process, so that the load and the server can each use one of two cores (placed by
the scheduler: pinning them to one CPU each left the server idle a fifth of the time here):

* servers: this script run as ``--serve bare|noop|minimal|mw|route`` in a subprocess. An
  ``aiohttp.web`` app on the default asyncio loop, or uvloop with ``--uvloop`` (``AppRunner``,
  access log off, backlog 2,048) serving ``/item`` (a constant 1,016-byte JSON document, the same
  bytes every time) and ``/slow`` (the same body after a 50 ms ``asyncio.sleep``). ``mw`` is that
  app with ``middlewares=[coalesce_middleware(ttl=...)]``; ``noop`` has one middleware that only
  awaits the handler (what any middleware costs in aiohttp); ``minimal`` has the minimal caching
  middleware (``_minimal.minimal_cache_middleware``), the least a caching middleware must do in
  aiohttp: it keeps, per ``path_qs`` of a GET, the handler's first ``web.Response`` status, body
  and headers, and answers every later request with a fresh ``web.Response`` of them (aiohttp's
  responses are single-use) plus an ``Age`` (whole seconds since stored) and ``X-Cache: HIT``,
  the header lines coalesce_middleware adds. Its cost over bare is aiohttp's and CPython's, paid
  by any caching middleware; coalesce_middleware's over it is ours. ``route`` is the
  coalesce_middleware on the stored route alone (``mw.decorate(handler)``, no app middleware).
  Each server also answers ``/__stats`` (handler calls per route, the middleware's ``stats``,
  the process's CPU time) on a second port, from an app of its own that no middleware sees.
* load: ``wrk -t1 -cN -dS --latency`` (HTTP/1.1 keep-alive), or this script run as ``--load``
  (an ``aiohttp.ClientSession`` with N concurrent workers for a fixed duration). The Python
  generator spends more CPU per request than the server does, so with it the rates say more about
  the client than about the middleware; prefer wrk.
* this process: starts the others, checks the responses, reads ``/__stats`` around every run.

What is measured:

1. Throughput of a stored route: ``GET /item`` over 50 connections, against five apps: bare (no
   middleware), noop, minimal, ``coalesce_middleware(ttl=3600)`` (the first request stores the
   body, every later one is a HIT) and route. After an untimed warm-up of each, the apps take
   turns, the order rotated each round so that drift in the machine's speed hits all of them.
   Reported: each app's median rate, the ratio of medians coalesce/bare (the target: at least
   80%), the median of the per-round ratios, and the server's CPU time per request
   (``time.process_time()`` over requests served: a second view, less sensitive to a load
   generator that falls behind).
   The server's counters check that every timed middleware request was a HIT (the minimal
   cache keeps no counters: its handler ran 0 times; its CPU per request divides by the load
   generator's count). The minimal cache's HIT must carry the same header lines as ours.
   Also printed: coalesce and route as a share of the minimal cache's rate, and their server CPU
   per request over its.
2. Stampede: 200 connections for 10 s on ``/slow`` (50 ms handler) with
   ``coalesce_middleware(ttl=1)``: the handler should run about once a second (one leader per
   expiry; everybody else is COALESCED onto its flight or served a HIT), then the same load
   without the middleware, where the handler runs once per request.
3. ``--profile``: the middleware's own cost per request without a profiler (``app._handle()`` of
   each app on a mocked request, in this process), split into its steps; then ``cProfile`` of a
   middleware server under HIT load (profiler-inflated times, for the shape).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any

import aiohttp
from _harness import add_loop_option, check, loop_name, met, python_platform
from _harness import run as run_on_loop
from _minimal import minimal_cache_middleware
from aiohttp import web

from coalesce_client import coalesce_middleware
from coalesce_client.core.keys import UrlParts
from coalesce_client.core.records import Call

DELAY = 0.05  # the slow route's handler time, seconds
STORED_TTL = 3600  # throughput: every request after the first is a HIT
STAMPEDE_TTL = 1
THROUGHPUT_CONNECTIONS = 50
STAMPEDE_CONNECTIONS = 200
HOST = "127.0.0.1"
LABELS = {
    "bare": "bare",
    "noop": "no-op mw",
    "minimal": "minimal cache mw",
    "mw": "coalesce",
    "route": "route",
}


def _body() -> bytes:
    """A small realistic JSON document, about 1 KiB: one product of a catalogue API."""
    doc = {
        "id": 1234567,
        "sku": "CHAIR-OAK-0042",
        "name": "Oak dining chair",
        "description": (
            "Solid oak dining chair with a woven seat, oiled finish. Seat height 46 cm, "
            "width 44 cm, depth 50 cm. Ships flat-packed, assembly takes about 15 minutes."
        ),
        "price": {"amount": 14900, "currency": "EUR", "vat_included": True},
        "stock": {"warehouse": "FRA-2", "available": 118, "reserved": 7},
        "categories": ["furniture", "dining", "chairs", "oak"],
        "images": [f"https://cdn.example.com/products/1234567/{n}-1024x1024.jpg" for n in range(4)],
        "rating": {"average": 4.6, "count": 1312},
        "attributes": {"material": "oak", "color": "natural", "weight_kg": 6.8, "stackable": False},
        "shipping": {"weight_kg": 8.1, "box_cm": [92, 50, 12], "days": 3, "free_over": 9900},
        "seller": {"id": 881, "name": "Nordic Woodworks GmbH", "country": "DE", "rating": 4.8},
        "badges": ["bestseller", "fsc-certified", "made-in-eu"],
        "updated_at": "2026-11-26T09:41:07Z",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


BODY = _body()


# -- the measured app (server subprocess; also used in-process by --profile) -----------------------


@web.middleware
async def noop_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """What any middleware costs in aiohttp: one more layer that only awaits the handler."""
    return await handler(request)


CALLS = web.AppKey("calls", Counter[str])  # handler calls per route, read by /__stats


async def item(request: web.Request) -> web.Response:
    request.app[CALLS]["item"] += 1
    return web.Response(body=BODY, content_type="application/json")


async def slow(request: web.Request) -> web.Response:
    request.app[CALLS]["slow"] += 1
    await asyncio.sleep(DELAY)
    return web.Response(body=BODY, content_type="application/json")


def make_app(mode: str, ttl: float) -> tuple[web.Application, Any]:
    """The app under test and its coalesce middleware object (None for bare, noop, minimal)."""
    mw = coalesce_middleware(ttl=ttl) if mode in ("mw", "route") else None
    middlewares = {
        "bare": [],
        "noop": [noop_middleware],
        "minimal": [minimal_cache_middleware()] if mode == "minimal" else [],
        "mw": [mw],
        "route": [],
    }[mode]
    app = web.Application(middlewares=middlewares)  # type: ignore[arg-type]
    app[CALLS] = Counter()
    # "route": the same middleware on the stored route alone (mw.decorate), no app middleware
    app.router.add_get("/item", mw.decorate(item) if mw is not None and mode == "route" else item)
    app.router.add_get("/slow", slow)
    return app, mw


async def serve(mode: str, ttl: float, profile_out: str | None) -> None:
    app, mw = make_app(mode, ttl)
    calls = app[CALLS]

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "calls": dict(calls),
                "mw": None if mw is None else asdict(mw.stats),
                "cpu": time.process_time(),
            }
        )

    control = web.Application()  # its own app and port: no middleware of the measured app
    control.router.add_get("/__stats", stats)
    runners = [web.AppRunner(a, access_log=None, handle_signals=False) for a in (app, control)]
    for r in runners:
        await r.setup()
        await web.TCPSite(r, HOST, 0, backlog=2048).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ports = [r.addresses[0][1] for r in runners]
    print(json.dumps({"port": ports[0], "control": ports[1]}), flush=True)
    prof = cProfile.Profile() if profile_out else None
    if prof is not None:
        prof.enable()
    await stop.wait()
    if prof is not None and profile_out:
        prof.disable()
        prof.dump_stats(profile_out)
    for r in runners:
        await r.cleanup()


# -- the Python load generator (subprocess) --------------------------------------------------------


async def load(url: str, connections: int, duration: float) -> None:
    """N workers, each a keep-alive loop of GET + read, for ``duration`` seconds; prints JSON."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as s:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            clock = time.perf_counter
            while (t0 := clock()) < deadline:
                try:
                    async with s.get(url) as r:
                        await r.read()
                        statuses[r.status] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1
                    continue
                latencies.append(clock() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    done = sum(statuses.values())
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if done else 0.0

    result = Load(
        requests=done,
        seconds=elapsed,
        rps=done / elapsed,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        errors=errors,
        non2xx=sum(n for st, n in statuses.items() if not 200 <= st < 400),
    )
    print(json.dumps(asdict(result)))


# -- orchestration ---------------------------------------------------------------------------------

SCRIPT = os.path.abspath(__file__)


@dataclass
class Load:
    """What the load generator saw in one run."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    non2xx: int


# ``--uvloop`` passed on to every process this script starts (servers, the Python load generator).
CHILD_LOOP: list[str] = []


class Server:
    """One server subprocess; ``stats()`` reads its control port."""

    def __init__(self, mode: str, ttl: float, profile_out: str | None = None) -> None:
        cmd = [sys.executable, SCRIPT, "--serve", mode, "--ttl", str(ttl), *CHILD_LOOP]
        if profile_out:
            cmd += ["--profile-out", profile_out]
        self.mode = mode
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        check(bool(line), f"server {mode} did not start")
        ports = json.loads(line)
        self.base = f"http://{HOST}:{ports['port']}"
        self._control = f"http://{HOST}:{ports['control']}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self._control + "/__stats", timeout=10) as r:
            data: dict[str, Any] = json.loads(r.read())
        return data

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def servers(*specs: tuple[str, float]) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for mode, ttl in specs:
            started.append(Server(mode, ttl))
        yield started
    finally:
        for s in started:
            s.stop()


def get_once(url: str) -> tuple[int, dict[str, str], bytes]:
    """One plain request (a curl of the route): status, headers, body."""
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, dict(r.headers.items()), r.read()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    check(m is not None, f"unreadable wrk time {text!r}")
    assert m is not None
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> Load:
    done = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m)),", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    check(bool(done and rps and p50 and p99), f"unreadable wrk output:\n{out}")
    assert done and rps and p50 and p99
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(
        requests=int(done.group(1)),
        seconds=_ms(done.group(2)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        errors=sum(int(g) for g in sock.groups()) if sock else 0,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
    )


def run_load(loadgen: str, url: str, connections: int, seconds: float) -> Load:
    if loadgen == "wrk":
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
        cmd += ["--latency", url]
    else:
        cmd = [sys.executable, SCRIPT, "--load", url, "-c", str(connections), "-d", str(seconds)]
        cmd += CHILD_LOOP
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, timeout=seconds + 60
    ).stdout
    return parse_wrk(out) if loadgen == "wrk" else Load(**json.loads(out))


def measured(srv: Server, loadgen: str, path: str, conns: int, seconds: float) -> tuple[Load, Any]:
    """One load run, and what moved on the server meanwhile (handler calls, counters, CPU)."""
    before = srv.stats()
    res = run_load(loadgen, srv.base + path, conns, seconds)
    time.sleep(max(0.1, DELAY * 4))  # let requests in flight when the load stopped finish
    after = srv.stats()
    delta: dict[str, Any] = {
        f"calls.{k}": v - before["calls"].get(k, 0) for k, v in after["calls"].items()
    }
    delta["cpu"] = after["cpu"] - before["cpu"]
    if after["mw"] is not None:
        delta.update({k: v - before["mw"][k] for k, v in after["mw"].items()})
    check(res.errors == 0 and res.non2xx == 0, res)
    return res, delta


@dataclass
class Throughput:
    rates: dict[str, list[float]]  # req/s per round, per app
    cpu_us: dict[str, list[float]]  # server CPU µs per request, per round, per app

    def median(self, mode: str) -> float:
        return statistics.median(self.rates[mode])

    def cpu(self, mode: str) -> float:
        return statistics.median(self.cpu_us[mode])

    @property
    def ratio(self) -> float:
        return self.median("mw") / self.median("bare")

    @property
    def paired(self) -> list[float]:
        return [m / b for m, b in zip(self.rates["mw"], self.rates["bare"], strict=True)]


def throughput(loadgen: str, rounds: int, seconds: float) -> Throughput:
    conns = THROUGHPUT_CONNECTIONS
    print(
        f"\n1. throughput of a stored route: GET /item, {len(BODY):,} B JSON body, {conns} "
        f"connections, {rounds} rounds of {seconds:g} s per app, order rotated each round"
    )
    print(
        "   apps: bare (no middleware), no-op mw (one @web.middleware that only awaits the "
        "handler), minimal cache mw (the least a caching middleware does: the first response's "
        "status, body and headers kept by path, a fresh web.Response of them for every later "
        f"request, Age and X-Cache added), coalesce (coalesce_middleware(ttl={STORED_TTL})), "
        "route (the same on the route alone: mw.decorate(handler), no app middleware)"
    )
    stored = float(STORED_TTL)
    specs = (("bare", 0.0), ("noop", 0.0), ("minimal", 0.0), ("mw", stored), ("route", stored))
    with servers(*specs) as apps:
        by_mode = {srv.mode: srv for srv in apps}
        cached = ("minimal", "mw", "route")
        # A curl of each first: the same body every way; a caching middleware's first answer is
        # a MISS, its next a HIT, with the same header lines from both caches.
        hit_lines: dict[str, list[str]] = {}
        for srv in apps:
            for expect in ("MISS", "HIT") if srv.mode in cached else ("(none)",):
                status, headers, body = get_once(srv.base + "/item")
                got = headers.get("X-Cache", "(none)")
                check(status == 200 and body == BODY and got == expect, headers)
                print(
                    f"   curl {LABELS[srv.mode]:<16} /item: {status}, {len(body)} B, "
                    f"Content-Type {headers.get('Content-Type')}, X-Cache {got}"
                )
            hit_lines[srv.mode] = sorted(headers)
        print(f"   header lines of a HIT: {', '.join(hit_lines['mw'])}")
        check(hit_lines["minimal"] == hit_lines["mw"] == hit_lines["route"], hit_lines)
        for srv in apps:  # untimed warm-up
            run_load(loadgen, srv.base + "/item", conns, 1.0)
        out = Throughput({s.mode: [] for s in apps}, {s.mode: [] for s in apps})
        for i in range(rounds):
            for srv in apps[i % len(apps) :] + apps[: i % len(apps)]:
                res, d = measured(srv, loadgen, "/item", conns, seconds)
                if srv.mode == "minimal":  # no counters: the handler's count shows every HIT
                    check(d["calls.item"] == 0, d)
                    served = res.requests
                    note = f"{served:,} answered (load generator's count), handler ran 0 times"
                elif srv.mode in cached:
                    # The handler never ran; every request the server saw was a HIT.
                    check(d["calls.item"] == 0 and d["requests"] == d["hits"], d)
                    check(abs(d["hits"] - res.requests) <= conns, (d, res))
                    served = d["hits"]
                    note = f"{served:,} HIT of {d['requests']:,}, handler ran 0 times"
                else:
                    served = d["calls.item"]
                    note = f"handler ran {served:,} times"
                cpu_us = d["cpu"] / served * 1e6
                out.rates[srv.mode].append(res.rps)
                out.cpu_us[srv.mode].append(cpu_us)
                print(
                    f"   round {i + 1} {LABELS[srv.mode]:<16} {res.rps:>7,.0f} req/s  "
                    f"p50 {res.p50_ms:5.2f} ms  p99 {res.p99_ms:5.2f} ms  "
                    f"server CPU {cpu_us:5.1f} µs/req  ({note})"
                )
        final = by_mode["mw"].stats()["mw"]
    print("   medians:")
    for mode in out.rates:
        print(
            f"     {LABELS[mode]:<16} {out.median(mode):>7,.0f} req/s "
            f"{out.median(mode) / out.median('bare'):7.1%} of bare   "
            f"server CPU {out.cpu(mode):5.1f} µs/req (+{out.cpu(mode) - out.cpu('bare'):4.1f})"
        )
    paired = out.paired
    print(
        f"   coalesce/bare: ratio of medians {out.ratio:.1%}; per round "
        f"{' '.join(f'{p:.0%}' for p in paired)} (median {statistics.median(paired):.1%}); "
        f"by server CPU per request {out.cpu('bare') / out.cpu('mw'):.1%}"
    )
    print(
        f"   minimal/bare: ratio of medians {out.median('minimal') / out.median('bare'):.1%}; "
        f"coalesce/minimal {out.median('mw') / out.median('minimal'):.1%}, route/minimal "
        f"{out.median('route') / out.median('minimal'):.1%}; by server CPU per request: "
        f"coalesce {out.cpu('mw') - out.cpu('minimal'):+.1f} µs, route "
        f"{out.cpu('route') - out.cpu('minimal'):+.1f} µs over the minimal cache"
    )
    print(
        f"   route/bare: ratio of medians {out.median('route') / out.median('bare'):.1%}; "
        f"by server CPU per request {out.cpu('bare') / out.cpu('route'):.1%}"
    )
    print(
        f"   coalesce middleware totals: requests {final['requests']:,}, hits {final['hits']:,}, "
        f"misses {final['misses']}, stored {final['stored']}, upstream {final['upstream']}"
    )
    return out


def stampede(loadgen: str, seconds: float) -> dict[str, tuple[Load, Any]]:
    conns = STAMPEDE_CONNECTIONS
    print(
        f"\n2. stampede: GET /slow (handler sleeps {DELAY * 1000:.0f} ms), {conns} connections "
        f"for {seconds:g} s; coalesce_middleware(ttl={STAMPEDE_TTL}), then no middleware"
    )
    out: dict[str, tuple[Load, Any]] = {}
    with servers(("mw", float(STAMPEDE_TTL)), ("bare", 0.0)) as apps:
        for srv in apps:
            res, d = measured(srv, loadgen, "/slow", conns, seconds)
            out[srv.mode] = (res, d)
            calls = d["calls.slow"]
            print(
                f"   {'coalesce' if srv.mode == 'mw' else 'bare':<8} handler ran {calls:>6,} times"
                f"   requests served {res.requests:>7,} ({res.rps:,.0f} req/s)   "
                f"p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms"
            )
            if srv.mode == "mw":
                print(
                    f"            server: {d['requests']:,} requests = {d['hits']:,} HIT + "
                    f"{d['coalesced']:,} COALESCED + {d['misses']:,} MISS; "
                    f"{calls / seconds:.2f} handler runs per second"
                )
            else:
                print(
                    f"            server: handler ran {calls - res.requests:+,} times more than "
                    "requests served (those still in flight when the load stopped)"
                )
    return out


# -- 3. --profile ----------------------------------------------------------------------------------


async def _per_call(call: Callable[[], Any], request: Any, n: int, is_async: bool) -> float:
    """µs per call of ``call()`` (awaited when ``is_async``). The request's cached properties
    (aiohttp's ``reify`` cache) are cleared before each call, as for a new request."""
    cache = getattr(request, "_cache", {})
    t0 = time.perf_counter()
    if is_async:
        for _ in range(n):
            cache.clear()
            await call()
    else:
        for _ in range(n):
            cache.clear()
            call()
    return (time.perf_counter() - t0) / n * 1e6


async def components(n: int, rounds: int) -> dict[str, float]:
    """Median µs per call of each app's ``_handle`` and of the middleware's steps on a HIT."""
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    headers = CIMultiDict({"Host": "127.0.0.1:8080", "User-Agent": "wrk", "Accept": "*/*"})
    # name -> (zero-argument call, the request it uses, whether to await it)
    steps: dict[str, tuple[Callable[[], Any], Any, bool]] = {}
    mws: dict[str, Any] = {}
    for mode in ("bare", "noop", "minimal", "mw", "decorate"):
        if mode == "decorate":  # the same middleware on the route only: mw.decorate(handler)
            app = web.Application()
            app[CALLS] = Counter()
            app.router.add_get("/item", coalesce_middleware(ttl=STORED_TTL).decorate(item))
        else:
            app, mws[mode] = make_app(mode, STORED_TTL)
        app.freeze()
        req = make_mocked_request("GET", "/item", headers=headers, app=app)
        for _ in range(2):  # the middleware's MISS, then a HIT
            getattr(req, "_cache", {}).clear()
            resp = await app._handle(req)
        check(isinstance(resp, web.Response) and resp.body == BODY, mode)
        hit = mode in ("minimal", "mw", "decorate")
        check(resp.headers.get("X-Cache") == ("HIT" if hit else None))
        steps[mode] = (functools.partial(app._handle, req), req, True)
    mw, req = mws["mw"], steps["mw"][1]
    key = mw._key(req)

    async def never() -> Any:
        raise AssertionError("a HIT does not run the handler")

    answer = await mw._core.fetch(Call(key), never)
    check(answer.status == "hit", answer)
    steps["_key"] = (lambda: mw._key(req), req, False)
    steps["KeyMaker.request_key"] = (
        lambda: mw._keys.request_key(
            "GET", UrlParts("http", "127.0.0.1:8080", None, "/item", []), {}.get
        ),
        req,
        False,
    )
    steps["Coalescer.fetch"] = (lambda: mw._core.fetch(Call(key), never), req, True)
    steps["_replay"] = (lambda: mw._replay(answer.snapshot, answer.status), req, False)
    steps["handler"] = (functools.partial(item, steps["bare"][1]), steps["bare"][1], True)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, (call, r, is_async) in steps.items():
            gc.collect()
            times[name].append(await _per_call(call, r, n, is_async))
    return {k: statistics.median(v) for k, v in times.items()}


def profile(loadgen: str, quick: bool) -> None:
    n, rounds = (5_000, 3) if quick else (20_000, 7)
    print(
        f"\n3. where the middleware's time goes (--profile)\n"
        f"   a. no profiler: app._handle(request) in this process, mocked request, median of "
        f"{rounds} rounds of {n:,} calls"
    )
    med = run_on_loop(components(n, rounds), bool(CHILD_LOOP))
    base = med["bare"]
    for mode, label in (
        ("bare", "bare app (route + handler)"),
        ("noop", "no-op middleware"),
        ("minimal", "minimal caching mw, HIT"),
        ("mw", "coalesce_middleware, HIT"),
        ("decorate", "mw.decorate(handler), HIT"),
    ):
        print(f"      {label:<30} {med[mode]:6.2f} µs  (+{med[mode] - base:5.2f})")
    print(
        f"      inside coalesce_middleware on a HIT: _key {med['_key']:.2f} µs (of which "
        f"KeyMaker.request_key {med['KeyMaker.request_key']:.2f}), Coalescer.fetch "
        f"{med['Coalescer.fetch']:.2f} µs, _replay {med['_replay']:.2f} µs (the bare "
        f"handler's own web.Response: {med['handler']:.2f} µs)"
    )
    seconds = 3.0 if quick else 5.0
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench_server_{os.getpid()}.prof")
    srv = Server("mw", STORED_TTL, profile_out=path)
    try:
        get_once(srv.base + "/item")
        res = run_load(loadgen, srv.base + "/item", THROUGHPUT_CONNECTIONS, seconds)
    finally:
        srv.stop()
    st = pstats.Stats(path)
    os.unlink(path)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    per = 1e6 / max(res.requests, 1)
    ours = [(k, v) for k, v in raw.items() if f"coalesce_client{os.sep}" in k[0]]
    own = sum(v[2] for _, v in ours)
    print(
        f"   b. cProfile of a coalesce server under {seconds:g} s of HIT load: {res.requests:,} "
        f"requests ({res.rps:,.0f} req/s under the profiler); coalesce_client code's own time "
        f"{own / total:.1%} of the process"
    )
    print("      coalesce_client functions by cumulative time, profiled µs per request:")
    for (file, line, name), v in sorted(ours, key=lambda kv: -kv[1][3])[:10]:
        short = file.split(f"coalesce_client{os.sep}", 1)[-1]
        print(f"      {v[3] * per:7.2f} cum {v[2] * per:6.2f} own  {short}:{line} {name}")
    print("      whole process, top 12 functions by own time:")
    for (file, line, name), v in sorted(raw.items(), key=lambda kv: -kv[1][2])[:12]:
        where = re.sub(r".*(site-packages|python3\.\d+|coalesce_client)/", r"", file)
        print(f"      {v[2] / total:6.1%}  {where}:{line} {name}")


# -- main ------------------------------------------------------------------------------------------


def main_bench(args: argparse.Namespace) -> None:
    loadgen = args.loadgen or ("wrk" if shutil.which("wrk") else "python")
    if loadgen == "wrk":
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        gen = (wrk.stdout + wrk.stderr).split("Copyright")[0].strip() + ", -t1, keep-alive"
    else:
        why = "--loadgen python" if args.loadgen else "wrk not found"
        gen = f"Python aiohttp {aiohttp.__version__} client in a subprocess ({why})"
    print(
        f"{python_platform()}, {os.cpu_count()} CPUs; aiohttp {aiohttp.__version__}, "
        f"coalesce_client {version('coalesce_client')}; {loop_name(args.uvloop)}; "
        f"mode {'quick' if args.quick else 'full'}"
    )
    print(f"load generator: {gen}")
    rounds, seconds, burst = (3, 2.0, 3.0) if args.quick else (7, 4.0, 10.0)

    tp = throughput(loadgen, rounds, seconds)
    st = stampede(loadgen, burst)

    mw_res, mw_d = st["mw"]
    bare_res, bare_d = st["bare"]
    lo, hi = int(burst / (STAMPEDE_TTL + DELAY)), int(burst / STAMPEDE_TTL) + 2
    calls = mw_d["calls.slow"]
    print("\nSummary (medians)")
    print(
        f"   stored route: coalesce {tp.median('mw'):,.0f} req/s vs bare {tp.median('bare'):,.0f}"
        f" req/s = {tp.ratio:.1%} (no-op middleware: {tp.median('noop') / tp.median('bare'):.1%});"
        f" server CPU {tp.cpu('mw'):.1f} vs {tp.cpu('bare'):.1f} µs per request"
    )
    minimal = tp.median("minimal")
    print(
        f"   minimal cache mw {minimal:,.0f} req/s = {minimal / tp.median('bare'):.1%} of bare, "
        f"server CPU {tp.cpu('minimal'):.1f} µs per request; coalesce = "
        f"{tp.median('mw') / minimal:.1%} of it, route = {tp.median('route') / minimal:.1%}"
    )
    print(
        f"   stampede ({burst:g} s, {STAMPEDE_CONNECTIONS} connections): coalesce ran the handler "
        f"{calls} times for {mw_res.requests:,} requests; bare ran it "
        f"{bare_d['calls.slow']:,} times for {bare_res.requests:,}"
    )
    print("Targets")
    print(f"   coalesce >= 80% of bare on a stored route: {tp.ratio:.1%}, {met(tp.ratio >= 0.8)}")
    print(
        f"   stampede, about one handler run per second ({lo}-{hi} in {burst:g} s): "
        f"{calls}, {met(lo <= calls <= hi)}"
    )
    if args.profile:
        profile(loadgen, args.quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, about 30 s")
    parser.add_argument("--profile", action="store_true", help="where the middleware's time goes")
    parser.add_argument(
        "--loadgen", choices=("wrk", "python"), help="default: wrk if on PATH, else python"
    )
    # Internal: the subprocesses this script starts.
    parser.add_argument("--serve", choices=tuple(LABELS), help=argparse.SUPPRESS)
    parser.add_argument("--ttl", type=float, default=STORED_TTL, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("-c", type=int, default=THROUGHPUT_CONNECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("-d", type=float, default=5.0, help=argparse.SUPPRESS)
    add_loop_option(parser)
    args = parser.parse_args()
    CHILD_LOOP[:] = ["--uvloop"] if args.uvloop else []
    if args.serve:
        run_on_loop(serve(args.serve, args.ttl, args.profile_out), args.uvloop)
    elif args.load:
        run_on_loop(load(args.load, args.c, args.d), args.uvloop)
    else:
        main_bench(args)


if __name__ == "__main__":
    main()
