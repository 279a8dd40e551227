/**
 * Plain-SQL migrations (`migrations/NNNN_name.sql`), applied in order at start, each in its own
 * transaction and recorded in `schema_migrations`. A session-level advisory lock makes concurrent
 * starts of several processes take turns; the second finds everything applied. A file changed
 * after it was applied is refused rather than silently diverging between installations.
 *
 * The build must copy `src/state/migrations/*.sql` next to the compiled module (tsc does not).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { asNumber, type Database } from './db.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

const FILE = /^(\d{4})_([a-z0-9_]+)\.sql$/;
const LOCK = `hashtextextended('mcpgw:migrations', 0)`;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    const m = FILE.exec(file);
    if (!m) continue;
    const sql = readFileSync(join(dir, file), 'utf8');
    out.push({
      version: Number(m[1]),
      name: m[2] as string,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    });
  }
  for (let i = 1; i < out.length; i++) {
    if ((out[i] as Migration).version === (out[i - 1] as Migration).version) {
      throw new Error(`two migrations share version ${(out[i] as Migration).version}`);
    }
  }
  return out;
}

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

/** Applies what is missing; returns the versions applied by this call. */
export async function migrate(db: Database, migrations: Migration[] = loadMigrations()): Promise<number[]> {
  const s = await db.session();
  const applied: number[] = [];
  try {
    await s.query(`SELECT pg_advisory_lock(${LOCK})`);
    try {
      await s.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        checksum   text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
      const done = new Map<number, string>();
      const rows = await s.query<{ version: unknown; checksum: unknown }>(
        'SELECT version, checksum FROM schema_migrations',
      );
      for (const r of rows.rows) done.set(asNumber(r.version), String(r.checksum));
      for (const m of migrations) {
        const have = done.get(m.version);
        if (have !== undefined) {
          if (have !== m.checksum) {
            throw new MigrationError(
              `migration ${String(m.version).padStart(4, '0')}_${m.name} was changed after it was applied; add a new migration instead`,
            );
          }
          continue;
        }
        await s.exec('BEGIN');
        try {
          await s.exec(m.sql);
          await s.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
            m.version,
            m.name,
            m.checksum,
          ]);
          await s.exec('COMMIT');
        } catch (err) {
          await s.exec('ROLLBACK').catch(() => undefined);
          throw new MigrationError(
            `migration ${String(m.version).padStart(4, '0')}_${m.name} failed: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        applied.push(m.version);
      }
    } finally {
      await s.query(`SELECT pg_advisory_unlock(${LOCK})`).catch(() => undefined);
    }
  } finally {
    await s.close();
  }
  return applied;
}
