-- mcpgw state schema. Runs on PostgreSQL 15+ and PGlite alike: no extensions, no PG16+ syntax.
-- Times are database time (clock_timestamp()), so replicas with skewed clocks agree.

CREATE TABLE IF NOT EXISTS roles (
  name text PRIMARY KEY
);
INSERT INTO roles (name) VALUES ('agent'), ('approver'), ('admin') ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS users (
  id         text PRIMARY KEY,
  role       text NOT NULL REFERENCES roles (name),
  email      text,
  disabled   boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Only the SHA-256 of a key and its display id are kept, never the key.
CREATE TABLE IF NOT EXISTS api_keys (
  hash       bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
  display_id text NOT NULL UNIQUE,
  user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind       text NOT NULL CHECK (kind IN ('sk', 'ak')),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);

CREATE TABLE IF NOT EXISTS grants (
  user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  service text NOT NULL,
  tool    text NOT NULL,
  PRIMARY KEY (user_id, service, tool)
);

-- Private keys are stored encrypted by the caller; the database never sees them in clear.
CREATE TABLE IF NOT EXISTS signing_keys (
  kid         text PRIMARY KEY,
  alg         text NOT NULL,
  public_jwk  jsonb NOT NULL,
  private_enc bytea NOT NULL,
  status      text NOT NULL CHECK (status IN ('active', 'previous', 'retired')),
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  retire_at   timestamptz
);

CREATE TABLE IF NOT EXISTS policy_revisions (
  seq        bigserial UNIQUE,
  id         text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  created_by text,
  source     text NOT NULL,
  compiled   jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS approvals (
  id                  text PRIMARY KEY CHECK (id ~ '^ap-[0-9A-HJKMNP-TV-Z]{10}$'),
  user_id             text NOT NULL,
  session_id          text,
  method              text NOT NULL,
  service             text NOT NULL,
  tool                text NOT NULL,
  digest              text NOT NULL,
  rule                text NOT NULL,
  reasons             jsonb NOT NULL DEFAULT '[]',
  approvers           jsonb NOT NULL DEFAULT '[]',
  status              text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
  timeout_s           double precision NOT NULL CHECK (timeout_s > 0),
  consume_within_s    double precision NOT NULL CHECK (consume_within_s > 0),
  created_at          timestamptz NOT NULL,
  expires_at          timestamptz NOT NULL,
  request_decision_id text NOT NULL,
  policy_revision     text,
  decided_by          text,
  decided_at          timestamptz,
  decision_reason     text,
  override            boolean NOT NULL DEFAULT false,
  consumed_at         timestamptz,
  consumed_by         text
);
-- Concurrent identical calls share one pending approval.
CREATE UNIQUE INDEX IF NOT EXISTS approvals_one_pending ON approvals (user_id, service, tool, digest) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_key ON approvals (user_id, service, tool, digest);
CREATE INDEX IF NOT EXISTS approvals_user_pending ON approvals (user_id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_listing ON approvals (created_at DESC, id DESC);

-- Sliding windows: the last `max` call times per (limit, scope key).
CREATE TABLE IF NOT EXISTS velocity (
  rule      text NOT NULL,
  scope_key text NOT NULL,
  stamps    timestamptz[] NOT NULL,
  PRIMARY KEY (rule, scope_key)
);

CREATE TABLE IF NOT EXISTS budgets (
  rule       text NOT NULL,
  scope_key  text NOT NULL,
  used       bigint NOT NULL CHECK (used >= 0),
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (rule, scope_key)
);

CREATE TABLE IF NOT EXISTS taint (
  flow            text NOT NULL,
  scope_key       text NOT NULL,
  user_id         text NOT NULL,
  session_id      text,
  set_at          timestamptz NOT NULL,
  expires_at      timestamptz,
  source_decision text NOT NULL,
  PRIMARY KEY (flow, scope_key)
);
CREATE INDEX IF NOT EXISTS taint_user ON taint (user_id);
CREATE INDEX IF NOT EXISTS taint_session ON taint (session_id);

CREATE TABLE IF NOT EXISTS flags (
  name   text PRIMARY KEY,
  value  text NOT NULL,
  set_by text NOT NULL,
  set_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Entity = hash of the named argument values, never the values.
CREATE TABLE IF NOT EXISTS duty_history (
  id          bigserial PRIMARY KEY,
  duty        text NOT NULL,
  entity      text NOT NULL,
  actor       text NOT NULL,
  phase       text NOT NULL CHECK (phase IN ('first', 'then')),
  decision_id text NOT NULL,
  at          timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS duty_history_entity ON duty_history (duty, entity, phase);

-- Rows are inserted unsealed (seq, hash NULL) by the deciding transaction; the sealer fills them.
-- Never argument values or secrets: the digest and the rule's reasons only.
CREATE TABLE IF NOT EXISTS audit_log (
  id              bigserial PRIMARY KEY,
  decision_id     text NOT NULL UNIQUE,
  at              timestamptz NOT NULL DEFAULT clock_timestamp(),
  user_id         text,
  session_id      text,
  method          text NOT NULL,
  service         text,
  tool            text,
  outcome         text NOT NULL CHECK (outcome IN ('allow', 'deny', 'pending')),
  rule            text,
  reasons         jsonb NOT NULL DEFAULT '[]',
  policy_revision text,
  digest          text,
  approval_id     text,
  detail          jsonb,
  seq             bigint UNIQUE,
  hash            bytea,
  CHECK ((seq IS NULL) = (hash IS NULL))
);
CREATE INDEX IF NOT EXISTS audit_log_unsealed ON audit_log (id) WHERE seq IS NULL;

-- Identity caches in every replica drop their entries on this notification.
CREATE OR REPLACE FUNCTION mcpgw_notify_identity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mcpgw_identity', TG_TABLE_NAME);
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS users_notify ON users;
CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION mcpgw_notify_identity();
DROP TRIGGER IF EXISTS api_keys_notify ON api_keys;
CREATE TRIGGER api_keys_notify AFTER INSERT OR UPDATE OR DELETE ON api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION mcpgw_notify_identity();
DROP TRIGGER IF EXISTS grants_notify ON grants;
CREATE TRIGGER grants_notify AFTER INSERT OR UPDATE OR DELETE ON grants
  FOR EACH STATEMENT EXECUTE FUNCTION mcpgw_notify_identity();

-- Replicas re-read the policy when a revision is added (payload: its id only).
CREATE OR REPLACE FUNCTION mcpgw_notify_policy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mcpgw_policy', NEW.id);
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS policy_revisions_notify ON policy_revisions;
CREATE TRIGGER policy_revisions_notify AFTER INSERT ON policy_revisions
  FOR EACH ROW EXECUTE FUNCTION mcpgw_notify_policy();
