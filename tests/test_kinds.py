"""The built-in kinds against real things: real processes for `command`, a real HTTP server for `webhook`."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import sys
import time
import tracemalloc
from typing import Any

import pytest

from nexus_core import __version__
from nexus_core.errors import ExecutionError, InvalidError
from nexus_core.kinds import Kind, KindResult, RunContext, all_kinds, get_kind
from nexus_core.kinds.base import OUTPUT_TAIL_CHARS
from tests.fakes.http_sink import HttpSink

MARK = "…[truncated]\n"


def ctx(payload: dict[str, Any], *, timeout: float = 10.0, attempt: int = 1) -> RunContext:
    return RunContext(run_id="run-123", workflow_id="wf-1", workflow_name="test", organization_id="org-1",
                      attempt=attempt, trigger="manual", payload=payload, timeout=timeout)


def run(kind_name: str, payload: dict[str, Any], **kw: Any) -> KindResult:
    kind = get_kind(kind_name)
    return kind.execute(ctx(kind.validate(payload), **kw))


def failure(kind_name: str, payload: dict[str, Any], **kw: Any) -> ExecutionError:
    with pytest.raises(ExecutionError) as info:
        run(kind_name, payload, **kw)
    return info.value


def invalid(kind_name: str, payload: dict[str, Any]) -> InvalidError:
    with pytest.raises(InvalidError) as info:
        get_kind(kind_name).validate(payload)
    return info.value


def live_in_group(pgid: int) -> list[int]:
    """Pids of processes in group `pgid` that are not zombies (an init that doesn't reap leaves those)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def wait_group_gone(pgid: int, within: float = 3.0) -> list[int]:
    deadline = time.monotonic() + within
    while (left := live_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- registry ---------------------------------------------------------------------------------------------

def test_registry_discovers_the_builtin_kinds() -> None:
    kinds = all_kinds()
    assert list(kinds) == ["command", "noop", "webhook"]
    assert all(isinstance(k, Kind) and k.name == name for name, k in kinds.items())
    assert {n: (k.queue, k.admin_only) for n, k in kinds.items()} == {
        "command": ("automation", True), "noop": ("automation", False), "webhook": ("webhook", False)}
    assert all(k.description and k.payload_help for k in kinds.values())


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(InvalidError) as info:
        get_kind("nope")
    assert info.value.field == "kind"
    assert "'nope'" in info.value.message
    assert all(name in info.value.message for name in ("command", "noop", "webhook"))


# --- noop -------------------------------------------------------------------------------------------------

def test_noop_accepts_any_object_and_does_nothing() -> None:
    payload = {"anything": [1, {"x": None}]}
    assert get_kind("noop").validate(payload) == payload
    assert get_kind("noop").validate({}) == {}
    result = run("noop", payload)
    assert result.output == "" and result.data == {}


# --- command ----------------------------------------------------------------------------------------------

def test_command_captures_output_and_merges_stderr() -> None:
    assert run("command", {"argv": ["echo", "hi"]}).output == "hi\n"
    result = run("command", {"argv": ["sh", "-c", "echo out; echo err >&2"]})
    assert result.output == "out\nerr\n" and result.data == {"exit_code": 0}


def test_command_uses_cwd_env_and_no_stdin(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run("command", {"argv": ["sh", "-c", 'pwd; echo "$NX_TEST_VAR"; cat; echo done'],
                             "cwd": str(tmp_path), "env": {"NX_TEST_VAR": "from payload"}})
    assert result.output == f"{tmp_path}\nfrom payload\ndone\n"


def test_command_gets_run_ids_but_not_the_daemons_secrets(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEXUS_DATABASE_URL", "postgresql://nexus:hunter2@db/nexus")
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    out = run("command", {"argv": ["env"]}, attempt=2).output
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["NEXUS_RUN_ID"] == "run-123" and env["NEXUS_WORKFLOW"] == "test" and env["NEXUS_ATTEMPT"] == "2"
    assert env["LC_ALL"] == "C.UTF-8" and env["PATH"]
    assert "hunter2" not in out and "pat-secret" not in out


def test_command_nonzero_exit_fails_with_code_and_output() -> None:
    err = failure("command", {"argv": ["sh", "-c", "echo boom; exit 3"]})
    assert "exited with status 3" in err.message
    assert err.output == "boom\n" and err.data == {"exit_code": 3} and err.retryable


def test_command_timeout_kills_the_whole_process_group() -> None:
    started = time.monotonic()
    err = failure("command", {"argv": ["sh", "-c", "echo $$; sleep 30 & sleep 30"]}, timeout=1)
    assert time.monotonic() - started < 5
    assert "timed out after 1s" in err.message and err.retryable
    pgid = int(err.output.split()[0])
    assert wait_group_gone(pgid) == []


def test_command_background_leftovers_do_not_hold_the_run() -> None:
    started = time.monotonic()
    result = run("command", {"argv": ["sh", "-c", "echo $$; sleep 30 &"]}, timeout=20)
    assert time.monotonic() - started < 5
    assert wait_group_gone(int(result.output.split()[0])) == []


def test_command_huge_output_keeps_a_bounded_tail() -> None:
    tracemalloc.start()
    try:
        result = run("command", {"argv": ["sh", "-c", "yes | head -c 50000000; echo; echo END"]}, timeout=60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"peak {peak} bytes while reading 50 MB of output"
    assert result.output.startswith(MARK) and result.output.endswith("y\ny\n\nEND\n")
    assert len(result.output) == len(MARK) + OUTPUT_TAIL_CHARS


def test_command_decodes_utf8_across_reads_and_replaces_invalid_bytes() -> None:
    code = "import sys; sys.stdout.write('é' * 200000); sys.stdout.flush(); sys.stdout.buffer.write(b'\\xff!')"
    output = run("command", {"argv": [sys.executable, "-c", code]}).output
    assert output.startswith(MARK) and output.endswith("é\ufffd!")
    assert "\ufffd" not in output[len(MARK):-2]


def test_command_missing_program_is_not_retryable() -> None:
    err = failure("command", {"argv": ["nexus-no-such-program-xyz", "arg"]})
    assert not err.retryable and "nexus-no-such-program-xyz" in err.message and "PATH" in err.message


def test_command_missing_cwd_is_not_retryable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "nope")
    err = failure("command", {"argv": ["true"], "cwd": missing})
    assert not err.retryable and missing in err.message and "payload.cwd" in err.message


@pytest.mark.parametrize(("payload", "field", "says"), [
    ({"argv": "echo hi"}, "payload.argv", '["echo", "hi"]'),
    ({}, "payload.argv", "required"),
    ({"argv": []}, "payload.argv", "non-empty"),
    ({"argv": ["sleep", 5]}, "payload.argv", "argv[1] is a int"),
    ({"argv": [""]}, "payload.argv", "blank"),
    ({"argv": ["echo"] * 257}, "payload.argv", "more than 256"),
    ({"argv": ["echo", "x" * 4097]}, "payload.argv", "more than 4096"),
    ({"argv": ["echo"], "cwd": "relative/dir"}, "payload.cwd", "absolute"),
    ({"argv": ["echo"], "env": {"A": 1}}, "payload.env", "string"),
    ({"argv": ["echo"], "env": ["A=1"]}, "payload.env", "object"),
    ({"argv": ["echo"], "shell": True}, "payload.shell", "unknown field"),
])
def test_command_validation(payload: dict[str, Any], field: str, says: str) -> None:
    err = invalid("command", payload)
    assert err.field == field and says in err.message


# --- webhook ----------------------------------------------------------------------------------------------

def test_webhook_posts_signed_json() -> None:
    with HttpSink() as sink:
        sink.reply("/hook", 200, "thanks")
        before = int(time.time())
        result = run("webhook", {"url": f"{sink.url}/hook", "body": {"b": 1, "a": [1, "é"]},
                                 "headers": {"X-Custom": "v", "user-agent": "theirs"}, "secret": "s3cr3t"},
                     attempt=2)
    assert result.output == "HTTP 200\nthanks" and result.data == {"status_code": 200}
    [req] = sink.requests
    assert (req.method, req.path) == ("POST", "/hook")
    assert req.body == b'{"a":[1,"\\u00e9"],"b":1}'
    h = req.headers
    assert h["content-type"] == "application/json" and h["user-agent"] == "theirs"
    assert (h["x-nexus-run"], h["x-nexus-attempt"], h["x-custom"]) == ("run-123", "2", "v")
    assert before <= int(h["x-nexus-timestamp"]) <= int(time.time())
    # Verify exactly as the module docstring tells a receiver to.
    expected = hmac.new(b"s3cr3t", h["x-nexus-timestamp"].encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest("sha256=" + expected, h["x-nexus-signature"])


def test_webhook_without_secret_is_unsigned_with_empty_object_body() -> None:
    with HttpSink() as sink:
        assert run("webhook", {"url": f"{sink.url}/plain"}).output == "HTTP 200\nok"
    [req] = sink.requests
    assert req.body == b"{}" and "x-nexus-signature" not in req.headers and "x-nexus-timestamp" in req.headers
    assert req.headers["user-agent"] == f"nexus/{__version__}"


@pytest.mark.parametrize(("status", "retryable"), [
    (500, True), (503, True), (408, True), (429, True), (404, False), (400, False), (401, False), (302, False)])
def test_webhook_non_2xx_fails(status: int, retryable: bool) -> None:
    with HttpSink() as sink:
        sink.reply("/hook", status, "receiver says no")
        err = failure("webhook", {"url": f"{sink.url}/hook"})
    assert err.retryable is retryable
    assert f"HTTP {status}" in err.message and f"{sink.url}/hook" in err.message
    assert err.output == "receiver says no" and err.data == {"status_code": status}


def test_webhook_error_output_is_only_the_start_of_the_body() -> None:
    with HttpSink() as sink:
        sink.reply("/big", 500, "a" * 2048 + "b" * 100_000)
        err = failure("webhook", {"url": f"{sink.url}/big"})
    assert err.output == "a" * 2048 + "…[truncated]"


def test_webhook_errors_hide_query_credentials_and_secret() -> None:
    secret = "hunter2-very-secret"
    with HttpSink() as sink:
        sink.reply("/missing", 404, f"echo: {secret}")
        url = sink.url.replace("http://", "http://user:pass-word@") + "/missing?token=TOPSECRET123#frag"
        err = failure("webhook", {"url": url, "secret": secret})
    assert not err.retryable
    text = f"{err.message} {err} {err.output} {err.data}"
    for leak in ("TOPSECRET123", "token=", "pass-word", "frag", secret):
        assert leak not in text
    assert f"{sink.url}/missing" in err.message and err.output == "echo: ***"


def test_webhook_connection_refused_is_retryable() -> None:
    secret = "hunter2-very-secret"
    url = f"http://127.0.0.1:{free_port()}/hook"
    err = failure("webhook", {"url": url + "?token=TOPSECRET123", "secret": secret})
    assert err.retryable and "could not reach" in err.message and url in err.message
    assert "TOPSECRET123" not in str(err) and secret not in f"{err} {err.output}"


def test_webhook_timeout_is_retryable() -> None:
    with HttpSink() as sink:
        sink.reply("/slow", 200, delay=10)
        started = time.monotonic()
        err = failure("webhook", {"url": f"{sink.url}/slow"}, timeout=0.5)
        assert time.monotonic() - started < 5
    assert err.retryable and "within 0.5s" in err.message


def test_webhook_secret_is_a_secret_field() -> None:
    assert get_kind("webhook").secret_fields() == ("secret",)


@pytest.mark.parametrize(("payload", "field", "says"), [
    ({"url": "ftp://example.com/x"}, "payload.url", "http://"),
    ({}, "payload.url", "required"),
    ({"url": "https://"}, "payload.url", "host"),
    ({"url": "https://example.com:99999/"}, "payload.url", "http://"),
    ({"url": "https://example.com/a b"}, "payload.url", "no spaces"),
    ({"url": "https://example.com", "headers": ["A: b"]}, "payload.headers", "object"),
    ({"url": "https://example.com", "headers": {"A": "b\r\nEvil: 1"}}, "payload.headers", "line breaks"),
    ({"url": "https://example.com", "headers": {"A": 1}}, "payload.headers", "string"),
    ({"url": "https://example.com", "headers": {"Bad Name": "x"}}, "payload.headers", "not a valid"),
    ({"url": "https://example.com", "headers": {"X-A\n": "x"}}, "payload.headers", "not a valid"),
    ({"url": "https://example.com", "headers": {"X-Nexus-Signature": "x"}}, "payload.headers", "set by Nexus"),
    ({"url": "https://example.com", "secret": 123}, "payload.secret", "non-empty string"),
    ({"url": "https://example.com", "method": "GET"}, "payload.method", "only POST"),
    ({"url": "https://example.com", "body": float("nan")}, "payload.body", "plain JSON"),
    ({"url": "https://example.com", "uri": "x"}, "payload.uri", "unknown field"),
])
def test_webhook_validation(payload: dict[str, Any], field: str, says: str) -> None:
    err = invalid("webhook", payload)
    assert err.field == field and says in err.message


def test_webhook_validation_normalises() -> None:
    payload = get_kind("webhook").validate({"url": "https://example.com/h", "method": "post"})
    assert payload == {"url": "https://example.com/h", "body": {}, "method": "POST"}
