/**
 * Audit rows of the decisions that could not be made (fail-closed denies: the database was down,
 * or the decision missed its time budget). Such a deny rolled back with its decision, so its row
 * is written on its own, and never through the pool that just failed: under overload that pool is
 * exactly what is saturated, and the rows of the denies it caused went missing.
 *
 * Rows go through `Database.queryReserved` (on PostgreSQL a connection of their own), batched, so
 * a burst of denies costs one statement per batch. A deny waits up to `waitMs` for its row to
 * commit (durable before the answer leaves, as every audited decision). When it cannot (the
 * database is down, or slower than that), the row is appended to the local spool
 * (fallback-spool.ts) and fsync'd, and only then does the answer go out, fail-closed: a deny is
 * never answered before its row is in the database or on disk. The row also stays queued in memory
 * and is written when the database answers again; the spool line is then no longer needed. Spool
 * files left by a process that died are replayed at the next start, when the database comes back,
 * and by a periodic sweep. `pending`, `dropped` and `unspooled` tell how many rows are waiting, how
 * many a full queue had to refuse, and how many were answered while held in memory only. Each row
 * is inserted at most once: its decision id is unique, and a retried batch or a replayed file
 * skips the rows that already landed.
 */
import type { Database } from './db.js';
import { FallbackSpool, spoolLine, type FallbackRecord, type SpoolEntry } from './fallback-spool.js';

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
  /**
   * Directory of the crash-safe spool (normally `MCPGW_HOME/spool`); null keeps rows in memory
   * only, and a crash while the database is away loses them.
   */
  spoolDir?: string | null;
  /** Bytes of spool files this process keeps at most. Default 32 MiB. */
  spoolMaxBytes?: number;
  /** How often spool files of dead processes are looked for, besides start and recovery. Default 60 s; 0: never. */
  sweepMs?: number;
  log?: (msg: string, err?: unknown) => void;
}

interface Queued {
  record: FallbackRecord;
  /** The deny has been answered (row committed, spooled, or given up on). */
  answered: boolean;
  timer: NodeJS.Timeout | null;
  resolve: (written: boolean) => void;
  spooled: SpoolEntry | null;
}

function toRecord(r: FallbackRow): FallbackRecord {
  return {
    decision_id: r.decisionId,
    user_id: r.userId,
    session_id: r.sessionId,
    method: r.method,
    service: r.service,
    tool: r.tool,
    reasons: r.reasons,
    policy_revision: r.policyRevision,
    detail: { ...r.detail, answered_at: r.at.toISOString() },
  };
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
  #unspooled = 0;
  #closed = false;
  readonly #spool: FallbackSpool | null;
  readonly #sweepMs: number;
  #sweep: NodeJS.Timeout | null = null;
  #replaying: Promise<void> | null = null;
  #replayAgain = false;

  constructor(db: Database, opts: FallbackAuditOptions = {}) {
    this.#db = db;
    this.#maxQueue = opts.maxQueue ?? 10_000;
    this.#waitMs = opts.waitMs ?? db.budgetMs;
    this.#batch = opts.batchSize ?? 500;
    this.#log = opts.log ?? (() => undefined);
    this.#sweepMs = opts.sweepMs ?? 60_000;
    const dir = opts.spoolDir ?? null;
    this.#spool =
      dir === null
        ? null
        : new FallbackSpool({
            dir,
            log: this.#log,
            ...(opts.spoolMaxBytes !== undefined ? { maxBytes: opts.spoolMaxBytes } : {}),
          });
    if (!this.#spool) {
      this.#log(
        'no spool directory: audit rows of fail-closed denies answered while the database is away are held in memory only, and a crash loses them',
      );
    }
  }

  /**
   * Replays the spool files left by processes that died (and claimed files not yet replayed),
   * then looks for more every `sweepMs`. Failures are logged; the files stay for the next try.
   */
  async start(): Promise<void> {
    await this.replaySpool();
    if (this.#spool && this.#sweepMs > 0 && !this.#closed) {
      // A replica that died while another kept serving is found here even if no deny of this
      // process ever waited for the database.
      this.#sweep = setInterval(() => void this.replaySpool(), this.#sweepMs);
      this.#sweep.unref();
    }
  }

  /** Claims and replays the spool files of other processes; one replay runs at a time. */
  replaySpool(): Promise<void> {
    const spool = this.#spool;
    if (!spool || this.#closed) return Promise.resolve();
    if (this.#replaying) {
      this.#replayAgain = true;
      return this.#replaying;
    }
    this.#replaying = (async () => {
      do {
        this.#replayAgain = false;
        const r = await spool.replay((rows) => this.#insert(rows), this.#batch);
        if (r.files > 0) {
          this.#log(
            `replayed ${r.rows} audit rows of fail-closed denies from ${r.files} spool files in ${spool.dir}` +
              (r.torn > 0 ? ` (${r.torn} torn last lines skipped)` : ''),
          );
        }
      } while (this.#replayAgain && !this.#closed);
    })()
      .catch((err: unknown) => this.#log(`could not replay the spool in ${spool.dir}`, err))
      .finally(() => {
        this.#replaying = null;
      });
    return this.#replaying;
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
   * Rows whose deny was answered while they were held in memory only (no spool, or the spool was
   * full or failing): a crash before the database is back loses them.
   */
  get unspooled(): number {
    return this.#unspooled;
  }

  /**
   * Queues the row of a fail-closed deny. Resolves true once it is committed, false when the
   * answer has to go out first (it stays queued, and is on disk in the spool unless `unspooled`
   * counted it) or it could not be queued at all.
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
      const q: Queued = { record: toRecord(row), answered: false, timer: null, resolve, spooled: null };
      // While the database is known to be unreachable the answer does not wait for it.
      q.timer = setTimeout(() => this.#answerUncommitted(q), this.#down ? 0 : this.#waitMs);
      this.#queue.push(q);
      if (!this.#down) this.#kick();
    });
  }

  #answer(q: Queued, written: boolean): void {
    if (q.answered) return;
    q.answered = true;
    if (q.timer) clearTimeout(q.timer);
    q.timer = null;
    q.resolve(written);
  }

  /** The row did not commit in time: it goes to disk before the deny is answered. */
  #answerUncommitted(q: Queued): void {
    if (q.timer) clearTimeout(q.timer);
    q.timer = null;
    if (q.answered || q.spooled) return;
    if (!this.#spool) {
      this.#countUnspooled(q.record.decision_id, 'there is no spool');
      this.#answer(q, false);
      return;
    }
    const e = this.#spool.append(spoolLine(q.record));
    q.spooled = e;
    void e.durable.then((onDisk) => {
      if (!onDisk && !e.committed) this.#countUnspooled(q.record.decision_id, 'the spool is full or failing');
      this.#answer(q, e.committed);
    });
  }

  #countUnspooled(decisionId: string, why: string): void {
    this.#unspooled++;
    if (this.#unspooled === 1 || this.#unspooled % 1000 === 0) {
      this.#log(
        `audit row of the fail-closed deny ${decisionId} is held in memory only, ${why}: a crash before the database is back loses it (${this.#unspooled} so far)`,
      );
    }
  }

  /** Writes what is queued; resolves when the queue is empty or a write failed. */
  flush(): Promise<void> {
    this.#kick();
    return this.#writing ?? Promise.resolve();
  }

  /**
   * Tries once more to write what is queued, then stops retrying. Rows still queued are put in the
   * spool (replayed at the next start) and logged.
   */
  async close(): Promise<void> {
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = null;
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
    if (this.#replaying) await this.#replaying;
    const left = this.#queue.splice(0);
    for (const q of left) if (!q.answered && !q.spooled) this.#answerUncommitted(q);
    let kept = 0;
    if (this.#spool) kept = await this.#spool.close();
    for (const q of left) this.#answer(q, false);
    if (left.length > 0) {
      this.#log(
        `${left.length} audit rows of fail-closed denies could not be written before closing` +
          (this.#spool ? `; ${kept} of them stay in the spool at ${this.#spool.dir} for the next start` : ''),
      );
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

  async #insert(rows: FallbackRecord[]): Promise<void> {
    await this.#db.queryReserved(INSERT, [JSON.stringify(rows)]);
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.slice(0, this.#batch);
      try {
        await this.#insert(batch.map((q) => q.record));
      } catch (err) {
        if (!this.#down) this.#log(`audit rows of ${this.#queue.length} fail-closed denies wait for the database`, err);
        this.#down = true;
        // Their answers need not wait out the rest of their budget for a database known to be away.
        for (const q of this.#queue) if (!q.answered) this.#answerUncommitted(q);
        this.#schedule();
        return;
      }
      this.#queue.splice(0, batch.length);
      for (const q of batch) {
        if (q.spooled) this.#spool?.committed(q.spooled);
        this.#answer(q, true);
      }
      if (this.#down) {
        this.#log(`the database is back: audit rows of fail-closed denies are written again`);
        // Processes that died during the outage left their rows in the spool.
        void this.replaySpool();
      }
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
