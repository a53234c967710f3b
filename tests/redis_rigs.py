"""Rigs for the Redis tests of issue 23: a TCP proxy the test controls, and a Redis Cluster.

``TcpProxy`` forwards 127.0.0.1 connections to a Redis and counts them; ``stall()`` stops forwarding
on the connections open now without closing them (a half-open connection, as a partition leaves
it), while connections opened later flow.

``Cluster`` is three primaries each with a replica: six redis-server processes with
``--cluster-enabled yes`` in temporary directories, joined by ``redis-cli --cluster create``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import RedisServer


class TcpProxy:
    """Forwards 127.0.0.1:port to the target port; counts connections; can stall them."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None
        self._flows: list[asyncio.Event] = []  # one per connection: set while it forwards
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        """Stop forwarding on every connection open now; they stay open."""
        for flow in self._flows:
            flow.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        flow = asyncio.Event()
        flow.set()
        self._flows.append(flow)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(source, sink, flow))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, flow: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await source.read(65536):
                await flow.wait()  # stalled: held here, the socket left open
                sink.write(data)
                await sink.drain()
        if flow.is_set():
            sink.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = random.randrange(20000, 50000)
        with contextlib.ExitStack() as stack:
            try:
                for p in (port, port + 10000):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", p))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


class ClusterNode(RedisServer):
    """One redis-server of a cluster."""

    def __init__(self, binary: str, directory: Path) -> None:
        super().__init__(binary, directory)
        self.port = _cluster_port()

    def start(self) -> None:
        self.extra = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": "1000",
            "cluster-replica-validity-factor": "0",  # a replica may always take over
        }
        super().start()


class Cluster:
    """Six nodes: three primaries, each with a replica (module docstring)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.nodes = [ClusterNode(binary, directory / f"node{i}") for i in range(6)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or str(Path(self.nodes[0].binary).with_name("redis-cli"))
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        made = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if made.returncode:
            raise RuntimeError(f"redis-cli --cluster create failed: {made.stdout}{made.stderr}")
        self.wait_ok()

    def cli(self, node: ClusterNode, *args: str) -> str:
        cli = shutil.which("redis-cli") or str(Path(node.binary).with_name("redis-cli"))
        done = subprocess.run(
            [cli, "-p", str(node.port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says the cluster is ok and sees three primaries (a fixture's
        start-up, and a failover's end: polled, as redis-cli itself does)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [node for node in self.nodes if node.proc is not None]
            infos = [self.cli(node, "cluster", "info") for node in running]
            if all("cluster_state:ok" in info for info in infos) and all(
                len(self.primaries(node)) == 3 for node in running
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become ok")

    def primaries(self, node: ClusterNode) -> list[int]:
        """The ports of the primaries that ``node`` sees up."""
        ports = []
        for line in self.cli(node, "cluster", "nodes").splitlines():
            parts = line.split()
            flags = parts[2] if len(parts) > 8 else ""  # a node that holds slots
            if "master" in flags and "fail" not in flags:
                ports.append(int(parts[1].split(":")[1].split("@")[0]))
        return ports

    def node_of(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def kill_and_promote(self, port: int) -> None:
        """SIGKILL the primary on ``port``; return once its replica is promoted (the cluster ok,
        three primaries up, seen by every node still running)."""
        victim = self.node_of(port)
        assert victim.proc is not None
        victim.proc.kill()
        victim.stop()
        self.wait_ok()

    def restore(self) -> None:
        """Start the killed nodes again (each rejoins as a replica, from its nodes.conf)."""
        for node in self.nodes:
            if node.proc is None:
                node.start()
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:  # all at once, then each waited for
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            node.stop()
