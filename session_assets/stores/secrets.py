"""Masking secrets in connection strings before they reach a message or a log.

One function for every store: URLs (a secret in the userinfo before `@`, or in a
query parameter named below), libpq keyword DSNs (a quoted or bare value after a
secret's keyword), and text that holds either (a driver's error message). Not a security boundary: it is for what we print.
"""

from __future__ import annotations

import re

MASK = "***"

# Parameter names whose value is a secret, compared case-insensitively.
SECRET_NAMES = (
    "password", "passwd", "pwd", "secret", "token", "key", "sslpassword", "access_key", "secret_access_key",
)  # fmt: skip
_NAMES = "|".join(SECRET_NAMES)

# A URL from its scheme to the next space. Its authority ends at the first '/', '?' or
# '#' (RFC 3986), but a password written with one of them unescaped ends at an '@' after it.
_URL = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<rest>\S*)", re.IGNORECASE)
# A query parameter with a secret's name, after `?`, `&` or `;`.
_QUERY = re.compile(rf"(?P<lead>[?&;](?:{_NAMES})=)[^&;#\s]*", re.IGNORECASE)
# A libpq keyword: at the start or after a space, `=` may have spaces around it; a
# quoted value may hold spaces and `\'` (libpq's escapes).
_KEYWORD = re.compile(rf"(?P<lead>(?:^|(?<=\s))(?:{_NAMES})\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s']\S*|(?=\s|$))", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password, token or key in it replaced by `***`; the rest kept."""
    text = _URL.sub(_mask_userinfo, text)
    text = _QUERY.sub(lambda m: m["lead"] + MASK, text)
    return _KEYWORD.sub(lambda m: m["lead"] + MASK, text)


def _mask_userinfo(match: re.Match[str]) -> str:
    # `user:` starts user info; its password runs to the URL's last '@', so that one written
    # with '/', '?', '#' or '@' unescaped (`user:pa/ss@host`, which urlparse splits at the
    # '/') is masked whole. An '@' later in the URL (`?to=a@b`) masks more than the password,
    # never less: this text is only printed.
    rest = match["rest"]
    user = re.match(r"[^:/?#@]*", rest).group(0)
    at = rest.rfind("@")
    if rest[len(user) : len(user) + 1] != ":" or at <= len(user) + 1:
        return match.group(0)  # no `user:`, or no password before the '@'
    return f"{match['scheme']}{user}:{MASK}{rest[at:]}"
