"""The `command` kind: runs a program on the worker without a shell, under a timeout, keeping a bounded output tail."""

from __future__ import annotations

import codecs
import errno
import os
import selectors
import signal
import subprocess
import time
from typing import Any

from nexus_core.errors import ExecutionError, InvalidError
from nexus_core.kinds.base import OUTPUT_TAIL_CHARS, Kind, KindResult, RunContext, tail

MAX_ARGS = 256
MAX_ARG_CHARS = 4096
FIELDS = ("argv", "cwd", "env")
EXAMPLE = '["echo", "hi"]'
CHUNK_BYTES = 64 * 1024
POLL_SECONDS = 0.1
LEFTOVER_GRACE_SECONDS = 0.5
"""After the program exits, how long background children that still hold the output pipe may keep writing."""
#: What a program inherits from the worker's environment.  Only these: the daemon's environment carries
#: its database and Redis URLs and the integrations' API tokens, which a workflow's program must not see.
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR")


def program_env(extra: dict[str, str], run_vars: dict[str, str]) -> dict[str, str]:
    """The environment of a workflow's program: a safe subset of the worker's, the payload's env, the run's ids."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV or k.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    return {**env, **extra, **run_vars}


def _invalid(key: str, message: str) -> InvalidError:
    return InvalidError(message, field=f"payload.{key}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The program runs in its own session, so its pid is the group id of everything it spawned.
    # The leader may be reaped already; Linux doesn't reuse a pid still serving as a group id, so
    # this reaches leftover children and, once they are gone, nothing (barring pid wrap-around in between).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is already gone


def _collect(proc: subprocess.Popen[bytes], deadline: float) -> tuple[str, bool]:
    """Stream the merged output until EOF or the deadline; return (the last chars, timed out)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    # An incremental decoder keeps multi-byte characters split across reads intact.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # One char more than is kept, so base.tail can tell whether anything was cut.
    keep = OUTPUT_TAIL_CHARS + 1
    text, exited_at = "", None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if now >= deadline:
                return text + decoder.decode(b"", final=True), True
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            wait = min(deadline - now, POLL_SECONDS)
            if exited_at is not None:
                # A background child (`cmd &`) can hold the pipe open forever: don't wait for it.
                wait = min(wait, exited_at + LEFTOVER_GRACE_SECONDS - now)
                if wait <= 0:
                    break
            if not sel.select(wait):
                continue
            data = os.read(fd, CHUNK_BYTES)
            if not data:
                break
            text = (text + decoder.decode(data))[-keep:]
    text = (text + decoder.decode(b"", final=True))[-keep:]
    try:
        # EOF but still running (it closed its stdout): the deadline still applies.
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return text, True
    return text, False


class CommandKind(Kind):
    """Runs `argv` directly (no shell), stdout and stderr merged, failing on a non-zero exit status."""

    name = "command"
    queue = "automation"
    admin_only = True
    description = "Runs a program on the worker (no shell); fails when it exits non-zero or times out."
    payload_help = ('{"argv": ["prog", "arg", ...], "cwd": "/absolute/dir" (optional), '
                    '"env": {"NAME": "value"} (optional)}; the program also gets NEXUS_RUN_ID, '
                    'NEXUS_WORKFLOW and NEXUS_ATTEMPT')

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(payload) - set(FIELDS))
        if unknown:
            raise _invalid(unknown[0], f"unknown field {unknown[0]!r}; a command payload has only: {', '.join(FIELDS)}")
        argv = payload.get("argv")
        if isinstance(argv, str):
            raise _invalid("argv", "argv must be a list, not a string: commands run without a shell, so give the "
                                   f"program and each argument as separate strings, e.g. {EXAMPLE}")
        if not isinstance(argv, list) or not argv:
            raise _invalid("argv", "argv is required: a non-empty list of strings, the program then its arguments, "
                                   f"e.g. {EXAMPLE}")
        if len(argv) > MAX_ARGS:
            raise _invalid("argv", f"argv has {len(argv)} items, more than {MAX_ARGS}; pass long lists through a file")
        for i, arg in enumerate(argv):
            if not isinstance(arg, str):
                raise _invalid("argv", f"argv[{i}] is a {type(arg).__name__}, not a string; quote every argument, "
                                       'e.g. ["sleep", "5"]')
            if len(arg) > MAX_ARG_CHARS:
                raise _invalid("argv", f"argv[{i}] is {len(arg)} characters, more than {MAX_ARG_CHARS}; "
                                       "pass long data through a file")
            if "\x00" in arg:
                raise _invalid("argv", f"argv[{i}] contains a NUL character, which no program can receive; remove it")
        if not argv[0].strip():
            raise _invalid("argv", f"argv[0] is blank; it must name the program, e.g. {EXAMPLE}")
        out: dict[str, Any] = {"argv": list(argv)}
        cwd = payload.get("cwd")
        if cwd is not None:
            if not isinstance(cwd, str) or not os.path.isabs(cwd) or "\x00" in cwd:
                raise _invalid("cwd", f"cwd must be an absolute directory path such as \"/srv/app\", not {cwd!r}")
            out["cwd"] = cwd
        env = payload.get("env")
        if env is not None:
            if not isinstance(env, dict):
                raise _invalid("env", 'env must be an object of names to string values, e.g. {"LANG": "C.UTF-8"}')
            for key, value in env.items():
                if not key or "=" in key or "\x00" in key:
                    raise _invalid("env", f"env name {key!r} is not allowed; use a non-empty name without '=' or NUL")
                if not isinstance(value, str) or "\x00" in value:
                    raise _invalid("env", f"env[{key!r}] must be a string without NUL; quote numbers, e.g. \"1\"")
            out["env"] = dict(env)
        return out

    def execute(self, ctx: RunContext) -> KindResult:
        # Stored payloads were validated when saved, but checking again is cheap and catches old rows.
        payload = self.validate(ctx.payload)
        argv, cwd = payload["argv"], payload.get("cwd")
        prog = argv[0]
        # Which run and attempt this is, so the program can log it or make its effect idempotent.
        env = program_env(payload.get("env", {}), {"NEXUS_RUN_ID": ctx.run_id, "NEXUS_WORKFLOW": ctx.workflow_name,
                                                   "NEXUS_ATTEMPT": str(ctx.attempt)})
        deadline = time.monotonic() + ctx.timeout
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, bufsize=0)
        except OSError as exc:
            raise self._start_error(exc, prog, cwd) from None
        try:
            text, timed_out = _collect(proc, deadline)
        finally:
            # Also on success: leftover background children must not outlive the run on the worker.
            _kill_group(proc)
            assert proc.stdout is not None
            proc.stdout.close()
            proc.wait()
        output = tail(text)
        if timed_out:
            raise ExecutionError(f"timed out after {ctx.timeout:g}s; the command and its child processes were "
                                 "killed — make it finish sooner or raise the workflow's timeout", output=output)
        code = proc.returncode
        if code < 0:
            sig = signal.Signals(-code).name
            raise ExecutionError(f"{prog} was killed by signal {sig}"
                                 + (" (out of memory?)" if sig == "SIGKILL" else "")
                                 + "; see the output and the worker's system log",
                                 output=output, data={"exit_code": code})
        if code != 0:
            raise ExecutionError(f"{prog} exited with status {code}; the output shows why — fix the command or what it "
                                 "depends on", output=output, data={"exit_code": code})
        return KindResult(output=output, data={"exit_code": 0})

    @staticmethod
    def _start_error(exc: OSError, prog: str, cwd: str | None) -> ExecutionError:
        """An actionable error for a program that could not start; retryable only if the host ran short."""
        if cwd is not None and exc.filename == cwd:
            return ExecutionError(f"working directory {cwd!r} cannot be used ({exc.strerror}); create it on the "
                                  "worker or fix payload.cwd", retryable=False)
        if isinstance(exc, FileNotFoundError):
            return ExecutionError(f"program {prog!r} was not found on the worker's PATH; install it or give its "
                                  "absolute path as argv[0]", retryable=False)
        if isinstance(exc, PermissionError):
            return ExecutionError(f"program {prog!r} cannot be executed (permission denied); make it executable "
                                  "for the worker's user", retryable=False)
        transient = exc.errno in (errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE)
        return ExecutionError(f"could not start {prog!r}: {exc.strerror or exc}; check that it is a program for "
                              "this machine", retryable=transient)


KIND = CommandKind()
