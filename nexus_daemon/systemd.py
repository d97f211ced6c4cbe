"""sd_notify without a dependency: READY, WATCHDOG and STOPPING over $NOTIFY_SOCKET.

The watchdog is honest: in the daemon it beats only while the asyncio event loop still runs its
callbacks, so a hung loop stops the beats and systemd (WatchdogSec=) restarts the daemon. In
`nexus worker`, which has no event loop, it beats while the process is alive.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("nexus.systemd")


def notify(state: str) -> bool:
    """Send one notification to systemd; False when not started by systemd with Type=notify."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    # "@name" is an abstract socket: its address starts with a NUL byte instead of "@".
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd expects, in seconds, or None when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    try:
        if not usec or int(usec) <= 0 or (pid and int(pid) != os.getpid()):
            return None  # no watchdog, or it is meant for another process (we inherited the variables)
        return int(usec) / 2_000_000
    except ValueError:
        return None


class LoopProbe:
    """Asks an asyncio event loop, from another thread, whether it still runs callbacks.

    `ask()` queues a callback that stamps the time on the loop; `answered()` is true once the
    callback of the latest ask has run. A loop stuck in blocking code never runs it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.asked_at: float | None = None
        self.answered_at: float | None = None

    def _answer(self) -> None:
        self.answered_at = time.monotonic()

    def ask(self) -> None:
        self.asked_at = time.monotonic()
        try:
            self.loop.call_soon_threadsafe(self._answer)
        except RuntimeError:  # the loop is closed: it will never answer
            pass

    def answered(self) -> bool:
        return self.asked_at is not None and self.answered_at is not None and self.answered_at >= self.asked_at


class Watchdog:
    """Sends WATCHDOG=1 about every `interval` seconds while `healthy()` says so, until `stop` is set.

    With `loop` (a callable returning the daemon's event loop, or None before it runs) a beat is
    sent only when the loop has run the probe callback queued at the previous beat. Without
    `loop` (the workers-only process) every tick beats. While unhealthy it checks ten times as
    often, so the first beat follows READY=1 quickly and beats resume as soon as the loop answers.
    """

    def __init__(self, interval: float, stop: threading.Event,
                 loop: Callable[[], asyncio.AbstractEventLoop | None] | None = None):
        self.interval = interval
        self.stop = stop
        self.loop = loop
        self.probe: LoopProbe | None = None

    def healthy(self) -> bool:
        """Whether to beat now; in loop mode a true answer also queues the next probe."""
        if self.loop is None:
            return True
        loop = self.loop()
        if loop is None:
            return False  # not serving yet: nothing to vouch for (systemd only watches after READY=1)
        if self.probe is None or self.probe.loop is not loop:
            self.probe = LoopProbe(loop)
            self.probe.ask()
            return False
        if not self.probe.answered():
            return False  # still queued behind whatever blocks the loop
        self.probe.ask()
        return True

    def run(self) -> None:
        wait, warned = self.interval, False
        while not self.stop.wait(wait):
            if self.healthy():
                notify("WATCHDOG=1")
                if warned:
                    log.info("event loop answers again; systemd watchdog beats resume")
                wait, warned = self.interval, False
                continue
            wait = self.interval / 10
            probe = self.probe
            if (not warned and probe is not None and probe.asked_at is not None and not probe.loop.is_closed()
                    and time.monotonic() - probe.asked_at >= self.interval):
                log.warning("event loop does not answer; withholding the systemd watchdog beat",
                            waited_s=round(time.monotonic() - probe.asked_at, 1))
                warned = True

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="nexus-watchdog", daemon=True)
        thread.start()
        return thread
