import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgliteDatabase, type Database } from '../../src/state/db.js';
import { BuiltinSecretStore, LiveRedactor, SecretStoreError, type SecretStore } from '../../src/vault/index.js';
import { migrated } from './db.js';

describe('LiveRedactor', () => {
  let dir: string;
  let db: Database;
  let store: BuiltinSecretStore;
  let admin: BuiltinSecretStore;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mcpgw-live-'));
    db = await migrated(await PgliteDatabase.open({ dataDir: null, budgetMs: 5000 }));
    store = await BuiltinSecretStore.open({ db, keyDir: join(dir, 'keys') });
    // Another handle on the same state: the CLI or another replica.
    admin = await BuiltinSecretStore.open({ db, keyDir: join(dir, 'keys') });
  });
  afterAll(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('follows changes made elsewhere and keeps redacting replaced values', async () => {
    await admin.set('github', 'GITHUB_TOKEN', 'ghp_first-value-000');
    const live = await LiveRedactor.start(store);
    expect(live.current.redactString('x ghp_first-value-000')).toBe('x [REDACTED:GITHUB_TOKEN]');

    await admin.set('gmail', 'GMAIL_TOKEN', 'gmail-token-value-1');
    await expect
      .poll(() => live.current.redactString('gmail-token-value-1'), { timeout: 5000 })
      .toBe('[REDACTED:GMAIL_TOKEN]');

    // Rotation and deletion: the old values may still sit in a running backend's environment.
    await admin.set('github', 'GITHUB_TOKEN', 'ghp_second-value-00');
    await admin.delete('gmail', 'GMAIL_TOKEN');
    await expect
      .poll(() => live.current.redactString('ghp_second-value-00'), { timeout: 5000 })
      .toBe('[REDACTED:GITHUB_TOKEN]');
    expect(live.current.redactString('ghp_first-value-000 gmail-token-value-1')).toBe(
      '[REDACTED:GITHUB_TOKEN] [REDACTED:GMAIL_TOKEN]',
    );
    await live.close();
  });

  it('redacts injected values at once, before any notification', async () => {
    const live = await LiveRedactor.start(store);
    const before = live.current;
    live.noteInjected('files', { FS_TOKEN: 'injected-directly-1' });
    expect(live.current).not.toBe(before);
    expect(live.current.redactString('injected-directly-1')).toBe('[REDACTED:FS_TOKEN]');
    // Nothing new: the redactor is not rebuilt.
    const same = live.current;
    live.noteInjected('files', { FS_TOKEN: 'injected-directly-1' });
    expect(live.current).toBe(same);
    await live.close();
  });

  it('refuses to start on an unreadable store, and keeps the last set when a reload fails', async () => {
    let broken = false;
    let notify: () => void = () => undefined;
    const flaky: SecretStore = {
      kind: 'builtin',
      set: (s, n, v) => store.set(s, n, v),
      get: (s, n) => store.get(s, n),
      delete: (s, n) => store.delete(s, n),
      list: async (d) => {
        if (broken) throw new SecretStoreError('unavailable', 'store down');
        return store.list(d);
      },
      valuesFor: (s, o) => store.valuesFor(s, o),
      check: () => store.check(),
      watch: async (cb) => {
        notify = cb;
        return async () => undefined;
      },
      close: async () => undefined,
    };
    broken = true;
    await expect(LiveRedactor.start(flaky)).rejects.toThrow(/store down/);
    broken = false;
    const logged: string[] = [];
    const live = await LiveRedactor.start(flaky, { log: (m) => logged.push(m) });
    expect(live.current.redactString('ghp_second-value-00')).toBe('[REDACTED:GITHUB_TOKEN]');
    broken = true;
    notify();
    await expect.poll(() => logged.length).toBe(1);
    expect(logged[0]).toMatch(/previous set/);
    expect(live.current.redactString('ghp_second-value-00')).toBe('[REDACTED:GITHUB_TOKEN]');
    await live.close();
  });
});
