/**
 * `mcpgw vault enable|disable` against a real OpenBao dev server: secrets stored through the
 * running gateway move into KV v2 (`secret/data/services/<service>`), the gateway started again
 * injects them from there, and `vault disable` brings every one back into the builtin store.
 * Nothing is lost on the way, and the token never reaches argv or config.yaml.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { secretPageSchema, secretTestResponseSchema } from '../../src/admin/contract.js';
import { readConfig } from '../../src/config/config-file.js';
import { openStore } from '../../src/state/index.js';
import { BuiltinSecretStore } from '../../src/vault/index.js';
import { describeWith } from '../helpers/components.js';
import { startBao, type BaoServer } from '../vault/openbao.js';
import { Installation } from './helpers.js';

const DEMO = 'vault-bound-token-7Hq2Lx9P';
const LOOSE = 'loose-vault-key-3Vb8Nc1R';

describeWith(['bao'], 'mcpgw vault enable / disable against OpenBao', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-vault-cli-'));
  const inst = new Installation(join(dir, 'home'));
  const tokenFile = join(dir, 'bao-token');
  let bao: BaoServer;
  let env: Record<string, string>;

  beforeAll(async () => {
    const [server] = await Promise.all([startBao(), inst.init()]);
    bao = server;
    writeFileSync(tokenFile, `${bao.token}\n`, { mode: 0o600 });
    chmodSync(tokenFile, 0o600);
    env = { MCPGW_ADMIN_KEY: inst.adminKey };
    await inst.up();
  }, 60_000);

  afterAll(async () => {
    await inst.down();
    await bao?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('builtin → vault → builtin, losing nothing', async () => {
    const [a, b] = await Promise.all([
      inst.cli(['secret', 'set', 'vault-demo', 'DEMO_TOKEN', '--stdin'], { input: DEMO, env }),
      inst.cli(['secret', 'set', 'loose', 'LOOSE_KEY', '--stdin'], { input: LOOSE, env }),
    ]);
    expect([a.code, b.code], a.err + b.err).toEqual([0, 0]);

    // While the gateway runs, the switch is refused and nothing changes.
    const refused = await inst.cli(['vault', 'enable', '--address', bao.address, '--token-file', tokenFile, '--yes']);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/the gateway is running .*mcpgw down/);

    await inst.down();
    const enable = await inst.cli([
      'vault',
      'enable',
      '--address',
      bao.address,
      '--token-file',
      tokenFile,
      '--yes',
      '--json',
    ]);
    expect(enable.code, enable.err).toBe(0);
    const report = JSON.parse(enable.out) as {
      from: string;
      to: string;
      report: { copied: unknown[]; deleted: unknown[] };
    };
    expect(report).toMatchObject({ from: 'builtin', to: 'vault' });
    expect(report.report.copied).toHaveLength(2);
    expect(report.report.deleted).toHaveLength(2);

    const cfg = await readConfig(join(inst.home, 'config.yaml'));
    expect(cfg.secrets).toMatchObject({ backend: 'vault', address: bao.address, mount: 'secret', tokenFile });
    expect(readFileSync(join(inst.home, 'config.yaml'), 'utf8')).not.toContain(bao.token);

    // Every secret is readable from Vault at secret/data/services/<service>.
    const demo = await bao.api('GET', 'secret/data/services/vault-demo');
    expect(demo.status).toBe(200);
    expect((demo.body as { data: { data: Record<string, string> } }).data.data).toEqual({ DEMO_TOKEN: DEMO });
    const loose = await bao.api('GET', 'secret/data/services/loose');
    expect((loose.body as { data: { data: Record<string, string> } }).data.data).toEqual({ LOOSE_KEY: LOOSE });

    // The gateway started again injects from Vault.
    await inst.up();
    const [list, test] = await Promise.all([
      inst.cli(['secret', 'list', '--json'], { env }),
      inst.cli(['secret', 'test', 'loose', '--json'], { env }),
    ]);
    expect(list.code, list.err).toBe(0);
    const listed = JSON.parse(list.out) as { backend: string; items: unknown[] };
    expect(listed.backend).toBe('vault');
    expect(
      secretPageSchema.shape.items
        .parse(listed.items)
        .filter((i) => i.stored)
        .map((i) => `${i.service}/${i.variable}`),
    ).toEqual(['loose/LOOSE_KEY', 'vault-demo/DEMO_TOKEN']);
    expect(test.code, test.out + test.err).toBe(0);
    const tested = secretTestResponseSchema.parse(JSON.parse(test.out));
    expect(tested).toMatchObject({ backend: 'vault', started: true, ok: true });
    expect(tested.variables).toEqual([{ name: 'LOOSE_KEY', stored: true, declared: false, delivered: true }]);
    await inst.down();

    const disable = await inst.cli(['vault', 'disable', '--yes', '--json']);
    expect(disable.code, disable.err).toBe(0);
    expect(JSON.parse(disable.out)).toMatchObject({ from: 'vault', to: 'builtin' });
    expect((await readConfig(join(inst.home, 'config.yaml'))).secrets).toEqual({ backend: 'builtin' });
    // Moved, not copied: Vault no longer holds them (the KV v2 metadata stays, the versions are gone).
    const after = await bao.api('GET', 'secret/data/services/vault-demo');
    expect(after.status).toBe(404);

    // Back in the builtin store, byte for byte.
    const store = await openStore({ home: inst.home, sealer: false, env: {} });
    try {
      const builtin = await BuiltinSecretStore.open({ db: store.db, keyDir: join(inst.home, 'keys') });
      expect(await builtin.valuesFor('vault-demo')).toEqual({ DEMO_TOKEN: DEMO });
      expect(await builtin.valuesFor('loose')).toEqual({ LOOSE_KEY: LOOSE });
      await builtin.close();
    } finally {
      await store.close();
    }

    // Neither command ever printed a value or the token.
    for (const r of inst.runs) {
      for (const v of [DEMO, LOOSE, bao.token]) expect(`${r.out}${r.err}${r.argv.join(' ')}`).not.toContain(v);
    }
  }, 80_000);
});
