/**
 * One small surface over PostgreSQL (`pg` Pool) and PGlite, so the same SQL runs on both.
 *
 * The decision path is one statement (`SELECT mcpgw_decide($1)`), autocommitted: one round trip,
 * and no transaction is ever held open across JavaScript I/O. Multi-statement transactions exist
 * only for maintenance (migrations), which run before serving starts.
 *
 * Time budgets: on PostgreSQL the pool's sessions start with `statement_timeout` and
 * `lock_timeout` equal to the budget, so the server itself abandons slow work, and a JavaScript
 * backstop catches a dead network. PGlite runs statements on this thread and cannot be interrupted,
 * so a statement that has not *started* by its deadline is dropped from the queue instead; one that
 * has started always finishes and its result is returned, so an answer never contradicts the
 * audit row that the statement committed.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import pg from 'pg';
import { PGlite, messages, protocol, types as pgliteTypes } from '@electric-sql/pglite';

export type DbKind = 'postgres' | 'pglite';
export type Row = Record<string, unknown>;

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Several statements, no parameters (migration files). */
  exec(sql: string): Promise<void>;
}

/** A connection of its own, outside the pool and its budget (migrations, the audit sealer, LISTEN). */
export interface Session extends Queryable {
  close(): Promise<void>;
  /** Called once when the connection is lost; the session is then unusable. */
  onLost(cb: (err: Error) => void): void;
}

export interface WithinOptions {
  /**
   * Prepares the statement once per connection under this name and reuses it: no parsing or
   * planning of the statement text per call. Use it only for a fixed `sql`.
   */
  name?: string;
}

export interface Database extends Queryable {
  readonly kind: DbKind;
  /** Where the data lives, without credentials. */
  readonly location: string;
  /** The default budget (ms) of `queryWithin`. */
  readonly budgetMs: number;
  /** One statement that must start (PGlite) or finish (PostgreSQL) within `budgetMs`. */
  queryWithin<R extends Row = Row>(
    sql: string,
    params?: readonly unknown[],
    opts?: WithinOptions,
  ): Promise<QueryResult<R>>;
  /**
   * One statement outside the pool that decisions use, so it still runs when that pool is
   * saturated (the audit rows of fail-closed denies): on PostgreSQL a connection of its own with a
   * timeout of `RESERVED_TIMEOUT_MS`, on PGlite the queue without a deadline.
   */
  queryReserved<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  session(): Promise<Session>;
  /** Subscribes to NOTIFY on `channel`; on PostgreSQL the listener reconnects by itself. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /**
   * Called when notifications may have been missed (the listener lost its connection and is back,
   * or is down): caches must drop what they hold.
   */
  onListenerGap(cb: (connected: boolean) => void): () => void;
  close(): Promise<void>;
}

export class StateTimeoutError extends Error {
  readonly code = 'MCPGW_TIMEOUT';
  constructor(message: string) {
    super(message);
    this.name = 'StateTimeoutError';
  }
}

export class DatabaseLockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseLockedError';
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Time limit of a statement on the reserved connection. Longer than a decision's budget: what runs
 * there is audit rows that must land, not an answer someone waits for.
 */
export const RESERVED_TIMEOUT_MS = 5000;

export interface PostgresOptions {
  connectionString: string;
  budgetMs: number;
  poolSize: number;
  /** Extra time the JavaScript backstop allows beyond the server-side budget. */
  backstopMs?: number;
  log?: (msg: string, err?: unknown) => void;
}

function describeUrl(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    return `postgres://${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return 'postgres (unparsed connection string)';
  }
}

class PgSession implements Session {
  #lost: ((err: Error) => void)[] = [];
  #dead = false;
  constructor(private readonly client: pg.Client) {
    const fail = (err: Error): void => {
      if (this.#dead) return;
      this.#dead = true;
      for (const cb of this.#lost) cb(err);
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('connection ended')));
  }
  async query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    const r = await this.client.query<R>(sql, params as unknown[] | undefined);
    return { rows: r.rows, rowCount: r.rowCount ?? r.rows.length };
  }
  async exec(sql: string): Promise<void> {
    await this.client.query(sql);
  }
  onLost(cb: (err: Error) => void): void {
    this.#lost.push(cb);
  }
  async close(): Promise<void> {
    this.#dead = true;
    await this.client.end().catch(() => undefined);
  }
}

/** LISTEN on one dedicated connection, reconnecting with backoff. */
class PgListener {
  #client: pg.Client | null = null;
  #handlers = new Map<string, Set<(payload: string) => void>>();
  #gap = new Set<(connected: boolean) => void>();
  #closed = false;
  #connecting: Promise<void> | null = null;
  #backoff = 100;
  #timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly connectionString: string,
    private readonly log: (msg: string, err?: unknown) => void,
  ) {}

  onGap(cb: (connected: boolean) => void): () => void {
    this.#gap.add(cb);
    return () => this.#gap.delete(cb);
  }

  async add(channel: string, cb: (payload: string) => void): Promise<() => Promise<void>> {
    if (!CHANNEL.test(channel)) throw new Error(`invalid channel name ${channel}`);
    let set = this.#handlers.get(channel);
    if (!set) {
      set = new Set();
      this.#handlers.set(channel, set);
    }
    set.add(cb);
    if (!this.#client) await this.#connect();
    // LISTEN is idempotent; issuing it here also covers a channel added while a connect was
    // already past its own LISTEN loop. A connection lost later re-LISTENs every channel.
    await this.#client?.query(`LISTEN ${channel}`);
    return async () => {
      set.delete(cb);
    };
  }

  #connect(): Promise<void> {
    if (this.#connecting) return this.#connecting;
    this.#connecting = (async () => {
      const client = new pg.Client({ connectionString: this.connectionString, keepAlive: true });
      let dropped = false;
      const drop = (err: Error): void => {
        if (dropped) return;
        dropped = true;
        if (this.#client === client) this.#client = null;
        client.end().catch(() => undefined);
        if (this.#closed) return;
        this.log('notification listener lost its connection; caches bypassed until it is back', err);
        for (const cb of this.#gap) cb(false);
        this.#schedule();
      };
      client.on('error', drop);
      client.on('end', () => drop(new Error('connection ended')));
      client.on('notification', (n) => {
        const hs = this.#handlers.get(n.channel);
        if (hs) for (const h of hs) h(n.payload ?? '');
      });
      try {
        await client.connect();
        for (const ch of this.#handlers.keys()) await client.query(`LISTEN ${ch}`);
      } catch (err) {
        drop(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
      this.#client = client;
      this.#backoff = 100;
      for (const cb of this.#gap) cb(true);
    })().finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }

  #schedule(): void {
    if (this.#timer || this.#closed) return;
    const wait = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, 5000);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#connect().catch(() => undefined);
    }, wait);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const c = this.#client;
    this.#client = null;
    if (c) await c.end().catch(() => undefined);
  }
}

export class PostgresDatabase implements Database {
  readonly kind = 'postgres' as const;
  readonly location: string;
  readonly budgetMs: number;
  readonly #pool: pg.Pool;
  readonly #reserved: pg.Pool;
  readonly #backstopMs: number;
  readonly #listener: PgListener;
  readonly #connectionString: string;

  constructor(opts: PostgresOptions) {
    this.location = describeUrl(opts.connectionString);
    this.budgetMs = opts.budgetMs;
    this.#connectionString = opts.connectionString;
    this.#backstopMs = opts.backstopMs ?? Math.max(250, opts.budgetMs);
    const log = opts.log ?? (() => undefined);
    this.#pool = new pg.Pool({
      connectionString: opts.connectionString,
      max: opts.poolSize,
      // Waiting for a pooled connection counts against the same budget as the statement.
      connectionTimeoutMillis: opts.budgetMs,
      statement_timeout: opts.budgetMs,
      lock_timeout: opts.budgetMs,
      idle_in_transaction_session_timeout: 10_000,
      keepAlive: true,
      application_name: 'mcpgw',
    });
    // An idle client whose server went away emits here; without a handler the process would die.
    this.#pool.on('error', (err) => log('idle database connection failed; it will be replaced', err));
    // One connection apart from the decision pool: when every pooled connection is stuck behind a
    // lock or a slow statement, the audit rows of the resulting fail-closed denies still get in.
    this.#reserved = new pg.Pool({
      connectionString: opts.connectionString,
      max: 1,
      connectionTimeoutMillis: RESERVED_TIMEOUT_MS,
      statement_timeout: RESERVED_TIMEOUT_MS,
      lock_timeout: RESERVED_TIMEOUT_MS,
      idle_in_transaction_session_timeout: 10_000,
      keepAlive: true,
      application_name: 'mcpgw-reserved',
    });
    this.#reserved.on('error', (err) => log('idle reserved database connection failed; it will be replaced', err));
    this.#listener = new PgListener(opts.connectionString, log);
  }

  async query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    const r = await this.#pool.query<R>(sql, params as unknown[] | undefined);
    return { rows: r.rows, rowCount: r.rowCount ?? r.rows.length };
  }

  async exec(sql: string): Promise<void> {
    await this.#pool.query(sql);
  }

  async queryWithin<R extends Row = Row>(
    sql: string,
    params?: readonly unknown[],
    opts?: WithinOptions,
  ): Promise<QueryResult<R>> {
    const client = await this.#pool.connect();
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const values = params as unknown[] | undefined;
    const work =
      opts?.name === undefined
        ? client.query<R>(sql, values)
        : client.query<R>({ name: opts.name, text: sql, ...(values ? { values } : {}) });
    const backstop = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new StateTimeoutError(`no answer from the database within ${this.budgetMs + this.#backstopMs} ms`));
      }, this.budgetMs + this.#backstopMs);
    });
    try {
      const r = await Promise.race([work, backstop]);
      return { rows: r.rows, rowCount: r.rowCount ?? r.rows.length };
    } finally {
      clearTimeout(timer);
      if (timedOut) {
        work.catch(() => undefined);
        // The connection's state is unknown (a reply may still arrive): never hand it out again.
        client.release(true);
      } else {
        client.release();
      }
    }
  }

  async queryReserved<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    let timer: NodeJS.Timeout | undefined;
    const work = this.#reserved.query<R>(sql, params as unknown[] | undefined);
    // A dead network never answers; pg-pool then replaces the connection on its error.
    const backstop = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new StateTimeoutError(`no answer on the reserved connection within ${2 * RESERVED_TIMEOUT_MS} ms`)),
        2 * RESERVED_TIMEOUT_MS,
      );
    });
    try {
      const r = await Promise.race([work, backstop]);
      return { rows: r.rows, rowCount: r.rowCount ?? r.rows.length };
    } finally {
      clearTimeout(timer);
      work.catch(() => undefined);
    }
  }

  async session(): Promise<Session> {
    const client = new pg.Client({
      connectionString: this.#connectionString,
      keepAlive: true,
      application_name: 'mcpgw',
    });
    await client.connect();
    return new PgSession(client);
  }

  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    return this.#listener.add(channel, onPayload);
  }

  onListenerGap(cb: (connected: boolean) => void): () => void {
    return this.#listener.onGap(cb);
  }

  async close(): Promise<void> {
    await this.#listener.close();
    await this.#pool.end();
    await this.#reserved.end();
  }
}

// ---------------------------------------------------------------------------------------------
// PGlite
// ---------------------------------------------------------------------------------------------

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An exclusive lock file holding our pid. PGlite has no postmaster to refuse a second writer, and
 * two processes on one data directory would corrupt it. A lock left by a dead process is taken
 * over (two processes doing that in the same instant could both win; documented).
 */
function acquireLockFile(path: string, dataDir: string): () => void {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    } catch {
      continue; // removed meanwhile: try again
    }
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
      throw new DatabaseLockedError(
        `the embedded database at ${dataDir} is in use by another mcpgw process (pid ${pid}${pid === process.pid ? ', this one' : ''}); ` +
          `stop it first, or set MCPGW_DATABASE_URL to a PostgreSQL server to run several processes`,
      );
    }
    try {
      unlinkSync(path);
    } catch {
      // someone else removed it
    }
  }
  throw new DatabaseLockedError(`could not take the lock file ${path}`);
}

interface PgliteMessage {
  name: string;
}

interface PgliteLike {
  query<T>(sql: string, params?: unknown[]): Promise<{ rows: T[]; affectedRows?: number }>;
  exec(sql: string): Promise<unknown>;
  execProtocol(message: Uint8Array, opts?: { syncToFs?: boolean }): Promise<{ messages: PgliteMessage[] }>;
  runExclusive<T>(fn: () => Promise<T>): Promise<T>;
  listen(channel: string, cb: (payload: string) => void): Promise<(tx?: unknown) => Promise<void>>;
  close(): Promise<void>;
}

export interface PgliteOptions {
  /** Directory of the data; null = in memory (tests). */
  dataDir: string | null;
  budgetMs: number;
}

/** Runs a named prepared statement on PGlite's connection, without queueing (see `whenFree`). */
export type PreparedRunner = <R extends Row = Row>(
  name: string,
  sql: string,
  params: readonly unknown[],
) => Promise<QueryResult<R>>;

/** The result columns of a statement prepared on PGlite: name and type. */
interface PgliteColumns {
  names: string[];
  types: number[];
}

const JSON_OIDS = new Set([114, 3802]);

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A parameter in the text format, as PGlite's own query() sends scalars and JSON text. */
function textParam(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? 't' : 'f';
  if (v instanceof Date) return v.toISOString();
  throw new TypeError(`a prepared PGlite statement takes text, numbers, booleans and dates, not ${typeof v}`);
}

export class PgliteDatabase implements Database {
  readonly kind = 'pglite' as const;
  readonly location: string;
  readonly budgetMs: number;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  #beforeQueue: (() => void) | null = null;
  readonly #prepared = new Map<string, { sql: string; columns: PgliteColumns }>();

  private constructor(
    private readonly db: PgliteLike,
    opts: PgliteOptions,
    private readonly releaseLock: () => void,
  ) {
    this.location = opts.dataDir ?? 'memory://';
    this.budgetMs = opts.budgetMs;
  }

  static async open(opts: PgliteOptions): Promise<PgliteDatabase> {
    let release = (): void => undefined;
    let db: PGlite;
    if (opts.dataDir !== null) {
      mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
      release = acquireLockFile(`${opts.dataDir.replace(/[\\/]+$/, '')}.lock`, opts.dataDir);
      try {
        db = await PGlite.create(opts.dataDir);
      } catch (err) {
        release();
        throw err;
      }
    } else {
      db = await PGlite.create();
    }
    return new PgliteDatabase(db as unknown as PgliteLike, opts, release);
  }

  /**
   * `fn` runs each time a statement is about to be queued, before it is: work it queues itself
   * (the audit write-behind's pending rows) runs first, so every statement sees it.
   */
  setBeforeQueue(fn: (() => void) | null): void {
    this.#beforeQueue = fn;
  }

  /** Runs `fn` after everything queued before it; with a deadline, drops it if it cannot start in time. */
  #enqueue<T>(fn: () => Promise<T>, deadline: number | null): Promise<T> {
    this.#beforeQueue?.();
    const start = (): Promise<T> => {
      if (this.#closed) throw new Error('database is closed');
      if (deadline !== null && Date.now() > deadline) {
        throw new StateTimeoutError(`the embedded database was busy beyond the ${this.budgetMs} ms budget`);
      }
      return fn();
    };
    const run = this.#tail.then(start, start);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async #q<R extends Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    const r = await this.db.query<R>(sql, params ? [...params] : undefined);
    return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
  }

  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#enqueue(() => this.#q<R>(sql, params), null);
  }

  queryWithin<R extends Row = Row>(
    sql: string,
    params?: readonly unknown[],
    opts?: WithinOptions,
  ): Promise<QueryResult<R>> {
    const name = opts?.name;
    return this.#enqueue(
      () => (name === undefined ? this.#q<R>(sql, params) : this.#execPrepared<R>(name, sql, params ?? [])),
      Date.now() + this.budgetMs,
    );
  }

  /**
   * A statement prepared once under `name`, queued like `query` (no deadline): for background work
   * such as the audit sealer, whose fixed statements cost more to parse and plan than to run.
   */
  queryPrepared<R extends Row = Row>(name: string, sql: string, params: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#enqueue(() => this.#execPrepared<R>(name, sql, params), null);
  }

  queryReserved<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    // One connection only: "reserved" means no deadline, so a busy queue delays the row but never drops it.
    return this.#enqueue(() => this.#q<R>(sql, params), null);
  }

  /**
   * Runs `fn` once everything queued before it has run, holding the connection until it settles:
   * the statements `fn` runs through `run` do not queue again. No deadline: `fn` is the one to
   * check those of the work it carries. It must not wait on other I/O, since every other query
   * waits for it.
   */
  whenFree<T>(fn: (run: PreparedRunner) => Promise<T>): Promise<T> {
    const run: PreparedRunner = <R extends Row>(name: string, sql: string, params: readonly unknown[]) =>
      this.#execPrepared<R>(name, sql, params);
    return this.#enqueue(() => fn(run), null);
  }

  /**
   * PGlite's query() runs Parse, Describe, Bind, Describe, Execute and Sync as six calls into the
   * Wasm module, each with its own copy and parse of the replies. A statement prepared once under
   * `name` needs one call per execution instead (Bind, Execute, Sync), and no parse or plan of the
   * text. The result is read in the text format, with PGlite's own parsers per column type.
   */
  async #execPrepared<R extends Row>(name: string, sql: string, params: readonly unknown[]): Promise<QueryResult<R>> {
    const { serialize } = protocol;
    let st = this.#prepared.get(name);
    if (st && st.sql !== sql) throw new Error(`prepared statement ${name} was prepared with another text`);
    if (!st) {
      const described = await this.db.runExclusive(() =>
        this.db.execProtocol(
          concatBytes([
            serialize.parse({ name, text: sql }),
            serialize.describe({ type: 'S', name }),
            serialize.sync(),
          ]),
          { syncToFs: false },
        ),
      );
      const rd = described.messages.find((m) => m.name === 'rowDescription') as
        { fields: { name: string; dataTypeID: number }[] } | undefined;
      st = {
        sql,
        columns: {
          names: rd?.fields.map((f) => f.name) ?? [],
          types: rd?.fields.map((f) => f.dataTypeID) ?? [],
        },
      };
      this.#prepared.set(name, st);
    }
    const { columns } = st;
    // syncToFs as PGlite's query() does outside a transaction.
    const r = await this.db.runExclusive(() =>
      this.db.execProtocol(
        concatBytes([
          serialize.bind({ statement: name, values: params.map(textParam) }),
          serialize.execute({}),
          serialize.sync(),
        ]),
        { syncToFs: true },
      ),
    );
    const rows: R[] = [];
    let rowCount = 0;
    for (const m of r.messages) {
      if (m.name === 'dataRow') {
        const fields = (m as unknown as { fields: (string | null)[] }).fields;
        const row: Row = {};
        fields.forEach((text, i) => {
          const type = columns.types[i] ?? 25;
          row[columns.names[i] ?? `?column?${i}`] =
            text === null
              ? null
              : JSON_OIDS.has(type)
                ? (JSON.parse(text) as unknown)
                : pgliteTypes.parseType(text, type);
        });
        rows.push(row as R);
      } else if (m.name === 'commandComplete') {
        const n = /(\d+)$/.exec((m as unknown as { text: string }).text);
        rowCount = n ? Number(n[1]) : rows.length;
      }
    }
    return { rows, rowCount };
  }

  exec(sql: string): Promise<void> {
    return this.#enqueue(async () => {
      await this.db.exec(sql);
    }, null);
  }

  /**
   * PGlite has one connection, so a "session" is the queue itself held until `close()`: use it
   * only before serving (migrations), never across other I/O.
   */
  async session(): Promise<Session> {
    let releaseQueue!: () => void;
    const held = new Promise<void>((resolve) => {
      releaseQueue = resolve;
    });
    await new Promise<void>((started, failed) => {
      this.#enqueue(() => {
        started();
        return held;
      }, null).catch(failed);
    });
    const q = <R extends Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> =>
      this.#q<R>(sql, params);
    return {
      query: q,
      exec: async (sql: string) => {
        await this.db.exec(sql);
      },
      onLost: () => undefined,
      close: async () => releaseQueue(),
    };
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    if (!CHANNEL.test(channel)) throw new Error(`invalid channel name ${channel}`);
    const unlisten = await this.db.listen(channel, onPayload);
    return async () => {
      if (!this.#closed) await unlisten();
    };
  }

  onListenerGap(): () => void {
    // In-process notifications cannot be lost.
    return () => undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#tail;
    this.#closed = true;
    try {
      await this.db.close();
    } finally {
      this.releaseLock();
    }
  }
}

/**
 * An error PGlite's engine returned for a statement (it rolled back; the engine still serves), as
 * opposed to the engine itself failing or being closed.
 */
export function isPgliteStatementError(err: unknown): boolean {
  return err instanceof messages.DatabaseError;
}

// ---------------------------------------------------------------------------------------------
// Row values: pg and PGlite decode some types differently (int8 as string vs number, bytea as
// Buffer vs Uint8Array); these helpers give one shape.
// ---------------------------------------------------------------------------------------------

export function asNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string' && v !== '') return Number(v);
  throw new TypeError(`expected a number, got ${typeof v}`);
}

export function asBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw new TypeError(`expected bytes, got ${typeof v}`);
}

export function asDate(v: unknown): Date {
  if (v instanceof Date) return v;
  if (typeof v === 'string' || typeof v === 'number') return new Date(v);
  throw new TypeError(`expected a timestamp, got ${typeof v}`);
}

export function asString(v: unknown): string {
  if (typeof v === 'string') return v;
  throw new TypeError(`expected a string, got ${typeof v}`);
}

export function asNullableString(v: unknown): string | null {
  return v === null || v === undefined ? null : asString(v);
}

/** The SQLSTATE of a database error, if it is one. */
export function sqlState(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const c = (err as { code: unknown }).code;
    if (typeof c === 'string') return c;
  }
  return undefined;
}
