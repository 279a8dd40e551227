-- Runtime state of catalog services, set by the admin API (enable / disable / suspend / resume).
-- The policy file declares the catalog; this table only overlays it, so a service that leaves the
-- file is denied whatever its row says, and its row applies again if it comes back.
-- enabled NULL = as the file says; suspended is the emergency stop, independent of enabled.
CREATE TABLE IF NOT EXISTS service_state (
  name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,30}$'),
  enabled    boolean,
  suspended  boolean NOT NULL DEFAULT false,
  reason     text CHECK (reason IS NULL OR length(reason) <= 1000),
  updated_by text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Every replica re-overlays its catalog on this notification (payload: the service name).
CREATE OR REPLACE FUNCTION mcpgw_notify_services() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mcpgw_services', coalesce(NEW.name, OLD.name));
  RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS service_state_notify ON service_state;
CREATE TRIGGER service_state_notify AFTER INSERT OR UPDATE OR DELETE ON service_state
  FOR EACH ROW EXECUTE FUNCTION mcpgw_notify_services();
