import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretStoreError, VaultSecretStore, openSecretStore, secretsConfigSchema } from '../../src/vault/index.js';
import { describeWith } from '../helpers/components.js';
import { startBao, type BaoServer } from './openbao.js';

const VALUE = 'ghp_vaultvalue_0123456789abcdefABCDEF';

async function refusal(p: Promise<unknown>, code: string, hidden: string[]): Promise<SecretStoreError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SecretStoreError);
  const e = err as SecretStoreError;
  expect(e.code).toBe(code);
  const everything = `${e.message} ${String(e.cause ?? '')} ${e.stack ?? ''}`;
  for (const h of hidden) expect(everything).not.toContain(h);
  return e;
}

function listen<T extends Server | TcpServer>(server: T): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

describe('vault backend: configuration and failures (no server needed)', () => {
  const token = `tok-${randomBytes(8).toString('hex')}`;
  let http: Server;
  let httpPort: number;
  let silent: TcpServer;
  let silentPort: number;
  const sockets: Socket[] = [];
  let reply: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();

  beforeAll(async () => {
    http = createHttpServer((req, res) => reply(req, res));
    httpPort = await listen(http);
    // Accepts connections and never answers.
    silent = createTcpServer((s) => sockets.push(s));
    silentPort = await listen(silent);
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
  });

  const store = (port: number, extra: Partial<ConstructorParameters<typeof VaultSecretStore>[0]> = {}) =>
    new VaultSecretStore({ address: `http://127.0.0.1:${port}`, token, timeoutMs: 500, ...extra });

  it('refuses addresses that would leak the token', () => {
    expect(() => new VaultSecretStore({ address: 'http://vault.example.com:8200', token })).toThrow(/plain http/);
    expect(
      () => new VaultSecretStore({ address: 'http://vault.example.com', token, allowInsecureHttp: true }),
    ).not.toThrow();
    expect(() => new VaultSecretStore({ address: 'https://vault.example.com', token })).not.toThrow();
    expect(() => new VaultSecretStore({ address: 'http://[::1]:8200', token })).not.toThrow();
    expect(() => new VaultSecretStore({ address: 'https://user:pw@vault.example.com', token })).toThrow(/credentials/);
    expect(() => new VaultSecretStore({ address: 'ftp://x', token })).toThrow(/http/);
    expect(() => new VaultSecretStore({ address: 'not a url', token })).toThrow(/not a URL/);
    expect(() => new VaultSecretStore({ address: 'http://127.0.0.1', token, mount: '../sys' })).toThrow(/mount/);
    expect(new VaultSecretStore({ address: 'http://127.0.0.1:8200/', token }).pathFor('github')).toBe(
      'secret/data/services/github',
    );
  });

  it('says "connection refused" when nothing listens', async () => {
    const closed = createTcpServer();
    const port = await listen(closed);
    await new Promise((r) => closed.close(r));
    const e = await refusal(store(port).get('github', 'GITHUB_TOKEN'), 'unavailable', [token]);
    expect(e.message).toContain(`cannot reach Vault at http://127.0.0.1:${port}`);
    expect(e.message).toContain('connection refused');
  });

  it('gives up after the timeout', async () => {
    const started = Date.now();
    const e = await refusal(store(silentPort).get('github', 'GITHUB_TOKEN'), 'timeout', [token]);
    expect(e.message).toMatch(/did not answer within 500 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('reports 403, sealed, redirects and other errors without the token or the value', async () => {
    reply = (req, res) => {
      expect(req.headers['x-vault-token']).toBe(token);
      res.writeHead(403, { 'content-type': 'application/json' }).end('{"errors":["permission denied"]}');
    };
    const e403 = await refusal(store(httpPort).set('github', 'GITHUB_TOKEN', VALUE), 'forbidden', [token, VALUE]);
    expect(e403.message).toMatch(/refused the token \(403 permission denied\)/);

    reply = (_req, res) =>
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":["Vault is sealed"]}');
    await refusal(store(httpPort).get('github', 'GITHUB_TOKEN'), 'sealed', [token]);

    let redirected = 0;
    reply = (req, res) => {
      if (req.url?.startsWith('/elsewhere')) redirected++;
      res.writeHead(307, { location: `http://127.0.0.1:${httpPort}/elsewhere` }).end();
    };
    const e307 = await refusal(store(httpPort).get('github', 'GITHUB_TOKEN'), 'backend', [token]);
    expect(e307.message).toMatch(/redirected/);
    expect(redirected).toBe(0);

    reply = (_req, res) =>
      res.writeHead(500, { 'content-type': 'application/json' }).end(`{"errors":["internal error"]}`);
    const e500 = await refusal(store(httpPort).set('github', 'GITHUB_TOKEN', VALUE), 'backend', [token, VALUE]);
    expect(e500.message).toMatch(/HTTP 500.*internal error/);
  });

  it('sends the namespace header and the configured mount', async () => {
    const seen: { url: string; ns: string | undefined }[] = [];
    reply = (req, res) => {
      seen.push({ url: req.url ?? '', ns: req.headers['x-vault-namespace'] as string | undefined });
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[]}');
    };
    expect(await store(httpPort, { namespace: 'team1/sub', mount: 'kv/apps' }).get('github', 'X_TOKEN')).toBeNull();
    expect(seen).toEqual([{ url: '/v1/kv/apps/data/services/github', ns: 'team1/sub' }]);
  });

  it('reads the token from the configuration: a 0600 file or the environment', async () => {
    const cfg = secretsConfigSchema.parse({ backend: 'vault', address: `http://127.0.0.1:${httpPort}` });
    if (cfg.backend !== 'vault') throw new Error('unreachable');
    await expect(openSecretStore(cfg, { env: {} })).rejects.toThrow(/no token is configured/);
    const seen: (string | undefined)[] = [];
    reply = (req, res) => {
      seen.push(req.headers['x-vault-token'] as string | undefined);
      res.writeHead(404).end();
    };
    const s = await openSecretStore(cfg, { env: { MCPGW_VAULT_TOKEN: 'from-env-token' } });
    await s.get('github', 'X_TOKEN');
    expect(seen).toEqual(['from-env-token']);

    const dir = await mkdtemp(join(tmpdir(), 'mcpgw-token-'));
    try {
      const tokenFile = join(dir, 'vault-token');
      await writeFile(tokenFile, 'from-file-token\n', { mode: 0o600 });
      const fromFile = await openSecretStore({ ...cfg, tokenFile }, { env: { MCPGW_VAULT_TOKEN: 'ignored' } });
      await fromFile.get('github', 'X_TOKEN');
      expect(seen).toEqual(['from-env-token', 'from-file-token']);
      if (process.platform !== 'win32') {
        await chmod(tokenFile, 0o644);
        const e = await refusal(fromFile.get('github', 'X_TOKEN'), 'forbidden', ['from-file-token']);
        expect(e.message).toContain(`chmod 600 ${tokenFile}`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    expect(secretsConfigSchema.parse({ backend: 'builtin' })).toEqual({ backend: 'builtin' });
    expect(() => secretsConfigSchema.parse({ backend: 'vault', address: 'ftp://x' })).toThrow();
  });
});

describeWith(['bao'], 'vault backend against a real OpenBao dev server', () => {
  let bao: BaoServer;
  beforeAll(async () => {
    bao = await startBao();
  });
  afterAll(async () => {
    await bao?.destroy();
  });
  const open = (extra: Partial<ConstructorParameters<typeof VaultSecretStore>[0]> = {}) =>
    new VaultSecretStore({ address: bao.address, token: bao.token, timeoutMs: 3000, ...extra });

  it('stores each service as one KV v2 secret at secret/data/services/<service>', async () => {
    const s = open();
    await s.check();
    await s.set('github', 'GITHUB_TOKEN', VALUE);
    await s.set('github', 'GITHUB_APP_KEY', `${VALUE}-app`);
    await s.set('gmail', 'GMAIL_OAUTH_TOKEN', 'ya29.gmail-token-value');
    const raw = await bao.api('GET', 'secret/data/services/github');
    expect(raw.status).toBe(200);
    expect((raw.body as { data: { data: unknown } }).data.data).toEqual({
      GITHUB_TOKEN: VALUE,
      GITHUB_APP_KEY: `${VALUE}-app`,
    });

    expect(await s.get('github', 'GITHUB_TOKEN')).toBe(VALUE);
    expect(await s.get('github', 'MISSING')).toBeNull();
    expect(await s.get('nosuch', 'GITHUB_TOKEN')).toBeNull();
    expect(await s.valuesFor('github')).toEqual({ GITHUB_TOKEN: VALUE, GITHUB_APP_KEY: `${VALUE}-app` });
    expect(await s.valuesFor('github', ['GITHUB_TOKEN'])).toEqual({ GITHUB_TOKEN: VALUE });
    const listing = await s.list({ slack: ['SLACK_TOKEN'] });
    expect(listing.map((l) => [l.service, l.variable, l.stored])).toEqual([
      ['github', 'GITHUB_APP_KEY', true],
      ['github', 'GITHUB_TOKEN', true],
      ['gmail', 'GMAIL_OAUTH_TOKEN', true],
      ['slack', 'SLACK_TOKEN', false],
    ]);
    expect(JSON.stringify(listing)).not.toContain(VALUE);
    await expect(s.set('github', 'SHORT', 'short')).rejects.toThrow(/shorter than 8/);
  });

  it('keeps fields other tools wrote, but never injects them', async () => {
    await bao.api('POST', 'secret/data/services/legacy', {
      data: { note: 'not a variable', 'lower-case': 'x', API_KEY: 'legacy-api-key-1' },
    });
    const s = open();
    expect(await s.valuesFor('legacy')).toEqual({ API_KEY: 'legacy-api-key-1' });
    await s.set('legacy', 'NEW_KEY', 'another-value-123');
    const raw = await bao.api('GET', 'secret/data/services/legacy');
    expect((raw.body as { data: { data: unknown } }).data.data).toEqual({
      note: 'not a variable',
      'lower-case': 'x',
      API_KEY: 'legacy-api-key-1',
      NEW_KEY: 'another-value-123',
    });
  });

  it('deleting a variable destroys the older versions that still hold it', async () => {
    const s = open();
    await s.set('rotating', 'KEEP_ME', 'kept-value-0001');
    await s.set('rotating', 'DROP_ME', 'dropped-value-0002');
    expect(await s.delete('rotating', 'DROP_ME')).toBe(true);
    expect(await s.delete('rotating', 'DROP_ME')).toBe(false);
    for (const version of [1, 2]) {
      const old = await bao.api('GET', `secret/data/services/rotating?version=${version}`);
      expect(JSON.stringify(old.body)).not.toContain('dropped-value-0002');
    }
    expect(await s.valuesFor('rotating')).toEqual({ KEEP_ME: 'kept-value-0001' });
    // The last variable takes the whole path, history included, with it.
    expect(await s.delete('rotating', 'KEEP_ME')).toBe(true);
    expect((await bao.api('GET', 'secret/metadata/services/rotating')).status).toBe(404);
    expect(await s.valuesFor('rotating')).toEqual({});
  });

  it('concurrent writers to one service lose nothing (check-and-set)', async () => {
    const writers = Array.from({ length: 4 }, () => open());
    const names = Array.from({ length: 12 }, (_, i) => `VAR_${i}`);
    await Promise.all(
      names.map((n, i) => (writers[i % writers.length] as VaultSecretStore).set('busy', n, `value-of-${n}-xyz`)),
    );
    const values = await open().valuesFor('busy');
    expect(Object.keys(values).sort()).toEqual([...names].sort());
  });

  it('refuses a wrong token with a clear message that does not contain it', async () => {
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    const s = open({ token: wrong });
    const e = await refusal(s.get('github', 'GITHUB_TOKEN'), 'forbidden', [wrong, bao.token, VALUE]);
    expect(e.message).toContain('403');
    await refusal(s.check(), 'forbidden', [wrong, bao.token]);
    await refusal(s.set('github', 'GITHUB_TOKEN', VALUE), 'forbidden', [wrong, bao.token, VALUE]);
    await refusal(s.list(), 'forbidden', [wrong]);
  });

  it('uses a namespace and a custom mount', async () => {
    expect((await bao.api('POST', 'sys/namespaces/team1', {})).status).toBe(200);
    expect((await bao.api('POST', 'sys/mounts/apps', { type: 'kv', options: { version: '2' } }, 'team1')).status).toBe(
      204,
    );
    const inNs = open({ namespace: 'team1', mount: 'apps' });
    await inNs.set('github', 'NS_TOKEN', 'namespaced-value-1');
    expect(await inNs.get('github', 'NS_TOKEN')).toBe('namespaced-value-1');
    const raw = await bao.api('GET', 'apps/data/services/github', undefined, 'team1');
    expect((raw.body as { data: { data: unknown } }).data.data).toEqual({ NS_TOKEN: 'namespaced-value-1' });
    expect(await open().get('github', 'NS_TOKEN')).toBeNull();
  });

  it('notices changes by polling', async () => {
    const s = open({ pollMs: 100 });
    let changes = 0;
    const stop = await s.watch(() => changes++);
    await open().set('polled', 'POLLED_TOKEN', 'polled-value-1');
    await expect.poll(() => changes, { timeout: 5000 }).toBeGreaterThan(0);
    await stop();
  });

  // Dev mode keeps everything in memory: a restart is an empty server. What is tested here is that
  // the store survives the outage (clear errors while it lasts, works again afterwards without being
  // reopened), not persistence, which a real deployment gets from OpenBao's storage backend.
  it('reports the outage clearly during a restart and works again afterwards', async () => {
    const s = open();
    await s.set('github', 'GITHUB_TOKEN', VALUE);
    await bao.stop();
    const e = await refusal(s.get('github', 'GITHUB_TOKEN'), 'unavailable', [bao.token, VALUE]);
    expect(e.message).toMatch(/connection refused/);
    await refusal(s.check(), 'unavailable', [bao.token]);
    await bao.restart();
    await s.check();
    expect(await s.get('github', 'GITHUB_TOKEN')).toBeNull(); // dev mode: the data is gone
    await s.set('github', 'GITHUB_TOKEN', VALUE);
    expect(await s.get('github', 'GITHUB_TOKEN')).toBe(VALUE);
  });
});
