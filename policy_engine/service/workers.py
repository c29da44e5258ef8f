"""`serve --workers N` on Linux: each worker process accepts on a listening socket of its
own, all in one SO_REUSEPORT group, so the kernel spreads new connections over the
workers by a hash of their addresses.

Why not uvicorn's own supervisor as it is: it hands every worker the same socket, and the
kernel gives each new connection to the worker that began waiting last, so a burst of
keep-alive connections (a proxy's pool, a scheduler's clients) can all land on one
process while the other idles. Measured with 20 clients on two workers: 126 or 233
requests/s for the same code, run to run (benchmarks/RESULTS.md). Uvicorn has an open
pull request for this (encode/uvicorn#2472); until it lands, this is uvicorn's supervisor
with one socket per worker slot: a worker that dies is replaced on the same socket, so no
socket is left listening without a worker. Only processes of the same user can join the
group (Linux checks the uid).
"""

from __future__ import annotations

import pickle
import socket
import sys
import time

from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process, logger

from policy_engine.errors import ConfigError

# A worker is spawned: it answers health checks only once it has imported the engine,
# seconds on an idle machine and more than uvicorn's 5 s health-check timeout on a loaded
# one. Until its first answer, a live worker is given this long before it counts as hung
# (killing it as hung at 5 s restarted it, to be killed again, for as long as the load).
STARTUP_GRACE_S = 60.0


def balanced_workers_available() -> bool:
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def reuse_port_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to (host, port) in one SO_REUSEPORT group, not listening
    yet (each worker listens on its own)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another server"
            " using that port? Choose another with --port"
        ) from exc
    return sockets


class BalancedMultiprocess(Multiprocess):
    """Uvicorn's supervisor (signals, health checks, restarts), worker slot i always on
    socket i."""

    def __init__(self, config: Config, slots: list[socket.socket]) -> None:
        super().__init__(config, sockets=[])
        self.slots = slots
        # workers that have not yet answered a health check: when each was started, and
        # whether a first ping is on its way to it
        self.starting: dict[Process, tuple[float, bool]] = {}

    def _started(self, slot: int) -> Process:
        process = Process(self.config, [self.slots[slot]])
        process.start()
        self.starting[process] = (time.monotonic(), False)
        return process

    def _starting(self, process: Process) -> str | None:
        """For a worker that has not answered a health check yet: "starting" (alive, within
        its grace: importing, not hung), "up" (its first pong came), "hung" (silent past
        its grace and a health check's wait), or None (not starting, or its pipe is gone:
        checked as usual). One ping at a time is sent; within the grace it is looked for
        without waiting, so the supervisor's loop is not held up meanwhile."""
        if process not in self.starting:
            return None
        started, pinged = self.starting[process]
        state: str | None = None
        try:
            if process.process.is_alive():
                if not pinged:
                    process.parent_conn.send(b"ping")
                    self.starting[process] = (started, True)
                within = time.monotonic() - started < STARTUP_GRACE_S
                # past the grace, the ping already sent is the health check: wait for its
                # pong (a second ping would read this one's late pong as its own)
                wait = 0 if within else self.config.timeout_worker_healthcheck
                if process.parent_conn.poll(wait):
                    process.parent_conn.recv()
                    state = "up"
                else:
                    state = "starting" if within else "hung"
        except (OSError, EOFError, pickle.UnpicklingError):
            state = None
        if state != "starting":
            del self.starting[process]
        return state

    def init_processes(self) -> None:
        self.processes = [self._started(slot) for slot in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            starting = self._starting(process)
            if starting in ("starting", "up"):
                continue
            if starting != "hung" and process.is_alive(
                timeout=self.config.timeout_worker_healthcheck
            ):
                continue
            process.kill()  # hung: kill it
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # would fail the same way again
                logger.error(f"Child process [{process.pid}] failed to start, stopping.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            self.processes[slot] = self._started(slot)

    def restart_all(self) -> None:
        """SIGHUP: replace each worker, the old one retired once the new one is ready."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._started(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                self.starting.pop(new, None)
                if not self.should_exit.is_set():
                    logger.error(f"Worker [{new.pid}] was not ready in time; kept [{old.pid}].")
                return
            old.terminate()
            old.join()
            self.starting.pop(old, None)
            self.processes[slot] = new
