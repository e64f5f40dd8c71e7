"""Named failpoints: tests kill a run at a precise step, as a crash would.

`SESSION_ASSETS_FAILPOINT=<name>[:<n>]` sends SIGKILL to the process the n-th
time (default: the first) execution reaches `failpoint("<name>")`. Unset (always,
outside tests) it costs one environment lookup.

Names: after_candidates_insert, after_quota_reserve, after_object_write,
after_page_commit, before_materialization.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "SESSION_ASSETS_FAILPOINT"
_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition(":")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
