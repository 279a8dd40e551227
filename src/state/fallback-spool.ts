/**
 * A local, fsync'd journal of the audit rows of fail-closed denies that were answered before their
 * row reached the database (fallback-audit.ts). Without it those rows live only in memory while the
 * database is away, and a crash (SIGKILL, power loss) loses audit records of answered calls.
 *
 * Layout: `<dir>/fallback-audit.<host>.<pid>.<random>.jsonl`, one JSON object per line, mode 0600
 * in a 0700 directory. Every process writes files of its own, so replicas sharing a home never
 * interleave lines, and a file is only ever appended to by the process that created it.
 *
 * Lifecycle: lines are appended in group commits (everything queued in one tick: one write, one
 * fdatasync). A file is unlinked once every row in it has committed to the database. Files of
 * other processes are replayed: a replayer claims a file by renaming it to a name of its own (only
 * one rename of a name succeeds), inserts its rows idempotently, and unlinks it only after the
 * inserts committed; a crash in between leaves a file that is replayed again, harmlessly.
 *
 * Claiming a live owner's file is never unsafe, only wasteful: after each group commit the owner
 * checks that its path still names the inode it wrote to, and if not (claimed meanwhile), writes
 * every row of that file not yet in the database to a new file before any deny waiting on the
 * batch is answered. Lines that reached the old file before the rename are read by the claimer.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ensurePrivateDir } from '../config/keys.js';

/** One audit row as the fallback INSERT takes it (`jsonb_to_recordset`). Never argument values or secrets. */
export interface FallbackRecord {
  decision_id: string;
  user_id: string | null;
  session_id: string | null;
  method: string;
  service: string | null;
  tool: string | null;
  reasons: string[];
  policy_revision: string | null;
  detail: Record<string, unknown>;
}

const recordLine = z.object({
  v: z.literal(1),
  decision_id: z.string().min(1),
  user_id: z.string().nullable(),
  session_id: z.string().nullable(),
  method: z.string(),
  service: z.string().nullable(),
  tool: z.string().nullable(),
  reasons: z.array(z.string()),
  policy_revision: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()),
});

export function spoolLine(r: FallbackRecord): string {
  return `${JSON.stringify({ v: 1, ...r })}\n`;
}

/** Parses one line; null when it is not a complete, valid record. */
export function parseSpoolLine(line: string): FallbackRecord | null {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return null;
  }
  const p = recordLine.safeParse(raw);
  if (!p.success) return null;
  const { v: _v, ...rec } = p.data;
  return rec;
}

const NAME = /^fallback-audit\.([A-Za-z0-9-]{1,64})\.(\d{1,10})\.([0-9a-f]{16})\.jsonl$/;
const HOST =
  hostname()
    .replace(/[^A-Za-z0-9-]/g, '-')
    .slice(0, 64) || 'host';

/**
 * Names of spool files this process writes or is replaying, across every Spool instance: two
 * stores on one home in one process must not take each other's files for a dead process's.
 */
const ours = new Set<string>();

/** A fresh spool file name of process `pid` on this host. */
export function spoolFileName(pid: number = process.pid): string {
  return `fallback-audit.${HOST}.${pid}.${randomBytes(8).toString('hex')}.jsonl`;
}

const newName = (): string => spoolFileName();

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(dir, constants.O_RDONLY);
  } catch (err) {
    // Windows cannot open a directory; elsewhere this is a real failure.
    if (process.platform === 'win32') return;
    throw err;
  }
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let at = 0;
  while (at < buf.length) {
    const { bytesWritten } = await fh.write(buf, at, buf.length - at);
    if (bytesWritten <= 0) throw new Error('short write to the spool file');
    at += bytesWritten;
  }
}

interface SpoolFile {
  readonly name: string;
  readonly path: string;
  fh: FileHandle | null;
  bytes: number;
  /** Rows written here and not yet known to be in the database. */
  readonly outstanding: Set<SpoolEntry>;
  /** No more appends (rotated, failed or claimed); removed once `outstanding` is empty. */
  retired: boolean;
  /** Claimed by another process: the path is no longer ours to unlink. */
  gone: boolean;
  writing: boolean;
  dirSynced: boolean;
}

/** One row handed to the spool. */
export interface SpoolEntry {
  readonly line: string;
  /** Set by `committed()`: the row is in the database, the line need not survive. */
  committed: boolean;
  file: SpoolFile | null;
  /** Resolves true once the line is on disk (or the row committed first), false when it could not be written. */
  readonly durable: Promise<boolean>;
  resolve(ok: boolean): void;
}

export interface SpoolOptions {
  dir: string;
  /** Bytes of spool files this process keeps at most; rows beyond are refused. Default 32 MiB. */
  maxBytes?: number;
  /** A file that reaches this size takes no more lines. Default 1 MiB. */
  rotateBytes?: number;
  /** A file untouched this long is claimed even when its owner looks alive (pid reuse, another host). Default 10 min. */
  staleMs?: number;
  log?: (msg: string, err?: unknown) => void;
}

export interface ReplayReport {
  files: number;
  rows: number;
  /** Torn last lines skipped. */
  torn: number;
  /** Files kept aside as `*.rejected` because a line before the last was unreadable. */
  rejected: number;
  /** The insert failed: claimed files are kept and retried at the next replay. */
  failed: boolean;
}

export class FallbackSpool {
  readonly dir: string;
  readonly #maxBytes: number;
  readonly #rotateBytes: number;
  readonly #staleMs: number;
  readonly #log: (msg: string, err?: unknown) => void;
  readonly #files = new Set<SpoolFile>();
  readonly #claimed = new Set<string>();
  #current: SpoolFile | null = null;
  #bytes = 0;
  #pendingBytes = 0;
  #pending: SpoolEntry[] = [];
  #flushing: Promise<void> | null = null;
  #scheduled = false;
  #dirReady = false;
  #failing = false;
  #closed = false;

  constructor(opts: SpoolOptions) {
    this.dir = opts.dir;
    this.#maxBytes = opts.maxBytes ?? 32 * 1024 * 1024;
    this.#rotateBytes = opts.rotateBytes ?? 1024 * 1024;
    this.#staleMs = opts.staleMs ?? 10 * 60_000;
    this.#log = opts.log ?? (() => undefined);
  }

  /** Bytes in this process's spool files, written or about to be. */
  get bytes(): number {
    return this.#bytes + this.#pendingBytes;
  }

  /**
   * Queues `line` for the next group commit. The entry's `durable` resolves false at once when the
   * spool is closed or full.
   */
  append(line: string): SpoolEntry {
    let resolve: (ok: boolean) => void = () => undefined;
    const durable = new Promise<boolean>((r) => {
      resolve = r;
    });
    const entry: SpoolEntry = { line, committed: false, file: null, durable, resolve };
    const len = Buffer.byteLength(line);
    if (this.#closed || this.#bytes + this.#pendingBytes + len > this.#maxBytes) {
      resolve(false);
      return entry;
    }
    this.#pendingBytes += len;
    this.#pending.push(entry);
    if (!this.#scheduled && !this.#flushing) {
      this.#scheduled = true;
      // Every row answered in this turn of the event loop shares the write and the fsync.
      setImmediate(() => {
        this.#scheduled = false;
        this.#kick();
      });
    }
    return entry;
  }

  /** The row of `entry` is in the database: its line no longer needs to survive a crash. */
  committed(entry: SpoolEntry): void {
    entry.committed = true;
    const f = entry.file;
    if (!f) return;
    entry.file = null;
    f.outstanding.delete(entry);
    void this.#maybeRemove(f);
  }

  /**
   * Claims and replays the spool files of other processes (dead, or untouched for `staleMs`) and
   * the files this process claimed before but could not replay. `insert` must be idempotent.
   */
  async replay(insert: (rows: FallbackRecord[]) => Promise<void>, batchSize = 500): Promise<ReplayReport> {
    const report: ReplayReport = { files: 0, rows: 0, torn: 0, rejected: 0, failed: false };
    let names: string[];
    try {
      const st = await stat(this.dir);
      // Whoever can write here could plant audit rows: such a directory is not replayed.
      if (process.platform !== 'win32' && (st.mode & 0o022) !== 0) {
        this.#log(
          `the spool directory ${this.dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); its files are not replayed: run chmod 700 ${this.dir}`,
        );
        return report;
      }
      names = await readdir(this.dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return report;
      throw err;
    }
    const now = Date.now();
    for (const name of names.sort()) {
      if (this.#closed) break;
      const m = NAME.exec(name);
      if (!m || (ours.has(name) && !this.#claimed.has(name))) continue;
      let claimed = name;
      if (!this.#claimed.has(name)) {
        let st;
        try {
          st = await lstat(join(this.dir, name));
        } catch {
          continue; // claimed or removed meanwhile
        }
        if (!st.isFile()) continue;
        const [, host, pidText] = m;
        const pid = Number(pidText);
        const dead = host === HOST && (pid === process.pid || !isAlive(pid));
        if (!dead && now - st.mtimeMs < this.#staleMs) continue;
        claimed = newName();
        ours.add(claimed);
        try {
          await rename(join(this.dir, name), join(this.dir, claimed));
        } catch (err) {
          ours.delete(claimed);
          if (errnoCode(err) === 'ENOENT') continue; // another replayer won
          throw err;
        }
        this.#claimed.add(claimed);
      }
      const ok = await this.#replayFile(name, claimed, insert, batchSize, report);
      if (!ok) {
        report.failed = true;
        break;
      }
    }
    return report;
  }

  async #replayFile(
    original: string,
    name: string,
    insert: (rows: FallbackRecord[]) => Promise<void>,
    batchSize: number,
    report: ReplayReport,
  ): Promise<boolean> {
    const path = join(this.dir, name);
    let text: string;
    try {
      const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (err) {
      this.#log(`could not read the spool file ${path}; it is kept`, err);
      return true;
    }
    const parts = text.split('\n');
    const tail = parts.pop() ?? '';
    const rows: FallbackRecord[] = [];
    let bad = 0;
    for (const p of parts) {
      if (p === '') continue;
      const r = parseSpoolLine(p);
      if (r) rows.push(r);
      else bad++;
    }
    if (tail !== '') {
      const r = parseSpoolLine(tail);
      if (r) rows.push(r);
      else {
        // Cut by a crash mid-write: that batch was never fsync'd, so no deny in it was answered.
        report.torn++;
        this.#log(`spool file ${original}: skipped a torn last line (${Buffer.byteLength(tail)} bytes)`);
      }
    }
    try {
      for (let i = 0; i < rows.length; i += batchSize) await insert(rows.slice(i, i + batchSize));
    } catch (err) {
      this.#log(
        `could not replay the spool file ${original} (${rows.length} audit rows); it is kept for the next attempt`,
        err,
      );
      return false;
    }
    report.files++;
    report.rows += rows.length;
    try {
      if (bad > 0) {
        // Not a crash (only a last line can be cut): kept for a person to look at, never replayed again.
        await rename(path, `${path}.rejected`);
        report.rejected++;
        this.#log(
          `spool file ${original}: ${bad} unreadable lines before the last; ${rows.length} rows replayed, the file is kept as ${name}.rejected`,
        );
      } else {
        await unlink(path);
      }
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') {
        this.#log(`could not remove the replayed spool file ${path}`, err);
        return true;
      }
    }
    this.#claimed.delete(name);
    ours.delete(name);
    return true;
  }

  /** Finishes pending writes, closes the files; files holding rows not yet in the database stay for the next start. */
  async close(): Promise<number> {
    while (this.#flushing || this.#pending.length > 0) {
      this.#kick();
      await this.#flushing;
    }
    this.#closed = true;
    let left = 0;
    for (const f of [...this.#files]) {
      left += f.outstanding.size;
      f.retired = true;
      await this.#maybeRemove(f);
      if (this.#files.has(f)) {
        await f.fh?.close().catch(() => undefined);
        f.fh = null;
        this.#files.delete(f);
        ours.delete(f.name);
      }
    }
    for (const n of this.#claimed) ours.delete(n);
    this.#claimed.clear();
    this.#current = null;
    return left;
  }

  #kick(): void {
    if (this.#flushing || this.#pending.length === 0) return;
    this.#flushing = (async () => {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0);
        const bytes = batch.reduce((n, e) => n + Buffer.byteLength(e.line), 0);
        const ok = await this.#write(batch, 0);
        this.#pendingBytes -= bytes;
        for (const e of batch) e.resolve(ok || e.committed);
      }
    })().finally(() => {
      this.#flushing = null;
      // A line appended after the loop's last look, before this callback, would wait forever.
      if (this.#pending.length > 0) this.#kick();
      else if (this.#current) void this.#maybeRemove(this.#current);
    });
  }

  async #writable(): Promise<SpoolFile> {
    const cur = this.#current;
    if (cur && !cur.retired && cur.bytes < this.#rotateBytes) return cur;
    if (cur) this.#retire(cur);
    if (!this.#dirReady) {
      await ensurePrivateDir(this.dir);
      this.#dirReady = true;
    }
    const name = newName();
    ours.add(name);
    const path = join(this.dir, name);
    let fh: FileHandle;
    try {
      fh = await open(path, 'ax', 0o600);
    } catch (err) {
      ours.delete(name);
      throw err;
    }
    const f: SpoolFile = {
      name,
      path,
      fh,
      bytes: 0,
      outstanding: new Set(),
      retired: false,
      gone: false,
      writing: false,
      dirSynced: false,
    };
    this.#files.add(f);
    this.#current = f;
    return f;
  }

  /** Appends the lines of `batch` durably; rewrites them (and their file's rows) elsewhere if the file was claimed. */
  async #write(batch: SpoolEntry[], attempt: number): Promise<boolean> {
    const live = batch.filter((e) => !e.committed);
    if (live.length === 0) return true;
    let f: SpoolFile;
    try {
      f = await this.#writable();
    } catch (err) {
      this.#fail(`could not create a spool file in ${this.dir}`, err);
      return false;
    }
    const fh = f.fh;
    if (!fh) return false;
    const buf = Buffer.from(live.map((e) => e.line).join(''));
    f.writing = true;
    let stolen: boolean;
    try {
      // Counted before the write: a failed write may still have left part of it on disk.
      f.bytes += buf.length;
      this.#bytes += buf.length;
      await writeAll(fh, buf);
      await fh.datasync();
      if (!f.dirSynced) {
        await syncDir(this.dir);
        f.dirSynced = true;
      }
      const [at, own] = await Promise.all([stat(f.path).catch(() => null), fh.stat()]);
      stolen = at === null || at.ino !== own.ino || at.dev !== own.dev;
    } catch (err) {
      this.#fail(`could not write the spool file ${f.path}; it takes no more lines`, err);
      f.writing = false;
      this.#retire(f);
      return false;
    }
    f.writing = false;
    if (this.#failing) this.#log(`spool files in ${this.dir} are written again`);
    this.#failing = false;
    for (const e of live) {
      if (e.committed) continue;
      e.file = f;
      f.outstanding.add(e);
    }
    if (!stolen) {
      void this.#maybeRemove(f);
      return true;
    }
    // Claimed by a replayer meanwhile, which may have read the file before this batch landed.
    f.gone = true;
    const moved = [...f.outstanding];
    f.outstanding.clear();
    for (const e of moved) e.file = null;
    this.#retire(f);
    if (attempt >= 3) {
      this.#log(
        `spool files in ${this.dir} keep being claimed while being written; ${moved.length} rows are held in memory only`,
      );
      return false;
    }
    return this.#write(moved, attempt + 1);
  }

  /** Logs the first of a run of failures: during an outage every batch would repeat it. */
  #fail(msg: string, err: unknown): void {
    if (!this.#failing) this.#log(msg, err);
    this.#failing = true;
  }

  #retire(f: SpoolFile): void {
    f.retired = true;
    if (this.#current === f) this.#current = null;
    const fh = f.fh;
    f.fh = null;
    void fh?.close().catch(() => undefined);
    void this.#maybeRemove(f);
  }

  async #maybeRemove(f: SpoolFile): Promise<void> {
    if (f.outstanding.size > 0 || f.writing || !this.#files.has(f)) return;
    // The current file stays while lines are queued or being written (the writer holds it).
    if (!f.retired && (this.#pending.length > 0 || this.#flushing)) return;
    this.#files.delete(f);
    if (this.#current === f) this.#current = null;
    this.#bytes -= f.bytes;
    const fh = f.fh;
    f.fh = null;
    await fh?.close().catch(() => undefined);
    if (!f.gone) {
      try {
        await unlink(f.path);
      } catch (err) {
        // Claimed by a replayer after the last check: it inserts rows that are in the database already.
        if (errnoCode(err) !== 'ENOENT') this.#log(`could not remove the spool file ${f.path}`, err);
      }
    }
    ours.delete(f.name);
  }
}
