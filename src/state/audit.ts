/**
 * The audit chain. Deciding transactions insert rows unsealed, so no decision waits on another
 * for a sequence number. One sealer at a time (on PostgreSQL the holder of a session advisory lock;
 * on PGlite the only process) gives the committed rows a gap-free `seq` in the order it sees them
 * committed, and `hash = HMAC-SHA256(key, prev_hash ‖ JCS(row))`. The key lives in a file outside
 * the database, so someone who can write the database cannot forge the chain.
 *
 * `seq` itself is not hashed: moving rows around changes which hash precedes which, and that is
 * what `verifyAudit` detects (and tells apart from a modified row).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import {
  asBuffer,
  asNumber,
  asNullableString,
  asString,
  PgliteDatabase,
  type Database,
  type Queryable,
  type QueryResult,
  type Row,
  type Session,
} from './db.js';
import type { JsonValue } from '../authz/strict-json.js';
import { canonicalize } from '../util/jcs.js';

export const ZERO_HASH: Buffer = Buffer.alloc(32);

const ROW_COLUMNS = `id, seq, hash, decision_id,
  to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_text,
  user_id, session_id, method, service, tool, outcome, rule, reasons, policy_revision, digest, approval_id, detail`;

interface AuditRow {
  id: unknown;
  seq: unknown;
  hash: unknown;
  decision_id: unknown;
  at_text: unknown;
  user_id: unknown;
  session_id: unknown;
  method: unknown;
  service: unknown;
  tool: unknown;
  outcome: unknown;
  rule: unknown;
  reasons: unknown;
  policy_revision: unknown;
  digest: unknown;
  approval_id: unknown;
  detail: unknown;
  [k: string]: unknown;
}

/** The bytes a row contributes to the chain. */
export function canonicalAuditRow(r: AuditRow): string {
  return canonicalize({
    decision_id: asString(r.decision_id),
    at: asString(r.at_text),
    user_id: asNullableString(r.user_id),
    session_id: asNullableString(r.session_id),
    method: asString(r.method),
    service: asNullableString(r.service),
    tool: asNullableString(r.tool),
    outcome: asString(r.outcome),
    rule: asNullableString(r.rule),
    // jsonb columns: parsed JSON by construction.
    reasons: (r.reasons ?? []) as JsonValue,
    policy_revision: asNullableString(r.policy_revision),
    digest: asNullableString(r.digest),
    approval_id: asNullableString(r.approval_id),
    detail: (r.detail ?? null) as JsonValue,
  });
}

export function chainHash(key: Buffer, prev: Buffer, canonical: string): Buffer {
  return createHmac('sha256', key).update(prev).update(canonical, 'utf8').digest();
}

// ---------------------------------------------------------------------------------------------
// Sealing
// ---------------------------------------------------------------------------------------------

/**
 * Seals one batch through `q`; returns how many rows it sealed (0 = nothing left). With `afterId`,
 * only rows above that id are looked at (see AuditSealer on PGlite); `onLastId` gets the highest id
 * sealed.
 */
export async function sealBatch(
  q: Queryable,
  key: Buffer,
  batchSize: number,
  opts: {
    afterId?: number;
    onLastId?: (id: number) => void;
    /** Runs the batch's fixed statements prepared under a name (PGlite: 2.4–3.3 → 1.2 ms per batch of 8). */
    prepared?: (name: string, sql: string, params: readonly unknown[]) => Promise<QueryResult<Row>>;
  } = {},
): Promise<number> {
  const run = <R extends Row>(name: string, sql: string, params: readonly unknown[]): Promise<QueryResult<R>> =>
    (opts.prepared ? opts.prepared(name, sql, params) : q.query<R>(sql, params)) as Promise<QueryResult<R>>;
  const head = await run<{ seq: unknown; hash: unknown }>(
    'mcpgw_seal_head',
    'SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1',
    [],
  );
  const rows = await run<AuditRow>(
    'mcpgw_seal_rows',
    `SELECT ${ROW_COLUMNS} FROM audit_log WHERE seq IS NULL AND id > $2 ORDER BY id LIMIT $1`,
    [batchSize, opts.afterId ?? 0],
  );
  if (rows.rows.length === 0) return 0;
  const headRow = head.rows[0];
  const headSeq = headRow ? asNumber(headRow.seq) : 0;
  let prev = headRow ? asBuffer(headRow.hash) : ZERO_HASH;
  const out: [string, string][] = [];
  for (const r of rows.rows) {
    prev = chainHash(key, prev, canonicalAuditRow(r));
    out.push([String(r.id), prev.toString('hex')]);
  }
  await run('mcpgw_seal', 'SELECT mcpgw_seal($1::bigint, $2::jsonb)', [headSeq, JSON.stringify(out)]);
  const last = rows.rows[rows.rows.length - 1];
  if (last) opts.onLastId?.(asNumber(last.id));
  return out.length;
}

export interface SealerOptions {
  intervalMs?: number;
  batchSize?: number;
  /** How often a non-leader replica tries to become the sealer. */
  leaderRetryMs?: number;
  /** PGlite: VACUUM the audit table after sealing this many rows (it has no autovacuum). */
  vacuumEveryRows?: number;
  log?: (msg: string, err?: unknown) => void;
}

const LEADER_LOCK = `hashtextextended('mcpgw:audit-sealer', 0)`;

export class AuditSealer {
  readonly #db: Database;
  readonly #key: Buffer;
  readonly #interval: number;
  readonly #batch: number;
  readonly #leaderRetry: number;
  readonly #log: (msg: string, err?: unknown) => void;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #stopped = true;
  #leader: Session | null = null;
  #nextLeaderTry = 0;
  /**
   * PGlite only: the highest id sealed so far. Sealing updates every row once, and without
   * autovacuum the dead versions stay in the partial index of unsealed rows, so a scan from the
   * start walked every row ever sealed (2.7 ms at 5,000 rows, growing). On PGlite rows commit in id
   * order (one connection, every decision one statement), so nothing below this id can appear
   * later; it is reset to 0 after each VACUUM anyway, so one full scan per vacuum period would catch
   * a row that did.
   */
  #floor = 0;
  #sinceVacuum = 0;
  readonly #vacuumEvery: number;

  constructor(db: Database, key: Buffer, opts: SealerOptions = {}) {
    this.#db = db;
    this.#key = key;
    this.#interval = opts.intervalMs ?? 250;
    // Small batches: reading and hashing a batch holds the event loop (about 18 ms for 1,000 rows
    // on PostgreSQL, 3-10 ms for 250), and decisions wait behind it; the drain yields in between.
    // PGlite runs the SQL on this thread too (≈80-100 µs per row): 32 rows hold it ≈3 ms.
    this.#batch = opts.batchSize ?? (db.kind === 'pglite' ? 32 : 250);
    this.#leaderRetry = opts.leaderRetryMs ?? 2000;
    this.#vacuumEvery = opts.vacuumEveryRows ?? 2000;
    this.#log = opts.log ?? (() => undefined);
  }

  get isLeader(): boolean {
    return this.#db.kind === 'pglite' || this.#leader !== null;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#tick().finally(() => {
        this.#running = null;
        this.#schedule(this.#interval);
      });
    }, ms);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    try {
      const q = await this.#leaderQueryable();
      if (q) await this.#drain(q);
    } catch (err) {
      this.#log('audit sealing failed; will retry', err);
    }
  }

  async #leaderQueryable(): Promise<Queryable | null> {
    if (this.#db.kind === 'pglite') return this.#db;
    if (this.#leader) return this.#leader;
    if (Date.now() < this.#nextLeaderTry) return null;
    this.#nextLeaderTry = Date.now() + this.#leaderRetry;
    const s = await this.#db.session();
    try {
      const r = await s.query<{ ok: unknown }>(`SELECT pg_try_advisory_lock(${LEADER_LOCK}) AS ok`);
      if (r.rows[0]?.ok !== true) {
        await s.close();
        return null;
      }
    } catch (err) {
      await s.close();
      throw err;
    }
    s.onLost(() => {
      if (this.#leader === s) this.#leader = null;
    });
    this.#leader = s;
    return s;
  }

  async #drain(q: Queryable): Promise<number> {
    const pglite = this.#db.kind === 'pglite';
    let total = 0;
    for (;;) {
      const n = await this.#sealOne(q, { afterId: this.#floor, onLastId: (id) => (this.#floor = id) });
      total += n;
      if (pglite) this.#sinceVacuum += n;
      if (n < this.#batch || this.#stopped) break;
      // PGlite runs on this thread: let decisions in between batches.
      await yieldToLoop();
    }
    if (pglite && this.#sinceVacuum >= this.#vacuumEvery && !this.#stopped) {
      // A few ms per 2,000 rows; it also keeps the heap from growing by a dead version per row.
      await this.#db.query('VACUUM audit_log');
      this.#sinceVacuum = 0;
      this.#floor = 0;
    }
    return total;
  }

  /**
   * Seals everything committed so far, leader or not (the SQL refuses a batch whose head moved,
   * so this is safe beside a running leader). For `audit verify` and tests.
   */
  async sealNow(): Promise<number> {
    let total = 0;
    let conflicts = 0;
    for (;;) {
      let n: number;
      try {
        n = await this.#sealOne(this.#leader ?? this.#db);
      } catch (err) {
        // Another sealer moved the head: read the new head and go on.
        if ((err as { code?: unknown }).code === '40001' && ++conflicts < 20) continue;
        throw err;
      }
      total += n;
      if (n === 0) return total;
      await yieldToLoop();
    }
  }

  /**
   * One batch through `q`. On PGlite the batch holds the database for its three statements, so
   * nothing else seals or inserts sealed rows (the audit write-behind) between its read of the head
   * and its seal; `pglite` (the scan floor) applies there only.
   */
  #sealOne(q: Queryable, pglite: { afterId?: number; onLastId?: (id: number) => void } = {}): Promise<number> {
    const db = this.#db;
    return db instanceof PgliteDatabase
      ? db.whenFree((run) => sealBatch(db, this.#key, this.#batch, { ...pglite, prepared: run }))
      : sealBatch(q, this.#key, this.#batch);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#running) await this.#running;
    const l = this.#leader;
    this.#leader = null;
    if (l) await l.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

export type AuditIssueKind = 'deleted' | 'modified' | 'reordered' | 'unsealed';

export interface AuditIssue {
  kind: AuditIssueKind;
  /** First sequence number concerned (null for unsealed rows). */
  seq: number | null;
  /** Last sequence number of a deleted range. */
  toSeq?: number;
  decisionId?: string;
  message: string;
}

export interface AuditReport {
  ok: boolean;
  /** Sealed rows checked. */
  checked: number;
  /** The last sealed row: record it elsewhere to detect truncation of the tail later. */
  head: { seq: number; hash: string } | null;
  unsealed: number;
  issues: AuditIssue[];
}

export interface VerifyOptions {
  /** Rows still unsealed after this many seconds are reported. Default 60. */
  unsealedAfterSeconds?: number;
  chunk?: number;
  /** Stop listing issues after this many (the scan goes on). Default 1000. */
  maxIssues?: number;
}

// How far from its place a moved row is recognised as moved rather than modified.
const REORDER_WINDOW = 8;

export async function verifyAudit(q: Queryable, key: Buffer, opts: VerifyOptions = {}): Promise<AuditReport> {
  const chunk = opts.chunk ?? 500;
  const maxIssues = opts.maxIssues ?? 1000;
  const issues: AuditIssue[] = [];
  const report = (i: AuditIssue): void => {
    if (issues.length < maxIssues) issues.push(i);
  };
  let prev: Buffer = ZERO_HASH;
  let expected = 1;
  let lastSeq = 0;
  let checked = 0;
  let head: AuditReport['head'] = null;
  const behind: Buffer[] = []; // stored hashes of the rows just before the current one

  for (;;) {
    const res = await q.query<AuditRow>(`SELECT ${ROW_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`, [
      lastSeq,
      chunk + REORDER_WINDOW,
    ]);
    const rows = res.rows;
    if (rows.length === 0) break;
    const upto = rows.length > chunk ? chunk : rows.length;
    for (let i = 0; i < upto; i++) {
      const r = rows[i] as AuditRow;
      const seq = asNumber(r.seq);
      const stored = asBuffer(r.hash);
      const canonical = canonicalAuditRow(r);
      const decisionId = asString(r.decision_id);
      if (seq > expected) {
        report({
          kind: 'deleted',
          seq: expected,
          toSeq: seq - 1,
          message: `rows ${expected}..${seq - 1} are missing`,
        });
        // The hash before this row is gone with the deleted rows, so this row cannot be checked.
      } else {
        const computed = chainHash(key, prev, canonical);
        if (!timingSafeEqual(computed, stored)) {
          const candidates = [
            ZERO_HASH,
            ...behind.slice(0, -1),
            ...rows.slice(i + 1, i + 1 + REORDER_WINDOW).map((x) => asBuffer(x.hash)),
          ];
          const intact = candidates.some((c) => timingSafeEqual(chainHash(key, c, canonical), stored));
          if (!intact) {
            report({
              kind: 'modified',
              seq,
              decisionId,
              message: `row ${seq} (${decisionId}) does not match its hash: it was changed, or the row before it was removed`,
            });
          } else {
            // The row is intact but follows the wrong row. If the row after it still links to it,
            // it is in its place and a neighbour moved (reported there); otherwise it moved itself.
            const next = rows[i + 1];
            const stays =
              next !== undefined &&
              asNumber(next.seq) === seq + 1 &&
              timingSafeEqual(chainHash(key, stored, canonicalAuditRow(next)), asBuffer(next.hash));
            if (!stays) {
              report({
                kind: 'reordered',
                seq,
                decisionId,
                message: `row ${seq} (${decisionId}) is not in its original place`,
              });
            }
          }
        }
      }
      prev = stored;
      behind.push(stored);
      if (behind.length > REORDER_WINDOW) behind.shift();
      expected = seq + 1;
      lastSeq = seq;
      checked++;
      head = { seq, hash: stored.toString('hex') };
    }
    if (rows.length <= chunk) break;
    // PGlite runs on this thread: let decisions in between chunks.
    await yieldToLoop();
  }

  const after = opts.unsealedAfterSeconds ?? 60;
  const un = await q.query<{ total: unknown; stale: unknown }>(
    `SELECT count(*) AS total,
            count(*) FILTER (WHERE at < clock_timestamp() - make_interval(secs => $1::double precision)) AS stale
       FROM audit_log WHERE seq IS NULL`,
    [after],
  );
  const unsealed = asNumber(un.rows[0]?.total ?? 0);
  const stale = asNumber(un.rows[0]?.stale ?? 0);
  if (stale > 0) {
    const sample = await q.query<{ decision_id: unknown }>(
      `SELECT decision_id FROM audit_log
        WHERE seq IS NULL AND at < clock_timestamp() - make_interval(secs => $1::double precision)
        ORDER BY id LIMIT 20`,
      [after],
    );
    for (const r of sample.rows) {
      report({
        kind: 'unsealed',
        seq: null,
        decisionId: asString(r.decision_id),
        message: `row ${asString(r.decision_id)} is still unsealed after ${after} s (is a sealer running?)`,
      });
    }
    if (stale > sample.rows.length) {
      report({ kind: 'unsealed', seq: null, message: `${stale} rows in all are unsealed after ${after} s` });
    }
  }
  return { ok: issues.length === 0, checked, head, unsealed, issues };
}
