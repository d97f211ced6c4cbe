"""Trigger, pause/resume, delete and create, shared by the dashboard and the workflow screen."""

from __future__ import annotations

from typing import Any

from textual import work

from nexus_core.errors import NexusError


async def call_approved(screen: Any, method: str, params: dict[str, Any], what: str) -> Any:
    """Call `method`; when the daemon answers that the workflow requires approval, ask, then send it confirmed.

    Raises the daemon's NexusError otherwise; returns None when the operator declined."""
    from nexus_tui.screens.confirm import ConfirmScreen

    app = screen.app
    try:
        return await app.link.call(method, params)
    except NexusError as exc:
        if exc.data.get("reason") != "approval_required":
            raise
    question = f"{what} requires approval before it runs.\nRun it now?"
    if not await app.push_screen_wait(ConfirmScreen(question, "run it")):
        return None
    return await app.link.call(method, {**params, "confirm": True})


async def rerun(screen: Any, run: dict[str, Any]) -> dict[str, Any] | None:
    """Re-run a failed or dead run (asking for approval when the daemon wants it); the new run, or None."""
    if run["status"] not in ("failed", "dead"):
        screen.app.notify(f"run {run['id'][-8:]} is {run['status']}; only failed or dead runs are re-run "
                          "(t triggers the workflow)", severity="warning", timeout=5)
        return None
    try:
        new = await call_approved(screen, "runs.rerun", {"id": run["id"]}, run["workflow"])
    except NexusError as exc:
        screen.app.report(exc, "re-run")
        return None
    if new is not None:
        screen.app.notify(f"re-running {run['id'][-8:]} as run {new['id'][-8:]}", timeout=4)
    return new


class WorkflowActions:
    """A screen mixin: the screen provides `targets()` and `after_action(names, gone=)`."""

    app: Any

    def targets(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def after_action(self, names: list[str], *, gone: bool = False) -> None:
        raise NotImplementedError

    async def _confirm(self, question: str, yes: str = "yes") -> bool:
        from nexus_tui.screens.confirm import ConfirmScreen

        return bool(await self.app.push_screen_wait(ConfirmScreen(question, yes)))

    async def _bulk(self, action: str, names: list[str]) -> None:
        try:
            answer = await self.app.link.call("workflows.bulk", {"action": action, "names": names})
        except NexusError as exc:
            self.app.report(exc, f"bulk {action}")
            return
        failed = answer.get("failed") or {}
        done = answer.get("done") or []
        message = f"{action}: {len(done)} done" + (f", {len(failed)} failed" if failed else "")
        details = "; ".join(f"{n}: {m}" for n, m in list(failed.items())[:3])
        self.app.notify(message + (f" ({details})" if details else ""), title="god mode",
                        severity="warning" if failed else "information")
        self.after_action(done, gone=action == "delete")

    @work(group="action", exit_on_error=False)
    async def action_trigger(self) -> None:
        targets = self.targets()
        if not targets:
            return
        if len(targets) > 1:
            await self._bulk("trigger", [w["name"] for w in targets])
            return
        wf = targets[0]
        try:
            run = await call_approved(self, "workflows.trigger", {"name": wf["name"]}, wf["name"])
        except NexusError as exc:
            self.app.report(exc, f"trigger {wf['name']}")
            return
        if run is None:
            return
        self.app.notify(f"run {run['id'][-8:]} is {run['status']}", title=f"triggered {wf['name']}", timeout=4)
        self.after_action([wf["name"]])

    @work(group="action", exit_on_error=False)
    async def action_pause_resume(self) -> None:
        targets = self.targets()
        if not targets:
            return
        resume = all(w.get("status") in ("paused", "error") for w in targets)
        if len(targets) > 1:
            await self._bulk("resume" if resume else "pause", [w["name"] for w in targets])
            return
        wf = targets[0]
        if wf.get("status") == "completed":
            self.app.notify(f"{wf['name']} has completed its one-off run; give it a new time with "
                            f"`auto:edit {wf['name']} --at …`", severity="warning")
            return
        try:
            answer = await self.app.link.call("workflows.resume" if resume else "workflows.pause",
                                              {"name": wf["name"]})
        except NexusError as exc:
            self.app.report(exc, f"{'resume' if resume else 'pause'} {wf['name']}")
            return
        note = f"; {answer['notice']}" if answer.get("notice") else ""
        self.app.notify(f"{wf['name']} is {answer.get('status')}{note}", timeout=5)
        self.after_action([wf["name"]])

    @work(group="action", exit_on_error=False)
    async def action_delete(self) -> None:
        targets = self.targets()
        if not targets:
            return
        names = [w["name"] for w in targets]
        what = names[0] if len(names) == 1 else f"{len(names)} workflows ({', '.join(names[:5])}" + \
            (", …)" if len(names) > 5 else ")")
        if not await self._confirm(f"Delete {what}?\nRun history is kept; runs that have not started are "
                                   "closed.", "delete"):
            return
        if len(names) > 1:
            await self._bulk("delete", names)
            return
        try:
            answer = await self.app.link.call("workflows.delete", {"name": names[0]})
        except NexusError as exc:
            self.app.report(exc, f"delete {names[0]}")
            return
        closed = answer.get("cancelled_runs") or 0
        self.app.notify(f"deleted {names[0]}" + (f"; closed {closed} runs that had not started" if closed else ""))
        self.after_action(names, gone=True)

    @work(group="action", exit_on_error=False)
    async def action_new(self) -> None:
        from nexus_tui.screens.new_workflow import NewWorkflowScreen

        created = await self.app.push_screen_wait(NewWorkflowScreen())
        if created:
            self.app.notify(f"created {created['name']}", timeout=4)
            self.after_action([created["name"]])
