-- Secrets of the builtin backend (src/vault/builtin.ts). Only AES-256-GCM output is stored: the key
-- lives in MCPGW_HOME/keys/secrets.key, outside the database, so a database dump alone reveals no
-- secret. The service and variable are the associated data of the encryption, so a ciphertext
-- copied to another row fails to decrypt. key_id says which key encrypted a row, so a replaced or
-- missing key file is reported as such instead of as corruption, and rows under another key are
-- never overwritten.

CREATE TABLE IF NOT EXISTS secrets (
  service    text NOT NULL CHECK (service ~ '^[a-z][a-z0-9-]{0,30}$' AND position('__' IN service) = 0),
  name       text NOT NULL CHECK (name ~ '^[A-Z_][A-Z0-9_]{0,127}$'),
  key_id     text NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
  nonce      bytea NOT NULL CHECK (octet_length(nonce) = 12),
  ciphertext bytea NOT NULL,
  tag        bytea NOT NULL CHECK (octet_length(tag) = 16),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (service, name)
);

-- Every process rebuilds its redactor when any secret changes, including changes made by another
-- replica or by the CLI. The payload is empty: listeners re-read, and nothing about a secret
-- travels on the notification channel.
CREATE OR REPLACE FUNCTION mcpgw_notify_secrets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mcpgw_secrets', '');
  RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS secrets_notify ON secrets;
CREATE TRIGGER secrets_notify AFTER INSERT OR UPDATE OR DELETE ON secrets
  FOR EACH STATEMENT EXECUTE FUNCTION mcpgw_notify_secrets();
