"""SQLModel tables. Every tenant row carries its organization; runs are their own table."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from nexus_core.store.types import UTCDateTime, utcnow

WORKFLOW_STATUSES = ("active", "paused", "error", "completed")
# `waiting`: a fire held back by the overlap policy `queue` until the run before it ends;
# `skipped`: a fire the overlap policy `skip` did not run (kept so each fire is accounted for once).
RUN_STATUSES = ("waiting", "queued", "running", "succeeded", "failed", "retrying", "dead", "skipped")
FINAL_RUN_STATUSES = ("succeeded", "failed", "dead", "skipped")
ACTIVE_RUN_STATUSES = ("queued", "running", "retrying")
TRIGGERS = ("cron", "once", "catchup", "manual", "webhook", "event")
MISFIRE_POLICIES = ("skip", "once", "all")
OVERLAP_POLICIES = ("skip", "allow", "queue")


def new_id() -> str:
    """A 32-hex-digit id that sorts by creation time (48-bit ms clock + 80 random bits)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=64, unique=True)
    created_at: datetime = _ts(default_factory=utcnow)


class Operator(SQLModel, table=True):
    """An operator seen by the daemon; identity and role come from configuration."""

    __tablename__ = "operators"
    __table_args__ = (sa.UniqueConstraint("organization_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=32)
    name: str = Field(max_length=64)
    uid: int | None = None
    role: str = Field(max_length=16)
    first_seen_at: datetime = _ts(default_factory=utcnow)
    last_seen_at: datetime = _ts(default_factory=utcnow)


class Workflow(SQLModel, table=True):
    __tablename__ = "workflows"
    __table_args__ = (sa.UniqueConstraint("organization_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=32)
    name: str = Field(max_length=64)
    description: str = Field(default="", max_length=500)
    kind: str = Field(max_length=32)
    queue: str = Field(max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    status: str = Field(default="active", max_length=16, index=True)
    cron: str | None = Field(default=None, max_length=120)
    timezone: str = Field(default="UTC", max_length=64)
    run_at: datetime | None = _ts(default=None, nullable=True)
    # The scheduler's state: the next fire not yet made (NULL when there is none to make).  A fire is
    # taken by moving this forward with a guard on its old value, in the transaction that writes the run.
    next_fire_at: datetime | None = _ts(default=None, nullable=True, index=True)
    misfire: str = Field(default="skip", max_length=8, sa_column_kwargs={"server_default": "skip"})
    max_catchup: int = Field(default=10, sa_column_kwargs={"server_default": "10"})
    grace: float = Field(default=60.0, sa_column_kwargs={"server_default": "60.0"})
    overlap: str = Field(default="skip", max_length=8, sa_column_kwargs={"server_default": "skip"})
    retries: int = Field(default=2, sa_column_kwargs={"server_default": "2"})
    backoff: float = Field(default=1.0, sa_column_kwargs={"server_default": "1.0"})
    timeout: float = Field(default=600.0, sa_column_kwargs={"server_default": "600.0"})
    requires_approval: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_by: str = Field(default="system", max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow, index=True)
    last_run_at: datetime | None = _ts(default=None, nullable=True)
    last_run_status: str | None = Field(default=None, max_length=16)
    # Kept by the UPDATE that records a final outcome, so a success rate costs no query over runs.
    runs_succeeded: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    runs_failed: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # failed + dead


class Run(SQLModel, table=True):
    """One execution of a workflow: a fire, a manual trigger, a webhook or an event."""

    __tablename__ = "runs"
    __table_args__ = (
        # Exactly once per fire: a second insert for the same scheduled time fails.
        sa.UniqueConstraint("workflow_id", "scheduled_for", name="uq_runs_workflow_scheduled"),
        sa.Index("ix_runs_org_workflow_created", "organization_id", "workflow_id", "created_at"),
        sa.Index("ix_runs_status", "status"),
        # Partial: a run enters it once, when it finishes, instead of being moved there from NULL.
        sa.Index("ix_runs_org_finished", "organization_id", "finished_at",
                 sqlite_where=sa.text("finished_at IS NOT NULL"), postgresql_where=sa.text("finished_at IS NOT NULL")),
        # Fires held back (overlap policy queue, fires made together): every final outcome asks whether its
        # workflow has one, and this index holds only those few rows.
        sa.Index("ix_runs_waiting", "workflow_id",
                 sqlite_where=sa.text("status = 'waiting'"), postgresql_where=sa.text("status = 'waiting'")),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    organization_id: str = Field(foreign_key="organizations.id", max_length=32)
    workflow_id: str = Field(max_length=32)
    workflow_name: str = Field(max_length=64)
    trigger: str = Field(max_length=16)
    triggered_by: str = Field(default="system", max_length=64)
    scheduled_for: datetime | None = _ts(default=None, nullable=True)
    queue: str = Field(max_length=32)
    status: str = Field(default="queued", max_length=16)
    attempt: int = 1
    max_attempts: int = 3
    created_at: datetime = _ts(default_factory=utcnow)
    started_at: datetime | None = _ts(default=None, nullable=True)
    finished_at: datetime | None = _ts(default=None, nullable=True)
    next_attempt_at: datetime | None = _ts(default=None, nullable=True)
    duration_ms: float | None = None
    worker_id: str | None = Field(default=None, max_length=96)
    error: str | None = Field(default=None, sa_type=sa.Text)
    output: str | None = Field(default=None, sa_type=sa.Text)


class RunAttempt(SQLModel, table=True):
    """One attempt of a run, kept for the run's history."""

    __tablename__ = "run_attempts"
    __table_args__ = (sa.UniqueConstraint("run_id", "attempt"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", max_length=32, ondelete="CASCADE")
    organization_id: str = Field(max_length=32)
    attempt: int
    status: str = Field(max_length=16)
    worker_id: str | None = Field(default=None, max_length=96)
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts(default=None, nullable=True)
    duration_ms: float | None = None
    error: str | None = Field(default=None, sa_type=sa.Text)
    output: str | None = Field(default=None, sa_type=sa.Text)


class ActivityEvent(SQLModel, table=True):
    __tablename__ = "activity_events"
    __table_args__ = (sa.Index("ix_activity_org_id", "organization_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(max_length=32)
    at: datetime = _ts(default_factory=utcnow)
    level: str = Field(default="info", max_length=16)
    actor: str = Field(default="system", max_length=64)
    action: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=128)
    message: str = Field(default="", sa_type=sa.Text)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_org_read", "organization_id", "read_at"),)
    id: int | None = Field(default=None, primary_key=True)
    organization_id: str = Field(max_length=32)
    at: datetime = _ts(default_factory=utcnow)
    level: str = Field(default="error", max_length=16)
    title: str = Field(max_length=200)
    body: str = Field(default="", sa_type=sa.Text)
    workflow_id: str | None = Field(default=None, max_length=32)
    run_id: str | None = Field(default=None, max_length=32)
    read_at: datetime | None = _ts(default=None, nullable=True)


class WorkerProcess(SQLModel, table=True):
    """A worker process's heartbeat; runs claimed by a silent worker are recovered."""

    __tablename__ = "worker_processes"
    id: str = Field(primary_key=True, max_length=96)
    host: str = Field(max_length=64)
    pid: int
    queues: str = Field(default="", max_length=200)
    started_at: datetime = _ts(default_factory=utcnow)
    last_seen_at: datetime = _ts(default_factory=utcnow)
    stopped_at: datetime | None = _ts(default=None, nullable=True)


runs_table: sa.Table = Run.__table__  # type: ignore[attr-defined]
attempts_table: sa.Table = RunAttempt.__table__  # type: ignore[attr-defined]
workflows_table: sa.Table = Workflow.__table__  # type: ignore[attr-defined]
activity_table: sa.Table = ActivityEvent.__table__  # type: ignore[attr-defined]
notifications_table: sa.Table = Notification.__table__  # type: ignore[attr-defined]
workers_table: sa.Table = WorkerProcess.__table__  # type: ignore[attr-defined]
orgs_table: sa.Table = Organization.__table__  # type: ignore[attr-defined]
operators_table: sa.Table = Operator.__table__  # type: ignore[attr-defined]
