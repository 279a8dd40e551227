import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PgliteDatabase, type Database } from '../../src/state/db.js';
import {
  BuiltinSecretStore,
  NoneSecretStore,
  SecretStoreError,
  VaultSecretStore,
  migrateSecrets,
  type SecretStore,
} from '../../src/vault/index.js';
import { describeWith } from '../helpers/components.js';
import { migrated } from './db.js';
import { startBao, type BaoServer } from './openbao.js';

const SECRETS: [string, string, string][] = [
  ['github', 'GITHUB_TOKEN', 'ghp_0123456789abcdefghijklmnopqrstuvwxyz'],
  ['github', 'GITHUB_APP_KEY', '-----BEGIN KEY-----\nMIIEvQIBADANBgkq\n-----END KEY-----'],
  ['gmail', 'GMAIL_OAUTH_TOKEN', 'ya29.a0AfH6SMB-ünïcødé'],
  ['gmail', 'GMAIL_CLIENT_SECRET', 'GOCSPX-client-secret-1'],
  ['slack', 'SLACK_TOKEN', 'xoxb-1111-2222-abcdefABCDEF'],
  ['banking', 'BANK_API_KEY', 'sk_live_51Hxyz"quoted"\\back'],
];

class InjectedFailure extends Error {}

/**
 * `store` whose `method` fails on its `failAt`-th call (1-based): a crash at that point of the
 * migration, as far as the migration can tell. `silent` makes `set` report success without
 * storing (a target that loses writes).
 */
function faulty(store: SecretStore, method: 'set' | 'delete' | 'get', failAt: number, silent = false): SecretStore {
  let calls = 0;
  const fail = (): boolean => ++calls === failAt;
  return {
    kind: store.kind,
    set: async (s, n, v) => {
      if (method === 'set' && fail()) {
        if (silent) return;
        throw new InjectedFailure('crash during set');
      }
      return store.set(s, n, v);
    },
    get: async (s, n) => {
      if (method === 'get' && fail()) throw new InjectedFailure('crash during get');
      return store.get(s, n);
    },
    delete: async (s, n) => {
      if (method === 'delete' && fail()) throw new InjectedFailure('crash during delete');
      return store.delete(s, n);
    },
    list: (d) => store.list(d),
    valuesFor: (s, o) => store.valuesFor(s, o),
    check: () => store.check(),
    watch: (cb) => store.watch(cb),
    close: () => store.close(),
  };
}

async function contents(store: SecretStore): Promise<string[]> {
  const out: string[] = [];
  for (const l of await store.list())
    out.push(`${l.service}/${l.variable}=${(await store.get(l.service, l.variable)) ?? '∅'}`);
  return out.sort();
}
const expected = SECRETS.map(([s, n, v]) => `${s}/${n}=${v}`).sort();

async function fill(store: SecretStore): Promise<void> {
  for (const [s, n, v] of SECRETS) await store.set(s, n, v);
}

async function clear(store: SecretStore): Promise<void> {
  for (const l of await store.list()) await store.delete(l.service, l.variable);
}

/** The suite, against any pair of backends. */
function migrationCases(pair: () => { a: SecretStore; b: SecretStore }): void {
  let a: SecretStore;
  let b: SecretStore;
  beforeEach(async () => {
    ({ a, b } = pair());
    await clear(a);
    await clear(b);
  });

  it('moves everything there and back', async () => {
    await fill(a);
    const there = await migrateSecrets(a, b);
    expect(there.copied).toHaveLength(SECRETS.length);
    expect(there.deleted).toHaveLength(SECRETS.length);
    expect(there.conflicts).toEqual([]);
    expect(await contents(b)).toEqual(expected);
    expect(await a.list()).toEqual([]);
    const back = await migrateSecrets(b, a);
    expect(back.copied).toHaveLength(SECRETS.length);
    expect(await contents(a)).toEqual(expected);
    expect(await b.list()).toEqual([]);
  });

  it('loses nothing when the copy crashes midway, and a re-run completes it', async () => {
    await fill(a);
    await expect(migrateSecrets(a, faulty(b, 'set', 4))).rejects.toThrow(InjectedFailure);
    expect(await contents(a)).toEqual(expected);
    expect((await b.list()).length).toBe(3);
    const report = await migrateSecrets(a, b);
    expect(report.alreadyPresent).toHaveLength(3);
    expect(report.copied).toHaveLength(SECRETS.length - 3);
    expect(await contents(b)).toEqual(expected);
    expect(await a.list()).toEqual([]);
  });

  it('loses nothing when deleting from the source crashes midway, and a re-run completes it', async () => {
    await fill(a);
    await expect(migrateSecrets(faulty(a, 'delete', 3), b)).rejects.toThrow(InjectedFailure);
    expect(await contents(b)).toEqual(expected);
    expect((await a.list()).length).toBe(SECRETS.length - 2);
    const report = await migrateSecrets(a, b);
    expect(report.copied).toEqual([]);
    expect(report.alreadyPresent).toHaveLength(SECRETS.length - 2);
    expect(await contents(b)).toEqual(expected);
    expect(await a.list()).toEqual([]);
  });

  it('deletes nothing when a copy does not read back', async () => {
    await fill(a);
    const e = await migrateSecrets(a, faulty(b, 'set', 2, true)).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(SecretStoreError);
    expect((e as SecretStoreError).code).toBe('verify_failed');
    for (const [, , v] of SECRETS) expect((e as Error).message).not.toContain(v);
    expect(await contents(a)).toEqual(expected);
  });

  it('keeps both values on a conflict unless told to overwrite', async () => {
    await fill(a);
    await b.set('github', 'GITHUB_TOKEN', 'ghp_a-newer-value-in-the-target');
    const report = await migrateSecrets(a, b);
    expect(report.conflicts).toEqual([{ service: 'github', variable: 'GITHUB_TOKEN' }]);
    expect(report.deleted).toHaveLength(SECRETS.length - 1);
    expect(await a.get('github', 'GITHUB_TOKEN')).toBe(SECRETS[0]?.[2]);
    expect(await b.get('github', 'GITHUB_TOKEN')).toBe('ghp_a-newer-value-in-the-target');
    const forced = await migrateSecrets(a, b, { onConflict: 'overwrite' });
    expect(forced.copied).toEqual([{ service: 'github', variable: 'GITHUB_TOKEN' }]);
    expect(await contents(b)).toEqual(expected);
    expect(await a.list()).toEqual([]);
  });

  it('keeps a source value that changed during the migration', async () => {
    await fill(a);
    let last = 0;
    const racing: SecretStore = {
      ...faulty(b, 'get', -1),
      set: async (s, n, v) => {
        await b.set(s, n, v);
        if (++last === SECRETS.length) await a.set('slack', 'SLACK_TOKEN', 'xoxb-rotated-meanwhile');
      },
    };
    const report = await migrateSecrets(a, racing);
    expect(report.conflicts).toEqual([{ service: 'slack', variable: 'SLACK_TOKEN' }]);
    expect(await a.get('slack', 'SLACK_TOKEN')).toBe('xoxb-rotated-meanwhile');
    expect(await b.get('slack', 'SLACK_TOKEN')).toBe('xoxb-1111-2222-abcdefABCDEF');
  });

  it('copies without deleting when asked, and a second run finds everything present', async () => {
    await fill(a);
    const events: string[] = [];
    const first = await migrateSecrets(a, b, { deleteFromSource: false, onProgress: (e) => events.push(e.step) });
    expect(first.deleted).toEqual([]);
    expect(events.every((s) => s === 'copied')).toBe(true);
    expect(JSON.stringify(events)).not.toContain('ghp_');
    const second = await migrateSecrets(a, b, { deleteFromSource: false });
    expect(second.alreadyPresent).toHaveLength(SECRETS.length);
    expect(second.copied).toEqual([]);
    expect(await contents(a)).toEqual(expected);
  });
}

const dirs: string[] = [];
const dbs: Database[] = [];
afterAll(async () => {
  for (const db of dbs) await db.close().catch(() => undefined);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function builtin(): Promise<BuiltinSecretStore> {
  const dir = await mkdtemp(join(tmpdir(), 'mcpgw-migrate-'));
  dirs.push(dir);
  const db = await migrated(await PgliteDatabase.open({ dataDir: null, budgetMs: 5000 }));
  dbs.push(db);
  return BuiltinSecretStore.open({ db, keyDir: join(dir, 'keys') });
}

// Two builtin stores (own database, own key) shared by the suites below: PGlite takes seconds to start.
let pair: Promise<[BuiltinSecretStore, BuiltinSecretStore]> | null = null;
const builtinPair = (): Promise<[BuiltinSecretStore, BuiltinSecretStore]> =>
  (pair ??= Promise.all([builtin(), builtin()]));

describe('migrateSecrets builtin → builtin (another database and key)', () => {
  let a: BuiltinSecretStore;
  let b: BuiltinSecretStore;
  beforeAll(async () => {
    [a, b] = await builtinPair();
  });
  migrationCases(() => ({ a, b }));

  it('refuses to move secrets into the none backend and keeps them', async () => {
    await clear(a);
    await fill(a);
    await expect(migrateSecrets(a, new NoneSecretStore())).rejects.toMatchObject({ code: 'not_supported' });
    expect(await contents(a)).toEqual(expected);
  });
});

describeWith(['bao'], 'migrateSecrets builtin ↔ vault (OpenBao dev server)', () => {
  let bao: BaoServer;
  let a: BuiltinSecretStore;
  let b: VaultSecretStore;
  beforeAll(async () => {
    [bao, [a]] = await Promise.all([startBao(), builtinPair()]);
    b = new VaultSecretStore({ address: bao.address, token: bao.token, timeoutMs: 3000 });
  });
  afterAll(async () => {
    await bao?.destroy();
  });
  migrationCases(() => ({ a, b }));

  it('leaves no path behind in Vault after moving back', async () => {
    await clear(a);
    await fill(a);
    await migrateSecrets(a, b);
    await migrateSecrets(b, a);
    for (const service of new Set(SECRETS.map(([s]) => s))) {
      expect((await bao.api('GET', `secret/metadata/services/${service}`)).status).toBe(404);
    }
    expect(await contents(a)).toEqual(expected);
  });

  it('fails cleanly, losing nothing, when Vault goes away in the middle', async () => {
    await clear(a);
    await clear(b);
    await fill(a);
    let sets = 0;
    const dying: SecretStore = {
      ...faulty(b, 'get', -1),
      set: async (s, n, v) => {
        if (++sets === 3) await bao.stop();
        return b.set(s, n, v);
      },
    };
    await expect(migrateSecrets(a, dying)).rejects.toMatchObject({ code: 'unavailable' });
    expect(await contents(a)).toEqual(expected);
    await bao.restart(); // dev mode: empty again
    const report = await migrateSecrets(a, b);
    expect(report.copied).toHaveLength(SECRETS.length);
    expect(await contents(b)).toEqual(expected);
  });
});
