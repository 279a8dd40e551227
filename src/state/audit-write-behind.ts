/**
 * Write-behind of the audit rows of calls that only need one (PGlite only).
 *
 * A call that Layer 1 allowed and that no Layer 2 rule concerns reads and writes no state: its
 * decision is "allow" whatever the database holds, and its audit row is the only write
 * (`isAuditOnly`, `mcpgw_audit_allow`). On PGlite that one-row transaction runs on the event loop
 * before the answer can leave: 0.7 ms at 200 calls/s on the 2-core bench machine (a lone statement
 * on a core that idles between calls), most of the gateway's added latency.
 *
 * So such a row is appended to a journal file with write(2) and the call is answered at once; the
 * rows are inserted into `audit_log` shortly after, many per statement, off the answer's path.
 *
 * Nothing is lost:
 * - The line is written before the answer leaves. PGlite's own commits reach the files the same
 *   way (through the OS page cache, no fsync), so a journaled row survives what a committed row
 *   survives: a crash or SIGKILL of this process, not necessarily a power loss.
 * - Rows reach the table in the order they were journaled. Every other statement on the database
 *   queues behind the pending rows (`PgliteDatabase.setBeforeQueue`), so a query, an audit listing,
 *   a verification or a seal sees every row of a call answered before it was issued.
 * - A journal line is dropped only once its row committed: a file's lines are truncated away when
 *   every row in it is in the table, and a file that grew past `rotateBytes` is replaced by a new
 *   one and removed once its rows are in.
 * - At open, journal files left by a process that died (PGlite's lock file says no other process
 *   has the database) are replayed, idempotently (`ON CONFLICT (decision_id) DO NOTHING`), and
 *   removed once committed. A torn last line was never answered (its write did not return) and is
 *   skipped; a file with an unreadable line before the last is kept as `*.rejected` for a person.
 *
 * Fail closed: when the journal cannot be written, the queue is full (`maxQueue`) or inserting
 * failed and has not recovered, `record` refuses the row, and the caller decides through the
 * database as before (which, if the database is what fails, denies).
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { ensurePrivateDir } from '../config/keys.js';
import { canonicalAuditRow, chainHash, sealBatch, ZERO_HASH } from './audit.js';
import { asBuffer, asNumber, type PgliteDatabase, type PreparedRunner } from './db.js';

/** One audit row of an audit-only allow, as `mcpgw_audit_allow` would have written it. */
export interface WriteBehindRow {
  decision_id: string;
  /** ISO 8601: when the call was decided. */
  at: string;
  user_id: string;
  session_id: string | null;
  method: string;
  service: string;
  tool: string;
  rule: string | null;
  reasons: string[];
  policy_revision: string;
  digest: string | null;
}

// Columns and values as mcpgw_audit_allow (0080) writes them; `n` keeps the journal's order.
const INSERT_SQL =
  'INSERT INTO audit_log (decision_id, at, user_id, session_id, method, service, tool, outcome, rule, reasons, ' +
  'policy_revision, digest, approval_id) ' +
  "SELECT x.decision_id, x.at, x.user_id, x.session_id, x.method, x.service, x.tool, 'allow', x.rule, " +
  "coalesce(x.reasons, '[]'::jsonb), x.policy_revision, x.digest, NULL " +
  'FROM jsonb_to_recordset($1::jsonb) AS x(n int4, decision_id text, at timestamptz, user_id text, session_id text, ' +
  'method text, service text, tool text, rule text, reasons jsonb, policy_revision text, digest text) ' +
  'ORDER BY x.n ON CONFLICT (decision_id) DO NOTHING';
const INSERT_STATEMENT = 'mcpgw_audit_write_behind';

// The same rows, sealed as they are inserted: `seq` and `hash` continue the chain from the head
// this process knows. The insert takes place only if that head is still the newest sealed row and
// no unsealed row came after the last one this process inserted (rows of stateful decisions,
// inserted unsealed by mcpgw_decide); otherwise it inserts nothing, and those rows are sealed
// first. Rows so written are never UPDATEd by the sealer, so they leave no dead versions behind.
const SEALED_INSERT_SQL =
  'WITH ins AS (INSERT INTO audit_log (decision_id, at, user_id, session_id, method, service, tool, outcome, rule, ' +
  'reasons, policy_revision, digest, approval_id, seq, hash) ' +
  "SELECT x.decision_id, x.at, x.user_id, x.session_id, x.method, x.service, x.tool, 'allow', x.rule, " +
  "coalesce(x.reasons, '[]'::jsonb), x.policy_revision, x.digest, NULL, x.seq, decode(x.hash, 'hex') " +
  'FROM jsonb_to_recordset($1::jsonb) AS x(n int4, decision_id text, at timestamptz, user_id text, session_id text, ' +
  'method text, service text, tool text, rule text, reasons jsonb, policy_revision text, digest text, seq int8, hash text) ' +
  'WHERE NOT EXISTS (SELECT 1 FROM audit_log u WHERE u.seq IS NULL AND u.id > $2::int8) ' +
  'AND (SELECT coalesce(max(h.seq), 0) FROM audit_log h) = $3::int8 ' +
  'ORDER BY x.n RETURNING id) SELECT count(*)::int4 AS n, coalesce(max(id), 0)::int8 AS last FROM ins';
const SEALED_INSERT_STATEMENT = 'mcpgw_audit_write_behind_sealed';
// Always one row: the newest sealed row's seq and hash (null when nothing is sealed yet) and the highest id.
const HEAD_SQL =
  'SELECT h.seq, h.hash, (SELECT coalesce(max(id), 0) FROM audit_log)::int8 AS last FROM (SELECT 1) one ' +
  'LEFT JOIN (SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1) h ON true';
const HEAD_STATEMENT = 'mcpgw_audit_write_behind_head';

/** What this process knows of the chain: its newest sealed row, and the id below which no row is unsealed. */
interface ChainHead {
  seq: number;
  hash: Buffer;
  floor: number;
}

/** The row as verifyAudit reads it back (`at` as to_char(..., 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')). */
function canonicalOf(row: WriteBehindRow): string {
  return canonicalAuditRow({
    id: null,
    seq: null,
    hash: null,
    decision_id: row.decision_id,
    at_text: new Date(row.at).toISOString().replace(/\.(\d{3})Z$/, (_, ms: string) => `.${ms}000Z`),
    user_id: row.user_id,
    session_id: row.session_id,
    method: row.method,
    service: row.service,
    tool: row.tool,
    outcome: 'allow',
    rule: row.rule,
    reasons: row.reasons,
    policy_revision: row.policy_revision,
    digest: row.digest,
    approval_id: null,
    detail: null,
  });
}

const NAME = /^audit-journal\.(\d{1,10})\.([0-9a-f]{16})\.jsonl$/;

export interface WriteBehindOptions {
  /** Directory of the journal files (normally `MCPGW_HOME/spool`, mode 0700). */
  dir: string;
  /** HMAC key of the audit chain: rows are sealed as they are inserted. Without it they are inserted unsealed. */
  auditKey?: Buffer | null;
  /** Rows waiting for the table at most; beyond, `record` refuses. Default 20,000. */
  maxQueue?: number;
  /** Rows per INSERT at most. Default 256. */
  maxBatch?: number;
  /** A journal file that reaches this size is replaced by a new one. Default 4 MiB. */
  rotateBytes?: number;
  /** After a failed insert, the next try is this much later (ms). Default 1000. */
  retryMs?: number;
  /**
   * Rows are inserted once no row came for this long (ms), so the insert runs after the calls in
   * flight were answered, not in the middle of one. Default 2.
   */
  quietMs?: number;
  /** …but no row waits longer than this (ms) under a steady stream of calls. Default 20. */
  maxDelayMs?: number;
  log?: (msg: string, err?: unknown) => void;
}

interface JournalFile {
  path: string;
  fd: number | null;
  bytes: number;
  /** Rows written to it and not yet committed. */
  outstanding: number;
  retired: boolean;
}

interface Entry {
  row: WriteBehindRow;
  file: JournalFile;
}

export interface WriteBehindStats {
  /** Rows journaled and answered. */
  recorded: number;
  /** Rows inserted into the table. */
  inserted: number;
  /** INSERT statements run. */
  statements: number;
  /** Rows refused (the caller decided them through the database instead). */
  refused: number;
  /** Rows replayed from journals of dead processes at open. */
  replayed: number;
  /** Rows inserted sealed (the rest are sealed by the sealer). */
  sealed: number;
  /** Times the chain head had moved or unsealed rows came first, so the insert sealed those first. */
  resealed: number;
}

export class AuditWriteBehind {
  readonly dir: string;
  readonly #db: PgliteDatabase;
  readonly #maxQueue: number;
  readonly #maxBatch: number;
  readonly #rotateBytes: number;
  readonly #retryMs: number;
  readonly #quietMs: number;
  readonly #maxDelayMs: number;
  /** Date.now() by which the oldest waiting row must be on its way to the table. */
  #due = 0;
  readonly #log: (msg: string, err?: unknown) => void;
  #queue: Entry[] = [];
  #file: JournalFile | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** A flush is queued on the database or running. */
  #flushing: Promise<void> | null = null;
  #failing = false;
  #closed = false;
  readonly #stats: WriteBehindStats = {
    recorded: 0,
    inserted: 0,
    statements: 0,
    refused: 0,
    replayed: 0,
    sealed: 0,
    resealed: 0,
  };
  readonly #key: Buffer | null;
  /** Null until read, and after any failure. */
  #head: ChainHead | null = null;
  #busy: (() => boolean) | null = null;

  private constructor(db: PgliteDatabase, opts: WriteBehindOptions) {
    this.#db = db;
    this.#key = opts.auditKey ?? null;
    this.dir = opts.dir;
    this.#maxQueue = opts.maxQueue ?? 20_000;
    this.#maxBatch = opts.maxBatch ?? 256;
    this.#rotateBytes = opts.rotateBytes ?? 4 * 1024 * 1024;
    this.#retryMs = opts.retryMs ?? 1000;
    this.#quietMs = opts.quietMs ?? 2;
    this.#maxDelayMs = opts.maxDelayMs ?? 20;
    this.#log = opts.log ?? (() => undefined);
  }

  /** Replays the journals of dead processes, then takes rows; every later statement queues behind them. */
  static async open(db: PgliteDatabase, opts: WriteBehindOptions): Promise<AuditWriteBehind> {
    const wb = new AuditWriteBehind(db, opts);
    // Whoever can write here could plant audit rows or remove journaled ones: refused then.
    await ensurePrivateDir(opts.dir);
    await wb.#replay();
    db.setBeforeQueue(() => {
      // While inserting fails, statements go on without waiting for the rows (they stay journaled).
      if (!wb.#failing) void wb.#queueFlush();
    });
    return wb;
  }

  /**
   * `busy` says whether calls are being answered in this process: then a quiet timer that expires
   * waits a little longer (never past `maxDelayMs`), so the insert lands between calls instead of
   * adding its time to one in flight.
   */
  setBusyProbe(busy: (() => boolean) | null): void {
    this.#busy = busy;
  }

  stats(): WriteBehindStats {
    return { ...this.#stats };
  }

  /**
   * Journals `row` and queues it for the table. True: the call may be answered now. False: the row
   * was not taken (closed, full, failing, or the write failed), and the caller must decide the
   * call through the database.
   */
  record(row: WriteBehindRow): boolean {
    if (this.#closed || this.#failing || this.#queue.length >= this.#maxQueue) {
      this.#stats.refused++;
      return false;
    }
    let f: JournalFile;
    try {
      f = this.#writable();
      const buf = Buffer.from(`${JSON.stringify(row)}\n`);
      // Counted before the write: a short or failed write may still have left bytes behind.
      f.bytes += buf.length;
      let off = 0;
      while (off < buf.length) off += writeSync(f.fd as number, buf, off);
    } catch (err) {
      this.#log(`could not write the audit journal in ${this.dir}; audit-only calls go through the database`, err);
      this.#stats.refused++;
      if (this.#file) this.#retire(this.#file);
      return false;
    }
    f.outstanding++;
    this.#queue.push({ row, file: f });
    this.#stats.recorded++;
    if (this.#flushing === null) this.#arm();
    return true;
  }

  /**
   * (Re)starts the quiet timer: the insert runs once no row came for `quietMs`, or when the oldest
   * row has waited `maxDelayMs`, or when the queue holds a full batch, whichever comes first. An
   * insert holds this thread; run in the middle of a call it would add its time to that call.
   */
  #arm(): void {
    const now = Date.now();
    if (this.#timer === null) this.#due = now + this.#maxDelayMs;
    else clearTimeout(this.#timer);
    if (this.#queue.length >= this.#maxBatch || now >= this.#due) {
      this.#timer = null;
      void this.#queueFlush();
      return;
    }
    this.#timer = setTimeout(() => this.#quietEnded(), Math.min(this.#quietMs, this.#due - now));
  }

  #quietEnded(): void {
    this.#timer = null;
    const left = this.#due - Date.now();
    if (left > 0 && this.#busy?.()) {
      this.#timer = setTimeout(() => this.#quietEnded(), Math.min(this.#quietMs, left));
      return;
    }
    void this.#queueFlush();
  }

  /** Settles once every row recorded so far is in the table (or its insert failed; it stays journaled). */
  async flush(): Promise<void> {
    while (this.#queue.length > 0 && !this.#failing) await this.#queueFlush();
    if (this.#flushing) await this.#flushing;
  }

  /** Inserts what is left; files whose rows are all in are removed, the others stay for the next start. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#failing = false;
    await this.flush();
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#db.setBeforeQueue(null);
    const f = this.#file;
    if (f) this.#retire(f);
    if (this.#queue.length > 0) {
      this.#log(
        `${this.#queue.length} audit rows could not be inserted before close; they stay in the journal in ${this.dir} for the next start`,
      );
    }
  }

  /** Queues one flush on the database unless one is queued already; everything queued later waits for it. */
  #queueFlush(): Promise<void> {
    if (this.#flushing) return this.#flushing;
    if (this.#queue.length === 0 || this.#closed) return Promise.resolve();
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    let done!: () => void;
    // Set before whenFree, which enqueues (and so calls the before-queue hook) synchronously.
    this.#flushing = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.#db
      .whenFree((run) => this.#drain(run))
      .catch((err: unknown) => this.#failed(err))
      .finally(() => {
        this.#flushing = null;
        done();
        // Rows recorded while the last statement ran (on another turn) get a turn of their own.
        if (this.#queue.length > 0 && !this.#failing && !this.#closed && this.#timer === null) this.#arm();
      });
    return this.#flushing;
  }

  async #drain(run: PreparedRunner): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.slice(0, this.#maxBatch);
      try {
        if (!(this.#key && (await this.#insertSealed(run, this.#key, batch)))) {
          this.#stats.statements++;
          await run(INSERT_STATEMENT, INSERT_SQL, [recordset(batch.map((e) => e.row))]);
        }
      } catch (err) {
        this.#head = null;
        throw err;
      }
      this.#queue.splice(0, batch.length);
      this.#stats.inserted += batch.length;
      if (this.#failing) this.#log(`audit rows are inserted again; ${this.#queue.length} still waiting`);
      this.#failing = false;
      for (const e of batch) this.#committed(e.file);
    }
  }

  /**
   * Inserts `batch` sealed; false when it could not (the chain kept moving), and then nothing was
   * inserted. Unsealed rows ahead of it are sealed first, in the same turn on the database.
   */
  async #insertSealed(run: PreparedRunner, key: Buffer, batch: readonly Entry[]): Promise<boolean> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const head = this.#head ?? (await this.#sealPending(run, key));
      let prev = head.hash;
      const rows = batch.map((e, n) => {
        prev = chainHash(key, prev, canonicalOf(e.row));
        return { n, ...e.row, seq: head.seq + n + 1, hash: prev.toString('hex') };
      });
      this.#stats.statements++;
      const r = await run<{ n: unknown; last: unknown }>(SEALED_INSERT_STATEMENT, SEALED_INSERT_SQL, [
        JSON.stringify(rows),
        head.floor,
        head.seq,
      ]);
      const n = asNumber(r.rows[0]?.n ?? 0);
      if (n === batch.length) {
        this.#head = { seq: head.seq + n, hash: prev, floor: asNumber(r.rows[0]?.last ?? head.floor) };
        this.#stats.sealed += n;
        return true;
      }
      if (n !== 0) throw new Error(`the sealed audit insert wrote ${n} of ${batch.length} rows`);
      this.#head = null;
      this.#stats.resealed++;
    }
    return false;
  }

  /** Seals every unsealed row (rows of stateful decisions), then reads the head. */
  async #sealPending(run: PreparedRunner, key: Buffer): Promise<ChainHead> {
    const batchSize = 256;
    let n: number;
    do {
      // Only `prepared` runs statements: the database is held by this turn.
      n = await sealBatch(this.#db, key, batchSize, { prepared: run });
    } while (n === batchSize);
    const r = await run<{ seq: unknown; hash: unknown; last: unknown }>(HEAD_STATEMENT, HEAD_SQL, []);
    const row = r.rows[0];
    const floor = asNumber(row?.last ?? 0);
    // Nothing sealed yet, so nothing unsealed either (the rows were just sealed): the chain starts.
    if (row?.seq === null || row?.seq === undefined) return { seq: 0, hash: ZERO_HASH, floor };
    return { seq: asNumber(row.seq), hash: asBuffer(row.hash), floor };
  }

  #failed(err: unknown): void {
    if (!this.#failing) {
      this.#log(
        `could not insert ${this.#queue.length} journaled audit rows; they stay in the journal in ${this.dir}, and audit-only calls go through the database until this recovers`,
        err,
      );
    }
    this.#failing = true;
    if (this.#closed) return;
    const t = setTimeout(() => {
      if (this.#queue.length === 0) {
        this.#failing = false;
        return;
      }
      void this.#queueFlush();
    }, this.#retryMs);
    t.unref();
  }

  #writable(): JournalFile {
    const cur = this.#file;
    if (cur && cur.fd !== null && cur.bytes < this.#rotateBytes) return cur;
    if (cur) this.#retire(cur);
    const path = join(this.dir, `audit-journal.${process.pid}.${randomBytes(8).toString('hex')}.jsonl`);
    const f: JournalFile = { path, fd: openSync(path, 'ax', 0o600), bytes: 0, outstanding: 0, retired: false };
    this.#file = f;
    return f;
  }

  #committed(f: JournalFile): void {
    f.outstanding--;
    if (f.outstanding > 0) return;
    if (f.retired) {
      this.#remove(f);
    } else if (f.fd !== null && f.bytes > 0) {
      // Every line in it is in the table: start the file over instead of growing it.
      try {
        ftruncateSync(f.fd, 0);
        f.bytes = 0;
      } catch (err) {
        this.#log(`could not truncate the audit journal ${f.path}`, err);
        this.#retire(f);
      }
    }
  }

  #retire(f: JournalFile): void {
    f.retired = true;
    if (this.#file === f) this.#file = null;
    if (f.fd !== null) {
      try {
        closeSync(f.fd);
      } catch {
        // Already unusable; the rows it holds are replayed at the next start if need be.
      }
      f.fd = null;
    }
    if (f.outstanding === 0) this.#remove(f);
  }

  #remove(f: JournalFile): void {
    try {
      unlinkSync(f.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        this.#log(`could not remove the audit journal ${f.path}`, err);
    }
  }

  /** Inserts the rows of journals left by dead processes; removes each file once its rows committed. */
  async #replay(): Promise<void> {
    for (const name of readdirSync(this.dir).sort()) {
      if (!NAME.test(name)) continue;
      const path = join(this.dir, name);
      const { rows, torn, bad } = parseJournal(readFileSync(path, 'utf8'));
      if (torn) this.#log(`skipped the torn last line of the audit journal ${path} (it was never answered)`);
      for (let i = 0; i < rows.length; i += this.#maxBatch) {
        const batch = rows.slice(i, i + this.#maxBatch);
        await this.#db.queryPrepared(INSERT_STATEMENT, INSERT_SQL, [recordset(batch)]);
      }
      this.#stats.replayed += rows.length;
      if (bad > 0) {
        renameSync(path, `${path}.rejected`);
        this.#log(
          `the audit journal ${path} had ${bad} unreadable lines before its last; its ${rows.length} readable rows were inserted and the file kept as ${path}.rejected`,
        );
      } else {
        unlinkSync(path);
      }
      if (rows.length > 0)
        this.#log(`inserted ${rows.length} audit rows journaled by a process that stopped (${name})`);
    }
  }
}

/** The `$1` of INSERT_SQL: the rows as a JSON array, each with its position `n`. */
function recordset(rows: readonly WriteBehindRow[]): string {
  return JSON.stringify(rows.map((row, n) => ({ n, ...row })));
}

const text = (v: unknown): v is string => typeof v === 'string';
const textOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';

/** The rows of a journal; a last line without its newline is torn, other unreadable lines are bad. */
export function parseJournal(content: string): { rows: WriteBehindRow[]; torn: boolean; bad: number } {
  const lines = content.split('\n');
  const last = lines.pop() ?? '';
  const rows: WriteBehindRow[] = [];
  let bad = 0;
  for (const line of lines) {
    const row = parseRow(line);
    if (row) rows.push(row);
    else bad++;
  }
  return { rows, torn: last !== '', bad };
}

function parseRow(line: string): WriteBehindRow | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const reasons = o['reasons'];
  if (
    !text(o['decision_id']) ||
    o['decision_id'] === '' ||
    !text(o['at']) ||
    Number.isNaN(Date.parse(o['at'])) ||
    !text(o['user_id']) ||
    !textOrNull(o['session_id']) ||
    !text(o['method']) ||
    !text(o['service']) ||
    !text(o['tool']) ||
    !textOrNull(o['rule']) ||
    !Array.isArray(reasons) ||
    !reasons.every(text) ||
    !text(o['policy_revision']) ||
    !textOrNull(o['digest'])
  ) {
    return null;
  }
  return {
    decision_id: o['decision_id'],
    at: o['at'],
    user_id: o['user_id'],
    session_id: o['session_id'],
    method: o['method'],
    service: o['service'],
    tool: o['tool'],
    rule: o['rule'],
    reasons,
    policy_revision: o['policy_revision'],
    digest: o['digest'],
  };
}
