"""activity.* and notifications.*: the audit feed, its live subscription, and notifications."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nexus_core.services import activity
from nexus_daemon.handlers import Call, Params, method
from nexus_daemon.live import push


class RecentParams(Params):
    limit: int = Field(default=50, ge=1, le=1000)
    before_id: int | None = None


class NotificationsParams(Params):
    unread_only: bool = False
    limit: int = Field(default=100, ge=1, le=1000)


class ReadParams(Params):
    ids: list[int] | None = Field(default=None, max_length=10_000)
    all: bool = False


@method("activity.recent", params=RecentParams)
async def recent(call: Call, p: RecentParams) -> list[dict[str, Any]]:
    return await call.daemon.store.aread(activity.recent, call.org_id, p.limit, p.before_id)


@method("activity.subscribe", params=Params)
async def subscribe(call: Call, p: Params) -> dict[str, Any]:
    """Push every new activity event of the caller's organization as an `activity.event` notification."""
    call.connection.subscriptions.add("activity")
    return {"subscribed": "activity", "notification": "activity.event"}


def push_event(daemon: Any, org_id: str, event: dict[str, Any]) -> None:
    push(daemon.connections, org_id, "activity", "activity.event", event)


@method("notifications.subscribe", params=Params)
async def subscribe_notifications(call: Call, p: Params) -> dict[str, Any]:
    """Push every new notification of the caller's organization as `notifications.new`, once it is stored."""
    call.connection.subscriptions.add("notifications")
    return {"subscribed": "notifications", "notification": "notifications.new"}


@method("notifications.list", params=NotificationsParams)
async def list_notifications(call: Call, p: NotificationsParams) -> dict[str, Any]:
    return await call.daemon.store.aread(activity.notifications, call.org_id, unread_only=p.unread_only,
                                         limit=p.limit)


@method("notifications.read", params=ReadParams)
async def mark_read(call: Call, p: ReadParams) -> dict[str, Any]:
    if not p.all and not p.ids:
        from nexus_core.errors import InvalidError

        raise InvalidError("give the notification ids to mark as read, or all", field="ids")
    changed = await call.daemon.store.awrite(activity.mark_read, call.org_id, None if p.all else p.ids)
    return {"marked_read": changed}
