"""Credentials stay where they belong: in the environment.

(a) No file of the repository carries a credential: the test S3 keys only where
    conftest.py defines them, no AWS access key, no password in a URL unless it is
    an obvious placeholder.
(b) A sweep that writes to S3 (moto's server, secret key in the environment)
    with Postgres URLs that carry a password leaves neither secret anywhere the
    Dagster instance keeps things: every row of its Postgres database (snapshots
    decompressed), the run's event log and materialization metadata as the API
    returns them, files under DAGSTER_HOME (compute logs), the instance ref that
    run launchers ship to run workers, and what the run printed or logged.
    Two controls show the scan finds a secret when one is there.
(c) `session-assets env` prints the Postgres URLs verbatim, password included:
    its output is meant for `eval`. It prints no AWS secret, and says on stderr
    that its lines hold passwords.
(d) `secrets.redact` masks every form a connection string carries a secret in,
    and the stores' errors go through it.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
import uuid
import zlib
from datetime import date
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse, urlunparse

import dagster as dg
import psycopg
import pytest
from dagster._serdes import serialize_value

from session_assets.stores import postgres
from session_assets.commands import stack
from session_assets.stores.clickhouse import ClickHouseUnavailable, get_client
from session_assets.stores.secrets import redact
from session_assets.resources import PostgresResource, build_resources
from tests.conftest import TEST_AWS_KEY_ID, TEST_AWS_SECRET
from tests.support import add_scanner, app_database, at, cli_env, event, insert_rows, roll_for_sweeps, sweep, sweep_metadata

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2024, 3, 1)

# --- (a) the repository -----------------------------------------------------------

AWS_ACCESS_KEY = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
AWS_SECRET_ASSIGNMENT = re.compile(r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b", re.IGNORECASE)
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
URL_USERINFO_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"`]+:([^@\s/'\"`]*)@", re.IGNORECASE)
URL_QUERY_PASSWORD = re.compile(r"[?&;]password=([^&\s'\"`]*)", re.IGNORECASE)
# What a documented example may put where a password goes.
PLACEHOLDER = re.compile(
    r"^(|password|pass|passwd|pw|secret|\*+|x+|\.\.\.|<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{[^}]*\})$", re.IGNORECASE
)
# Fake credentials that tests feed to redaction code on purpose: (file, value, why).
ALLOWED = {
    ("tests/stores/test_clickhouse.py", "s3cret-pass"): "asserts the ClickHouse error message hides it",
}
# The test S3 credentials are defined once, in conftest.py, and imported elsewhere.
TEST_CREDENTIAL_HOME = "tests/conftest.py"


def repository_files() -> list[str]:
    """Tracked files, plus untracked ones git does not ignore (so a new file is checked before its commit)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git work tree: {error}")
    return sorted({name for name in out.decode().split("\0") if name and (ROOT / name).is_file()})


def credential_findings(name: str, text: str) -> list[str]:
    """`file:line: what` for every credential-looking literal in `text`."""
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        for secret, label in ((TEST_AWS_SECRET, "TEST_AWS_SECRET"), (TEST_AWS_KEY_ID, "TEST_AWS_KEY_ID")):
            if secret in line and not (name == TEST_CREDENTIAL_HOME and line.startswith(f"{label} = ")):
                findings.append(f"{where}: the test credential {label} (import it from tests.conftest)")
        for pattern, label in ((AWS_ACCESS_KEY, "an AWS access key id"), (AWS_SECRET_ASSIGNMENT, "an AWS secret key"),
                               (PRIVATE_KEY, "a private key")):
            if pattern.search(line):
                findings.append(f"{where}: {label}")
        for pattern in (URL_USERINFO_PASSWORD, URL_QUERY_PASSWORD):
            for match in pattern.finditer(line):
                value = match.group(1)
                if not PLACEHOLDER.match(value) and (name, value) not in ALLOWED:
                    findings.append(f"{where}: a password in a URL ({match.group(0)[:60]})")
    return findings


def test_no_credentials_in_the_repository():
    findings, scanned = [], 0
    for name in repository_files():
        data = (ROOT / name).read_bytes()
        if b"\0" in data:
            continue  # binary
        scanned += 1
        findings += credential_findings(name, data.decode(errors="replace"))
    assert scanned > 50  # the scan saw the repository, not an empty list
    assert not findings, "credential-looking literals:\n" + "\n".join(findings)


def test_the_repository_scan_finds_what_it_looks_for():
    """The detector itself, on text built at run time (so this file stays clean)."""
    key = "AKIA" + "IOSFODNN7EXAMPLE"
    leaky = "\n".join([
        f"aws_access_key_id = {key}",
        "url = 'postgresql://app:" + "hunter2" + "@db:5432/x'",
        "dsn = 'host=db?user=app&password=" + "hunter2" + "'",
        f"secret = '{TEST_AWS_SECRET}'",
    ])
    findings = credential_findings("somewhere.py", leaky)
    assert [f.split(": ", 1)[0] for f in findings] == ["somewhere.py:1", "somewhere.py:2", "somewhere.py:3", "somewhere.py:4"]
    placeholders = "postgresql+psycopg2://user:password@host/db https://u:${PW}@h http://x:***@h postgresql://postgres:@/db"
    assert credential_findings("doc.md", placeholders) == []
    assert credential_findings("tests/stores/test_clickhouse.py", "http://user:" + "s3cret-pass" + "@127.0.0.1:1") == []


# --- (b) what a sweep leaves in Dagster ------------------------------------------


def with_password(url: str, password: str) -> str:
    """The same Postgres URL with `password` in it (pgserver trusts its socket, so it is
    carried everywhere a real one would be but the server does not check it)."""
    parsed = urlparse(url)
    host = parsed.netloc.rpartition("@")[2]
    return urlunparse(parsed._replace(netloc=f"{parsed.username or 'postgres'}:{password}@{host}"))


def dagster_database_text(url: str) -> Iterator[tuple[str, str]]:
    """(table.column, text) for every value of every table, zlib bodies decompressed."""
    with psycopg.connect(url.replace("+psycopg2", "")) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert "event_logs" in tables and "snapshots" in tables
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            columns = [c.name for c in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row):
                    if isinstance(value, (bytes, memoryview)):
                        raw = bytes(value)
                        try:
                            value = zlib.decompress(raw).decode()
                        except zlib.error:
                            value = raw.decode(errors="replace")
                    if value is not None:
                        yield f"{table}.{column}", str(value)


def everything_dagster_kept(instance: dg.DagsterInstance, dagster_url: str, home: Path) -> list[tuple[str, str]]:
    kept = list(dagster_database_text(dagster_url))
    for record in instance.get_run_records():
        run = record.dagster_run
        kept.append((f"run {run.run_id}", serialize_value(run)))
        kept.append((f"job snapshot {run.run_id}", serialize_value(instance.get_job_snapshot(run.job_snapshot_id))))
        for entry in instance.all_logs(run.run_id):
            kept.append((f"event log {run.run_id}", serialize_value(entry)))
            materialization = entry.asset_materialization
            if materialization is not None:
                kept.append((f"metadata {materialization.asset_key.to_user_string()}",
                             repr({k: v.value for k, v in materialization.metadata.items()})))
    for path in home.rglob("*"):
        if path.is_file():  # dagster.yaml, compute logs, anything a run wrote under DAGSTER_HOME
            kept.append((str(path.relative_to(home)), path.read_bytes().decode(errors="replace")))
    # What a run launcher (ECS, K8s) serializes into the run worker's command line.
    kept.append(("instance ref", serialize_value(instance.get_ref())))
    return kept


def found_in(kept: list[tuple[str, str]], needle: str) -> list[str]:
    return sorted({where for where, text in kept if needle in text})


@pytest.fixture
def secret_password() -> str:
    return "pw-" + secrets.token_hex(12)  # generated: this file holds no password


@pytest.fixture
def dagster_home(tmp_path: Path, postgres_admin_url: str, secret_password: str, monkeypatch) -> Path:
    """The repo's dagster.yaml on a fresh Postgres database reached with a password in its URL."""
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    postgres.ensure_database(postgres_admin_url, name)
    url = postgres.sqlalchemy_url(with_password(postgres.with_database(postgres_admin_url, name), secret_password))
    monkeypatch.setenv("SESSION_ASSETS_DAGSTER_POSTGRES_URL", url)
    monkeypatch.setenv("SESSION_ASSETS_MAX_CONCURRENT_RUNS", "1")
    home = tmp_path / "dagster_home"
    stack.install_dagster_yaml(home)
    return home


def test_a_sweep_to_s3_leaves_no_secret_in_dagster(
    tmp_path, monkeypatch, dagster_home, secret_password, postgres_admin_url, clickhouse_resource,
    s3_object_store, s3_endpoint, capfd, caplog,
):
    app_url = with_password(app_database(postgres_admin_url), secret_password)
    # The code location's own resources, as `definitions.py` builds them: every set
    # variable becomes a dg.EnvVar, so Dagster records names, never values.
    for name, value in {
        "SESSION_ASSETS_HOME": str(tmp_path / "home"),
        "SESSION_ASSETS_POSTGRES_URL": app_url,
        "SESSION_ASSETS_CLICKHOUSE_URL": clickhouse_resource.url,
        "SESSION_ASSETS_CLICKHOUSE_DATABASE": clickhouse_resource.database,
        "SESSION_ASSETS_OBJECT_STORE_URL": s3_object_store.url,
        "AWS_ENDPOINT_URL": s3_endpoint,  # S3Resource() reaches moto through the environment
    }.items():
        monkeypatch.setenv(name, value)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == TEST_AWS_SECRET  # set by the s3_endpoint fixture
    resources = build_resources()
    assert isinstance(resources["postgres"].url, dg.EnvVar)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        add_scanner(instance, PostgresResource(url=app_url))
        rows = [event("$pageview", at("2024-03-01T09:00:00"), "leak-check"),
                event("$autocapture", at("2024-03-01T09:10:00"), "leak-check")]
        insert_rows(clickhouse_resource, rows)
        as_of = at("2024-03-01T12:00:00")
        roll_for_sweeps(instance, clickhouse_resource, as_of, with_check=False)
        result = sweep(instance, resources, "errors", DAY, as_of)

        assert result.success
        meta = sweep_metadata(result)
        assert meta["observed"] == 1
        (key,) = list(s3_object_store.list_keys("observations/"))  # it went through S3 with the secret key
        assert meta["batch_keys"] == [s3_object_store.location(key)]
        with psycopg.connect(app_url) as conn:  # ... and through Postgres with the password URL
            assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 1

        kept = everything_dagster_kept(instance, os.environ["SESSION_ASSETS_DAGSTER_POSTGRES_URL"], dagster_home)
    printed = capfd.readouterr()
    kept += [("stdout", printed.out), ("stderr", printed.err), ("python logging", caplog.text)]

    assert sum(len(text) for _, text in kept) > 100_000  # the scan read a real event log
    assert found_in(kept, "SESSION_ASSETS_POSTGRES_URL")  # resources are recorded by variable name
    for needle, label in ((secret_password, "the Postgres password"), (TEST_AWS_SECRET, "TEST_AWS_SECRET"),
                          (TEST_AWS_KEY_ID, "TEST_AWS_KEY_ID")):
        assert not found_in(kept, needle), f"{label} leaked into: {found_in(kept, needle)}"


class _Store(dg.ConfigurableResource):
    url: str


@dg.asset
def leaky_probe(context, store: _Store):
    """Logs and records the secret key, as a careless asset would."""
    context.log.info(f"connecting with {os.environ['AWS_SECRET_ACCESS_KEY']}")
    return dg.MaterializeResult(metadata={"where": store.url})


def test_the_scan_finds_secrets_that_a_run_leaks(dagster_home, secret_password, monkeypatch):
    """Controls: a logged secret lands in the event log; a resource configured with a
    literal (not dg.EnvVar) URL lands in the job snapshot, which the UI shows."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_AWS_SECRET)
    literal = "postgresql://app:" + secret_password + "@db.internal/app"
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert dg.materialize([leaky_probe], resources={"store": _Store(url=literal)}, instance=instance).success
        kept = everything_dagster_kept(instance, os.environ["SESSION_ASSETS_DAGSTER_POSTGRES_URL"], dagster_home)
    assert "event_logs.event" in found_in(kept, TEST_AWS_SECRET)
    assert any(where.startswith("event log") for where in found_in(kept, TEST_AWS_SECRET))
    leaked_password = found_in(kept, secret_password)
    assert "snapshots.snapshot_body" in leaked_password and any(w.startswith("job snapshot") for w in leaked_password)
    assert any(where.startswith("metadata") for where in leaked_password)


# --- (c) session-assets env -------------------------------------------------------


def test_env_prints_postgres_urls_for_eval_and_no_aws_secret(tmp_path, secret_password):
    """`eval "$(session-assets env)"` needs the values, so the Postgres URLs are printed
    verbatim, password included: treat its output like the environment it exports
    (never paste it into logs). Without SESSION_ASSETS_DAGSTER_POSTGRES_URL, Dagster's
    URL is the app's own database with the psycopg2 scheme. No AWS variable is printed."""
    app_url = f"postgresql://app:{secret_password}@127.0.0.1:1/session_assets"  # never connected to
    env = {**cli_env(tmp_path / "home"), "SESSION_ASSETS_POSTGRES_URL": app_url,
           "AWS_ACCESS_KEY_ID": TEST_AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEST_AWS_SECRET}
    result = subprocess.run([sys.executable, "-m", "session_assets.cli", "env"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    exported = {}
    for line in result.stdout.splitlines():
        assert line.startswith("export "), line
        name, _, value = shlex.split(line[len("export "):])[0].partition("=")
        exported[name] = value
    assert exported["SESSION_ASSETS_POSTGRES_URL"] == app_url
    assert exported["SESSION_ASSETS_DAGSTER_POSTGRES_URL"] == postgres.sqlalchemy_url(app_url)
    with_password_lines = sorted(name for name, value in exported.items() if secret_password in value)
    assert with_password_lines == ["SESSION_ASSETS_DAGSTER_POSTGRES_URL", "SESSION_ASSETS_POSTGRES_URL"]
    assert not [name for name in exported if name.startswith("AWS_")]
    for needle in (TEST_AWS_SECRET, TEST_AWS_KEY_ID):
        assert needle not in result.stdout + result.stderr
    assert secret_password not in result.stderr


def test_env_warns_on_stderr_that_its_lines_hold_passwords(tmp_path, secret_password):
    """Issue #14: nothing said the output is secret. The warning goes to stderr, so
    `eval "$(session-assets env)"` still reads only `export` lines; the ClickHouse URL's
    password is exported verbatim like the Postgres ones."""
    env = {**cli_env(tmp_path / "home"),
           "SESSION_ASSETS_POSTGRES_URL": f"postgresql://app:{secret_password}@127.0.0.1:1/session_assets",
           "SESSION_ASSETS_CLICKHOUSE_URL": f"https://app:{secret_password}@127.0.0.1:1"}  # never connected to
    result = subprocess.run([sys.executable, "-m", "session_assets.cli", "env"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "# session-assets env: these lines hold passwords; do not paste them into logs" in result.stderr.splitlines()
    lines = result.stdout.splitlines()
    assert len(lines) >= 9 and all(line.startswith("export ") for line in lines), lines
    assert f"export SESSION_ASSETS_CLICKHOUSE_URL=https://app:{secret_password}@127.0.0.1:1" in lines
    assert secret_password not in result.stderr


# --- (d) redaction ------------------------------------------------------------------

SECRET_FORMS = [
    # URL user info; the last '@' ends it, as urlparse reads it; IPv6 hosts and ports kept
    ("postgresql://app:{pw}@db.internal:5432/app", "postgresql://app:***@db.internal:5432/app"),
    ("https://session_assets:{pw}@clickhouse.internal:8443", "https://session_assets:***@clickhouse.internal:8443"),
    ("postgresql+psycopg2://app:{pw}@[::1]/app?sslmode=require", "postgresql+psycopg2://app:***@[::1]/app?sslmode=require"),
    ("postgresql://app:{pw}@x@db/app", "postgresql://app:***@db/app"),
    ("http://:{pw}@h/", "http://:***@h/"),
    # query parameters, any case, each name
    ("postgresql://app@db/app?sslmode=require&password={pw}&application_name=x",
     "postgresql://app@db/app?sslmode=require&password=***&application_name=x"),
    ("http://h/?PassWord={pw}&passwd={pw}&pwd={pw}&secret={pw}&Token={pw}&key={pw}&keep=1",
     "http://h/?PassWord=***&passwd=***&pwd=***&secret=***&Token=***&key=***&keep=1"),
    ("s3://b/p?sslpassword={pw};access_key={pw}&SECRET_ACCESS_KEY={pw}#f",
     "s3://b/p?sslpassword=***;access_key=***&SECRET_ACCESS_KEY=***#f"),
    # libpq key=value, bare, quoted (spaces, escaped quote), spaces around '='
    ("host=db port=5432 user=app password={pw} dbname=app", "host=db port=5432 user=app password=*** dbname=app"),
    ("host=db password='{pw} with spaces' dbname=app", "host=db password=*** dbname=app"),
    ("password='it\\'s {pw}' sslpassword = {pw} host=db", "password=*** sslpassword = *** host=db"),
    ("password='{pw}", "password=***"),
    # inside a message: every occurrence
    ("ClickHouse at https://u:{pw}@h:8443 is unreachable: url https://u:{pw}@h:8443/?token={pw} refused",
     "ClickHouse at https://u:***@h:8443 is unreachable: url https://u:***@h:8443/?token=*** refused"),
]
NOTHING_SECRET = [
    "postgresql://postgres:@/session_assets?host=/tmp/pg", "postgresql://app@db/app", "chdb:///var/lib/ch",
    "http://h/?monkey=1&keys=2&tokens=3", "host=db dbname=keyring user=passwordless", "file:///srv/objects",
]


@pytest.mark.parametrize(("form", "masked"), SECRET_FORMS)
def test_redact_masks_each_form_of_secret_and_keeps_the_rest(form, masked):
    """Issue #14: only `user:password@` was masked; a `?password=`, a libpq `password=`
    (quoted or not), a token or key went into messages as written."""
    pw = "pw-" + secrets.token_hex(8)
    assert redact(form.format(pw=pw)) == masked


@pytest.mark.parametrize("text", NOTHING_SECRET)
def test_redact_leaves_text_without_secrets_alone(text):
    assert redact(text) == text


def test_store_errors_mask_every_form(secret_password):
    """The ClickHouse and Postgres errors name the server without any of its secrets."""
    url = f"http://app:{secret_password}@127.0.0.1:1/?password={secret_password}&token={secret_password}"
    with pytest.raises(ClickHouseUnavailable) as raised:
        get_client(url, "x", lock_timeout_s=1)
    assert str(raised.value).startswith("ClickHouse at http://app:***@127.0.0.1:1/?password=***&token=*** is unreachable")
    assert secret_password not in str(raised.value)
    url = f"postgresql://app:{secret_password}@127.0.0.1:1/x?sslpassword={secret_password}&connect_timeout=1"
    with pytest.raises(postgres.PostgresUnavailable) as raised:
        postgres.get_pool(url, timeout_s=1)
    assert str(raised.value).startswith("Postgres at postgresql://app:***@127.0.0.1:1/x?sslpassword=***&connect_timeout=1")
    assert secret_password not in str(raised.value)


# A password written with a character a URL reserves, unescaped: urlparse (and the old
# redaction) ended the user info at the first '/', '?' or '#', so the password was left whole.
UNESCAPED_PASSWORD_FORMS = [
    ("postgresql://app:{pw}@db.internal:5432/app", "postgresql://app:***@db.internal:5432/app"),
    ("postgresql://app:{pw}@db/app?sslmode=require&application_name=sweep",
     "postgresql://app:***@db/app?sslmode=require&application_name=sweep"),
    ("ClickHouse at https://u:{pw}@h:8443 is unreachable: https://u:{pw}@h:8443/",
     "ClickHouse at https://u:***@h:8443 is unreachable: https://u:***@h:8443/"),
]


@pytest.mark.parametrize("reserved", ["/", "@", "#", "?", "/@", "?#/", "//", "@@/"])
@pytest.mark.parametrize(("form", "masked"), UNESCAPED_PASSWORD_FORMS)
def test_redact_masks_a_password_with_unescaped_url_characters(form, masked, reserved):
    """Issue #14: `postgresql://user:pa/ss@host/db` printed as written: the user info was read
    up to the first '/', which held no '@', so nothing was masked. Every piece of the password
    must go, the host and the rest stay."""
    head, tail = "pw-" + secrets.token_hex(6), secrets.token_hex(6)
    pw = head + reserved + tail
    redacted = redact(form.format(pw=pw))
    assert redacted == masked
    assert head not in redacted and tail not in redacted
