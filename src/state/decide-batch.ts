/**
 * Group commit of decisions on PGlite.
 *
 * PGlite has one connection and runs on this thread, and most of what a decision costs there is
 * per statement and per transaction, not per decision. So decisions that arrive while the
 * connection is busy wait together, and when it frees up they run as ONE statement, one
 * transaction and one commit:
 *
 *   SELECT i, mcpgw_decide(v) FROM jsonb_array_elements($1) WITH ORDINALITY AS x(v, i)
 *
 * (decisions that only write their audit row call mcpgw_audit_allow instead, row by row).
 *
 * A decision that finds the connection idle runs at once, alone: nothing ever waits for a batch to
 * fill, and no timer runs. "Busy" needs one adaptation: PGlite runs a statement within one chain
 * of microtasks, so requests read from other sockets can never arrive during one. They arrive in
 * the same turn of the event loop, right after it; so a decision that arrives in a turn in which
 * the database already ran waits for the end of that turn (`setImmediate`, the check phase), and
 * everything the other sockets of that turn brought joins it. Under light load, requests come in
 * turns of their own and run at once.
 *
 * Why batching keeps DESIGN §7 exact:
 *
 * - The function scan calls `mcpgw_decide` once per element, in array order (arrival order). It is
 *   VOLATILE PL/pgSQL, so each of its statements takes a new snapshot and sees what the earlier
 *   decisions of the batch wrote: a batch decides like the same decisions one after another.
 * - Transaction-scoped advisory locks are re-entrant within the session, so two decisions of one
 *   batch on the same key do not block each other; they need not, since they run in sequence. Locks
 *   are still held until the commit, against other sessions (none on PGlite, but the SQL is shared).
 * - Every caller is answered only after the batch committed, and each gets its own row, matched by
 *   its ordinal, never by position in the result.
 * - A failed batch answers nobody: it rolled back as a whole, so each of its decisions runs again
 *   alone, and only the one that fails by itself fails closed. When the engine itself failed (not
 *   a statement), every decision of the batch fails closed at once.
 * - Each decision keeps its own budget: one that could not start by its deadline is dropped (a
 *   deny), as a single statement would be.
 */
import { StateTimeoutError, isPgliteStatementError, type PgliteDatabase, type PreparedRunner } from './db.js';

/** One decision; prepared once per connection under `DECIDE_STATEMENT`. */
export const DECIDE_SQL = 'SELECT mcpgw_decide($1::jsonb) AS r';
export const DECIDE_STATEMENT = 'mcpgw_decide';

/** A decision that only writes its audit row (see `isAuditOnly` in decide.ts). */
export const AUDIT_ALLOW_SQL = 'SELECT mcpgw_audit_allow($1::jsonb) AS r';
export const AUDIT_ALLOW_STATEMENT = 'mcpgw_audit_allow';

// Each element is {"a": true|false, "v": input}: "a" sends it to mcpgw_audit_allow. CASE evaluates
// only the branch it takes, row by row, in array order.
const BATCH_SQL =
  "SELECT x.i::int4 AS i, CASE WHEN (x.e->>'a')::boolean THEN mcpgw_audit_allow(x.e->'v') ELSE mcpgw_decide(x.e->'v') END AS r " +
  'FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, i)';
const BATCH_STATEMENT = 'mcpgw_decide_batch';

/** Decisions per statement at most: a bigger batch gains little and holds the thread longer. */
export const DEFAULT_GROUP_COMMIT_MAX = 64;

export interface GroupCommitStats {
  /** Statements that ran decisions (alone, batched, or again alone after a failed batch). */
  statements: number;
  /** Statements that carried more than one decision. */
  batches: number;
  /** Decisions answered from such statements. */
  batchedDecisions: number;
  largestBatch: number;
  /** Batches that failed and whose decisions ran again one by one. */
  failedBatches: number;
  /** Decisions dropped because they could not start within their budget. */
  expired: number;
  /** Turns put off to the end of an event-loop turn in which the database had run already. */
  deferred: number;
}

interface Waiter {
  /** The decision's input, JSON text. */
  input: string;
  /** It goes to mcpgw_audit_allow instead of mcpgw_decide. */
  auditOnly: boolean;
  /** Date.now() after which it may no longer start. */
  deadline: number;
  resolve: (raw: unknown) => void;
  reject: (err: unknown) => void;
}

export interface BatcherOptions {
  /** Decisions per statement at most. Default 64. */
  maxBatch?: number;
  /**
   * A decision that arrives in an event-loop turn in which the database already ran waits for the
   * end of that turn (`setImmediate`), so the requests read from the sockets in one turn share a
   * commit. Default true. False: only decisions issued before the connection's turn starts (in the
   * same chain of microtasks) share one.
   */
  sameTurn?: boolean;
}

export class DecideBatcher {
  readonly #db: PgliteDatabase;
  readonly #max: number;
  readonly #sameTurn: boolean;
  #waiting: Waiter[] = [];
  /** A turn on the connection is coming and has not started: new decisions join it. */
  #turnQueued = false;
  /** The database ran decisions in this turn of the event loop (cleared in its check phase). */
  #engaged = false;
  /** Settles when the latest turn is over. */
  #last: Promise<void> = Promise.resolve();
  readonly #stats: GroupCommitStats = {
    statements: 0,
    batches: 0,
    batchedDecisions: 0,
    largestBatch: 0,
    failedBatches: 0,
    expired: 0,
    deferred: 0,
  };

  constructor(db: PgliteDatabase, opts: BatcherOptions = {}) {
    const max = opts.maxBatch ?? DEFAULT_GROUP_COMMIT_MAX;
    if (!Number.isInteger(max) || max < 1) throw new RangeError('the group commit size must be 1 or more');
    this.#db = db;
    this.#max = max;
    this.#sameTurn = opts.sameTurn ?? true;
  }

  stats(): GroupCommitStats {
    return { ...this.#stats };
  }

  /**
   * Resolves with what `mcpgw_decide` returned for `input` once its transaction committed; rejects
   * when the decision could not start by `deadline` or failed. Never answers from a rolled-back
   * statement.
   */
  decide(input: string, deadline: number, auditOnly = false): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      this.#waiting.push({ input, auditOnly, deadline, resolve, reject });
      if (this.#turnQueued) return;
      this.#turnQueued = true;
      if (!(this.#engaged && this.#sameTurn)) {
        this.#last = this.#queueTurn();
        return;
      }
      // PGlite runs a statement within one chain of microtasks, so requests read from other
      // sockets in this turn of the event loop can never arrive "while it is busy": they arrive
      // right after. Waiting for the end of this turn lets them join; an idle database (nothing
      // ran in this turn) never gets here.
      this.#stats.deferred++;
      this.#last = new Promise<void>((done) => {
        setImmediate(() => {
          void this.#queueTurn().then(done);
        });
      });
    });
  }

  /** Settles once every decision handed over so far is answered. */
  async drain(): Promise<void> {
    // A turn that is queued always has #last pending, so this ends once no new turn came.
    for (let last = this.#last; ; last = this.#last) {
      await last;
      if (last === this.#last) return;
    }
  }

  #queueTurn(): Promise<void> {
    this.#turnQueued = true;
    let started = false;
    return this.#db
      .whenFree(async (run) => {
        started = true;
        this.#turnQueued = false;
        if (!this.#engaged) {
          this.#engaged = true;
          setImmediate(() => {
            this.#engaged = false;
          });
        }
        const taken = this.#waiting.splice(0, this.#max);
        // Those beyond the cap go to the next turn, behind whatever queued meanwhile.
        if (this.#waiting.length > 0) this.#last = this.#queueTurn();
        await this.#serve(taken, run);
      })
      .catch((err: unknown) => {
        // The turn never started (the database is closed): nobody else will serve these.
        if (started) return;
        this.#turnQueued = false;
        for (const w of this.#waiting.splice(0)) w.reject(err);
      });
  }

  /** Settles every waiter it is given; never throws. */
  async #serve(taken: Waiter[], run: PreparedRunner): Promise<void> {
    const live = taken.filter((w) => this.#startable(w));
    if (live.length === 0) return;
    const [only] = live;
    if (live.length === 1 && only) {
      await this.#alone(only, run);
      return;
    }
    let rows: { i: unknown; r: unknown }[];
    try {
      this.#stats.statements++;
      const r = await run<{ i: unknown; r: unknown }>(BATCH_STATEMENT, BATCH_SQL, [
        `[${live.map((w) => `{"a":${w.auditOnly},"v":${w.input}}`).join(',')}]`,
      ]);
      rows = r.rows;
    } catch (err) {
      if (!isPgliteStatementError(err)) {
        for (const w of live) w.reject(err);
        return;
      }
      // Rolled back as a whole: each decision again, alone, so only the one at fault fails.
      this.#stats.failedBatches++;
      for (const w of live) {
        if (this.#startable(w)) await this.#alone(w, run);
      }
      return;
    }
    this.#stats.batches++;
    this.#stats.batchedDecisions += live.length;
    this.#stats.largestBatch = Math.max(this.#stats.largestBatch, live.length);
    const out = matchRows(rows, live.length);
    if (out === null) {
      // Committed, but which answer is whose is unknown: deny them all rather than guess.
      const err = new Error(`the batched decision statement returned ${rows.length} unmatched rows for ${live.length}`);
      for (const w of live) w.reject(err);
      return;
    }
    live.forEach((w, k) => w.resolve(out[k]));
  }

  async #alone(w: Waiter, run: PreparedRunner): Promise<void> {
    try {
      this.#stats.statements++;
      const r = w.auditOnly
        ? await run<{ r: unknown }>(AUDIT_ALLOW_STATEMENT, AUDIT_ALLOW_SQL, [w.input])
        : await run<{ r: unknown }>(DECIDE_STATEMENT, DECIDE_SQL, [w.input]);
      w.resolve(r.rows[0]?.r);
    } catch (err) {
      w.reject(err);
    }
  }

  /** False (and the waiter rejected) once its deadline passed: it may not start any more. */
  #startable(w: Waiter): boolean {
    if (Date.now() <= w.deadline) return true;
    this.#stats.expired++;
    w.reject(new StateTimeoutError(`the embedded database was busy beyond the ${this.#db.budgetMs} ms budget`));
    return false;
  }
}

/** The outputs in input order, or null unless every ordinal 1..n came back exactly once. */
function matchRows(rows: readonly { i: unknown; r: unknown }[], n: number): unknown[] | null {
  if (rows.length !== n) return null;
  const out = new Array<unknown>(n);
  const seen = new Array<boolean>(n).fill(false);
  for (const row of rows) {
    const k = typeof row.i === 'number' && Number.isInteger(row.i) ? row.i - 1 : -1;
    if (k < 0 || k >= n || seen[k]) return null;
    seen[k] = true;
    out[k] = row.r;
  }
  return out;
}
