"""The forwarder, run inside the namespace: relays each of the host's listening sockets (API
server, stand-in control) to its target in the netns, through the faults in force."""

from __future__ import annotations

import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from otactl.errors import LocalClusterError
from otactl.localcluster.faults import load_faults


def _forward_main(specs: Sequence[str]) -> None:
    """Relay each inherited listening socket to a target inside this namespace.

    `specs` are `FD=HOST:PORT`, and `--faults=FD:FILE` for the socket whose connections
    suffer the faults in FILE (re-read on SIGHUP, see `set_faults`). The listening sockets
    were created in the host namespace by `up` and keep that namespace; the connections
    this process opens live in the netns.
    """
    import asyncio

    gates: dict[int, _FaultGate] = {}
    targets: list[tuple[int, tuple[str, int]]] = []
    for spec in specs:
        if spec.startswith("--faults="):
            fd, _, path = spec.removeprefix("--faults=").partition(":")
            gates[int(fd)] = _FaultGate(Path(path))
            continue
        fd, _, target = spec.partition("=")
        host, _, port = target.rpartition(":")
        targets.append((int(fd), (host, int(port))))

    async def handle(
        target: tuple[str, int],
        gate: _FaultGate | None,
        cr: asyncio.StreamReader,
        cw: asyncio.StreamWriter,
    ) -> None:
        if gate is not None:
            await gate.thawed.wait()  # frozen: a new connection is accepted, never answered
        try:
            ur, uw = await asyncio.open_connection(*target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(_pipe(cr, uw, gate, False), _pipe(ur, cw, gate, True))
        for w in (uw, cw):
            w.close()

    def handler_for(
        target: tuple[str, int], gate: _FaultGate | None
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        return lambda r, w: handle(target, gate, r, w)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for gate in gates.values():
            gate.thawed = asyncio.Event()
            gate.thawed.set()
            loop.add_signal_handler(signal.SIGHUP, gate.reload)
        servers = []
        for fd, target in targets:
            sock = socket.socket(fileno=fd)
            handler = handler_for(target, gates.get(fd))
            servers.append(await asyncio.start_server(handler, sock=sock))
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(main())


class _FaultGate:
    """The forwarder's side of `Faults` for one listening socket."""

    def __init__(self, path: Path) -> None:
        import asyncio

        self.path = path
        self.delay = 0.0
        self.thawed = asyncio.Event()  # replaced inside the event loop

    def reload(self) -> None:
        try:
            faults = load_faults(self.path.parent)
        except LocalClusterError:
            return  # a half-written file cannot happen (atomic rename); keep what holds
        self.delay = faults.delay_ms / 1000
        if faults.frozen:
            self.thawed.clear()
        else:
            self.thawed.set()


async def _pipe(reader: Any, writer: Any, gate: _FaultGate | None, answers: bool) -> None:
    """Copy one direction of a connection. Through a gate: nothing passes while it is
    frozen, and answers (`answers`: API server to client) leave `delay` after they arrived,
    as on a slow link (pieces keep their order and their spacing)."""
    import asyncio

    try:
        if gate is None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        else:
            loop = asyncio.get_running_loop()
            pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def pump() -> None:
                try:
                    while data := await reader.read(65536):
                        pending.put_nowait((loop.time(), data))
                except (ConnectionError, OSError):
                    pass
                pending.put_nowait((loop.time(), b""))

            task = asyncio.ensure_future(pump())
            try:
                while True:
                    arrived, data = await pending.get()
                    await gate.thawed.wait()
                    if answers and gate.delay:
                        await asyncio.sleep(max(0.0, arrived + gate.delay - loop.time()))
                        await gate.thawed.wait()
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            finally:
                task.cancel()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
