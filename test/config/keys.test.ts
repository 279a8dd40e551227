import { chmod, mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeyFileError, keysDir, loadOrCreateKey, mcpgwHome } from '../../src/config/keys.js';

const posix = process.platform !== 'win32';
let home: string;

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'mcpgw-keys-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('mcpgwHome', () => {
  it('uses MCPGW_HOME, else ~/.mcpgw, always absolute', () => {
    expect(mcpgwHome({ MCPGW_HOME: '/var/lib/mcpgw' })).toBe('/var/lib/mcpgw');
    expect(mcpgwHome({})).toBe(join(homedir(), '.mcpgw'));
    expect(mcpgwHome({ MCPGW_HOME: '' })).toBe(join(homedir(), '.mcpgw'));
    expect(mcpgwHome({ MCPGW_HOME: 'rel/dir' })).toBe(resolve('rel/dir'));
    expect(keysDir('/var/lib/mcpgw')).toBe('/var/lib/mcpgw/keys');
  });
});

describe('loadOrCreateKey', () => {
  it('creates the directory 0700 and the key 0600, then returns the same key', async () => {
    const dir = keysDir(home);
    const key = await loadOrCreateKey(dir, 'session.key');
    expect(key).toHaveLength(32);
    if (posix) {
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      expect((await stat(join(dir, 'session.key'))).mode & 0o777).toBe(0o600);
    }
    expect((await loadOrCreateKey(dir, 'session.key')).equals(key)).toBe(true);
    expect((await loadOrCreateKey(dir, 'audit.key')).equals(key)).toBe(false);
    expect(await loadOrCreateKey(dir, 'vault.key', 64)).toHaveLength(64);
  });

  it('leaves no temporary files behind', async () => {
    const dir = keysDir(home);
    await loadOrCreateKey(dir, 'a.key');
    await loadOrCreateKey(dir, 'a.key');
    expect(await readdir(dir)).toEqual(['a.key']);
  });

  it('agrees on one key when many callers race to create it', async () => {
    const dir = keysDir(home);
    const keys = await Promise.all(Array.from({ length: 20 }, () => loadOrCreateKey(dir, 'race.key')));
    for (const k of keys) expect(k.equals(keys[0] as Buffer)).toBe(true);
    expect(await readdir(dir)).toEqual(['race.key']);
  });

  it.skipIf(!posix)('refuses a group- or world-readable key with the path and the fix', async () => {
    const dir = keysDir(home);
    const key = await loadOrCreateKey(dir, 'session.key');
    const path = join(dir, 'session.key');
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      await chmod(path, mode);
      const err = await loadOrCreateKey(dir, 'session.key').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyFileError);
      const message = (err as Error).message;
      expect(message).toContain(path);
      expect(message).toContain(`chmod 600 ${path}`);
      expect(message).toContain(`mode 0${mode.toString(8)}`);
      expect(message).not.toContain(key.toString('hex'));
      expect(message).not.toContain(key.toString('base64'));
    }
    await chmod(path, 0o400);
    expect((await loadOrCreateKey(dir, 'session.key')).equals(key)).toBe(true);
  });

  it.skipIf(!posix)('checks the file a symlink points to (as in Kubernetes secret volumes)', async () => {
    const dir = keysDir(home);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const target = join(home, 'real.key');
    await writeFile(target, Buffer.alloc(32, 7), { mode: 0o644 });
    await symlink(target, join(dir, 'linked.key'));
    await expect(loadOrCreateKey(dir, 'linked.key')).rejects.toThrow(/chmod 600/);
    await chmod(target, 0o600);
    expect(await loadOrCreateKey(dir, 'linked.key')).toEqual(Buffer.alloc(32, 7));
  });

  it('refuses a key of the wrong length', async () => {
    const dir = keysDir(home);
    await loadOrCreateKey(dir, 'k', 32);
    await expect(loadOrCreateKey(dir, 'k', 64)).rejects.toThrow(/holds 32 bytes, expected 64/);
  });

  it.skipIf(!posix)('refuses a key directory others can write to', async () => {
    const dir = keysDir(home);
    await mkdir(dir, { mode: 0o700 });
    await chmod(dir, 0o777);
    await expect(loadOrCreateKey(dir, 'k')).rejects.toThrow(`chmod 700 ${dir}`);
  });

  it('refuses a directory where the key should be, and bad names and sizes', async () => {
    const dir = keysDir(home);
    await mkdir(join(dir, 'adir'), { recursive: true, mode: 0o700 });
    await expect(loadOrCreateKey(dir, 'adir')).rejects.toThrow(/not a regular file/);
    for (const name of ['../escape', 'a/b', '', '.hidden', 'x'.repeat(65)]) {
      await expect(loadOrCreateKey(dir, name)).rejects.toThrow(/invalid key file name/);
    }
    await expect(loadOrCreateKey(dir, 'k', 8)).rejects.toThrow(/16–4096/);
    await expect(loadOrCreateKey(dir, 'k', 32.5)).rejects.toThrow(/16–4096/);
  });
});
