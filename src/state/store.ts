/**
 * The Layer 2 store: decisions, approvals, admin state, the audit chain, identities, policy
 * revisions and signing keys, over PostgreSQL or embedded PGlite.
 *
 * `decide()` never throws: anything that goes wrong (database down, time budget exceeded, a bug)
 * is a deny with the reason. The admin methods throw typed errors, since a person is waiting for
 * an explanation there, not an agent for a verdict.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { keysDir, loadOrCreateKey, mcpgwHome } from '../config/keys.js';
import type { Layer2Outcome, Layer2Request, Layer2Rules } from '../policy/layer2-types.js';
import {
  ApprovalError,
  EFFECTIVE_STATUS_SQL,
  decodeCursor,
  encodeCursor,
  toApprovalRecord,
  type ApprovalFilter,
  type ApprovalPage,
  type ApprovalRecord,
  type Decider,
} from './approvals.js';
import {
  AuditWriteBehind,
  type WriteBehindOptions,
  type WriteBehindRow,
  type WriteBehindStats,
} from './audit-write-behind.js';
import { AuditSealer, verifyAudit, type AuditReport, type SealerOptions, type VerifyOptions } from './audit.js';
import {
  PgliteDatabase,
  PostgresDatabase,
  StateTimeoutError,
  asDate,
  asNumber,
  asNullableString,
  asString,
  sqlState,
  type Database,
} from './db.js';
import {
  buildDecideInput,
  isAuditOnly,
  needsRules,
  parseDecideOutput,
  scopeKey,
  type DecideConfig,
  type DecideInput,
} from './decide.js';
import {
  AUDIT_ALLOW_SQL,
  AUDIT_ALLOW_STATEMENT,
  DECIDE_SQL,
  DECIDE_STATEMENT,
  DEFAULT_GROUP_COMMIT_MAX,
  DecideBatcher,
  type GroupCommitStats,
} from './decide-batch.js';
import { FallbackAudit } from './fallback-audit.js';
import { APPROVAL_ID_PATTERN, normalizeApprovalPrefix } from './ids.js';
import { DbIdentityStore, type IdentityCacheOptions } from './identity.js';
import { migrate } from './migrate.js';

export const DEFAULT_BUDGET_MS = 250;
export const DEFAULT_MAX_PENDING_PER_USER = 20;
export const DEFAULT_APPROVAL_TIMEOUT_S = 3600;
export const DEFAULT_CONSUME_WITHIN_S = 900;

export interface StoreOptions {
  /** PostgreSQL URL; default `MCPGW_DATABASE_URL`. Unset or empty: embedded PGlite. */
  databaseUrl?: string | null;
  /** Default `MCPGW_HOME`, else `~/.mcpgw`. */
  home?: string;
  /** PGlite data directory; default `<home>/db`; null keeps it in memory (tests). */
  pgliteDataDir?: string | null;
  /** Time budget of one decision, ms. Default 250. */
  budgetMs?: number;
  /** PostgreSQL pool size. Default 10. */
  poolSize?: number;
  /**
   * PGlite: decisions that queue while the database is busy run together as one statement and one
   * commit, at most this many (see decide-batch.ts). Default 64; 1 runs every decision alone.
   * PostgreSQL groups commits itself and ignores this.
   */
  groupCommitMax?: number;
  /**
   * PGlite: a decision arriving in an event-loop turn in which the database already ran waits for
   * the end of that turn, so requests read together share a commit (see decide-batch.ts). Default
   * true; decisions on an idle database run at once either way.
   */
  groupCommitSameTurn?: boolean;
  /**
   * Audit rows of fail-closed denies kept in memory while the database is unreachable, written
   * when it is back. Default 10,000; beyond that they are logged and counted as lost.
   */
  fallbackAuditQueue?: number;
  /**
   * Directory where those rows are fsync'd before their deny is answered, so a crash loses none;
   * replayed at open and when the database is back. Default `<home>/spool`; null: memory only.
   */
  fallbackAuditSpool?: string | null;
  /** Bytes of spool files one process keeps at most; rows beyond are counted in `unspooled`. Default 32 MiB. */
  fallbackAuditSpoolBytes?: number;
  /**
   * PGlite: the audit row of a call that Layer 1 allowed and no Layer 2 rule concerns is journaled
   * (write(2) to `<home>/spool`) and inserted after the call is answered, many rows per statement
   * (see audit-write-behind.ts). Default true when there is a spool directory; false, or
   * `fallbackAuditSpool: null`, inserts it before the answer. An object tunes it. PostgreSQL
   * ignores this.
   */
  auditWriteBehind?: boolean | Pick<WriteBehindOptions, 'quietMs' | 'maxDelayMs' | 'maxQueue' | 'maxBatch' | 'retryMs'>;
  maxPendingPerUser?: number;
  /** Settings for approvals a Layer 2 rule asks for when the winning rule gave none. */
  approvalDefaults?: Partial<DecideConfig['approvalDefaults']>;
  /** HMAC key of the audit chain; default `<home>/keys/audit.key`, created on first use. */
  auditKey?: Buffer;
  /** false: this process never seals (another one does). */
  sealer?: false | SealerOptions;
  identity?: IdentityCacheOptions;
  /** Apply migrations at open. Default true. */
  migrate?: boolean;
  logger?: Pick<Logger, 'warn'>;
  env?: NodeJS.ProcessEnv;
}

export class ForbiddenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForbiddenError';
  }
}

/** Where a scoped counter or mark applies. */
export type ScopeTarget = { userId: string } | { sessionId: string } | 'global';

export interface AuditEntry {
  decisionId: string;
  userId?: string | null;
  sessionId?: string | null;
  method: string;
  service?: string | null;
  tool?: string | null;
  outcome: 'allow' | 'deny' | 'pending';
  rule?: string | null;
  reasons: string[];
  policyRevision?: string | null;
  digest?: string | null;
  approvalId?: string | null;
  /** Never argument values or secrets. */
  detail?: Record<string, unknown> | null;
}

export interface FlagRecord {
  name: string;
  value: string;
  setBy: string;
  setAt: Date;
}

export interface TaintMark {
  flow: string;
  scope: 'user' | 'session' | 'global';
  userId: string;
  sessionId: string | null;
  setAt: Date;
  expiresAt: Date | null;
  sourceDecisionId: string;
}

export interface CounterRecord {
  rule: string;
  scopeKey: string;
  used: number;
  updatedAt: Date;
}

export interface PolicyRevisionRecord {
  id: string;
  seq: number;
  createdAt: Date;
  createdBy: string | null;
  source: string;
  compiled: unknown;
}

export interface SigningKeyRecord {
  kid: string;
  alg: string;
  publicJwk: Record<string, unknown>;
  /** Encrypted by the caller (src/identity); opaque here. */
  privateEnc: Buffer;
  status: 'active' | 'previous' | 'retired';
  createdAt: Date;
  retireAt: Date | null;
}

const approvalDecideOutput = z.object({
  error: z.string().nullable(),
  message: z.string().nullable(),
  approval: z.record(z.string(), z.unknown()).nullable(),
});

const EMPTY_RULES: Layer2Rules = { limits: {}, budgets: {}, preconditions: {}, flows: {}, duties: {} };
const RULE_HISTORY = 8;

function targetKey(t: ScopeTarget): string {
  if (t === 'global') return 'g';
  return 'userId' in t
    ? (scopeKey('user', t.userId, null) as string)
    : (scopeKey('session', '', t.sessionId) as string);
}

function requireAdmin(actor: Decider, what: string): void {
  if (actor.role !== 'admin') throw new ForbiddenError(`only an admin may ${what}`);
}

function describeFailure(err: unknown, budgetMs: number): string {
  const code = sqlState(err);
  const msg = err instanceof Error ? err.message : '';
  // pg-pool says "timeout exceeded when trying to connect" when every pooled connection is busy.
  if (err instanceof StateTimeoutError || code === '57014' || code === '55P03' || /timeout exceeded/i.test(msg)) {
    return `the state store did not decide within its ${budgetMs} ms budget`;
  }
  if (
    (code !== undefined &&
      (code.startsWith('08') || code.startsWith('57P') || code === 'ECONNREFUSED' || code === 'ETIMEDOUT')) ||
    /connect|terminat|ECONNRESET|closed/i.test(msg)
  ) {
    return 'the state store is unavailable';
  }
  return `the state store failed${code ? ` (SQLSTATE ${code})` : ''}`;
}

export class Layer2Store {
  readonly db: Database;
  readonly identity: DbIdentityStore;
  readonly #sealer: AuditSealer | null;
  readonly #auditKey: Buffer;
  readonly #cfg: DecideConfig;
  readonly #log: (msg: string, err?: unknown) => void;
  readonly #rules = new Map<string, Layer2Rules>();
  readonly #fallback: FallbackAudit;
  /** PGlite only. */
  readonly #batcher: DecideBatcher | null;
  /** PGlite only, unless turned off. */
  readonly #writeBehind: AuditWriteBehind | null;
  #approvalWaiters = new Map<string, Set<() => void>>();
  #approvalListener: Promise<unknown> | null = null;
  #closed = false;

  private constructor(
    db: Database,
    auditKey: Buffer,
    cfg: DecideConfig,
    sealer: AuditSealer | null,
    identity: DbIdentityStore,
    log: (msg: string, err?: unknown) => void,
    fallback: FallbackAudit,
    batcher: DecideBatcher | null,
    writeBehind: AuditWriteBehind | null,
  ) {
    this.db = db;
    this.#writeBehind = writeBehind;
    this.#fallback = fallback;
    this.#batcher = batcher;
    this.#auditKey = auditKey;
    this.#cfg = cfg;
    this.#sealer = sealer;
    this.identity = identity;
    this.#log = log;
  }

  static async open(opts: StoreOptions = {}): Promise<Layer2Store> {
    const env = opts.env ?? process.env;
    const home = opts.home ?? mcpgwHome(env);
    const budgetMs = opts.budgetMs ?? DEFAULT_BUDGET_MS;
    const log = (msg: string, err?: unknown): void => {
      opts.logger?.warn({ err: err instanceof Error ? { message: err.message, code: sqlState(err) } : err }, msg);
    };
    const url = opts.databaseUrl === undefined ? env['MCPGW_DATABASE_URL'] : opts.databaseUrl;
    const db: Database =
      url !== undefined && url !== null && url !== ''
        ? new PostgresDatabase({ connectionString: url, budgetMs, poolSize: opts.poolSize ?? 10, log })
        : await PgliteDatabase.open({
            dataDir: opts.pgliteDataDir === undefined ? join(home, 'db') : opts.pgliteDataDir,
            budgetMs,
          });
    try {
      if (opts.migrate !== false) await migrate(db);
      const auditKey = opts.auditKey ?? (await loadOrCreateKey(keysDir(home), 'audit.key'));
      const identity = new DbIdentityStore(db, opts.identity);
      await identity.start();
      const sealer = opts.sealer === false ? null : new AuditSealer(db, auditKey, { log, ...opts.sealer });
      const cfg: DecideConfig = {
        maxPendingPerUser: opts.maxPendingPerUser ?? DEFAULT_MAX_PENDING_PER_USER,
        approvalDefaults: {
          approvers: opts.approvalDefaults?.approvers ?? [],
          timeoutSeconds: opts.approvalDefaults?.timeoutSeconds ?? DEFAULT_APPROVAL_TIMEOUT_S,
          consumeWithinSeconds: opts.approvalDefaults?.consumeWithinSeconds ?? DEFAULT_CONSUME_WITHIN_S,
        },
      };
      const fallback = new FallbackAudit(db, {
        log,
        spoolDir: opts.fallbackAuditSpool === undefined ? join(home, 'spool') : opts.fallbackAuditSpool,
        ...(opts.fallbackAuditQueue !== undefined ? { maxQueue: opts.fallbackAuditQueue } : {}),
        ...(opts.fallbackAuditSpoolBytes !== undefined ? { spoolMaxBytes: opts.fallbackAuditSpoolBytes } : {}),
      });
      // Rows of denies answered by a process that died before the database took them.
      await fallback.start();
      const batcher =
        db instanceof PgliteDatabase
          ? new DecideBatcher(db, {
              maxBatch: opts.groupCommitMax ?? DEFAULT_GROUP_COMMIT_MAX,
              sameTurn: opts.groupCommitSameTurn ?? true,
            })
          : null;
      const spoolDir = opts.fallbackAuditSpool === undefined ? join(home, 'spool') : opts.fallbackAuditSpool;
      const writeBehind =
        db instanceof PgliteDatabase && spoolDir !== null && opts.auditWriteBehind !== false
          ? await AuditWriteBehind.open(db, {
              ...(typeof opts.auditWriteBehind === 'object' ? opts.auditWriteBehind : {}),
              dir: spoolDir,
              log,
              auditKey: opts.sealer === false ? null : auditKey,
            })
          : null;
      const store = new Layer2Store(db, auditKey, cfg, sealer, identity, log, fallback, batcher, writeBehind);
      sealer?.start();
      return store;
    } catch (err) {
      await db.close().catch(() => undefined);
      throw err;
    }
  }

  get kind(): Database['kind'] {
    return this.db.kind;
  }

  // -------------------------------------------------------------------------------------------
  // Decisions
  // -------------------------------------------------------------------------------------------

  /**
   * Makes `rules` the Layer 2 rule set of `revision`. The last few revisions are kept, so a
   * request that read the previous policy just before a swap is decided by that policy's rules.
   */
  setRules(revision: string, rules: Layer2Rules): void {
    this.#rules.delete(revision);
    this.#rules.set(revision, rules);
    while (this.#rules.size > RULE_HISTORY) {
      const oldest = this.#rules.keys().next();
      if (oldest.done) break;
      this.#rules.delete(oldest.value);
    }
  }

  /**
   * Decides one call: one statement, one transaction, the audit row included (on PGlite possibly
   * shared with other decisions waiting at the same time: see decide-batch.ts). Without `rules`,
   * the set registered for `req.policyRevision` applies.
   */
  async decide(req: Layer2Request, rules?: Layer2Rules): Promise<Layer2Outcome> {
    try {
      const set = rules ?? this.#rules.get(req.policyRevision);
      const input = buildDecideInput(req, set ?? EMPTY_RULES, this.#cfg);
      if (!set && needsRules(req)) {
        input.errors.unshift({
          rule: 'layer2',
          reason: `no Layer 2 rules are loaded for policy revision ${req.policyRevision}`,
        });
      }
      const auditOnly = isAuditOnly(input);
      if (auditOnly && this.#writeBehind?.record(writeBehindRow(input))) {
        return { outcome: 'allow', rule: input.l1.rule, reasons: input.l1.reasons };
      }
      const json = JSON.stringify(input);
      if (this.#batcher)
        return parseDecideOutput(await this.#batcher.decide(json, Date.now() + this.db.budgetMs, auditOnly));
      // Prepared once per connection: the statement text is never parsed or planned again.
      const r = auditOnly
        ? await this.db.queryWithin<{ r: unknown }>(AUDIT_ALLOW_SQL, [json], { name: AUDIT_ALLOW_STATEMENT })
        : await this.db.queryWithin<{ r: unknown }>(DECIDE_SQL, [json], { name: DECIDE_STATEMENT });
      return parseDecideOutput(r.rows[0]?.r);
    } catch (err) {
      return this.#failClosed(req, err);
    }
  }

  async #failClosed(req: Layer2Request, err: unknown): Promise<Layer2Outcome> {
    const reason = describeFailure(err, this.db.budgetMs);
    this.#log(`layer 2 decision ${req.decisionId} denied: ${reason}`, err);
    // The deciding statement rolled back, so the deny is recorded on its own, outside the pool
    // that just failed (see fallback-audit.ts).
    await this.#fallback.record({
      decisionId: req.decisionId,
      userId: req.userId,
      sessionId: req.sessionId,
      method: req.method,
      service: req.service,
      tool: req.name,
      reasons: [reason],
      policyRevision: req.policyRevision,
      detail: { failure: sqlState(err) ?? (err instanceof StateTimeoutError ? 'timeout' : 'error') },
      at: new Date(),
    });
    return { outcome: 'deny', rule: null, reasons: [reason], retryAfterSeconds: 1 };
  }

  /** How audit-only rows were written behind on PGlite; null without the write-behind. */
  writeBehindStats(): WriteBehindStats | null {
    return this.#writeBehind?.stats() ?? null;
  }

  /** See AuditWriteBehind.setBusyProbe: `busy` says whether calls are being answered in this process. */
  setBusyProbe(busy: (() => boolean) | null): void {
    this.#writeBehind?.setBusyProbe(busy);
  }

  /** Settles once the audit row of every call answered so far is in the table (or stays journaled after a failure). */
  async flushAudit(): Promise<void> {
    await this.#writeBehind?.flush();
  }

  /** How decisions shared statements on PGlite; null on PostgreSQL, which groups commits itself. */
  groupCommitStats(): GroupCommitStats | null {
    return this.#batcher?.stats() ?? null;
  }

  /**
   * Audit rows of fail-closed denies still waiting for the database, those a full queue lost, and
   * those answered while held in memory only (no spool, or it was full or failing).
   */
  fallbackAudit(): { pending: number; dropped: number; unspooled: number } {
    return { pending: this.#fallback.pending, dropped: this.#fallback.dropped, unspooled: this.#fallback.unspooled };
  }

  /** Writes the queued audit rows of fail-closed denies now (they are retried by themselves too). */
  flushFallbackAudit(): Promise<void> {
    return this.#fallback.flush();
  }

  /** Replays spool files left by dead processes now (also done at open, on recovery and every minute). */
  replayFallbackSpool(): Promise<void> {
    return this.#fallback.replaySpool();
  }

  // -------------------------------------------------------------------------------------------
  // Approvals
  // -------------------------------------------------------------------------------------------

  /** A full id, or a unique prefix of 4+ characters (with or without `ap-`, any case). */
  async resolveApprovalId(idOrPrefix: string): Promise<string> {
    if (APPROVAL_ID_PATTERN.test(idOrPrefix)) return idOrPrefix;
    const norm = normalizeApprovalPrefix(idOrPrefix);
    if (norm === null) throw new ApprovalError('invalid_id', `${JSON.stringify(idOrPrefix)} is not an approval id`);
    if (norm.length === 10) return `ap-${norm}`;
    if (norm.length < 4) throw new ApprovalError('invalid_id', 'give at least 4 characters of the approval id');
    const r = await this.db.query<{ id: unknown }>('SELECT id FROM approvals WHERE id LIKE $1 ORDER BY id LIMIT 2', [
      `ap-${norm}%`,
    ]);
    if (r.rows.length === 0) throw new ApprovalError('not_found', `no approval starts with ap-${norm}`);
    if (r.rows.length > 1)
      throw new ApprovalError('ambiguous', `more than one approval starts with ap-${norm}; give more characters`);
    return asString(r.rows[0]?.id);
  }

  async getApproval(idOrPrefix: string): Promise<ApprovalRecord> {
    const id = await this.resolveApprovalId(idOrPrefix);
    const r = await this.db.query(
      `SELECT a.*, ${EFFECTIVE_STATUS_SQL} AS effective_status FROM approvals a WHERE a.id = $1`,
      [id],
    );
    const row = r.rows[0];
    if (!row) throw new ApprovalError('not_found', `approval ${id} does not exist`);
    return toApprovalRecord(row);
  }

  async listApprovals(filter: ApprovalFilter = {}, cursor: string | null = null): Promise<ApprovalPage> {
    const limit = Math.min(500, Math.max(1, Math.floor(filter.limit ?? 50)));
    const statuses =
      filter.status === undefined ? null : Array.isArray(filter.status) ? filter.status : [filter.status];
    const after = cursor === null ? null : decodeCursor(cursor);
    const r = await this.db.query(
      `SELECT * FROM (
         SELECT a.*, ${EFFECTIVE_STATUS_SQL} AS effective_status,
                (extract(epoch FROM a.created_at) * 1000000)::bigint::text AS created_us
           FROM approvals a) AS x
        WHERE ($1::jsonb IS NULL OR x.effective_status IN (SELECT jsonb_array_elements_text($1::jsonb)))
          AND ($2::text IS NULL OR x.user_id = $2)
          AND ($3::text IS NULL OR x.service = $3)
          AND ($4::text IS NULL OR x.tool = $4)
          AND ($5::bigint IS NULL OR (x.created_us::bigint, x.id) < ($5::bigint, $6::text))
        ORDER BY x.created_us::bigint DESC, x.id DESC
        LIMIT $7`,
      [
        statuses === null ? null : JSON.stringify(statuses),
        filter.userId ?? null,
        filter.service ?? null,
        filter.tool ?? null,
        after?.[0] ?? null,
        after?.[1] ?? null,
        limit + 1,
      ],
    );
    const rows = r.rows.slice(0, limit);
    const last = rows[rows.length - 1];
    return {
      items: rows.map(toApprovalRecord),
      nextCursor:
        r.rows.length > limit && last ? encodeCursor(asString(last['created_us']), asString(last['id'])) : null,
    };
  }

  /** Approves; an admin not among the rule's approvers must pass `override` (audited). */
  approve(
    idOrPrefix: string,
    decider: Decider,
    opts: { override?: boolean; reason?: string } = {},
  ): Promise<ApprovalRecord> {
    return this.#decideApproval(idOrPrefix, decider, 'approve', opts.reason ?? '', opts.override === true);
  }

  /** Denies; identical calls are then denied until the approval's timeout has passed. */
  deny(
    idOrPrefix: string,
    decider: Decider,
    reason: string,
    opts: { override?: boolean } = {},
  ): Promise<ApprovalRecord> {
    return this.#decideApproval(idOrPrefix, decider, 'deny', reason, opts.override === true);
  }

  async #decideApproval(
    idOrPrefix: string,
    decider: Decider,
    decision: 'approve' | 'deny',
    reason: string,
    override: boolean,
  ): Promise<ApprovalRecord> {
    if (decider.role === 'agent') throw new ApprovalError('forbidden', 'an agent never decides approvals');
    const id = await this.resolveApprovalId(idOrPrefix);
    const r = await this.db.query<{ r: unknown }>('SELECT mcpgw_approval_decide($1::jsonb) AS r', [
      JSON.stringify({
        id,
        decision,
        decider: decider.id,
        role: decider.role,
        override,
        reason: reason.slice(0, 1000),
        decision_id: `adm-${randomUUID()}`,
      }),
    ]);
    const out = approvalDecideOutput.parse(r.rows[0]?.r);
    if (out.error !== null) {
      const code =
        (['not_found', 'forbidden', 'not_pending', 'expired'] as const).find((c) => c === out.error) ?? 'forbidden';
      throw new ApprovalError(code, out.message ?? code);
    }
    if (!out.approval) throw new ApprovalError('not_found', `approval ${id} does not exist`);
    return toApprovalRecord(out.approval);
  }

  /**
   * Waits until the approval is decided (or expires), at most `timeoutMs`; resolves with its
   * state then. For `approval.wait`: keep `timeoutMs` below the ext_authz timeout.
   */
  async waitForDecision(idOrPrefix: string, timeoutMs: number): Promise<ApprovalRecord> {
    const id = await this.resolveApprovalId(idOrPrefix);
    if (!this.#approvalListener) {
      this.#approvalListener = this.db
        .listen('mcpgw_approval', (payload) => {
          const ws = this.#approvalWaiters.get(payload);
          if (ws) for (const w of ws) w();
        })
        .catch((err: unknown) => {
          this.#approvalListener = null;
          this.#log('could not listen for approval decisions; polling instead', err);
        });
    }
    await this.#approvalListener;
    const deadline = Date.now() + timeoutMs;
    let wake: () => void = () => undefined;
    const ws = this.#approvalWaiters.get(id) ?? new Set();
    this.#approvalWaiters.set(id, ws);
    const waker = (): void => wake();
    ws.add(waker);
    try {
      for (;;) {
        const rec = await this.getApproval(id);
        const left = deadline - Date.now();
        if (rec.status !== 'pending' || left <= 0) return rec;
        // Poll as well: a notification can be missed while the listener reconnects.
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 1000));
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    } finally {
      ws.delete(waker);
      if (ws.size === 0) this.#approvalWaiters.delete(id);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Admin state: precondition flags, taint, counters, duty history. Every change is audited in
  // the same statement.
  // -------------------------------------------------------------------------------------------

  async #adminChange(
    actor: Decider,
    method: string,
    sql: string,
    params: unknown[],
    detail: Record<string, unknown>,
  ): Promise<number> {
    const n = params.length;
    const r = await this.db.query<{ n: unknown }>(
      `WITH changed AS (${sql})
       INSERT INTO audit_log (decision_id, user_id, method, outcome, reasons, detail)
       SELECT $${n + 1}, $${n + 2}, $${n + 3}, 'allow', '[]'::jsonb,
              $${n + 4}::jsonb || jsonb_build_object('count', (SELECT count(*) FROM changed), 'role', $${n + 5}::text)
       RETURNING (detail->>'count')::integer AS n`,
      [...params, `adm-${randomUUID()}`, actor.id, method, JSON.stringify(detail), actor.role],
    );
    return asNumber(r.rows[0]?.n ?? 0);
  }

  async setFlag(name: string, value: string, actor: Decider): Promise<void> {
    requireAdmin(actor, 'set precondition flags');
    await this.#adminChange(
      actor,
      'admin/flags.set',
      `INSERT INTO flags AS f (name, value, set_by) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_by = excluded.set_by, set_at = clock_timestamp()
       RETURNING 1`,
      [name, value, actor.id],
      { flag: name, value },
    );
  }

  async unsetFlag(name: string, actor: Decider): Promise<boolean> {
    requireAdmin(actor, 'unset precondition flags');
    return (
      (await this.#adminChange(actor, 'admin/flags.unset', 'DELETE FROM flags WHERE name = $1 RETURNING 1', [name], {
        flag: name,
      })) > 0
    );
  }

  async listFlags(): Promise<FlagRecord[]> {
    const r = await this.db.query('SELECT name, value, set_by, set_at FROM flags ORDER BY name');
    return r.rows.map((x) => ({
      name: asString(x['name']),
      value: asString(x['value']),
      setBy: asString(x['set_by']),
      setAt: asDate(x['set_at']),
    }));
  }

  /** Clears taint marks: of a user (their user- and session-scoped marks), of a session, or all. */
  async clearTaint(target: { userId: string } | { sessionId: string } | 'all', actor: Decider): Promise<number> {
    requireAdmin(actor, 'clear taint');
    if (target === 'all')
      return this.#adminChange(actor, 'admin/taint.clear', 'DELETE FROM taint RETURNING 1', [], { target: 'all' });
    if ('userId' in target) {
      return this.#adminChange(
        actor,
        'admin/taint.clear',
        'DELETE FROM taint WHERE user_id = $1 OR scope_key = $2 RETURNING 1',
        [target.userId, `u:${target.userId}`],
        {
          target: 'user',
          userId: target.userId,
        },
      );
    }
    return this.#adminChange(
      actor,
      'admin/taint.clear',
      'DELETE FROM taint WHERE scope_key = $1 RETURNING 1',
      [`s:${target.sessionId}`],
      {
        target: 'session',
        sessionId: target.sessionId,
      },
    );
  }

  /** Live marks only. */
  async listTaint(filter: { userId?: string } = {}): Promise<TaintMark[]> {
    const r = await this.db.query(
      `SELECT flow, scope_key, user_id, session_id, set_at, expires_at, source_decision FROM taint
        WHERE (expires_at IS NULL OR expires_at > clock_timestamp()) AND ($1::text IS NULL OR user_id = $1)
        ORDER BY set_at`,
      [filter.userId ?? null],
    );
    return r.rows.map((x) => {
      const key = asString(x['scope_key']);
      return {
        flow: asString(x['flow']),
        scope: key.startsWith('s:') ? 'session' : key.startsWith('u:') ? 'user' : 'global',
        userId: asString(x['user_id']),
        sessionId: asNullableString(x['session_id']),
        setAt: asDate(x['set_at']),
        expiresAt: x['expires_at'] === null ? null : asDate(x['expires_at']),
        sourceDecisionId: asString(x['source_decision']),
      };
    });
  }

  /** Resets a budget counter (for one scope, or every scope of the rule). */
  async resetBudget(rule: string, scope: ScopeTarget | 'all', actor: Decider): Promise<number> {
    requireAdmin(actor, 'reset budgets');
    const key = scope === 'all' ? null : targetKey(scope);
    return this.#adminChange(
      actor,
      'admin/budgets.reset',
      'DELETE FROM budgets WHERE rule = $1 AND ($2::text IS NULL OR scope_key = $2) RETURNING 1',
      [rule, key],
      { rule, scopeKey: key },
    );
  }

  async listBudgets(rule?: string): Promise<CounterRecord[]> {
    const r = await this.db.query(
      'SELECT rule, scope_key, used, updated_at FROM budgets WHERE $1::text IS NULL OR rule = $1 ORDER BY rule, scope_key',
      [rule ?? null],
    );
    return r.rows.map((x) => ({
      rule: asString(x['rule']),
      scopeKey: asString(x['scope_key']),
      used: asNumber(x['used']),
      updatedAt: asDate(x['updated_at']),
    }));
  }

  /** Forgets the recorded call times of a velocity limit. */
  async resetLimit(rule: string, scope: ScopeTarget | 'all', actor: Decider): Promise<number> {
    requireAdmin(actor, 'reset limits');
    const key = scope === 'all' ? null : targetKey(scope);
    return this.#adminChange(
      actor,
      'admin/limits.reset',
      'DELETE FROM velocity WHERE rule = $1 AND ($2::text IS NULL OR scope_key = $2) RETURNING 1',
      [rule, key],
      { rule, scopeKey: key },
    );
  }

  async clearDutyHistory(duty: string | 'all', actor: Decider): Promise<number> {
    requireAdmin(actor, 'clear duty history');
    return this.#adminChange(
      actor,
      'admin/duties.clear',
      `DELETE FROM duty_history WHERE $1::text = 'all' OR duty = $1 RETURNING 1`,
      [duty],
      { duty },
    );
  }

  // -------------------------------------------------------------------------------------------
  // Audit
  // -------------------------------------------------------------------------------------------

  async #insertAudit(e: AuditEntry): Promise<boolean> {
    const sql = `INSERT INTO audit_log (decision_id, user_id, session_id, method, service, tool, outcome, rule, reasons,
                                        policy_revision, digest, approval_id, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13::jsonb)
                 ON CONFLICT (decision_id) DO NOTHING`;
    const params = [
      e.decisionId,
      e.userId ?? null,
      e.sessionId ?? null,
      e.method,
      e.service ?? null,
      e.tool ?? null,
      e.outcome,
      e.rule ?? null,
      JSON.stringify(e.reasons),
      e.policyRevision ?? null,
      e.digest ?? null,
      e.approvalId ?? null,
      e.detail === undefined || e.detail === null ? null : JSON.stringify(e.detail),
    ];
    const r = await this.db.queryWithin(sql, params);
    return r.rowCount > 0;
  }

  /**
   * Records a decision made outside `decide()` (a 401, a malformed request, an admin route).
   * Resolves false when a row with this decision id exists already. Throws when the database is
   * unavailable: the caller decides whether to answer anyway.
   */
  appendAudit(entry: AuditEntry): Promise<boolean> {
    return this.#insertAudit(entry);
  }

  /** Seals every row committed so far (normally the background sealer does this). */
  async sealAudit(): Promise<number> {
    const s = this.#sealer ?? new AuditSealer(this.db, this.#auditKey);
    return s.sealNow();
  }

  verifyAudit(opts: VerifyOptions = {}): Promise<AuditReport> {
    return verifyAudit(this.db, this.#auditKey, opts);
  }

  // -------------------------------------------------------------------------------------------
  // Policy revisions and signing keys (shared by all replicas)
  // -------------------------------------------------------------------------------------------

  async putPolicyRevision(rev: {
    id: string;
    source: string;
    compiled: unknown;
    createdBy?: string | null;
  }): Promise<void> {
    await this.db.query(
      'INSERT INTO policy_revisions (id, source, compiled, created_by) VALUES ($1, $2, $3::jsonb, $4)',
      [rev.id, rev.source, JSON.stringify(rev.compiled), rev.createdBy ?? null],
    );
  }

  async getPolicyRevision(id: string): Promise<PolicyRevisionRecord | null> {
    const r = await this.db.query('SELECT * FROM policy_revisions WHERE id = $1', [id]);
    return r.rows[0] ? toRevision(r.rows[0]) : null;
  }

  async latestPolicyRevision(): Promise<PolicyRevisionRecord | null> {
    const r = await this.db.query('SELECT * FROM policy_revisions ORDER BY seq DESC LIMIT 1');
    return r.rows[0] ? toRevision(r.rows[0]) : null;
  }

  /**
   * Calls `cb(id)` when any replica (this one too) adds a revision, and `cb(null)` after the
   * listener was reconnected (notifications may have been missed: re-read the latest).
   */
  async onPolicyRevision(cb: (id: string | null) => void): Promise<() => Promise<void>> {
    const stopGap = this.db.onListenerGap((connected) => {
      if (connected) cb(null);
    });
    const stop = await this.db.listen('mcpgw_policy', (id) => cb(id));
    return async () => {
      stopGap();
      await stop();
    };
  }

  async putSigningKey(k: Omit<SigningKeyRecord, 'createdAt'>): Promise<void> {
    await this.db.query(
      'INSERT INTO signing_keys (kid, alg, public_jwk, private_enc, status, retire_at) VALUES ($1, $2, $3::jsonb, $4, $5, $6)',
      [k.kid, k.alg, JSON.stringify(k.publicJwk), k.privateEnc, k.status, k.retireAt],
    );
  }

  async updateSigningKey(
    kid: string,
    change: { status: SigningKeyRecord['status']; retireAt?: Date | null },
  ): Promise<boolean> {
    const r = await this.db.query(
      'UPDATE signing_keys SET status = $2, retire_at = CASE WHEN $3::boolean THEN $4::timestamptz ELSE retire_at END WHERE kid = $1',
      [kid, change.status, change.retireAt !== undefined, change.retireAt ?? null],
    );
    return r.rowCount > 0;
  }

  async listSigningKeys(): Promise<SigningKeyRecord[]> {
    const r = await this.db.query('SELECT * FROM signing_keys ORDER BY created_at');
    return r.rows.map((x) => ({
      kid: asString(x['kid']),
      alg: asString(x['alg']),
      publicJwk: x['public_jwk'] as Record<string, unknown>,
      privateEnc: Buffer.from(x['private_enc'] as Uint8Array),
      status: x['status'] as SigningKeyRecord['status'],
      createdAt: asDate(x['created_at']),
      retireAt: x['retire_at'] === null ? null : asDate(x['retire_at']),
    }));
  }

  // -------------------------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Decisions handed over before close get their turn on the database before it closes.
    await this.#batcher?.drain();
    await this.#writeBehind?.close();
    await this.#fallback.close();
    await this.#sealer?.stop();
    await this.identity.stop();
    await this.db.close();
  }
}

/** The row mcpgw_audit_allow would write for `input`, stamped now. */
function writeBehindRow(input: DecideInput): WriteBehindRow {
  return {
    decision_id: input.decision_id,
    at: new Date().toISOString(),
    user_id: input.user,
    session_id: input.session,
    method: input.method,
    service: input.service,
    tool: input.tool,
    rule: input.l1.rule,
    reasons: input.l1.reasons,
    policy_revision: input.revision,
    digest: input.digest,
  };
}

function toRevision(x: Record<string, unknown>): PolicyRevisionRecord {
  return {
    id: asString(x['id']),
    seq: asNumber(x['seq']),
    createdAt: asDate(x['created_at']),
    createdBy: asNullableString(x['created_by']),
    source: asString(x['source']),
    compiled: x['compiled'],
  };
}

/** Opens the store configured by the environment (`MCPGW_DATABASE_URL`, `MCPGW_HOME`). */
export function openStore(opts: StoreOptions = {}): Promise<Layer2Store> {
  return Layer2Store.open(opts);
}
