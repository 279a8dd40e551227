/**
 * Databases for the vault suites: embedded PGlite (always) and a real PostgreSQL 15 server
 * (skipped loudly without initdb/pg_ctl, failing under MCPGW_REQUIRE_ALL=1). Only the secrets
 * migration is applied, so these suites do not depend on the state of the other migrations.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { PgliteDatabase, PostgresDatabase, type Database } from '../../src/state/db.js';
import { loadMigrations, migrate } from '../../src/state/migrate.js';
import { describeWith } from '../helpers/components.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';

export type DbKind = 'pglite' | 'postgres';

export interface DbEnv {
  kind: DbKind;
  /** A fresh, migrated database, closed after the suite. */
  open(): Promise<Database>;
}

export const secretsMigrations = () => loadMigrations().filter((m) => m.name === 'secrets');

export async function migrated(db: Database): Promise<Database> {
  await migrate(db, secretsMigrations());
  return db;
}

export function describeDatabases(title: string, fn: (env: DbEnv) => void): void {
  for (const kind of ['pglite', 'postgres'] as const) {
    const body = (): void => {
      let server: PgServer | null = null;
      const opened: Database[] = [];
      if (kind === 'postgres') {
        beforeAll(async () => {
          server = await startPostgres();
        });
      }
      afterAll(async () => {
        for (const db of opened) await db.close().catch(() => undefined);
        await server?.destroy();
      });
      fn({
        kind,
        async open(): Promise<Database> {
          let db: Database;
          if (kind === 'pglite') {
            db = await PgliteDatabase.open({ dataDir: null, budgetMs: 5000 });
          } else {
            if (!server) throw new Error('no PostgreSQL server');
            db = new PostgresDatabase({ connectionString: await server.createDatabase(), budgetMs: 5000, poolSize: 4 });
          }
          opened.push(db);
          return migrated(db);
        },
      });
    };
    if (kind === 'pglite') describe(`${title} [pglite]`, body);
    else describeWith(['initdb', 'pg_ctl'], `${title} [postgres]`, body);
  }
}
