"""The pump: the rest of a large body, read from aiohttp's response into a flight's spool.

Rules of this module (the client face's half of issue 24; ``core/spool.py`` holds the rest):

* A body over ``max_body_size`` is shared as it arrives: ``send.SharedRequest`` puts what it had
  read in a ``Spool`` and hands the flight a snapshot whose ``stream`` is that spool; the pump, a
  task of its own, reads the rest of the response into it.
* It reads at the origin's pace, not at any reader's: ``Spool.append`` never waits, so neither a
  slow leader nor a slow follower holds up the others, and the fastest reader is never held
  back by the slowest. Memory stays bounded by the spool's bound (``max_body_size``); the rest
  of the body goes to the spool's temporary file, so a reader that reads nothing costs disk, not
  memory.
* The body ends complete (``Spool.finish``, which also checks an announced length), or short:
  any error of the read (``ClientPayloadError``, a reset, a timeout, a cancellation) fails the
  spool, so that every reader gets the truncation (``ClientPayloadError`` in the caller's
  response), never a short body presented as complete; the connection is then closed.
* Nobody wants the body any more when the spool is gone: no caller's response, no reader, no
  pending storage write holds it. The pump holds it by a weak reference only, and its
  ``weakref.finalize`` cancels the pump at once: the connection is closed, the rest is not
  fetched.
* Running pumps are held here (asyncio keeps only weak references to tasks) until they end,
  with the aiohttp session they read from: closing that session stops them (``stop_pumps``),
  and their bodies end short. aiohttp itself never wakes a read that waits on a connection its
  session closed; the session's close stops its pumps first, so no reader of a spool waits
  for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from aiohttp import ClientResponse, ClientSession

from ..core.spool import Spool

__all__ = ["start_pump", "stop_pumps"]

_RUNNING: dict[asyncio.Task[None], ClientSession] = {}  # held until they end (module rules)


def start_pump(resp: ClientResponse, spool: Spool, session: ClientSession) -> asyncio.Task[None]:
    """Read the rest of ``resp`` (sent by ``session``) into ``spool`` in a task of its own
    (module rules)."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(_pump(resp, weakref.ref(spool)))
    _RUNNING[task] = session
    task.add_done_callback(_forget)
    gone = weakref.finalize(spool, _stop, loop, task)  # nobody wants the body: stop fetching it
    gone.atexit = False  # at exit the loop is gone, and the task with it
    return task


def stop_pumps(session: ClientSession) -> None:
    """Stop the pumps reading from ``session``, which is closing (module rules)."""
    for task, of in list(_RUNNING.items()):
        if of is session:
            task.cancel()


def _forget(task: asyncio.Task[None]) -> None:
    _RUNNING.pop(task, None)


def _stop(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    """Cancel the pump from wherever the spool was collected (a storage's thread may drop the
    last reference): through the loop's own thread, unless the loop is gone already."""
    if not task.done():
        with contextlib.suppress(RuntimeError):  # a closed loop: its tasks are gone with it
            loop.call_soon_threadsafe(task.cancel)


def _fed(ref: weakref.ref[Spool], chunk: bytes) -> bool:
    """Append ``chunk`` to the spool if anybody still holds it; whether it was. A function of its
    own, so that the pump's frame never holds the spool across an ``await``."""
    spool = ref()
    if spool is None:
        return False
    spool.append(chunk)
    return not spool.done  # a failed append (a full disk) ends the pump too


def _ended(ref: weakref.ref[Spool], error: BaseException | None) -> None:
    spool = ref()
    if spool is not None:
        if error is None:
            spool.finish()
        else:
            spool.fail(error)


async def _pump(resp: ClientResponse, ref: weakref.ref[Spool]) -> None:
    try:
        async for chunk in resp.content.iter_any():
            if not _fed(ref, chunk):
                resp.close()
                return
    except asyncio.CancelledError as exc:
        _ended(ref, exc)
        resp.close()
        raise
    except Exception as exc:  # the origin failed mid-body: every reader is told, nobody raised
        _ended(ref, exc)
        resp.close()
        return
    _ended(ref, None)
    resp.release()
