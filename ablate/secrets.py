"""Secrets in a storage URL (a password in its user part, `?password=` and the like in its query) and the one
rule about them: no output shows them.

`register(url)` learns a URL's secrets; `redact(text)` masks every secret learned so far; `guard_output()`
puts sys.stdout and sys.stderr (and so every print, log line and error message of this process) behind
`redact`. The command line registers --storage as it parses it and guards its output before a command runs;
a spawned worker process does the same with the URL it is given."""

from __future__ import annotations

import re
import sys
from urllib.parse import parse_qsl, unquote

MASK = "***"
MIN_SECRET = 3  # shorter ones (a password split at an unescaped '@') would mask ordinary words
_SECRET_KEYS = re.compile(r"pass|pwd|secret|token|key", re.IGNORECASE)  # libpq: password, sslpassword, ...
_SECRETS: set[str] = set()


def secrets_of(url: str | None) -> set[str]:
    """The secrets in a URL as written and as decoded: the user part's password (everything between the
    user's ':' and the host's '@', even when the password holds an unescaped '@'), and the value of every query
    parameter whose name says password, secret, token or key."""
    if not url or "://" not in str(url):
        return set()
    before_query, _, query = str(url).split("://", 1)[1].partition("?")
    userinfo = before_query.rsplit("@", 1)[0] if "@" in before_query else ""  # the host follows the last '@'
    found: set[str] = set()
    if ":" in userinfo and not userinfo.startswith("/"):  # not an sqlite:/// path
        password = userinfo.split(":", 1)[1]
        found |= {password, *password.split("@")}  # an unescaped '@' splits it where a parser would
    for key, value in parse_qsl(query, keep_blank_values=False):
        if _SECRET_KEYS.search(key):
            found |= {value, *re.findall(rf"{re.escape(key)}=([^&#]*)", query)}
    found |= {unquote(s) for s in found}
    return {s for s in found if s}


def register(url: str | None) -> str | None:
    """Learn the secrets of `url` (so that no output shows them); `url` back unchanged."""
    _SECRETS.update(secrets_of(url))
    return url


def redact(text: str) -> str:
    """`text` with every learned secret masked (the longest first, so a secret's part never unmasks a rest)."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if len(secret) >= MIN_SECRET and secret in text:
            text = text.replace(secret, MASK)
    return text


def safe_url(url: str | None) -> str | None:
    """A storage URL fit to print: the user part's password and the secret query values masked."""
    if not url or "://" not in str(url):
        return url
    register(url)
    before_query, mark, query = str(url).partition("?")
    scheme, _, rest = before_query.partition("://")
    if "@" in rest and ":" in rest.rsplit("@", 1)[0] and not rest.startswith("/"):
        user, host = rest.split(":", 1)[0], rest.rsplit("@", 1)[1]
        rest = f"{user}:{MASK}@{host}"
    query = "&".join(f"{k}={MASK}" if _SECRET_KEYS.search(k := part.split("=", 1)[0]) and "=" in part else part
                     for part in query.split("&")) if query else query
    return f"{scheme}://{rest}{mark}{query}"


class _Redacting:
    """A text stream that masks the learned secrets in what is written, then hands it to the real stream."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text) if _SECRETS else text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):  # fileno, isatty, encoding, buffer, ...: the real stream's
        if name == "_stream":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._stream, name)


def guard_output() -> None:
    """Put sys.stdout and sys.stderr behind `redact` (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Redacting):
            setattr(sys, name, _Redacting(stream))
