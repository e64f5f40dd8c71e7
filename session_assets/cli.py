"""`session-assets`: run the embedded stack, load events, drive the assets.

User mistakes print one line on stderr and exit 1; no tracebacks. Text that
comes from users (scanner ids and names, file paths, problems) goes through
`_plain` before rich sees it, so a name like `[/]` or `[link=...]` prints as
written instead of breaking the output or planting a terminal hyperlink.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import unicodedata
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from session_assets.stores.clickhouse import ClickHouseUnavailable
from session_assets.stores.postgres import PostgresUnavailable
from session_assets.stores.sql import SchemaNotReady

console = Console()
if not console.is_terminal:
    console = Console(width=140)  # pipes and CI logs: wide enough for the summary tables
LOOPBACK = "127.0.0.1"  # the Dagster UI's default interface (it has no login)
LOOPBACK_HOSTS = {LOOPBACK, "localhost", "::1"}
PROGRESS_EVERY_S = 10.0  # progress lines when the output is not a terminal
# Failures a user can act on: their message is the whole story.
USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError, FileNotFoundError, ClickHouseUnavailable, PostgresUnavailable, SchemaNotReady,
)  # fmt: skip


def _plain(value: object) -> str:
    """`value` as text rich prints literally: markup escaped, control and format characters
    (escape sequences, bidi overrides, line breaks) shown as Python escapes."""
    text = str(value)
    if not text.isprintable():
        text = "".join(
            c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
            for c in text
        )
    return escape(text)


def _add_row(table: Table, *cells: object) -> None:
    table.add_row(*(_plain(cell) for cell in cells))


class CleanErrors(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(1)


@click.group(cls=CleanErrors)
def main() -> None:
    """Scan product-analytics sessions with Dagster (see README.md)."""
    # Dagster flags beta/preview APIs on every import; they are noise on a terminal.
    warnings.filterwarnings("ignore", category=Warning, module=r"dagster(\..*)?$")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from session_assets import settings

    settings.adopt_remembered_start_date()


def _stack_and_resources():
    from session_assets.commands import stack as stack_module
    from session_assets.resources import build_resources

    stack = stack_module.bring_up()
    resources = build_resources(deferred=False)
    return stack, resources


def _prepare_stores(stack, resources) -> None:
    """Create or upgrade the schemas (idempotent): ClickHouse tables and Postgres migrations.

    For `migrate`, and for `dev`, `up` and `demo`, which start a stack of their own. On an
    up-to-date database the Postgres part only reads, so a role without DDL rights passes.
    """
    from session_assets.stores import postgres

    resources["clickhouse"].migrate()
    postgres.migrate(stack.app_postgres_url)


@main.command()
@click.option("--days", default=3, show_default=True, type=click.IntRange(1, 60), help="Days of demo data when loading.")
@click.option("--port", default=3000, show_default=True, type=int, help="Port of the Dagster UI.")
@click.option(
    "--host", default=LOOPBACK, show_default=True,
    help="Interface of the Dagster UI. It has no login: anyone who reaches it runs and deletes anything.",
)  # fmt: skip
def dev(days: int, port: int, host: str) -> None:
    """Start the embedded stack and `dg dev` (UI and daemon) against it."""
    import dagster as dg

    from session_assets import settings
    from session_assets.commands import demo
    from session_assets.commands import stack as stack_module
    from session_assets.definitions import build_definitions
    from session_assets.stores import clickhouse

    stack, resources = _stack_and_resources()
    _prepare_stores(stack, resources)
    if demo.events_table_is_empty(resources["clickhouse"]):
        # First start: demo data, example scanners, and the rollups of the demo days,
        # so the UI opens on something to explore and (scanner, day) partitions to run.
        now = demo.utc_now()
        loaded = demo.load_demo_events(resources["clickhouse"], days, now)
        console.print(f"loaded {loaded:,} demo events over {days} days")
        with dg.DagsterInstance.get() as instance:
            demo_days = demo.demo_days(now, days)
            settings.remember_start_date(stack.settings.home, demo_days[0] - timedelta(days=1))
            demo.install_example_scanners(resources["postgres"].pool(), instance, demo.day_start_of(demo_days[0]))
            demo.materialize_rollups(
                build_definitions(), instance, [demo_days[0] - timedelta(days=1), *demo_days], now, _rollup_progress
            )
    # Runs open chDB in their own processes; this one must let go of it.
    clickhouse.close_clients()
    console.print(f"Dagster UI on http://{_plain(host)}:{port}  (home {_plain(stack.settings.home)})")
    # `dg dev` (what Dagster 1.13 recommends over `dagster dev`) on a workspace file that names
    # the code location as pyproject's [tool.dagster] and [tool.dg] do.
    workspace = stack_module.install_workspace_yaml(stack.dagster_home)
    if host not in LOOPBACK_HOSTS:
        click.echo(
            f"warning: the Dagster UI on {host} has no authentication: anyone who can reach it can launch, "
            "cancel and wipe runs. Keep it on 127.0.0.1, or behind a proxy that authenticates (docs/operations.md)",
            err=True,
        )
    command = dg_dev_command(workspace, host, port)
    # dg dev in a process group of its own, so that whatever it leaves behind on
    # exit can be found: a code server it started has been seen outliving it for hours.
    child = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True)
    # Stopping this command stops dagster dev too (and then the embedded Postgres with us).
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        code = child.wait()
    finally:
        _stop_process_group(child.pid)
    sys.exit(code)


def dg_dev_command(workspace: Path, host: str = LOOPBACK, port: int = 3000) -> list[str]:
    """`dg dev` with an explicit interface: Dagster OSS has no authentication, so the UI
    is reachable from this machine only unless `--host` says otherwise."""
    return [str(Path(sys.executable).with_name("dg")), "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def _rollup_progress(day, done: int, total: int) -> None:
    console.print(f"rolled up {day.day} ({done} of {total}): {day.sessions:,} sessions, {day.events:,} events")


def _stop_process_group(pgid: int, grace_s: float = 10.0) -> None:
    """SIGTERM what is left of a process group, SIGKILL what outlives `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return  # the group is empty
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@main.command()
@click.option("--days", default=3, show_default=True, type=click.IntRange(1, 60), help="Days of demo data.")
def demo(days: int) -> None:
    """Headless: load demo data, materialize every day so far, print a summary."""
    import dagster as dg

    from session_assets import settings
    from session_assets.commands import demo as demo_module
    from session_assets.definitions import build_definitions
    from session_assets.partitions import scanner_partitions_def

    stack, resources = _stack_and_resources()
    _prepare_stores(stack, resources)
    now = demo_module.utc_now()
    days_list = demo_module.demo_days(now, days)
    if demo_module.events_table_is_empty(resources["clickhouse"]):
        loaded = demo_module.load_demo_events(resources["clickhouse"], days, now)
        console.print(f"loaded {loaded:,} demo events over {days} days")
        settings.remember_start_date(stack.settings.home, days_list[0] - timedelta(days=1))
    with dg.DagsterInstance.get() as instance:
        demo_module.install_example_scanners(resources["postgres"].pool(), instance, demo_module.day_start_of(days_list[0]))
        defs = build_definitions()
        # The day before too: a sweep needs the rollups of its day and the one before.
        rows = demo_module.materialize_rollups(
            defs, instance, [days_list[0] - timedelta(days=1), *days_list], now, _rollup_progress
        )
        scanner_ids = sorted(instance.get_dynamic_partitions(scanner_partitions_def.name))
        sweeps = demo_module.sweep_partitions(defs, instance, scanner_ids, days_list, now)
    table = Table(title=f"session_counter_rollups as of {now:%Y-%m-%d %H:%M} UTC")
    for column in ("day", "sessions", "events", "complete", "check"):
        table.add_column(column)
    for row in rows:
        _add_row(table, row.day, f"{row.sessions:,}", f"{row.events:,}", "yes" if row.complete else "open",
                      {True: "passed", False: "FAILED", None: "not run"}[row.check_passed])
    console.print(table)
    table = Table(title="observation_batches (one sweep per scanner and day)")
    for column in ("scanner", "day", "candidates", "observed", "quota skipped", "watermark", "complete", "checks"):
        table.add_column(column)
    for sweep in sweeps:
        _add_row(table, sweep.scanner_id, sweep.day, f"{sweep.candidates:,}", f"{sweep.observed:,}",
                      f"{sweep.quota_skipped:,}", f"{sweep.watermark_end:%Y-%m-%d %H:%M}",
                      "yes" if sweep.complete else "open", "passed" if sweep.checks_passed else "FAILED")
    console.print(table)
    if not all(row.check_passed for row in rows) or not all(s.checks_passed for s in sweeps):
        raise click.ClickException("an asset check failed; see the tables above")


@main.command("load-events")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default=None, help="Default: from the extension.")
@click.option("--team-id", type=click.IntRange(min=1), default=None, help="Team of rows that carry none (a row's own team_id wins).")
def load_events(path: Path, fmt: str | None, team_id: int | None) -> None:
    """Load a PostHog JSONL export or a CSV of events into the events table."""
    from session_assets.commands.loader import load_events_file
    from session_assets.resources import build_resources

    clickhouse = build_resources(deferred=False)["clickhouse"]
    clickhouse.migrate()  # creates the events table it fills; on a prepared store it only reads
    shown = _plain(path)
    with console.status(f"validating {shown}") as status:
        last_line = [0.0]

        def progress(rows: int, total: int) -> None:
            text = f"loading {shown}: {rows:,} of {total:,} rows ({100 * rows / max(total, 1):.0f}%)"
            if console.is_terminal:
                status.update(text)
            elif rows in (0, total) or time.monotonic() - last_line[0] >= PROGRESS_EVERY_S:
                console.print(text)  # a log or a pipe: a line now and then
                last_line[0] = time.monotonic()

        report = load_events_file(clickhouse, path, fmt=fmt, team_id=team_id, progress=progress)
    console.print(f"loaded {report.rows:,} events from {shown} in {report.batches} batches ({report.seconds:.1f}s)")


@main.group()
def scanners() -> None:
    """Manage saved scanners (YAML definitions, stored in Postgres)."""


def _scanner_pool():
    _, resources = _stack_and_resources()
    return resources["postgres"].pool()


@scanners.command("add")
@click.argument("path", type=click.Path(path_type=Path))
def scanners_add(path: Path) -> None:
    """Validate a YAML file (one scanner or a list) and save its scanners."""
    import dagster as dg

    from session_assets.partitions import scanner_partitions_def
    from session_assets.scanners import load_scanners, store

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    found = load_scanners(path)  # validates everything before saving anything
    pool = _scanner_pool()
    for scanner, added in zip(found, store.save_all(pool, found)):
        console.print(
            f"{'added' if added else 'updated'} scanner {_plain(scanner.id)} (team {scanner.team_id}, {_plain(scanner.kind)})"
        )
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(scanner_partitions_def.name, [s.id for s in found])


@scanners.command("list")
def scanners_list() -> None:
    """Every saved scanner, with what is wrong with any that no longer validates."""
    from session_assets.scanners import store

    table = Table()
    for column in ("id", "team", "kind", "enabled", "sample", "start_at", "name / problem"):
        table.add_column(column)
    for stored in store.list_all(_scanner_pool()):
        row = stored.row
        _add_row(
            table, row["id"], str(row["team_id"]), row["kind"], "yes" if row["enabled"] else "no", f"{row['sample_rate']:g}",
            f"{row['start_at']:%Y-%m-%d %H:%M}", row["name"] if stored.error is None else f"INVALID: {stored.error}",
        )
    console.print(table)


@scanners.command("enable")
@click.argument("scanner_id")
@click.option("--from-now", is_flag=True, help="Skip what happened while disabled: restart at now - settle.")
def scanners_enable(scanner_id: str, from_now: bool) -> None:
    """Enable a scanner; by default it resumes from its watermark."""
    from session_assets.commands.demo import utc_now
    from session_assets.core.days import SETTLE
    from session_assets.scanners import store

    start_at = utc_now() - SETTLE if from_now else None
    store.set_enabled(_scanner_pool(), scanner_id, True, start_at)
    console.print(f"enabled {_plain(scanner_id)}" + (f", restarting at {start_at:%Y-%m-%d %H:%M:%S} UTC" if start_at else ""))


@scanners.command("disable")
@click.argument("scanner_id")
def scanners_disable(scanner_id: str) -> None:
    """Stop sweeping a scanner (its watermark is kept)."""
    from session_assets.scanners import store

    store.set_enabled(_scanner_pool(), scanner_id, False)
    console.print(f"disabled {_plain(scanner_id)}")


@scanners.command("remove")
@click.argument("scanner_id")
def scanners_remove(scanner_id: str) -> None:
    """Delete a scanner's definition (its observations stay)."""
    from session_assets.scanners import store

    store.remove(_scanner_pool(), scanner_id)
    console.print(f"removed {_plain(scanner_id)}")


@main.command()
@click.option("--now", "now_text", default=None, help="ISO 8601 time of the tick (default: the clock).")
@click.option("--scanner", "scanner_id", default=None, help="Only this scanner's partitions (rollups still run).")
def sweep(now_text: str | None, scanner_id: str | None) -> None:
    """One sweep tick, computed as the sensor does, its runs executed here; prints JSON."""
    import json

    import dagster as dg

    from session_assets.commands.ticks import execute_tick
    from session_assets.core.run_context import not_in_the_future
    from session_assets.definitions import build_definitions

    now = not_in_the_future(_parse_now(now_text), f"--now {now_text}") if now_text else _parse_now(None)
    _, resources = _stack_and_resources()
    clickhouse = resources["clickhouse"]
    if clickhouse.embedded:
        clickhouse.migrate()  # the embedded engine is this stack's own, as its Postgres (migrated at start-up)
    else:
        clickhouse.client()  # a server's schema is the deploy step's: checked here, one line if behind
    with dg.DagsterInstance.get() as instance:
        report = execute_tick(build_definitions(), instance, resources["postgres"].pool(), now, scanner_id)
    click.echo(json.dumps(report, indent=2, default=str))
    if not all(run["success"] for run in report["runs"]):
        sys.exit(2)


@main.command()
@click.option("--scanner", "scanner_id", required=True, help="Scanner id.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day (UTC), YYYY-MM-DD.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day (UTC), inclusive.")
@click.option("--wait", is_flag=True, help="Print progress until the backfill is done.")
def backfill(scanner_id: str, start: datetime, end: datetime, wait: bool) -> None:
    """Launch a Dagster backfill of a scanner's days; each recomputes its partition fully."""
    import time

    import dagster as dg

    from session_assets.commands import backfills

    _stack_and_resources()
    with dg.DagsterInstance.get() as instance:
        backfill_id = backfills.launch(instance, scanner_id, start.date(), end.date())
        console.print(f"backfill {_plain(backfill_id)}: {_plain(scanner_id)} {start:%Y-%m-%d}..{end:%Y-%m-%d} (runs by the Dagster daemon)")
        while wait and not backfills.finished(instance, backfill_id):
            silence = backfills.daemon_silence(instance)
            if silence is not None:
                raise click.ClickException(
                    f"backfill {backfill_id} is waiting for a Dagster daemon, and {silence}: start "
                    "`session-assets dev` (or `dagster-daemon run` on this instance); the backfill runs once one does"
                )
            state, done, failed, running = backfills.progress(instance, backfill_id)
            console.print(f"{_plain(state)}: {done} succeeded, {failed} failed, {running} running or queued")
            time.sleep(5)  # a progress display, not synchronisation
        if wait:
            state, done, failed, _ = backfills.progress(instance, backfill_id)
            console.print(f"{_plain(state)}: {done} succeeded, {failed} failed")
            if failed:
                sys.exit(2)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--now", "now_text", default=None, help="ISO 8601 time to report as of (default: the clock).")
def status(as_json: bool, now_text: str | None) -> None:
    """Per scanner: watermark, frontier, failed or incomplete partitions, observations, quota."""
    import json

    import dagster as dg

    from session_assets.commands.ticks import status_report

    now = _parse_now(now_text)
    _, resources = _stack_and_resources()
    with dg.DagsterInstance.get() as instance:
        report = status_report(instance, resources["postgres"].pool(), now)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    table = Table(title=f"scanners as of {now:%Y-%m-%d %H:%M} UTC")
    for column in ("scanner", "team", "enabled", "watermark", "frontier", "incomplete", "failed", "observations", "quota"):
        table.add_column(column)
    for row in report["scanners"]:
        _add_row(
            table, row["id"], str(row["team_id"]), "yes" if row["enabled"] else "no", _short(row["watermark_end"]),
            _short(row["frontier"]), ", ".join(row["incomplete"]) or "-", ", ".join(row["failed"]) or "-",
            f"{row['observations']:,}", f"{row['quota_used']:,} / {row['quota_limit']:,}" if row["quota_limit"] else "-",
        )
    console.print(table)
    table = Table(title="session_counter_rollups")
    for column in ("day", "covered_until", "complete", "failed"):
        table.add_column(column)
    for row in report["rollups"]:
        _add_row(table, row["day"], _short(row["covered_until"]), "yes" if row["complete"] else "no", "yes" if row["failed"] else "-")
    console.print(table)


def _short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "-"


def _parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc)
    from session_assets.core.run_context import parse_utc

    try:
        return parse_utc(text)
    except ValueError:
        raise ValueError(f"--now {text!r} is not an ISO 8601 time, e.g. 2026-11-23T10:05:00Z") from None


SECRETS_WARNING = "# session-assets env: these lines hold passwords; do not paste them into logs"


@main.command()
def env() -> None:
    """Print `export` lines for the stack's environment (starts the embedded Postgres if needed)."""
    import shlex

    from session_assets import settings

    stack, _ = _stack_and_resources()
    click.echo(SECRETS_WARNING, err=True)  # stderr: stdout stays `export` lines for eval
    environment = stack.environment()
    if os.environ.get(settings.START_DATE_VAR):  # set, or remembered by the embedded stack
        environment[settings.START_DATE_VAR] = os.environ[settings.START_DATE_VAR]
    for name, value in environment.items():
        click.echo(f"export {name}={shlex.quote(value)}")


@main.command()
def up() -> None:
    """Start the embedded stack and keep it up until Ctrl-C or SIGTERM (for `dagster` commands
    in another shell: `eval "$(session-assets env)"` there); prints its environment."""
    import shlex
    import threading

    from session_assets.stores import clickhouse

    stack, resources = _stack_and_resources()
    _prepare_stores(stack, resources)
    clickhouse.close_clients()  # runs started from other shells open chDB themselves
    for name, value in stack.environment().items():
        click.echo(f"export {name}={shlex.quote(value)}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"stack up (home {stack.settings.home}); Ctrl-C or SIGTERM stops it", err=True)
    click.echo(SECRETS_WARNING.replace("env:", "up:"), err=True)
    stop.wait()


@main.command()
def migrate() -> None:
    """Create or upgrade the ClickHouse and Postgres schemas (with the database owner's URL)."""
    stack, resources = _stack_and_resources()
    _prepare_stores(stack, resources)
    console.print("schemas are up to date")


if __name__ == "__main__":
    main()
