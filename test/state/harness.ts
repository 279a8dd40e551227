/**
 * Runs a suite against both stores: embedded PGlite (always) and a real PostgreSQL 15 server
 * started for the file (skipped loudly when initdb/pg_ctl are missing, failing under
 * MCPGW_REQUIRE_ALL=1). Also builders for Layer 1 decisions and Layer 2 requests.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import type { Layer1Decision } from '../../src/policy/layer1-types.js';
import type { ApprovalSettings, Layer2Request, Layer2Rules } from '../../src/policy/layer2-types.js';
import { Layer2Store, type StoreOptions } from '../../src/state/store.js';
import { describeWith } from '../helpers/components.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';

export type StoreKind = 'pglite' | 'postgres';

export interface StoreEnv {
  kind: StoreKind;
  /** A store on a fresh database (PostgreSQL: a new database; PGlite: a new instance). */
  open(opts?: StoreOptions): Promise<Layer2Store>;
  /** PostgreSQL only: the server, and a URL for a fresh database. */
  server(): PgServer;
  freshUrl(): Promise<string>;
  /** A temp dir removed after the suite. */
  tmp(): string;
}

export const auditKey = randomBytes(32);

export function describeStores(
  title: string,
  fn: (env: StoreEnv) => void,
  kinds: StoreKind[] = ['pglite', 'postgres'],
): void {
  for (const kind of kinds) {
    const body = (): void => {
      let server: PgServer | null = null;
      const dirs: string[] = [];
      const opened: Layer2Store[] = [];
      const tmp = (): string => {
        const d = mkdtempSync(join(tmpdir(), 'mcpgw-state-'));
        dirs.push(d);
        return d;
      };
      if (kind === 'postgres') {
        beforeAll(async () => {
          server = await startPostgres();
        });
      }
      afterAll(async () => {
        for (const s of opened) await s.close().catch(() => undefined);
        await server?.destroy();
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
      });
      const env: StoreEnv = {
        kind,
        tmp,
        server: () => {
          if (!server) throw new Error('no PostgreSQL server in this suite');
          return server;
        },
        freshUrl: () => env.server().createDatabase(),
        async open(opts: StoreOptions = {}): Promise<Layer2Store> {
          const base: StoreOptions = {
            home: tmp(),
            auditKey,
            sealer: false,
            // The suites test the decision statements; test/state/audit-write-behind.test.ts turns it on.
            auditWriteBehind: false,
            databaseUrl: kind === 'postgres' ? await env.freshUrl() : null,
            pgliteDataDir: null,
          };
          const s = await Layer2Store.open({ ...base, ...opts });
          opened.push(s);
          return s;
        },
      };
      fn(env);
    };
    if (kind === 'pglite') describe(`${title} [pglite]`, body);
    else describeWith(['initdb', 'pg_ctl'], `${title} [postgres]`, body);
  }
}

export interface L1Spec {
  outcome?: Layer1Decision['outcome'];
  rule?: string | null;
  reasons?: string[];
  labels?: string[];
  limits?: string[];
  budgets?: string[];
  preconditions?: string[];
  sources?: string[];
  sinks?: string[];
  first?: string[];
  then?: string[];
}

export function layer1(s: L1Spec = {}): Layer1Decision {
  const outcome = s.outcome ?? 'allow';
  return {
    outcome,
    code: 'rule',
    rule: s.rule === undefined ? `${outcome} rule` : s.rule,
    reasons: s.reasons ?? [`matched ${outcome} rule`],
    classification: {
      verb: null,
      hints: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
      labels: s.labels ?? [],
    },
    approval: outcome === 'require_approval' ? { approvers: [], timeout: null } : null,
    layer2: {
      limits: s.limits ?? [],
      budgets: s.budgets ?? [],
      preconditions: s.preconditions ?? [],
      flows: { sources: s.sources ?? [], sinks: s.sinks ?? [] },
      duties: { first: s.first ?? [], then: s.then ?? [] },
    },
  };
}

export interface ReqSpec extends L1Spec {
  user?: string;
  session?: string | null;
  service?: string;
  tool?: string;
  args?: Record<string, unknown>;
  approval?: Partial<ApprovalSettings> | null;
  revision?: string;
  decisionId?: string;
}

/** Inputs mcpgw_decide can only allow: no Layer 2 rule of any kind. */
export const AUDIT_ONLY: ReqSpec[] = [
  {},
  { session: null },
  { rule: null, reasons: [] },
  { reasons: ['matched "reads are fine"', 'ünïcode ✓', 'quote " and \\ backslash'] },
  { args: { to: 'a@b.c', nested: { n: 1.5, list: [1, 'x', null] } }, labels: ['scope:external'] },
  { user: 'carol@example.com', service: 'files', tool: 'read_file', revision: 'rev-9' },
];

export function request(s: ReqSpec = {}): Layer2Request {
  const l1 = layer1(s);
  const approval =
    s.approval === null || (s.approval === undefined && l1.outcome !== 'require_approval')
      ? null
      : { approvers: [], timeoutSeconds: 1800, consumeWithinSeconds: 900, ...s.approval };
  return {
    decisionId: s.decisionId ?? `dc-${randomUUID()}`,
    policyRevision: s.revision ?? 'rev-1',
    userId: s.user ?? 'alice',
    sessionId: s.session === undefined ? 'sess-1' : s.session,
    method: 'tools/call',
    service: s.service ?? 'svc',
    name: s.tool ?? 'tool',
    arguments: s.args ?? {},
    layer1: l1,
    approval,
  };
}

export function rules(r: Partial<Layer2Rules> = {}): Layer2Rules {
  return { limits: {}, budgets: {}, preconditions: {}, flows: {}, duties: {}, ...r };
}

export const admin = { id: 'owner', role: 'admin' } as const;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Unique names per test, so tests can share one database. */
let n = 0;
export const uniq = (p: string): string => `${p}-${process.pid}-${++n}`;
