"""Masking secrets in connection strings before they reach a message or a log.

One function for every store: URLs (`scheme://user:password@host/...?password=...`),
libpq key=value DSNs (`host=db password='a b'`), and text that holds either (a
driver's error message). Not a security boundary: it is for what we print.
"""

from __future__ import annotations

import re

MASK = "***"

# Parameter names whose value is a secret, compared case-insensitively.
SECRET_NAMES = (
    "password", "passwd", "pwd", "secret", "token", "key", "sslpassword", "access_key", "secret_access_key",
)  # fmt: skip
_NAMES = "|".join(SECRET_NAMES)

# The authority of a URL: up to the first '/', '?', '#' or space (RFC 3986).
_AUTHORITY = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<authority>[^/?#\s]*)", re.IGNORECASE)
# A query parameter: `?password=x`, `&token=x`, `;key=x`.
_QUERY = re.compile(rf"(?P<lead>[?&;](?:{_NAMES})=)[^&;#\s]*", re.IGNORECASE)
# A libpq keyword: at the start or after a space, `=` may have spaces around it; a
# quoted value may hold spaces and `\'` (libpq's escapes).
_KEYWORD = re.compile(rf"(?P<lead>(?:^|(?<=\s))(?:{_NAMES})\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s']\S*|(?=\s|$))", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password, token or key in it replaced by `***`; the rest kept."""
    text = _AUTHORITY.sub(_mask_userinfo, text)
    text = _QUERY.sub(lambda m: m["lead"] + MASK, text)
    return _KEYWORD.sub(lambda m: m["lead"] + MASK, text)


def _mask_userinfo(match: re.Match[str]) -> str:
    # The last '@' ends the user info (as urlparse reads it); a password is after its first ':'.
    userinfo, at, host = match["authority"].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return match.group(0)
    return f"{match['scheme']}{user}:{MASK}@{host}"
