"""Secrets in workflow payloads: hidden in every answer, kept when an operator edits around them."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from fakes.http_sink import HttpSink
from nexus_core.redact import is_secret_key, mask_payload, redact_address, restore_masked
from nexus_core.testing import DaemonProcess

TOKEN, BEARER, SIGNING = "tok-4711-query", "bearer-0815-header", "signing-secret-42"


@pytest.mark.parametrize(("key", "secret"), [
    ("secret", True), ("X-Api-Key", True), ("api_key", True), ("refreshToken", True), ("Authorization", True),
    ("DB_PASSWORD", True), ("Cookie", True), ("client-credentials", True),
    ("url", False), ("body", False), ("X-Custom", False), ("method", False),
])
def test_which_keys_hold_secrets(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(("url", "shown"), [
    ("https://example.com/hook", "https://example.com/hook"),
    ("https://example.com/hook?token=abc&team=7", "https://example.com/hook?token=***&team=***"),
    ("https://bot:hunter22@example.com:8443/in?flag", "https://bot:***@example.com:8443/in?flag"),
    ("https://bot@example.com/in", "https://bot@example.com/in"),
    ("not a url ?token=abc", "not a url ?token=abc"),
    ("https://[::1/x?token=abc", "https://[::1/x?token=***"),  # not parseable, its query still hidden
])
def test_urls_are_shown_without_password_and_query_values(url: str, shown: str) -> None:
    assert redact_address(url) == shown


def test_a_payload_is_shown_with_every_secret_hidden_and_an_edit_keeps_them() -> None:
    stored = {"url": f"https://example.com/in?token={TOKEN}", "secret": SIGNING, "body": {"n": 1},
              "headers": {"Authorization": f"Bearer {BEARER}", "X-Custom": "visible"},
              "nested": {"list": [{"password": "pw-1"}, "https://u:pw-2@example.com/"]}}
    shown = mask_payload(stored, ("secret",))
    text = json.dumps(shown)
    for secret in (TOKEN, SIGNING, BEARER, "pw-1", "pw-2"):
        assert secret not in text
    assert shown["headers"]["X-Custom"] == "visible" and shown["body"] == {"n": 1}
    assert shown["url"] == "https://example.com/in?token=***"

    # What auto:show answered, with the body changed, goes back: the untouched secrets stay as stored.
    edited = {**shown, "body": {"n": 2}}
    assert restore_masked(edited, stored, ("secret",)) == {**stored, "body": {"n": 2}}
    # A secret given anew replaces the old one; one left out is gone.
    fresh = {**shown, "secret": "new-secret"}
    fresh.pop("headers")
    restored = restore_masked(fresh, stored, ("secret",))
    assert restored["secret"] == "new-secret" and "headers" not in restored
    # A new URL is taken as given, even if its query has the old token's place.
    moved = {**shown, "url": "https://example.org/in?token=***"}
    assert restore_masked(moved, stored, ("secret",))["url"] == "https://example.org/in?token=***"


def test_a_webhooks_secrets_never_leave_the_daemon_and_survive_an_edit(daemon: DaemonProcess) -> None:
    with HttpSink() as sink:
        payload = {"url": f"{sink.url}/in?token={TOKEN}", "secret": SIGNING, "body": {"v": 1},
                   "headers": {"Authorization": f"Bearer {BEARER}"}}
        made = daemon.cli("auto:create", "hook", "--kind", "webhook", "--payload", json.dumps(payload), "--json")
        assert made.returncode == 0, made.stderr

        def assert_hidden(where: str, text: str) -> None:
            for secret in (TOKEN, BEARER, SIGNING):
                assert secret not in text, f"{secret} in {where}: {text}"

        shown: dict[str, Any] = daemon.cli_json("auto:show", "hook")
        assert_hidden("auto:create", made.stdout)
        assert_hidden("auto:show", json.dumps(shown))
        assert_hidden("auto:list", daemon.cli("auto:list", "--json").stdout)
        assert_hidden("auto:show (text)", daemon.cli("auto:show", "hook").stdout)
        assert shown["payload"]["headers"]["Authorization"] == "***"
        assert shown["payload"]["url"].endswith("/in?token=***")

        # The operator edits the body of what auto:show gave him and sends the whole payload back.
        edited = {**shown["payload"], "body": {"v": 2}}
        changed = daemon.cli("auto:edit", "hook", "--payload", json.dumps(edited), "--json")
        assert changed.returncode == 0, changed.stderr
        assert_hidden("auto:edit", changed.stdout)
        ran = daemon.cli("auto:trigger", "hook", "--wait", "--json")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert_hidden("auto:trigger", ran.stdout)

    [request] = sink.requests
    assert request.path == f"/in?token={TOKEN}" and request.json() == {"v": 2}
    assert request.headers["authorization"] == f"Bearer {BEARER}"
    stamp = request.headers["x-nexus-timestamp"].encode()
    expected = hmac.new(SIGNING.encode(), stamp + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-nexus-signature"] == f"sha256={expected}"
    assert_hidden("the activity log", json.dumps(daemon.call("activity.recent", {"limit": 100})))
    assert_hidden("the daemon's log", daemon.log())


def test_log_lines_lose_secret_fields_and_url_secrets() -> None:
    from nexus_core.logs import _drop_secrets

    line = _drop_secrets(None, "info", {"event": f'HTTP Request: POST https://x.example/in?token={TOKEN} "200 OK"',
                                         "api_key": "k-1", "url": f"https://bot:{BEARER}@x.example/", "n": 3})
    assert line == {"event": 'HTTP Request: POST https://x.example/in?token=*** "200 OK"', "api_key": "***",
                    "url": "https://bot:***@x.example/", "n": 3}
