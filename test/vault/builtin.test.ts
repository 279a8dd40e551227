import { randomBytes } from 'node:crypto';
import { access, chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keysDir } from '../../src/config/keys.js';
import { PgliteDatabase, type Database } from '../../src/state/db.js';
import {
  BuiltinSecretStore,
  SECRETS_KEY_FILE,
  SecretStoreError,
  keyId,
  openSecret,
  sealSecret,
} from '../../src/vault/index.js';
import { describeDatabases } from './db.js';

const posix = process.platform !== 'win32';
const dirs: string[] = [];
async function tempHome(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'mcpgw-vault-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** The error thrown by `p`, which must be a SecretStoreError with `code` and never mention `values`. */
async function refusal(p: Promise<unknown>, code: string, values: string[] = []): Promise<SecretStoreError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SecretStoreError);
  const e = err as SecretStoreError;
  expect(e.code).toBe(code);
  for (const v of values) {
    expect(e.message).not.toContain(v);
    expect(String(e.cause ?? '')).not.toContain(v);
  }
  return e;
}

interface RawRow {
  [k: string]: unknown;
  service: string;
  name: string;
  key_id: string;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
}
async function rawRows(db: Database): Promise<RawRow[]> {
  const r = await db.query<RawRow>(
    'SELECT service, name, key_id, nonce, ciphertext, tag FROM secrets ORDER BY service, name',
  );
  return r.rows.map((row) => ({
    ...row,
    nonce: Buffer.from(row.nonce),
    ciphertext: Buffer.from(row.ciphertext),
    tag: Buffer.from(row.tag),
  }));
}

const GH = 'ghp_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8';
const MAIL = 'ya29.a0Af-mail-token-ünïcødé-€-𝄞';

describe('seal/open', () => {
  const key = randomBytes(32);
  it('round-trips and binds service and variable', () => {
    const sealed = sealSecret(key, 'github', 'GITHUB_TOKEN', GH);
    expect(sealed.nonce).toHaveLength(12);
    expect(sealed.tag).toHaveLength(16);
    expect(sealed.ciphertext.includes(Buffer.from(GH))).toBe(false);
    expect(openSecret(key, 'github', 'GITHUB_TOKEN', sealed)).toBe(GH);
    expect(() => openSecret(key, 'gitlab', 'GITHUB_TOKEN', sealed)).toThrow(SecretStoreError);
    expect(() => openSecret(key, 'github', 'GITLAB_TOKEN', sealed)).toThrow(/failed authentication/);
    expect(() => openSecret(randomBytes(32), 'github', 'GITHUB_TOKEN', sealed)).toThrow(/failed authentication/);
  });

  it('uses a fresh nonce each time', () => {
    const a = sealSecret(key, 'github', 'GITHUB_TOKEN', GH);
    const b = sealSecret(key, 'github', 'GITHUB_TOKEN', GH);
    expect(a.nonce.equals(b.nonce)).toBe(false);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
  });

  it('detects any flipped bit in nonce, ciphertext or tag', () => {
    const sealed = sealSecret(key, 'github', 'GITHUB_TOKEN', GH);
    for (const part of ['nonce', 'ciphertext', 'tag'] as const) {
      for (const bit of [0, 7, 8 * sealed[part].length - 1]) {
        const copy = { ...sealed, [part]: Buffer.from(sealed[part]) };
        copy[part][bit >> 3] = (copy[part][bit >> 3] as number) ^ (1 << (bit & 7));
        expect(() => openSecret(key, 'github', 'GITHUB_TOKEN', copy)).toThrow(/failed authentication/);
      }
    }
  });

  it('gives key ids that identify the key without revealing it', () => {
    expect(keyId(key)).toMatch(/^[0-9a-f]{16}$/);
    expect(keyId(key)).toBe(keyId(Buffer.from(key)));
    expect(keyId(randomBytes(32))).not.toBe(keyId(key));
    expect(key.toString('hex')).not.toContain(keyId(key));
  });
});

describeDatabases('builtin secret store', (env) => {
  let db: Database;
  let keyDir: string;
  let store: BuiltinSecretStore;
  beforeAll(async () => {
    db = await env.open();
    keyDir = keysDir(await tempHome());
    store = await BuiltinSecretStore.open({ db, keyDir });
  });

  it('stores, lists, injects and deletes', async () => {
    await store.set('github', 'GITHUB_TOKEN', GH);
    await store.set('gmail', 'GMAIL_OAUTH_TOKEN', MAIL);
    await store.set('gmail', 'GMAIL_CLIENT_SECRET', 'client-secret-value');
    expect(await store.get('github', 'GITHUB_TOKEN')).toBe(GH);
    expect(await store.get('gmail', 'GMAIL_OAUTH_TOKEN')).toBe(MAIL);
    expect(await store.get('github', 'NOPE')).toBeNull();
    expect(await store.get('nosuch', 'GITHUB_TOKEN')).toBeNull();

    const listing = await store.list({ github: ['GITHUB_TOKEN', 'GITHUB_APP_KEY'], slack: ['SLACK_TOKEN'] });
    expect(listing.map((l) => [l.service, l.variable, l.stored])).toEqual([
      ['github', 'GITHUB_APP_KEY', false],
      ['github', 'GITHUB_TOKEN', true],
      ['gmail', 'GMAIL_CLIENT_SECRET', true],
      ['gmail', 'GMAIL_OAUTH_TOKEN', true],
      ['slack', 'SLACK_TOKEN', false],
    ]);
    expect(JSON.stringify(listing)).not.toContain(GH);
    expect(listing[1]?.updatedAt).toBeInstanceOf(Date);

    expect(await store.valuesFor('gmail')).toEqual({
      GMAIL_CLIENT_SECRET: 'client-secret-value',
      GMAIL_OAUTH_TOKEN: MAIL,
    });
    expect(await store.valuesFor('gmail', ['GMAIL_OAUTH_TOKEN', 'MISSING'])).toEqual({ GMAIL_OAUTH_TOKEN: MAIL });
    expect(await store.valuesFor('github', [])).toEqual({});
    expect(await store.valuesFor('slack')).toEqual({});

    await store.set('github', 'GITHUB_TOKEN', `${GH}-rotated`);
    expect(await store.get('github', 'GITHUB_TOKEN')).toBe(`${GH}-rotated`);
    expect(await store.delete('github', 'GITHUB_TOKEN')).toBe(true);
    expect(await store.delete('github', 'GITHUB_TOKEN')).toBe(false);
    expect(await store.get('github', 'GITHUB_TOKEN')).toBeNull();
  });

  it('keeps only ciphertext, nonce, tag and key id in the database', async () => {
    await store.set('github', 'GITHUB_TOKEN', GH);
    const rows = await rawRows(db);
    expect(rows.length).toBeGreaterThan(0);
    const dump = JSON.stringify(
      rows.map((r) => [
        r.service,
        r.name,
        r.key_id,
        ...[r.nonce, r.ciphertext, r.tag].map((b) => Buffer.from(b).toString('latin1')),
      ]),
    );
    for (const v of [GH, MAIL, 'client-secret-value']) {
      expect(dump).not.toContain(v);
      expect(dump).not.toContain(Buffer.from(v).toString('base64').slice(0, 12));
    }
    for (const r of rows) {
      expect(r.key_id).toBe(store.keyId);
      expect(r.nonce).toHaveLength(12);
      expect(r.tag).toHaveLength(16);
    }
    const cols = await db.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'secrets' ORDER BY column_name`,
    );
    expect(cols.rows.map((c) => c.column_name)).toEqual([
      'ciphertext',
      'created_at',
      'key_id',
      'name',
      'nonce',
      'service',
      'tag',
      'updated_at',
    ]);
  });

  it('fails to decrypt a ciphertext moved to another row, and leaves both rows as they were', async () => {
    await store.set('github', 'GITHUB_TOKEN', GH);
    await store.set('gmail', 'GMAIL_OAUTH_TOKEN', MAIL);
    const before = await rawRows(db);
    // Swap the encrypted parts of the two rows.
    await db.query(
      `UPDATE secrets AS s SET nonce = o.nonce, ciphertext = o.ciphertext, tag = o.tag
       FROM secrets AS o
       WHERE (s.service, s.name, o.service, o.name) IN (('github', 'GITHUB_TOKEN', 'gmail', 'GMAIL_OAUTH_TOKEN'),
                                                         ('gmail', 'GMAIL_OAUTH_TOKEN', 'github', 'GITHUB_TOKEN'))`,
    );
    const swapped = await rawRows(db);
    const e1 = await refusal(store.get('github', 'GITHUB_TOKEN'), 'decrypt_failed', [GH, MAIL]);
    expect(e1.message).toContain('github/GITHUB_TOKEN');
    await refusal(store.get('gmail', 'GMAIL_OAUTH_TOKEN'), 'decrypt_failed', [GH, MAIL]);
    await refusal(store.valuesFor('gmail'), 'decrypt_failed', [GH, MAIL]);
    expect(await rawRows(db)).toEqual(swapped);

    // A row renamed to another variable of the same service fails as well.
    await db.query(
      `UPDATE secrets AS s SET nonce = o.nonce, ciphertext = o.ciphertext, tag = o.tag FROM secrets AS o
       WHERE s.service = 'github' AND s.name = 'GITHUB_TOKEN' AND o.service = 'github' AND o.name = 'GITHUB_TOKEN'`,
    );
    await db.query(`UPDATE secrets SET name = 'OTHER_TOKEN' WHERE service = 'gmail' AND name = 'GMAIL_OAUTH_TOKEN'`);
    await refusal(store.get('gmail', 'OTHER_TOKEN'), 'decrypt_failed', [GH, MAIL]);

    // Put things back as they were: the original ciphertexts still decrypt.
    await db.exec('DELETE FROM secrets');
    for (const r of before) {
      await db.query(
        'INSERT INTO secrets (service, name, key_id, nonce, ciphertext, tag) VALUES ($1, $2, $3, $4, $5, $6)',
        [r.service, r.name, r.key_id, r.nonce, r.ciphertext, r.tag],
      );
    }
    expect(await store.get('github', 'GITHUB_TOKEN')).toBe(GH);
    expect(await store.get('gmail', 'GMAIL_OAUTH_TOKEN')).toBe(MAIL);
  });

  it('refuses values redaction cannot hide, with the reason and without the value', async () => {
    const e = await refusal(store.set('github', 'SHORT', 'abc1234'), 'invalid_value', ['abc1234']);
    expect(e.message).toMatch(/7 characters.*shorter than 8.*redaction/);
    // Code points, not UTF-16 units: four emoji are four characters.
    await refusal(store.set('github', 'EMOJI', '😀😀😀😀'), 'invalid_value');
    await refusal(store.set('github', 'NUL', 'abcdefgh\0ij'), 'invalid_value');
    await refusal(store.set('github', 'LONE', 'abcdefgh\ud800'), 'invalid_value');
    await refusal(store.set('github', 'HUGE', 'x'.repeat(64 * 1024 + 1)), 'invalid_value');
    await store.set('github', 'EXACTLY_EIGHT', 'abcd1234');
    expect(await store.get('github', 'EXACTLY_EIGHT')).toBe('abcd1234');
    expect(await store.get('github', 'SHORT')).toBeNull();
  });

  it('refuses names and services outside the grammar', async () => {
    for (const name of ['lower', '1ABC', 'A-B', '', 'A B', 'X'.repeat(129)]) {
      await refusal(store.set('github', name, GH), 'invalid_name', [GH]);
      await refusal(store.get('github', name), 'invalid_name');
    }
    for (const service of ['GitHub', 'a__b', '-x', '', 'x'.repeat(32), 'a/b', '../etc']) {
      await refusal(store.set(service, 'TOKEN', GH), 'invalid_name', [GH]);
      await refusal(store.valuesFor(service), 'invalid_name');
    }
    await store.set('a-b-c', '_UNDERSCORE_1', GH);
    expect(await store.get('a-b-c', '_UNDERSCORE_1')).toBe(GH);
  });

  it('tells the other processes when secrets change', async () => {
    let calls = 0;
    const other = await BuiltinSecretStore.open({ db, keyDir });
    const stop = await other.watch(() => calls++);
    await store.set('github', 'WATCHED', GH);
    await expect.poll(() => calls, { timeout: 5000 }).toBeGreaterThan(0);
    const seen = calls;
    await store.delete('github', 'WATCHED');
    await expect.poll(() => calls, { timeout: 5000 }).toBeGreaterThan(seen);
    await stop();
  });
});

describeDatabases('builtin secret store: keys', (env) => {
  let shared: Database;
  beforeAll(async () => {
    shared = await env.open();
  });
  /** The suite's database, emptied: PGlite takes seconds to start, a DELETE does not. */
  const fresh = async (): Promise<Database> => {
    await shared.exec('DELETE FROM secrets');
    return shared;
  };
  it.skipIf(!posix)('refuses a key file readable by group or others, saying which mode to set', async () => {
    const db = await fresh();
    const dir = keysDir(await tempHome());
    await BuiltinSecretStore.open({ db, keyDir: dir });
    const path = join(dir, SECRETS_KEY_FILE);
    for (const mode of [0o644, 0o640, 0o604]) {
      await chmod(path, mode);
      const e = await refusal(BuiltinSecretStore.open({ db, keyDir: dir }), 'key_file');
      expect(e.message).toContain(`chmod 600 ${path}`);
      expect(e.message).toContain(`mode 0${mode.toString(8)}`);
    }
    await chmod(path, 0o400);
    await BuiltinSecretStore.open({ db, keyDir: dir });
    await chmod(dir, 0o777);
    const e = await refusal(BuiltinSecretStore.open({ db, keyDir: dir }), 'key_file');
    expect(e.message).toContain(`chmod 700 ${dir}`);
    await chmod(dir, 0o700);
  });

  it('refuses a replaced key with both key ids, and loses no row', async () => {
    const db = await fresh();
    const dir = keysDir(await tempHome());
    const good = await BuiltinSecretStore.open({ db, keyDir: dir });
    await good.set('github', 'GITHUB_TOKEN', GH);
    await good.set('gmail', 'GMAIL_OAUTH_TOKEN', MAIL);
    const path = join(dir, SECRETS_KEY_FILE);
    const original = await readFile(path);
    const before = await rawRows(db);

    const wrong = randomBytes(32);
    await writeFile(path, wrong, { mode: 0o600 });
    const e = await refusal(BuiltinSecretStore.open({ db, keyDir: dir }), 'key_mismatch', [GH, MAIL]);
    expect(e.message).toContain(good.keyId);
    expect(e.message).toContain(keyId(wrong));
    expect(e.message).toContain('restore the original');

    // Recovery mode: readable listing, explicit deletes, but no reads and no writes.
    const recovery = await BuiltinSecretStore.open({ db, keyDir: dir, allowKeyMismatch: true });
    expect((await recovery.list()).map((l) => l.variable)).toEqual(['GITHUB_TOKEN', 'GMAIL_OAUTH_TOKEN']);
    await refusal(recovery.get('github', 'GITHUB_TOKEN'), 'key_mismatch', [GH]);
    await refusal(recovery.valuesFor('gmail'), 'key_mismatch', [MAIL]);
    await refusal(recovery.set('github', 'GITHUB_TOKEN', 'overwrite-attempt'), 'key_mismatch');
    await refusal(recovery.set('slack', 'SLACK_TOKEN', 'a-new-secret-value'), 'key_mismatch');
    await refusal(recovery.check(), 'key_mismatch');
    expect(await rawRows(db)).toEqual(before);

    await writeFile(path, original, { mode: 0o600 });
    const restored = await BuiltinSecretStore.open({ db, keyDir: dir });
    expect(await restored.get('github', 'GITHUB_TOKEN')).toBe(GH);
    expect(await restored.get('gmail', 'GMAIL_OAUTH_TOKEN')).toBe(MAIL);
  });

  it('refuses a missing key file while rows exist, without creating a new key', async () => {
    const db = await fresh();
    const dir = keysDir(await tempHome());
    const store = await BuiltinSecretStore.open({ db, keyDir: dir });
    await store.set('github', 'GITHUB_TOKEN', GH);
    const path = join(dir, SECRETS_KEY_FILE);
    const original = await readFile(path);
    await rm(path);
    const e = await refusal(BuiltinSecretStore.open({ db, keyDir: dir }), 'key_missing', [GH]);
    expect(e.message).toContain(path);
    expect(e.message).toContain(store.keyId);
    expect(e.message).toMatch(/will not create a new key/);
    await expect(access(path)).rejects.toThrow();
    // Even the recovery mode does not create one.
    await refusal(BuiltinSecretStore.open({ db, keyDir: dir, allowKeyMismatch: true }), 'key_missing');
    await expect(access(path)).rejects.toThrow();

    await writeFile(path, original, { mode: 0o600 });
    expect(await (await BuiltinSecretStore.open({ db, keyDir: dir })).get('github', 'GITHUB_TOKEN')).toBe(GH);
  });

  it('creates the key on first use when nothing is stored yet', async () => {
    const db = await fresh();
    const dir = keysDir(await tempHome());
    const store = await BuiltinSecretStore.open({ db, keyDir: dir });
    const key = await readFile(join(dir, SECRETS_KEY_FILE));
    expect(key).toHaveLength(32);
    expect(store.keyId).toBe(keyId(key));
  });

  it('two replicas with different key files cannot overwrite each other', async () => {
    const db = await fresh();
    // Both start on an empty table, so each creates its own key.
    const a = await BuiltinSecretStore.open({ db, keyDir: keysDir(await tempHome()) });
    const b = await BuiltinSecretStore.open({ db, keyDir: keysDir(await tempHome()) });
    expect(a.keyId).not.toBe(b.keyId);
    await a.set('github', 'GITHUB_TOKEN', GH);
    const before = await rawRows(db);
    const e = await refusal(b.set('github', 'GITHUB_TOKEN', 'replica-b-value'), 'key_mismatch');
    expect(e.message).toContain(a.keyId);
    await refusal(b.set('gmail', 'GMAIL_OAUTH_TOKEN', 'replica-b-value'), 'key_mismatch');
    await refusal(b.get('github', 'GITHUB_TOKEN'), 'key_mismatch', [GH]);
    expect(await rawRows(db)).toEqual(before);
    expect(await a.get('github', 'GITHUB_TOKEN')).toBe(GH);
  });
});

describe('builtin secret store without its table', () => {
  it('says so when the migration has not run', async () => {
    const bare = await PgliteDatabase.open({ dataDir: null, budgetMs: 5000 });
    try {
      const e = await refusal(BuiltinSecretStore.open({ db: bare, keyDir: keysDir(await tempHome()) }), 'backend');
      expect(e.message).toMatch(/migrations.*0050_secrets/);
    } finally {
      await bare.close();
    }
  });
});
