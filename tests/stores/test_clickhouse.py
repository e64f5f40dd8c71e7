from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from session_assets.stores.clickhouse import ClickHouseUnavailable, TableRef, get_client

OPEN_AND_HOLD = textwrap.dedent(
    """
    import sys
    from session_assets.stores.clickhouse import get_client
    get_client(sys.argv[1], "held", lock_timeout_s=float(sys.argv[2]), create_database=True)
    print("ready", flush=True)
    sys.stdin.read()  # hold the engine until the test closes our stdin
    """
)


def _opener(url: str, timeout: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", OPEN_AND_HOLD, url, str(timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_process_waits_then_fails_naming_the_holder(tmp_path):
    url = f"chdb://{tmp_path / 'ch'}"
    holder = _opener(url, 5)
    assert holder.stdout.readline().strip() == "ready"
    try:
        second = _opener(url, 1)
        _, err = second.communicate(timeout=60)
        assert second.returncode != 0
        assert f"is held by pid {holder.pid}" in err
        assert "SESSION_ASSETS_CLICKHOUSE_URL" in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # Once the holder is gone the path is free again.
    third = _opener(url, 5)
    assert third.stdout.readline().strip() == "ready"
    third.stdin.close()
    assert third.wait(timeout=60) == 0


def test_an_unreachable_server_gives_one_clear_error():
    with pytest.raises(ClickHouseUnavailable, match=r"ClickHouse at http://127\.0\.0\.1:1 is unreachable"):
        get_client("http://127.0.0.1:1", "x", lock_timeout_s=1)


def test_server_passwords_are_not_echoed():
    with pytest.raises(ClickHouseUnavailable) as raised:
        get_client("http://user:s3cret-pass@127.0.0.1:1", "x")
    assert "s3cret-pass" not in str(raised.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("events", TableRef("mine", "events")), ("posthog.events", TableRef("posthog", "events"))],
)
def test_events_table_names(name, expected):
    assert TableRef.parse(name, "mine") == expected


@pytest.mark.parametrize("name", ["", "db.", ".events"])
def test_bad_events_table_names_are_rejected(name):
    with pytest.raises(ValueError, match="events table"):
        TableRef.parse(name, "mine")


def test_in_memory_chdb_is_refused():
    with pytest.raises(ValueError, match="on-disk chDB path"):
        get_client("chdb://memory", "x")


DECAY = textwrap.dedent(
    """
    import re, sys
    from session_assets.stores.clickhouse import get_client, prefer_memory_to_speed
    took = []
    if sys.argv[2] == "before":
        took.append(prefer_memory_to_speed())
    client = get_client(sys.argv[1], "decay", create_database=True)
    if sys.argv[2] == "after":
        took.append(prefer_memory_to_speed())
    stats = client.query("SELECT * FROM system.jemalloc_stats").result_rows[0][0]
    print(took, " ".join(re.findall(r"opt\\.(?:dirty|muzzy)_decay_ms: *-?\\d+", stats)))
    """
)


def _decays(tmp_path, when: str, operator_conf: str | None = None) -> str:
    # A fresh process each: chDB's allocator reads its configuration once, when chDB loads.
    env = {name: value for name, value in os.environ.items() if name != "JE_MALLOC_CONF"}
    if operator_conf:
        env["JE_MALLOC_CONF"] = operator_conf
    done = subprocess.run(
        [sys.executable, "-c", DECAY, f"chdb://{tmp_path / 'clickhouse'}", when], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_sweep_process_has_chdb_give_freed_memory_back_at_once(tmp_path):
    assert _decays(tmp_path, "before") == "[True] opt.dirty_decay_ms: 0 opt.muzzy_decay_ms: 0"


def test_other_processes_keep_chdbs_faster_default(tmp_path):
    untouched = _decays(tmp_path, "never")
    assert untouched.startswith("[] ") and "opt.dirty_decay_ms: 0 " not in untouched
    # Once chDB is loaded the setting can no longer take effect, and says so.
    assert _decays(tmp_path, "after") == "[False] " + untouched.removeprefix("[] ")


def test_an_operators_allocator_setting_wins(tmp_path):
    assert _decays(tmp_path, "before", "dirty_decay_ms:7000") == "[True] opt.dirty_decay_ms: 7000 opt.muzzy_decay_ms: 0"


def test_a_symlink_at_the_lock_file_is_refused_and_its_target_left_alone(tmp_path):
    """Issue #14: the lock file was opened through a symlink, so `<path>.lock` pointing at
    another file had that file locked, truncated and overwritten with our pid."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "ch.lock").symlink_to(target)
    with pytest.raises(ClickHouseUnavailable) as raised:
        get_client(f"chdb://{tmp_path / 'ch'}", "x", lock_timeout_s=1)
    message = str(raised.value)
    assert f"the chDB lock file {tmp_path / 'ch.lock'} is a symbolic link" in message and "\n" not in message
    assert target.read_text() == "keep me\n"
    assert not (tmp_path / "ch").exists()  # chDB was never opened
