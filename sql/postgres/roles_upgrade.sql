-- Moving a database set up before sql/postgres/roles.sql (the app role `session_assets`
-- owns the database and its tables, and so needs DDL rights) to the roles of roles.sql:
-- the owner role takes the database and every table, the app keeps DML only.
--
-- Run once, as a superuser, with psql, connected to the app's database; stop the daemon
-- and let runs finish first (ownership changes take locks):
--
--   psql "$ADMIN_URL_OF_THE_session_assets_DATABASE" -v ON_ERROR_STOP=1 \
--        -v owner_password="$OWNER_DB_PASSWORD" -f sql/postgres/roles_upgrade.sql
--
-- tests/test_roles.py rehearses it on a database migrated by the app role itself. The
-- Dagster database is not touched here: give it a role of its own as roles.sql does.

SELECT format('CREATE ROLE session_assets_owner LOGIN PASSWORD %L', :'owner_password') \gexec

-- Tables, sequences and the database itself (a shared object) change owner; the grants
-- the app held on them as their owner go with it.
REASSIGN OWNED BY session_assets TO session_assets_owner;

REVOKE ALL ON DATABASE session_assets FROM PUBLIC;
GRANT CONNECT ON DATABASE session_assets TO session_assets;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO session_assets_owner;
GRANT USAGE ON SCHEMA public TO session_assets;

-- What exists now, and what the owner's later migrations create.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO session_assets;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO session_assets;
ALTER DEFAULT PRIVILEGES FOR ROLE session_assets_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO session_assets;
ALTER DEFAULT PRIVILEGES FOR ROLE session_assets_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO session_assets;
