/**
 * `mcpgw serve --role gateway` as its own process, in the layout of separate Deployments (DESIGN
 * §2): a real `serve --role authz` process and a real `serve --role gateway` process sharing only
 * MCPGW_HOME's key files and the state store, with a front between the agent and them (the built-in
 * front in this process, and the real Envoy when installed). The official SDK client calls a tool
 * of server-everything through the front; the gateway port refuses whatever authz did not vouch
 * for; the admin API served by the gateway reaches the shared database; a policy applied there is
 * enforced by the authz process (through the stored revision and its NOTIFY, also after the
 * listener reconnects, and not when the revision does not compile); a service it suspends is
 * refused by the authz process.
 *
 * A second suite runs both roles without a state store (--no-state): the same identities file on
 * both sides, and the internal-JWT keys from authz's key file.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import pgDriver from 'pg';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DECISION_META_KEY } from '../../src/authz/answers.js';
import { startBuiltinFront, type BuiltinFront } from '../../src/front/builtin.js';
import { superviseEnvoy } from '../../src/front/envoy-supervisor.js';
import { generateApiKey, hashApiKey, parseApiKey } from '../../src/identity/api-keys.js';
import { openStore } from '../../src/state/index.js';
import { describeWith, findExecutable } from '../helpers/components.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { quietLogger, textOf, waitFor } from '../gateway/helpers.js';

const repo = new URL('../..', import.meta.url).pathname;

const POLICY = `version: "1.0"
services:
  everything: {transport: stdio, command: mcp-server-everything, args: [stdio]}
tool_overrides:
  everything:
    get-env: {labels: ["data:environment"]}
policies:
  - {name: no environment dumps, when: {labels: ["data:environment"]}, action: deny, priority: 1}
  - {name: allow the rest, when: {}, action: allow, priority: 10}
`;

/** POLICY with echo labelled like get-env, so the deny rule catches it too. */
const NO_ECHO = POLICY.replace(
  '    get-env: {labels: ["data:environment"]}\n',
  '    get-env: {labels: ["data:environment"]}\n    echo: {labels: ["data:environment"]}\n',
);

interface Role {
  proc: ChildProcessWithoutNullStreams;
  ready: Record<string, unknown>;
  logs: () => string;
}

/** Starts `mcpgw serve` with these arguments and resolves with its readiness line. */
async function serve(args: string[], env: Record<string, string>): Promise<Role> {
  const proc = spawn(process.execPath, [join(repo, 'bin/mcpgw.js'), 'serve', ...args], {
    env: { ...process.env, MCPGW_LOG_LEVEL: 'warn', ...env },
  });
  let logs = '';
  proc.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  const rl = createInterface({ input: proc.stdout });
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve ${args.join(' ')}: not ready\n${logs}`)), 30_000);
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`serve ${args.join(' ')} exited with ${code}\n${logs}`));
    });
    rl.on('line', (l) => {
      logs += `${l}\n`;
      if (l.startsWith('{"ready"')) {
        clearTimeout(t);
        resolve(JSON.parse(l) as Record<string, unknown>);
      }
    });
  });
  return { proc, ready, logs: () => logs };
}

async function stop(role: Role | undefined): Promise<void> {
  if (!role || role.proc.exitCode !== null) return;
  const exited = new Promise<void>((r) => role.proc.once('exit', () => r()));
  role.proc.kill('SIGTERM');
  const t = setTimeout(() => role.proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

async function agent(url: string, key: string): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  });
  const client = new Client({ name: 'split-roles-agent', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

function portOf(role: Role): number {
  const p = role.ready['port'];
  if (typeof p !== 'number') throw new Error(`no port in ${JSON.stringify(role.ready)}`);
  return p;
}

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
});

/** What every layout must show: calls work through the front, and only through it. */
function splitLayoutChecks(ctx: () => { frontUrl: string; gatewayPort: number; agentKey: string }): void {
  it('an allowed tool call goes agent → front → authz → gateway → backend and back', async () => {
    const client = await agent(ctx().frontUrl, ctx().agentKey);
    try {
      const names = (await client.listTools()).tools.map((t) => t.name);
      expect(names).toContain('everything__echo');
      expect(
        textOf(await client.callTool({ name: 'everything__echo', arguments: { message: 'through the split' } })),
      ).toBe('Echo: through the split');
      // authz, in its own process, decides: its deny rule answers, the backend is never reached.
      const denied = await client.callTool({ name: 'everything__get-env', arguments: {} });
      expect(denied.isError).toBe(true);
      expect(denied._meta?.[DECISION_META_KEY]).toMatchObject({ decision: 'deny', rule: 'no environment dumps' });
    } finally {
      await client.close();
    }
  });

  it('the gateway port refuses a request that did not come through authz', async () => {
    const url = `http://127.0.0.1:${ctx().gatewayPort}/mcp`;
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const bare = await fetch(url, { method: 'POST', headers, body: INITIALIZE });
    expect(bare.status).toBe(401);
    // The agent's own credential is for authz, not for the gateway.
    const withKey = await fetch(url, {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${ctx().agentKey}` },
      body: INITIALIZE,
    });
    expect(withKey.status).toBe(401);
    const body = (await withKey.json()) as { error?: { code?: number } };
    expect(body.error?.code).toBe(-32001);
  });
}

describeWith(['initdb', 'pg_ctl'], 'serve --role authz + serve --role gateway on a shared PostgreSQL', () => {
  let pg: PgServer | undefined;
  let dir: string;
  let authz: Role | undefined;
  let gateway: Role | undefined;
  let front: BuiltinFront | undefined;
  const agentKey = generateApiKey('sk');
  const adminKey = generateApiKey('ak');
  let policyFile: string;
  let databaseUrl: string;

  beforeAll(async () => {
    pg = await startPostgres();
    databaseUrl = await pg.createDatabase();
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-split-'));
    const home = join(dir, 'home');
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, POLICY);
    // Users and keys as the admin API would store them, in the database both roles read.
    const seed = await openStore({ databaseUrl, home, logger: quietLogger() });
    for (const [id, role, key] of [
      ['alice', 'agent', agentKey],
      ['owner', 'admin', adminKey],
    ] as const) {
      const parsed = parseApiKey(key);
      if (!parsed.ok) throw new Error('generated an invalid API key');
      await seed.identity.createUser({ id, role });
      await seed.identity.addApiKey({
        userId: id,
        kind: key.startsWith('mcpgw_ak_') ? 'ak' : 'sk',
        hash: parsed.hash,
        displayId: parsed.displayId,
      });
    }
    await seed.identity.grant('alice', 'everything', '*');
    await seed.close();

    const env = { MCPGW_HOME: home, MCPGW_DATABASE_URL: databaseUrl };
    authz = await serve(['--role', 'authz', '--port', '0', '--policy', policyFile, '--drain-seconds', '0'], env);
    gateway = await serve(['--role', 'gateway', '--gateway-port', '0', '--policy', policyFile], env);
    front = await startBuiltinFront({
      listen: { host: '127.0.0.1', port: 0 },
      authz: { host: '127.0.0.1', port: portOf(authz) },
      gateway: { host: '127.0.0.1', port: portOf(gateway) },
    });
  }, 90_000);

  afterAll(async () => {
    await front?.close();
    await stop(gateway);
    await stop(authz);
    await pg?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ctx = () => {
    if (!front || !gateway) throw new Error('not started');
    return { frontUrl: `http://127.0.0.1:${front.port}/mcp`, gatewayPort: portOf(gateway), agentKey };
  };

  it('announces the gateway role and its port', () => {
    expect(gateway?.ready).toMatchObject({ ready: true, role: 'gateway' });
  });

  splitLayoutChecks(ctx);

  describeWith(['envoy'], 'through the real Envoy', () => {
    let envoy: { port: number; close(): Promise<void> } | undefined;
    beforeAll(async () => {
      if (!authz || !gateway) throw new Error('not started');
      mkdirSync(join(dir, 'envoy'), { mode: 0o700 });
      envoy = await superviseEnvoy({
        envoyBin: findExecutable('envoy') ?? 'envoy',
        runDir: join(dir, 'envoy'),
        config: {
          listen: { host: '127.0.0.1', port: 0 },
          authz: { host: '127.0.0.1', port: portOf(authz) },
          gateway: { host: '127.0.0.1', port: portOf(gateway) },
        },
        logger: quietLogger(),
      });
    }, 60_000);
    afterAll(() => envoy?.close());

    it('an allowed tool call works through Envoy too', async () => {
      if (!envoy) throw new Error('envoy not started');
      const client = await agent(`http://127.0.0.1:${envoy.port}/mcp`, agentKey);
      try {
        expect(textOf(await client.callTool({ name: 'everything__echo', arguments: { message: 'envoy' } }))).toBe(
          'Echo: envoy',
        );
      } finally {
        await client.close();
      }
    });
  });

  /** A fresh connection to the shared database, closed after `fn`. */
  const withDb = async <T>(fn: (db: pgDriver.Client) => Promise<T>): Promise<T> => {
    const db = new pgDriver.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      return await fn(db);
    } finally {
      await db.end();
    }
  };

  /** Calls `everything__echo` through the front until `done` holds. */
  const echoUntil = async (done: (r: Awaited<ReturnType<Client['callTool']>>) => boolean) => {
    const client = await agent(ctx().frontUrl, agentKey);
    try {
      return await waitFor(
        () => client.callTool({ name: 'everything__echo', arguments: { message: 'hi' } }),
        done,
        10_000,
      );
    } finally {
      await client.close();
    }
  };

  it('a policy applied through the gateway’s admin API is enforced by the authz process', async () => {
    const base = ctx().frontUrl.replace(/\/mcp$/, '/admin/v1');
    const auth = { authorization: `Bearer ${adminKey}` };
    const who = await fetch(`${base}/whoami`, { headers: auth });
    expect(who.status).toBe(200);
    expect(await who.json()).toMatchObject({ id: 'owner', role: 'admin' });
    // Allowed before: the change below is what denies it.
    const before = await echoUntil(() => true);
    expect(before.isError).not.toBe(true);

    const apply = await fetch(`${base}/policy`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ filename: 'no-echo.yaml', content: NO_ECHO }),
    });
    expect(apply.status).toBe(200);
    const applied = (await apply.json()) as { applied: boolean; storedAs: string };
    expect(applied.applied).toBe(true);
    // authz learns of it only through the stored revision and its NOTIFY.
    const denied = await echoUntil((r) => r.isError === true);
    expect(denied._meta?.[DECISION_META_KEY]).toMatchObject({ decision: 'deny', rule: 'no environment dumps' });
    const stored = await withDb((db) =>
      db.query<{ source: string }>('SELECT source FROM policy_revisions WHERE id = $1', [applied.storedAs]),
    );
    expect(stored.rows[0]?.source).toBe(NO_ECHO);
  });

  it('a revision that does not compile leaves authz on its policy and is logged with its id', async () => {
    const id = 'broken-revision-1';
    await withDb((db) =>
      db.query('INSERT INTO policy_revisions (id, source, compiled) VALUES ($1, $2, $3::jsonb)', [
        id,
        'version: "1.0"\npolicies: [{name: x, action: explode}]\n',
        JSON.stringify({ revision: 'sha256:broken', file: 'broken.yaml' }),
      ]),
    );
    await waitFor(
      async () => authz?.logs() ?? '',
      (l) => l.includes(id),
      10_000,
    );
    expect(authz?.logs()).toMatch(/failed to load; the running policy stays in force/);
    // Still the applied policy: echo denied by its rule, another tool allowed (not an empty policy).
    const client = await agent(ctx().frontUrl, agentKey);
    try {
      const echo = await client.callTool({ name: 'everything__echo', arguments: { message: 'hi' } });
      expect(echo._meta?.[DECISION_META_KEY]).toMatchObject({ decision: 'deny', rule: 'no environment dumps' });
      const sum = await client.callTool({ name: 'everything__get-sum', arguments: { a: 1, b: 2 } });
      expect(sum.isError).not.toBe(true);
    } finally {
      await client.close();
    }
  });

  it('after its listener reconnects, authz adopts a revision stored while it was not listening', async () => {
    await withDb(async (db) => {
      // A row stored without its NOTIFY (triggers off for this session): only the re-read after
      // the reconnect can find it. It is the first file's revision again, stored at startup.
      await db.query("SET session_replication_role = 'replica'");
      const r = await db.query(
        `INSERT INTO policy_revisions (id, source, compiled, created_by)
           SELECT id || '.caught-up', source, compiled, 'test' FROM policy_revisions
            WHERE source = $1 ORDER BY seq LIMIT 1`,
        [POLICY],
      );
      expect(r.rowCount).toBe(1);
      const killed = await db.query<{ ok: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
          WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid() AND datname = current_database()`,
      );
      // authz's listener and the gateway's.
      expect(killed.rows.filter((x) => x.ok).length).toBeGreaterThanOrEqual(2);
    });
    const allowed = await echoUntil((r) => r.isError !== true);
    expect(allowed.isError).not.toBe(true);
  });

  it('a service suspended through the gateway’s admin API is refused by the authz process', async () => {
    const base = ctx().frontUrl.replace(/\/mcp$/, '/admin/v1');
    const suspended = await fetch(`${base}/services/everything/suspend`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'maintenance' }),
    });
    expect(suspended.status).toBe(200);
    const client = await agent(ctx().frontUrl, agentKey);
    try {
      // authz hears of it through the database's NOTIFY, not from the gateway.
      const result = await waitFor(
        () => client.callTool({ name: 'everything__echo', arguments: { message: 'still there?' } }),
        (r) => r.isError === true,
        10_000,
      );
      expect(result._meta?.[DECISION_META_KEY]).toMatchObject({ decision: 'deny' });
    } finally {
      await client.close();
    }
  });
});

describe('serve --role authz + serve --role gateway without a state store', () => {
  let dir: string;
  let authz: Role | undefined;
  let gateway: Role | undefined;
  let front: BuiltinFront | undefined;
  const agentKey = generateApiKey('sk');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-split-nostate-'));
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, POLICY);
    const users = join(dir, 'users.yaml');
    writeFileSync(
      users,
      `users:\n  - {id: alice, role: agent, grants: {everything: ["*"]}, apiKeySha256: ["${hashApiKey(agentKey).toString('hex')}"]}\n`,
    );
    const common = ['--policy', policyFile, '--identities', users, '--no-state'];
    const env = { MCPGW_HOME: join(dir, 'home') };
    authz = await serve(['--role', 'authz', '--port', '0', '--drain-seconds', '0', ...common], env);
    gateway = await serve(['--role', 'gateway', '--gateway-port', '0', ...common], env);
    front = await startBuiltinFront({
      listen: { host: '127.0.0.1', port: 0 },
      authz: { host: '127.0.0.1', port: portOf(authz) },
      gateway: { host: '127.0.0.1', port: portOf(gateway) },
    });
  }, 90_000);

  afterAll(async () => {
    await front?.close();
    await stop(gateway);
    await stop(authz);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  splitLayoutChecks(() => {
    if (!front || !gateway) throw new Error('not started');
    return { frontUrl: `http://127.0.0.1:${front.port}/mcp`, gatewayPort: portOf(gateway), agentKey };
  });

  it('refuses to start a stateless gateway without the identities file', async () => {
    await expect(
      serve(['--role', 'gateway', '--gateway-port', '0', '--no-state', '--policy', join(dir, 'policy.yaml')], {
        MCPGW_HOME: join(dir, 'home'),
      }),
    ).rejects.toThrow(/needs --identities/);
  });
});
