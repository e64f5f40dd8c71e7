-- A migration has run (in the transaction that ran it).
INSERT INTO schema_migrations (version) VALUES (%(version)s)
