"""The stores: ClickHouse and Postgres clients, migrations and schema checks, SQL files, secret masking, event writes."""
