-- Scanners, their observations, the batch objects that carry them, and quotas (SPEC §4).
CREATE TABLE scanners (
    id text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,64}$'),
    team_id bigint NOT NULL,
    name text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    kind text NOT NULL,
    filter jsonb NOT NULL DEFAULT '{}'::jsonb,
    rule jsonb NOT NULL DEFAULT '{}'::jsonb,
    sample_rate double precision NOT NULL DEFAULT 1.0 CHECK (sample_rate >= 0 AND sample_rate <= 1),
    -- Sweeps never look before this: creation time - settle for a new scanner,
    -- moved forward by `scanners enable --from-now`.
    start_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scanners_team_idx ON scanners (team_id);

CREATE TABLE observations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id bigint NOT NULL,
    scanner_id text NOT NULL,
    session_id text NOT NULL CHECK (length(session_id) BETWEEN 1 AND 128),
    day date NOT NULL,
    verdict text NOT NULL,
    score double precision,
    evidence jsonb NOT NULL DEFAULT '{}'::jsonb,
    batch_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scanner_id, session_id)
);
CREATE INDEX observations_scanner_day_idx ON observations (scanner_id, day);

CREATE TABLE observation_batches (
    scanner_id text NOT NULL,
    day date NOT NULL,
    seq integer NOT NULL,
    object_key text NOT NULL,
    rows integer NOT NULL,
    bytes bigint NOT NULL,
    sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scanner_id, day, seq)
);

CREATE TABLE team_quotas (
    team_id bigint NOT NULL,
    period date NOT NULL, -- first day of the month
    observation_limit bigint NOT NULL CHECK (observation_limit >= 0),
    used bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    -- What the latest reservation granted: lets one UPDATE both take quota and
    -- report how much it took (RETURNING sees only the new row).
    last_granted bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (team_id, period),
    CHECK (used <= observation_limit)
);
