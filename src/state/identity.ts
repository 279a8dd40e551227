/**
 * Users, API keys and grants in the database, read through an in-memory cache.
 *
 * Staleness bound: a cached answer is dropped on the `mcpgw_identity` notification that every
 * change to users, api_keys or grants raises (statement triggers, so changes made with plain SQL
 * count too), which reaches every replica within milliseconds of the commit. Whatever happens to
 * notifications, no entry is served more than `maxStalenessMs` (default 5 s) after it was read,
 * and while the listener is disconnected the cache is bypassed altogether.
 */
import { timingSafeEqual } from 'node:crypto';
import type { ApiKeyKind } from '../identity/api-keys.js';
import { keyKindAllowsRole, type ApiKeyMatch, type IdentityStore, type Principal } from '../identity/store.js';
import { ROLES, type Role } from '../policy/layer1-types.js';
import { asBuffer, asDate, asNullableString, asString, type Database, type Row } from './db.js';

export interface IdentityCacheOptions {
  maxStalenessMs?: number;
  /** Entries kept at most; the oldest go first. */
  maxEntries?: number;
}

interface Cached<T> {
  value: T;
  at: number;
}

interface UserRow extends Row {
  id: unknown;
  role: unknown;
  email: unknown;
  grants: unknown;
}

const PRINCIPAL_SQL = `
  SELECT u.id, u.role, u.email,
         coalesce((SELECT jsonb_object_agg(s.service, s.tools)
                     FROM (SELECT g.service, jsonb_agg(g.tool ORDER BY g.tool) AS tools
                             FROM grants g WHERE g.user_id = u.id GROUP BY g.service) AS s), '{}'::jsonb) AS grants`;

function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v);
}

function toPrincipal(r: UserRow): Principal | null {
  if (!isRole(r.role)) return null;
  const grants: Record<string, string[]> = {};
  if (typeof r.grants === 'object' && r.grants !== null) {
    for (const [svc, tools] of Object.entries(r.grants as Record<string, unknown>)) {
      if (Array.isArray(tools)) grants[svc] = tools.filter((t): t is string => typeof t === 'string');
    }
  }
  const p: Principal = { id: asString(r.id), role: r.role, grants };
  const email = asNullableString(r.email);
  if (email !== null) p.email = email;
  return p;
}

function clone(p: Principal): Principal {
  const grants: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(p.grants)) grants[k] = [...v];
  return p.email === undefined
    ? { id: p.id, role: p.role, grants }
    : { id: p.id, role: p.role, grants, email: p.email };
}

export class DbIdentityStore implements IdentityStore {
  readonly #db: Database;
  readonly #ttl: number;
  readonly #max: number;
  readonly #byKey = new Map<string, Cached<ApiKeyMatch | null>>();
  readonly #byUser = new Map<string, Cached<Principal | null>>();
  #generation = 0;
  #listening = false;
  #stop: (() => Promise<void>) | null = null;
  #stopGap: (() => void) | null = null;

  constructor(db: Database, opts: IdentityCacheOptions = {}) {
    this.#db = db;
    this.#ttl = opts.maxStalenessMs ?? 5000;
    this.#max = opts.maxEntries ?? 10_000;
  }

  /** Subscribes to invalidations; until it succeeds the cache is bypassed. */
  async start(): Promise<void> {
    this.#stopGap = this.#db.onListenerGap((connected) => {
      this.invalidate();
      this.#listening = connected;
    });
    this.#stop = await this.#db.listen('mcpgw_identity', () => this.invalidate());
    this.#listening = true;
  }

  async stop(): Promise<void> {
    this.#listening = false;
    this.#stopGap?.();
    if (this.#stop) await this.#stop().catch(() => undefined);
  }

  invalidate(): void {
    this.#generation++;
    this.#byKey.clear();
    this.#byUser.clear();
  }

  #get<T>(map: Map<string, Cached<T>>, k: string): Cached<T> | undefined {
    if (!this.#listening || this.#ttl <= 0) return undefined;
    const c = map.get(k);
    if (c && Date.now() - c.at < this.#ttl) return c;
    if (c) map.delete(k);
    return undefined;
  }

  #put<T>(map: Map<string, Cached<T>>, k: string, value: T, generation: number): void {
    // An invalidation that raced with this read means the value may predate the change.
    if (!this.#listening || generation !== this.#generation) return;
    if (map.size >= this.#max) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(k, { value, at: Date.now() });
  }

  async findByApiKeyHash(hash: Buffer): Promise<ApiKeyMatch | null> {
    if (!Buffer.isBuffer(hash) || hash.length !== 32) return null;
    const k = hash.toString('hex');
    const hit = this.#get(this.#byKey, k);
    if (hit) return hit.value ? { principal: clone(hit.value.principal), keyKind: hit.value.keyKind } : null;
    const gen = this.#generation;
    const r = await this.#db.query<UserRow & { hash: unknown; kind: unknown }>(
      `${PRINCIPAL_SQL}, k.hash, k.kind
         FROM api_keys k JOIN users u ON u.id = k.user_id
        WHERE k.hash = $1 AND k.revoked_at IS NULL AND NOT u.disabled`,
      [hash],
    );
    let match: ApiKeyMatch | null = null;
    const row = r.rows[0];
    if (row && timingSafeEqual(asBuffer(row.hash), hash) && (row.kind === 'sk' || row.kind === 'ak')) {
      const principal = toPrincipal(row);
      if (principal) match = { principal, keyKind: row.kind };
    }
    this.#put(this.#byKey, k, match, gen);
    return match ? { principal: clone(match.principal), keyKind: match.keyKind } : null;
  }

  async findUser(id: string): Promise<Principal | null> {
    const hit = this.#get(this.#byUser, id);
    if (hit) return hit.value ? clone(hit.value) : null;
    const gen = this.#generation;
    const r = await this.#db.query<UserRow>(`${PRINCIPAL_SQL} FROM users u WHERE u.id = $1 AND NOT u.disabled`, [id]);
    const row = r.rows[0];
    const p = row ? toPrincipal(row) : null;
    this.#put(this.#byUser, id, p, gen);
    return p ? clone(p) : null;
  }

  // -------------------------------------------------------------------------------------------
  // Writes (CLI and admin API). Each invalidates this replica at once; others hear the NOTIFY.
  // -------------------------------------------------------------------------------------------

  async createUser(u: { id: string; role: Role; email?: string }): Promise<void> {
    await this.#db.query('INSERT INTO users (id, role, email) VALUES ($1, $2, $3)', [u.id, u.role, u.email ?? null]);
    this.invalidate();
  }

  async updateUser(id: string, change: { role?: Role; email?: string | null; disabled?: boolean }): Promise<boolean> {
    const r = await this.#db.query(
      `UPDATE users SET role = coalesce($2, role),
                        email = CASE WHEN $3::boolean THEN $4 ELSE email END,
                        disabled = coalesce($5, disabled)
        WHERE id = $1`,
      [id, change.role ?? null, change.email !== undefined, change.email ?? null, change.disabled ?? null],
    );
    this.invalidate();
    return r.rowCount > 0;
  }

  /** Removes the user, their keys and grants. */
  async deleteUser(id: string): Promise<boolean> {
    const r = await this.#db.query('DELETE FROM users WHERE id = $1', [id]);
    this.invalidate();
    return r.rowCount > 0;
  }

  async listUsers(): Promise<Principal[]> {
    const r = await this.#db.query<UserRow>(`${PRINCIPAL_SQL} FROM users u ORDER BY u.id`);
    return r.rows.map(toPrincipal).filter((p): p is Principal => p !== null);
  }

  /** Registers the SHA-256 of a key; the kind must fit the user's role. */
  async addApiKey(k: { userId: string; kind: ApiKeyKind; hash: Buffer; displayId: string }): Promise<void> {
    if (k.hash.length !== 32) throw new Error('an API key hash is 32 bytes (SHA-256)');
    const u = await this.#db.query<{ role: unknown }>('SELECT role FROM users WHERE id = $1', [k.userId]);
    const role = u.rows[0]?.role;
    if (!isRole(role)) throw new Error(`unknown user ${k.userId}`);
    if (!keyKindAllowsRole(k.kind, role)) throw new Error(`a mcpgw_${k.kind}_ key cannot belong to role ${role}`);
    await this.#db.query('INSERT INTO api_keys (hash, display_id, user_id, kind) VALUES ($1, $2, $3, $4)', [
      k.hash,
      k.displayId,
      k.userId,
      k.kind,
    ]);
    this.invalidate();
  }

  async revokeApiKey(displayId: string): Promise<boolean> {
    const r = await this.#db.query(
      'UPDATE api_keys SET revoked_at = clock_timestamp() WHERE display_id = $1 AND revoked_at IS NULL',
      [displayId],
    );
    this.invalidate();
    return r.rowCount > 0;
  }

  async listApiKeys(
    userId?: string,
  ): Promise<{ displayId: string; userId: string; kind: ApiKeyKind; createdAt: Date; revokedAt: Date | null }[]> {
    const r = await this.#db.query<{
      display_id: unknown;
      user_id: unknown;
      kind: unknown;
      created_at: unknown;
      revoked_at: unknown;
    }>(
      `SELECT display_id, user_id, kind, created_at, revoked_at FROM api_keys
        WHERE $1::text IS NULL OR user_id = $1 ORDER BY created_at, display_id`,
      [userId ?? null],
    );
    return r.rows.map((x) => ({
      displayId: asString(x.display_id),
      userId: asString(x.user_id),
      kind: x.kind === 'ak' ? 'ak' : 'sk',
      createdAt: asDate(x.created_at),
      revokedAt: x.revoked_at === null || x.revoked_at === undefined ? null : asDate(x.revoked_at),
    }));
  }

  async grant(userId: string, service: string, tool: string): Promise<void> {
    await this.#db.query('INSERT INTO grants (user_id, service, tool) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
      userId,
      service,
      tool,
    ]);
    this.invalidate();
  }

  /** Without `tool`, revokes the whole service. */
  async revokeGrant(userId: string, service: string, tool?: string): Promise<number> {
    const r = await this.#db.query(
      'DELETE FROM grants WHERE user_id = $1 AND service = $2 AND ($3::text IS NULL OR tool = $3)',
      [userId, service, tool ?? null],
    );
    this.invalidate();
    return r.rowCount;
  }
}
