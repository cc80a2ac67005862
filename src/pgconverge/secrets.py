"""Secret hygiene: passwords come from the environment and never reach a screen, log, report or file name."""

from __future__ import annotations

import contextlib
import os
import re
from urllib.parse import unquote, urlsplit

from .errors import UserError

MASK = "****"
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?P<tail>@)", re.I)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.I)
# user:password@ up to the LAST @ before the host: how a person writes a password they did not percent-encode
_RAW_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@\s]*:(?P<password>.*)@[^@]*$", re.I | re.S)
_known: set[str] = set()


def remember(secret: str | None) -> None:
    """Register a secret so that mask() hides it wherever it appears, even outside a URL."""
    if secret and len(secret) >= 4:
        _known.add(secret)


def remember_url(url: str) -> None:
    """The password as libpq reads it, as written (raw, encoded or not) and each piece libpq may echo of a raw one
    (it splits at @ : /)."""
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        remember(password)
        remember(unquote(password or ""))
    raw = _RAW_URL_PASSWORD.match(url)
    if raw:
        for secret in (raw["password"], unquote(raw["password"]), *re.split(r"[@:/]", raw["password"])):
            remember(secret)


def mask(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def from_env(var: str | None, where: str) -> str:
    """The secret held by environment variable `var`, remembered for masking; errors name the variable, never a value."""
    if not re.match(r"^[A-Z_][A-Z0-9_]*$", var or ""):
        raise UserError(f"{where}: '{var}' is not an environment variable name — use e.g. DATABASE_URL")
    value = os.environ.get(var or "", "")
    if not value:
        raise UserError(f"{where}: environment variable {var} is not set — export it before running")
    remember(value)
    return value


def url_from_env(var: str, where: str) -> str:
    url = from_env(var, where)
    remember_url(url)
    return url
