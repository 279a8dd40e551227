/**
 * Audit rows of the decisions that could not be made (fail-closed denies: the database was down,
 * or the decision missed its time budget). Such a deny rolled back with its decision, so its row
 * is written on its own, and never through the pool that just failed: under overload that pool is
 * exactly what is saturated, and the rows of the denies it caused went missing.
 *
 * Rows go through `Database.queryReserved` (on PostgreSQL a connection of their own), batched, so
 * a burst of denies costs one statement per batch. A deny waits up to `waitMs` for its row to
 * commit (durable before the answer leaves, as every audited decision). When it cannot (the
 * database is down), the answer goes out anyway, fail-closed, and the row stays queued in memory
 * and is written when the database answers again; `pending` and `dropped` tell how many rows are
 * waiting and how many a full queue had to refuse. Each row is inserted at most once: its
 * decision id is unique, and a retried batch skips the rows that already landed.
 */
import type { Database } from './db.js';

export interface FallbackRow {
  decisionId: string;
  userId: string | null;
  sessionId: string | null;
  method: string;
  service: string | null;
  tool: string | null;
  reasons: string[];
  policyRevision: string | null;
  /** Never argument values or secrets. */
  detail: Record<string, unknown>;
  /**
   * When the deny was answered, by this process's clock, kept in `detail.answered_at`: the row's
   * `at` is database time as everywhere else, so it tells when the row landed, which may be later.
   */
  at: Date;
}

export interface FallbackAuditOptions {
  /** Rows kept while the database is unreachable; beyond this they are counted and logged. Default 10,000. */
  maxQueue?: number;
  /** How long a deny waits for its row to commit. Default: the database's budget. */
  waitMs?: number;
  /** Rows per INSERT. Default 500. */
  batchSize?: number;
  log?: (msg: string, err?: unknown) => void;
}

interface Queued {
  row: FallbackRow;
  done: (written: boolean) => void;
}

const INSERT = `INSERT INTO audit_log (decision_id, user_id, session_id, method, service, tool, outcome, rule,
                                       reasons, policy_revision, digest, approval_id, detail)
  SELECT x.decision_id, x.user_id, x.session_id, x.method, x.service, x.tool, 'deny', NULL,
         x.reasons, x.policy_revision, NULL, NULL, x.detail
    FROM jsonb_to_recordset($1::jsonb) AS x (decision_id text, user_id text, session_id text, method text,
                                             service text, tool text, reasons jsonb, policy_revision text,
                                             detail jsonb)
  ON CONFLICT (decision_id) DO NOTHING`;

export class FallbackAudit {
  readonly #db: Database;
  readonly #maxQueue: number;
  readonly #waitMs: number;
  readonly #batch: number;
  readonly #log: (msg: string, err?: unknown) => void;
  #queue: Queued[] = [];
  #writing: Promise<void> | null = null;
  /** The last write failed: new rows do not wait, and a timer retries. */
  #down = false;
  #retryMs = 100;
  #timer: NodeJS.Timeout | null = null;
  #dropped = 0;
  #closed = false;

  constructor(db: Database, opts: FallbackAuditOptions = {}) {
    this.#db = db;
    this.#maxQueue = opts.maxQueue ?? 10_000;
    this.#waitMs = opts.waitMs ?? db.budgetMs;
    this.#batch = opts.batchSize ?? 500;
    this.#log = opts.log ?? (() => undefined);
  }

  /** Rows waiting to be written. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Rows refused because the queue was full or the store closed. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Queues the row of a fail-closed deny. Resolves true once it is committed, false when the
   * answer has to go out first (it stays queued) or it could not be queued at all.
   */
  record(row: FallbackRow): Promise<boolean> {
    if (this.#closed || this.#queue.length >= this.#maxQueue) {
      this.#dropped++;
      // During a long outage at full rate every call lands here: the log gets the first and every 1,000th.
      if (this.#dropped === 1 || this.#dropped % 1000 === 0) {
        this.#log(
          `audit row of the fail-closed deny ${row.decisionId} is lost (${this.#dropped} so far): ${this.#closed ? 'the store is closed' : `${this.#queue.length} rows are already waiting for the database`}`,
        );
      }
      return Promise.resolve(false);
    }
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const settle = (written: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(written);
      };
      // While the database is known to be unreachable the answer does not wait for it.
      const timer = setTimeout(() => settle(false), this.#down ? 0 : this.#waitMs);
      this.#queue.push({ row, done: settle });
      if (!this.#down) this.#kick();
    });
  }

  /** Writes what is queued; resolves when the queue is empty or a write failed. */
  flush(): Promise<void> {
    this.#kick();
    return this.#writing ?? Promise.resolve();
  }

  /** Tries once more to write what is queued, then stops retrying. Rows still queued are logged. */
  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#writing) await this.#writing;
    if (this.#queue.length > 0) {
      this.#down = false;
      await this.flush();
    }
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#queue.length > 0) {
      this.#log(`${this.#queue.length} audit rows of fail-closed denies could not be written before closing`);
      for (const q of this.#queue.splice(0)) q.done(false);
    }
  }

  #kick(): void {
    if (this.#writing || this.#queue.length === 0) return;
    this.#writing = this.#drain().finally(() => {
      this.#writing = null;
      // Rows queued while the last batch was in flight.
      if (!this.#down && this.#queue.length > 0) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.slice(0, this.#batch);
      try {
        await this.#db.queryReserved(INSERT, [
          JSON.stringify(
            batch.map(({ row: r }) => ({
              decision_id: r.decisionId,
              user_id: r.userId,
              session_id: r.sessionId,
              method: r.method,
              service: r.service,
              tool: r.tool,
              reasons: r.reasons,
              policy_revision: r.policyRevision,
              detail: { ...r.detail, answered_at: r.at.toISOString() },
            })),
          ),
        ]);
      } catch (err) {
        if (!this.#down) this.#log(`audit rows of ${this.#queue.length} fail-closed denies wait for the database`, err);
        this.#down = true;
        this.#schedule();
        return;
      }
      this.#queue.splice(0, batch.length);
      for (const q of batch) q.done(true);
      if (this.#down) this.#log(`the database is back: audit rows of fail-closed denies are written again`);
      this.#down = false;
      this.#retryMs = 100;
    }
  }

  #schedule(): void {
    if (this.#timer || this.#closed) return;
    const wait = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, 5000);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#kick();
    }, wait);
    this.#timer.unref();
  }
}
