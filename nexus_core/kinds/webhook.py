"""The `webhook` kind: POSTs a JSON body to a URL, signed with HMAC-SHA256 when the payload has a secret.

Every request carries `User-Agent: nexus/<version>`, `Content-Type: application/json`, `X-Nexus-Run` (the run
id), `X-Nexus-Attempt` (1 for the first try) and `X-Nexus-Timestamp` (Unix seconds when it was sent). The body
is compact JSON with sorted keys, ASCII only. With a secret, it also carries

    X-Nexus-Signature: sha256=<hex of HMAC-SHA256(key=secret, message=f"{timestamp}.{raw body}")>

To verify it (the same idea as Stripe's and Slack's signatures), a receiver should:

    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest("sha256=" + expected, signature_header)

using the body bytes exactly as received (never re-serialised JSON), and reject a timestamp more than ~5
minutes away from its own clock, so that a captured request cannot be replayed later. Retried attempts are
signed anew with a fresh timestamp; X-Nexus-Run identifies duplicates of the same run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from nexus_core import __version__
from nexus_core.errors import ExecutionError, InvalidError
from nexus_core.kinds.base import Kind, KindResult, RunContext

FIELDS = ("url", "body", "headers", "secret", "method")
PREVIEW_BYTES = 2048
MAX_URL_CHARS = 2048
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Set by Nexus itself: letting a payload override them would break framing or forge the signature.
RESERVED_HEADERS = ("host", "content-length", "content-type", "transfer-encoding")


def _invalid(key: str, message: str) -> InvalidError:
    return InvalidError(message, field=f"payload.{key}")


def serialise(body: Any) -> bytes:
    """The exact bytes sent and signed: compact, sorted keys, ASCII."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("ascii")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Nexus-Signature value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def safe_url(url: str) -> str:
    """The URL fit for messages: no credentials, query string or fragment, which may carry tokens."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _preview(resp: httpx.Response) -> str:
    """The first PREVIEW_BYTES of the response body; the rest is never downloaded."""
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > PREVIEW_BYTES:
            break
    text = bytes(buf[:PREVIEW_BYTES]).decode("utf-8", errors="replace")
    return text + "…[truncated]" if len(buf) > PREVIEW_BYTES else text


def _hint(status: int) -> str:
    if 300 <= status < 400:
        return "the URL redirects, which webhooks don't follow; put the final URL in payload.url"
    if status in (401, 403):
        return "the receiver refused the credentials; check payload.headers and payload.secret"
    if status in (404, 405, 410):
        return "nothing accepts a POST there; check payload.url"
    if status in (408, 429) or status >= 500:
        return "the receiver is failing or busy; the run is retried while it has retries left"
    return "the receiver rejected the request; its answer in the output says why"


class WebhookKind(Kind):
    """POSTs `body` as JSON to `url`; any answer other than 2xx fails the attempt."""

    name = "webhook"
    queue = "webhook"
    description = "POSTs a JSON body to a URL, HMAC-signed when a secret is given; fails on any non-2xx answer."
    payload_help = ('{"url": "https://example.com/hook", "body": {...} (default {}), '
                    '"headers": {"Name": "value"} (optional), "secret": "..." (optional, signs the request)}')

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(payload) - set(FIELDS))
        if unknown:
            raise _invalid(unknown[0], f"unknown field {unknown[0]!r}; a webhook payload has only: {', '.join(FIELDS)}")
        url = payload.get("url")
        if not isinstance(url, str) or not url:
            raise _invalid("url", 'url is required: the address to POST to, e.g. "https://example.com/hook"')
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError:
            parts = None
        if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
                or len(url) > MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in url)):
            raise _invalid("url", "url must be an http:// or https:// address with a host and no spaces, "
                                  f'at most {MAX_URL_CHARS} characters, e.g. "https://example.com/hook"')
        out: dict[str, Any] = {"url": url, "body": payload.get("body", {})}
        try:
            serialise(out["body"])
        except (TypeError, ValueError):
            raise _invalid("body", "body must be plain JSON (objects, lists, strings, finite numbers, "
                                   "true/false/null)") from None
        headers = payload.get("headers")
        if headers is not None:
            if not isinstance(headers, dict):
                raise _invalid("headers", 'headers must be an object of names to string values, '
                                          'e.g. {"Authorization": "Bearer ..."}')
            for key, value in headers.items():
                if not isinstance(key, str) or not TOKEN_RE.fullmatch(key):
                    raise _invalid("headers", f"header name {key!r} is not a valid HTTP header name")
                if key.lower() in RESERVED_HEADERS or key.lower().startswith("x-nexus-"):
                    raise _invalid("headers", f"header {key!r} is set by Nexus itself; remove it from payload.headers")
                if not isinstance(value, str) or not value.isascii() or any(ord(c) < 32 or c == "\x7f" for c in value):
                    raise _invalid("headers", f"header {key!r} must have a string value of printable ASCII "
                                              "(no line breaks); quote numbers, e.g. \"1\"")
            out["headers"] = dict(headers)
        secret = payload.get("secret")
        if secret is not None:
            if not isinstance(secret, str) or not secret:
                raise _invalid("secret", "secret must be a non-empty string; leave it out to send unsigned requests")
            out["secret"] = secret
        method = payload.get("method")
        if method is not None:
            if not isinstance(method, str) or method.upper() != "POST":
                raise _invalid("method", "only POST is supported; remove payload.method or set it to \"POST\"")
            out["method"] = "POST"
        return out

    def secret_fields(self) -> tuple[str, ...]:
        return ("secret",)

    def execute(self, ctx: RunContext) -> KindResult:
        # Stored payloads were validated when saved, but checking again is cheap and catches old rows.
        payload = self.validate(ctx.payload)
        url, secret = payload["url"], payload.get("secret")
        shown = safe_url(url)

        def scrub(text: str) -> str:
            # Defence in depth: a receiver or a library message must never echo the secret into a run.
            return text.replace(secret, "***") if secret else text

        body = serialise(payload["body"])
        timestamp = str(int(time.time()))
        headers = httpx.Headers({"User-Agent": f"nexus/{__version__}"})
        headers.update(payload.get("headers", {}))
        headers["Content-Type"] = "application/json"
        headers["X-Nexus-Run"] = ctx.run_id
        headers["X-Nexus-Attempt"] = str(ctx.attempt)
        headers["X-Nexus-Timestamp"] = timestamp
        if secret:
            headers["X-Nexus-Signature"] = sign(secret, timestamp, body)
        try:
            # httpx applies the timeout to each phase (connect, send, each read), not to the whole request.
            with httpx.Client(timeout=ctx.timeout, follow_redirects=False) as client:
                with client.stream("POST", url, content=body, headers=headers) as resp:
                    status, reason, preview = resp.status_code, resp.reason_phrase, scrub(_preview(resp))
        except httpx.TimeoutException:
            raise ExecutionError(f"no answer from {shown} within {ctx.timeout:g}s; check that the receiver is up "
                                 "or raise the workflow's timeout") from None
        except httpx.HTTPError as exc:
            # `from None` and the rewritten text keep the full URL (query tokens) out of errors and logs.
            detail = scrub((str(exc) or type(exc).__name__).replace(url, shown))
            raise ExecutionError(f"could not reach {shown}: {detail}; check payload.url and that the receiver "
                                 "is up") from None
        if 200 <= status < 300:
            return KindResult(output=f"HTTP {status}" + (f"\n{preview}" if preview else ""),
                              data={"status_code": status})
        retryable = status >= 500 or status in (408, 429)
        raise ExecutionError(f"{shown} answered HTTP {status} {reason}".rstrip() + f"; {_hint(status)}",
                             output=preview, retryable=retryable, data={"status_code": status})


KIND = WebhookKind()
