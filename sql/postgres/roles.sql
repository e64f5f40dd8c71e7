-- Roles and databases of session_assets on a production PostgreSQL (docs/operations.md, section 3).
--
-- Run once on a new server, as a superuser (or a role with CREATEROLE and CREATEDB), with psql:
--
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -v owner_password="$OWNER_DB_PASSWORD" \
--        -v app_password="$APP_DB_PASSWORD" -v dagster_password="$DAGSTER_DB_PASSWORD" \
--        -f sql/postgres/roles.sql
--
-- tests/test_roles.py runs this file as it is, migrates as the owner, sweeps as the app with
-- Dagster's storage on the dagster role, and checks what each role may not do.
--
--   session_assets_owner  owns the app's database and its tables; `session-assets migrate` runs as it
--   session_assets        the app (runs, sensor, CLI): SELECT, INSERT, UPDATE, DELETE on the
--                         owner's tables; no CREATE anywhere, no access to the Dagster database
--   dagster               owns the Dagster database (Dagster creates and migrates its own tables);
--                         no access to the app's database
--
-- Passwords arrive as psql variables and are quoted by format(%L): none is in this file.

SELECT format('CREATE ROLE session_assets_owner LOGIN PASSWORD %L', :'owner_password') \gexec
SELECT format('CREATE ROLE session_assets LOGIN PASSWORD %L', :'app_password') \gexec
SELECT format('CREATE ROLE dagster LOGIN PASSWORD %L', :'dagster_password') \gexec

CREATE DATABASE session_assets OWNER session_assets_owner;
CREATE DATABASE dagster OWNER dagster;

-- PUBLIC (every role) may connect to and make temporary tables in any new database: not here.
REVOKE ALL ON DATABASE session_assets FROM PUBLIC;
REVOKE ALL ON DATABASE dagster FROM PUBLIC;
GRANT CONNECT ON DATABASE session_assets TO session_assets;

\connect session_assets
-- Before PostgreSQL 15 PUBLIC may also create tables in schema public.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO session_assets_owner;
GRANT USAGE ON SCHEMA public TO session_assets;
-- What the owner's migrations create, the app may read and write (schema_migrations included:
-- run-time code reads it to check the schema version).
ALTER DEFAULT PRIVILEGES FOR ROLE session_assets_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO session_assets;
ALTER DEFAULT PRIVILEGES FOR ROLE session_assets_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO session_assets;

\connect dagster
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO dagster;
