/**
 * The admin credential on disk (DESIGN §4): sealed under the approval passphrase, opened only by
 * it, bound to its user, private to its owner; and the answers init turns into files.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CREDENTIAL_FILE,
  MIN_PASSPHRASE_LENGTH,
  openAdminCredential,
  passphraseProblem,
  readAdminCredential,
  sealAdminCredential,
  writeAdminCredential,
  type StoredCredential,
} from '../../src/cli/credential.js';
import {
  configFor,
  policyFor,
  PRESET_ANSWERS,
  PRESETS,
  presetOf,
  type InitAnswers,
} from '../../src/cli/init-answers.js';
import { configSchema, renderConfig } from '../../src/config/config-file.js';
import { compilePolicyText } from '../../src/policy/compile.js';

const KEY = 'mcpgw_ak_0123456789abcdefghijABCDEFGHIJ0123456789';
const PASS = 'a long enough passphrase';
// The cheapest parameters the format accepts: these tests check the format, not the cost.
const FAST = { name: 'scrypt', N: 1 << 14, r: 8, p: 1 } as const;

describe('admin credential', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cred-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('opens with the passphrase and with nothing else', async () => {
    const sealed = await sealAdminCredential({ user: 'owner', key: KEY }, PASS, FAST);
    expect(JSON.stringify(sealed)).not.toContain(KEY.slice(9));
    expect(await openAdminCredential(sealed, PASS)).toEqual({ user: 'owner', key: KEY });
    await expect(openAdminCredential(sealed, `${PASS} `)).rejects.toMatchObject({
      message: 'wrong passphrase',
      exitCode: 4,
    });
  });

  it('a file edited to name another user, or with a flipped byte, does not open', async () => {
    const sealed = await sealAdminCredential({ user: 'owner', key: KEY }, PASS, FAST);
    await expect(openAdminCredential({ ...sealed, user: 'mallory' }, PASS)).rejects.toMatchObject({ exitCode: 4 });
    const ct = Buffer.from(sealed.ciphertext, 'base64');
    ct[0] = (ct[0] ?? 0) ^ 1;
    await expect(openAdminCredential({ ...sealed, ciphertext: ct.toString('base64') }, PASS)).rejects.toMatchObject({
      exitCode: 4,
    });
  });

  it('two seals of the same key differ (fresh salt and nonce)', async () => {
    const a = await sealAdminCredential({ user: 'owner', key: KEY }, PASS, FAST);
    const b = await sealAdminCredential({ user: 'owner', key: KEY }, PASS, FAST);
    expect(a.salt).not.toBe(b.salt);
    expect(a.iv).not.toBe(b.iv);
    expect(a.ciphertext).not.toBe(b.ciphertext);
  });

  it('refuses short passphrases', async () => {
    expect(passphraseProblem('x'.repeat(MIN_PASSPHRASE_LENGTH - 1))).toMatch(/at least 8/);
    expect(passphraseProblem('x'.repeat(MIN_PASSPHRASE_LENGTH))).toBeNull();
    expect(passphraseProblem(' leading space')).toMatch(/space/);
    await expect(sealAdminCredential({ user: 'owner', key: KEY }, 'short', FAST)).rejects.toMatchObject({
      exitCode: 2,
    });
  });

  it('is written 0600 with the default scrypt cost, and refused once others can read it', async () => {
    const path = await writeAdminCredential(dir, { user: 'owner', key: KEY }, PASS);
    expect(path).toBe(join(dir, CREDENTIAL_FILE));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const stored = (await readAdminCredential(dir)) as StoredCredential;
    expect(stored.kdf).toEqual({ name: 'scrypt', N: 1 << 16, r: 8, p: 1 });
    expect((await openAdminCredential(stored, PASS)).key).toBe(KEY);
    chmodSync(path, 0o644);
    await expect(readAdminCredential(dir)).rejects.toMatchObject({ exitCode: 4 });
    expect((await readAdminCredential(join(dir, 'nowhere'))) === null).toBe(true);
  });

  it('rejects a file whose cost parameters would exhaust memory', async () => {
    const sealed = await sealAdminCredential({ user: 'owner', key: KEY }, PASS, FAST);
    const other = mkdtempSync(join(dir, 'x-'));
    writeFileSync(join(other, CREDENTIAL_FILE), JSON.stringify({ ...sealed, kdf: { ...FAST, N: 1 << 24 } }), {
      mode: 0o600,
    });
    await expect(readAdminCredential(other)).rejects.toThrow(/not an mcpgw admin credential \(kdf\.N/);
    writeFileSync(join(other, CREDENTIAL_FILE), 'not json', { mode: 0o600 });
    await expect(readAdminCredential(other)).rejects.toThrow(/is not JSON/);
    expect(readFileSync(join(other, CREDENTIAL_FILE), 'utf8')).toBe('not json');
  });
});

describe('init answers', () => {
  const all: InitAnswers[] = [];
  for (const auth of ['api-key', 'keycloak'] as const)
    for (const vault of [true, false])
      for (const tui of [true, false])
        for (const users of ['single', 'team'] as const) all.push({ auth, vault, tui, users });

  it('each preset is one set of answers, and every other set is custom', () => {
    for (const p of PRESETS) expect(presetOf(PRESET_ANSWERS[p])).toBe(p);
    expect(all.filter((a) => presetOf(a) !== 'custom')).toHaveLength(PRESETS.length);
  });

  it('every set of answers gives a valid config and a policy that compiles', () => {
    for (const a of all) {
      const cfg = configFor(a, '/h/mcp-security.yaml', 8000);
      expect(configSchema.parse(cfg)).toEqual(cfg);
      expect(cfg.secrets.backend).toBe(a.vault ? 'builtin' : 'none');
      expect(renderConfig(cfg)).not.toMatch(/mcpgw_(sk|ak)_/);
      const compiled = compilePolicyText(policyFor(a, '/h'), '/h/mcp-security.yaml');
      expect(compiled.ok, JSON.stringify(compiled)).toBe(true);
      if (compiled.ok) {
        expect(compiled.compiled.approval.maxPendingPerUser).toBe(a.users === 'team' ? 5 : 20);
        expect(compiled.compiled.approval.timeoutSeconds).toBe(a.users === 'team' ? 8 * 3600 : 24 * 3600);
      }
    }
  });
});
