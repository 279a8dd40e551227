/**
 * Runtime state of catalog services (enable / disable / suspend / resume), kept in the database so
 * every replica and every restart agrees, and the overlay that puts it onto the Layer 1 catalog.
 *
 * The file declares which services exist; this state only switches them. It never adds a service
 * to the catalog (an absent service stays denied), and the overlay keeps the data's `revision`, so
 * Layer 2 rule sets (registered by revision) still match; the audit row of a decision denied by a
 * suspension names the service and the `service_suspended` code, which is what a reader needs.
 */
import { randomUUID } from 'node:crypto';
import type { Decider } from '../state/index.js';
import { asDate, asNullableString, asString, type Database, type Row } from '../state/db.js';
import type { Layer1Data } from '../policy/layer1-types.js';
import type { ServiceAction } from './contract.js';

export const SERVICES_CHANNEL = 'mcpgw_services';

export interface ServiceRuntimeState {
  name: string;
  /** null: as the policy file says. */
  enabled: boolean | null;
  suspended: boolean;
  reason: string | null;
  updatedBy: string;
  updatedAt: Date;
}

function toState(r: Row): ServiceRuntimeState {
  return {
    name: asString(r['name']),
    enabled: typeof r['enabled'] === 'boolean' ? r['enabled'] : null,
    suspended: r['suspended'] === true,
    reason: asNullableString(r['reason']),
    updatedBy: asString(r['updated_by']),
    updatedAt: asDate(r['updated_at']),
  };
}

const CHANGE: Record<ServiceAction, { column: 'enabled' | 'suspended'; value: boolean }> = {
  enable: { column: 'enabled', value: true },
  disable: { column: 'enabled', value: false },
  suspend: { column: 'suspended', value: true },
  resume: { column: 'suspended', value: false },
};

export class ServiceStateStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async list(): Promise<ServiceRuntimeState[]> {
    const r = await this.#db.query('SELECT * FROM service_state ORDER BY name');
    return r.rows.map(toState);
  }

  /**
   * Applies `action` and writes its audit row in the same statement, so a switch is never in force
   * without a record of who threw it.
   */
  async set(name: string, action: ServiceAction, actor: Decider, reason: string | null): Promise<ServiceRuntimeState> {
    const { column, value } = CHANGE[action];
    const r = await this.#db.query(
      `WITH changed AS (
         INSERT INTO service_state AS s (name, enabled, suspended, reason, updated_by)
         VALUES ($1, CASE WHEN $2 = 'enabled' THEN $3::boolean END, $2 = 'suspended' AND $3::boolean, $4, $5)
         ON CONFLICT (name) DO UPDATE
           SET enabled    = CASE WHEN $2 = 'enabled' THEN $3::boolean ELSE s.enabled END,
               suspended  = CASE WHEN $2 = 'suspended' THEN $3::boolean ELSE s.suspended END,
               reason     = excluded.reason,
               updated_by = excluded.updated_by,
               updated_at = clock_timestamp()
         RETURNING *
       ), audited AS (
         INSERT INTO audit_log (decision_id, user_id, method, service, outcome, reasons, detail)
         SELECT $6, $5, $7, name, 'allow', '[]'::jsonb,
                jsonb_build_object('action', $8::text, 'reason', $4::text, 'role', $9::text)
           FROM changed
       )
       SELECT * FROM changed`,
      [name, column, value, reason, actor.id, `adm-${randomUUID()}`, `admin/services.${action}`, action, actor.role],
    );
    const row = r.rows[0];
    if (!row) throw new Error(`service state of ${name} was not written`);
    return toState(row);
  }

  /**
   * Calls `onChange` whenever any replica changes a service's state, and after the listener
   * reconnects (changes may have been missed then): re-read `list()` and re-overlay.
   */
  async watch(onChange: () => void): Promise<() => Promise<void>> {
    const stopGap = this.#db.onListenerGap((connected) => {
      if (connected) onChange();
    });
    const stop = await this.#db.listen(SERVICES_CHANNEL, () => onChange());
    return async () => {
      stopGap();
      await stop();
    };
  }
}

/** The effective switches of one catalog entry. */
export function effectiveServiceState(
  entry: { enabled: boolean; suspended: boolean },
  state: ServiceRuntimeState | undefined,
): { enabled: boolean; suspended: boolean } {
  return {
    enabled: state?.enabled ?? entry.enabled,
    suspended: entry.suspended || (state?.suspended ?? false),
  };
}

/**
 * `data` with the runtime switches applied to its catalog. Pure: returns `data` itself when nothing
 * changes (so an engine swap can be skipped), otherwise a copy sharing everything but the catalog.
 */
export function overlayServiceStates(data: Layer1Data, states: Iterable<ServiceRuntimeState>): Layer1Data {
  const byName = new Map<string, ServiceRuntimeState>();
  for (const s of states) byName.set(s.name, s);
  let changed = false;
  const catalog: Layer1Data['catalog'] = {};
  for (const [name, entry] of Object.entries(data.catalog)) {
    const eff = effectiveServiceState(entry, byName.get(name));
    if (eff.enabled !== entry.enabled || eff.suspended !== entry.suspended) {
      changed = true;
      catalog[name] = { ...entry, ...eff };
    } else {
      catalog[name] = entry;
    }
  }
  return changed ? { ...data, catalog } : data;
}
