"""What a secret looks like, and how it is hidden in answers, logs and errors.

One definition for the RPC answers (workflow payloads), the SQL console and the log processor: a value
under a secret-looking key (`secret`, `token`, `Authorization`, `api_key`, … at any depth) becomes
"***", and so does a password or a query-string value in a URL (`https://u:***@host/hook?token=***`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
SECRET_WORDS = ("secret", "token", "password", "passwd", "apikey", "authorization", "privatekey", "credential",
                "cookie")
_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_secret_key(key: Any) -> bool:
    """`X-Api-Key`, `api_key`, `refreshToken`, `DB_PASSWORD`: a key whose value is a secret."""
    normal = re.sub(r"[-_\s]", "", str(key).lower())
    return any(word in normal for word in SECRET_WORDS)


def mask(value: Any) -> Any:
    """A JSON value with the values of secret-looking keys (at any depth) replaced by "***"."""
    if isinstance(value, dict):
        return {k: (MASK if v not in (None, "") else v) if is_secret_key(k) else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def redact_url(url: str | None) -> str | None:
    """The URL with any password replaced by ***, safe for logs and answers."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":" + MASK
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def redact_address(text: str) -> str:
    """A URL in a payload, its password and every query value hidden: tokens travel there
    (`?token=…`, `?key=…`, `?sig=…`) under names no list of words would catch."""
    if not _URL_RE.match(text):
        return text
    head, mark, query = text.partition("?")
    try:
        head = redact_url(head) or head
    except ValueError:  # not a URL after all (a bad port, brackets): its query is still hidden
        pass
    if not mark:
        return head
    return head + "?" + "&".join(f"{k}={MASK}" if v else k for k, v in parse_qsl(query, keep_blank_values=True))


def url_secrets(text: str) -> set[str]:
    """The parts of a URL that redact_address hides: its password and query values."""
    if not _URL_RE.match(text):
        return set()
    head, _, query = text.partition("?")
    found = {v for _, v in parse_qsl(query, keep_blank_values=True) if v}
    try:
        password = urlsplit(head).password
    except ValueError:
        password = None
    return found | ({password} if password else set())


def _addresses(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _addresses(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_addresses(v) for v in value]
    return redact_address(value) if isinstance(value, str) else value


def mask_payload(payload: dict[str, Any], fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """A workflow payload as answered: the kind's secret `fields`, secret-looking keys and URL secrets hidden."""
    if not payload:
        return {}
    shown = {k: (MASK if k in fields and v not in (None, "") else v) for k, v in payload.items()}
    return _addresses(mask(shown))  # type: ignore[no-any-return]


def restore_masked(new: Any, old: Any, fields: tuple[str, ...] = ()) -> Any:
    """`new` with every value that is still the masked form of the stored one put back as stored.

    An operator who edits what `auto:show` answered sends "***" (or a URL with `token=***`) back
    for the secrets he did not touch; those keep their stored value instead of becoming "***"."""
    if isinstance(old, dict) and isinstance(new, dict):
        return _restore(new, old, mask_payload(old, fields))
    return new


def _restore(new: Any, old: Any, shown: Any) -> Any:
    if isinstance(new, dict) and isinstance(old, dict) and isinstance(shown, dict):
        return {k: _restore(v, old[k], shown[k]) if k in old and k in shown else v for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list) and isinstance(shown, list) and len(old) == len(shown):
        return [_restore(v, old[i], shown[i]) if i < len(old) else v for i, v in enumerate(new)]
    if isinstance(new, str) and new == shown and shown != old:
        return old
    return new
