-- Whether the app's database exists (1 or 0); only migrations create it.
SELECT count() FROM system.databases WHERE name = {db:String}
