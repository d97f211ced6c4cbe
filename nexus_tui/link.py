"""The TUI's line to the daemon: connect, subscribe, reconnect with backoff, publish what the daemon pushes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.signal import Signal

from nexus_core.errors import DaemonUnreachableError, NexusError
from nexus_core.rpc.aclient import AsyncClient

if TYPE_CHECKING:
    from textual.app import App

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
#: Pushed events are handed to the screens in batches this often, so a flood costs one redraw per batch.
BATCH_S = 0.05
SUBSCRIPTIONS = ("activity.subscribe", "runs.subscribe", "notifications.subscribe")
#: A daemon the TUI started is started again at most this often, so one that dies at once is not looped.
RESTART_EVERY_S = 30.0


@dataclass
class LinkState:
    """What the header shows about the connection."""

    status: str = "connecting"  # connecting | connected | reconnecting | starting
    error: str | None = None
    retry_at: float | None = None
    attempts: int = 0
    hello: dict[str, Any] = field(default_factory=dict)
    generation: int = 0  # bumped on every new connection, so screens know to load everything again


class DaemonLink:
    """Owns the connection; screens call `call()` and subscribe to its signals."""

    def __init__(self, app: "App[Any]", socket_path: Path, starter: Callable[[], int] | None = None):
        self.app = app
        self.socket_path = socket_path
        # Starts a background daemon and returns its pid: given for the embedded default, where a
        # daemon that died is ours to start again, as every `nexus` command would.
        self.starter = starter
        self._last_start = -RESTART_EVERY_S
        self.client: AsyncClient | None = None
        self.state = LinkState()
        self.state_changed: Signal[LinkState] = Signal(app, "link-state")
        self.activity: Signal[list[dict[str, Any]]] = Signal(app, "activity")
        self.runs: Signal[dict[str, Any]] = Signal(app, "runs")
        self.notifications: Signal[dict[str, Any]] = Signal(app, "notifications")
        self.mode: Signal[dict[str, Any]] = Signal(app, "mode")
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._events: list[dict[str, Any]] = []
        self._runs: dict[str, Any] | None = None
        self._flush: asyncio.TimerHandle | None = None
        self.pushed = 0
        self.mode_info: dict[str, Any] = {"mode": "normal"}

    @property
    def connected(self) -> bool:
        return self.state.status == "connected" and self.client is not None and not self.client.closed

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 60.0) -> Any:
        """Call the daemon; DaemonUnreachableError while there is no connection."""
        client = self.client
        if client is None or client.closed:
            raise DaemonUnreachableError(
                "not connected to the daemon" + (f": {self.state.error}" if self.state.error else ""))
        return await client.call(method, params, timeout=timeout)

    def retry_now(self) -> None:
        """Skip the rest of the back-off wait."""
        self._wake.set()

    async def run(self) -> None:
        """Connect, and connect again whenever the connection is lost, until the app exits."""
        while True:
            client = AsyncClient(self.socket_path, on_notification=self._on_notification,
                                 on_disconnect=self._on_disconnect)
            try:
                hello = await client.connect()
                answers = await asyncio.gather(*(client.call(m, {}) for m in SUBSCRIPTIONS), return_exceptions=True)
                for answer in answers:
                    if isinstance(answer, NexusError) and answer.data.get("reason") != "unknown_method":
                        raise answer
                    if isinstance(answer, BaseException) and not isinstance(answer, NexusError):
                        raise answer
            except NexusError as exc:
                await client.close()
                if not await self._restart(exc):
                    await self._wait_retry(exc.message)
                continue
            self.client = client
            self._lost.clear()
            self.state = LinkState("connected", None, None, 0, hello, self.state.generation + 1)
            self.state_changed.publish(self.state)
            self.set_mode(hello.get("mode") or {"mode": "normal"})
            await self._lost.wait()
            self.client = None
            await client.close()
            await self._wait_retry(self.state.error or "the connection was lost")

    @property
    def stopped_on_purpose(self) -> bool:
        """A daemon that stops cleanly removes its socket; one that was killed or crashed leaves it behind."""
        return not self.socket_path.exists()

    async def _restart(self, exc: NexusError) -> bool:
        """Start the daemon again when it died under us (not when it was stopped); True once it answers."""
        if (self.starter is None or not isinstance(exc, DaemonUnreachableError) or "permission denied" in exc.message
                or self.stopped_on_purpose or time.monotonic() - self._last_start < RESTART_EVERY_S):
            return False
        self._last_start = time.monotonic()
        self.state = LinkState("starting", exc.message, None, self.state.attempts, self.state.hello,
                               self.state.generation)
        self.state_changed.publish(self.state)
        try:
            pid = await asyncio.to_thread(self.starter)
        except NexusError as start_exc:
            await self._wait_retry(f"{exc.message}; starting it again failed: {start_exc.message}")
            return True  # waited already
        self.app.notify(f"The daemon had died; started a new one in the background (pid {pid}).", title="daemon",
                        timeout=8)
        return True

    async def _wait_retry(self, error: str) -> None:
        attempts = self.state.attempts + 1
        delay = BACKOFF_S[min(attempts - 1, len(BACKOFF_S) - 1)]
        self.state = LinkState("reconnecting", error, time.time() + delay, attempts, self.state.hello,
                               self.state.generation)
        self.state_changed.publish(self.state)
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except asyncio.TimeoutError:
            pass

    def set_mode(self, info: dict[str, Any]) -> None:
        """The power mode the daemon reported; held here at once, so a screen mounted a moment later sees it."""
        self.mode_info = dict(info)
        self.mode.publish(self.mode_info)

    def _on_disconnect(self, reason: NexusError) -> None:
        self.state.error = reason.message
        self._lost.set()

    def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        self.pushed += 1
        if method == "activity.event":
            self._events.append(params)
        elif method == "runs.changed":
            self._runs = _merge_runs(self._runs, params)
        elif method == "notifications.new":
            self.notifications.publish(params)
            return
        elif method == "mode.changed":
            self.set_mode(params)
            return
        else:
            return
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(BATCH_S, self._deliver)

    def _deliver(self) -> None:
        self._flush = None
        events, self._events = self._events, []
        runs, self._runs = self._runs, None
        if events:
            self.activity.publish(events)
        if runs is not None:
            self.runs.publish(runs)


def _merge_runs(into: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Two `runs.changed` pushes as one: workflow names united, counts added."""
    if into is None:
        return {"workflows": list(new.get("workflows") or []), "started": new.get("started", 0),
                "created": new.get("created", 0), "finished": dict(new.get("finished") or {})}
    into["workflows"] = sorted(set(into["workflows"]) | set(new.get("workflows") or []))
    into["started"] += new.get("started", 0)
    into["created"] += new.get("created", 0)
    for status, count in (new.get("finished") or {}).items():
        into["finished"][status] = into["finished"].get(status, 0) + count
    return into
