-- The app's database, created by `session-assets migrate` only.
CREATE DATABASE IF NOT EXISTS {db:Identifier}
