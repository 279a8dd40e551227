/**
 * One running product for the end-to-end suite: `serveAll` in this process (PGlite in a temp home,
 * authz, the gateway with its aggregator and admin API, and the front: real Envoy or the built-in
 * one), the policy from test/fixtures/e2e, and three real backends — the npm
 * `@modelcontextprotocol/server-everything` and `@modelcontextprotocol/server-filesystem` over stdio
 * and the fixture server over Streamable HTTP.
 *
 * The only thing made behind the product's back is the first admin key, exactly as `mcpgw init`
 * makes it (store → user → key hash); every other user, key and grant goes through `/admin/v1`
 * over HTTP, through the front.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { serveAll, type RunningGateway } from '../../src/cli/serve-all.js';
import { generateApiKey, parseApiKey } from '../../src/identity/api-keys.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { Role } from '../../src/policy/layer1-types.js';
import { startHttpFixture } from '../fixtures/backends/fixture-server.mjs';
import { findExecutable } from '../helpers/components.js';

export type FrontKind = 'builtin' | 'envoy';

const TEMPLATE = new URL('../fixtures/e2e/mcp-security.template.yaml', import.meta.url);

/** What the private file holds: the taint scenario reads it. */
export const PRIVATE_TEXT = 'salary review: confidential\n';

export interface AdminResponse {
  status: number;
  body: unknown;
}

export interface Agent {
  client: Client;
  transport: StreamableHTTPClientTransport;
  sessionId: string;
}

export interface Stack {
  readonly front: FrontKind;
  readonly gw: RunningGateway;
  /** `http://127.0.0.1:<front>/mcp`. */
  readonly url: string;
  readonly fsRoot: string;
  readonly privateFile: string;
  readonly adminKey: string;
  /** An admin API call through the front, as `key` (the owner's admin key by default). */
  admin(method: string, path: string, body?: unknown, key?: string): Promise<AdminResponse>;
  /** Creates a user through the admin API and returns its API key. */
  createUser(id: string, role: Role, grants?: Record<string, string[]>): Promise<string>;
  /** An SDK client connected (initialize done) through the front. */
  agent(key: string): Promise<Agent>;
  /** An SDK client bound to an existing session id, without initialize. */
  agentOnSession(key: string, sessionId: string): Promise<Client>;
  /** Closes the clients, the product, the HTTP backend and the temp dir; once. */
  close(): Promise<void>;
}

export function testLogger(): Logger {
  return createLogger({
    level: process.env['MCPGW_TEST_LOG'] ?? 'silent',
    destination: pino.destination({ dest: 2, sync: true }),
  });
}

async function policyText(fsRoot: string, webPort: number): Promise<string> {
  const template = await readFile(TEMPLATE, 'utf8');
  return template.replaceAll('__FS_ROOT__', fsRoot).replaceAll('__WEB_PORT__', String(webPort));
}

export async function startStack(front: FrontKind): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), `mcpgw-e2e-${front}-`));
  const closers: (() => Promise<void>)[] = [() => rm(dir, { recursive: true, force: true })];
  const clients: Client[] = [];
  let closing: Promise<void> | null = null;
  const closeAll = (): Promise<void> =>
    (closing ??= (async () => {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      for (const c of closers.reverse()) await c().catch(() => undefined);
    })());
  try {
    const home = join(dir, 'home');
    const fsRoot = join(dir, 'files');
    await mkdir(fsRoot);
    const privateFile = join(fsRoot, 'salaries.txt');
    await writeFile(privateFile, PRIVATE_TEXT);
    await writeFile(join(fsRoot, 'readme.txt'), 'public notes\n');

    const web = await startHttpFixture({ name: 'e2e-web' });
    closers.push(() => web.close());

    const policyFile = join(dir, 'mcp-security.yaml');
    await writeFile(policyFile, await policyText(fsRoot, web.port), { mode: 0o600 });

    let frontOpt: { kind: 'envoy'; envoyBin: string } | { kind: 'builtin' } = { kind: 'builtin' };
    if (front === 'envoy') {
      const envoyBin = findExecutable('envoy');
      if (envoyBin === null) throw new Error('envoy is not installed');
      frontOpt = { kind: 'envoy', envoyBin };
    }
    const gw = await serveAll({
      home,
      policyFile,
      listen: { host: '127.0.0.1', port: 0 },
      authzPort: 0,
      gatewayPort: 0,
      front: frontOpt,
      logger: testLogger(),
      drainSeconds: 0,
    });
    closers.push(() => gw.close());

    // What `mcpgw init` does for the owner: the key is shown once, the store keeps its hash.
    const adminKey = generateApiKey('ak');
    const parsed = parseApiKey(adminKey);
    if (!parsed.ok) throw new Error('generated an invalid admin key');
    await gw.store.identity.createUser({ id: 'owner', role: 'admin' });
    await gw.store.identity.addApiKey({ userId: 'owner', kind: 'ak', hash: parsed.hash, displayId: parsed.displayId });

    const base = `http://127.0.0.1:${gw.ports.front}`;

    const admin = async (method: string, path: string, body?: unknown, key = adminKey): Promise<AdminResponse> => {
      const res = await fetch(`${base}/admin/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      let parsedBody: unknown = text;
      try {
        parsedBody = JSON.parse(text);
      } catch {
        // not JSON: kept as text so an assertion shows it
      }
      return { status: res.status, body: parsedBody };
    };

    const createUser = async (id: string, role: Role, grants: Record<string, string[]> = {}): Promise<string> => {
      const created = await admin('POST', '/users', { id, role });
      if (created.status !== 201) throw new Error(`create ${id}: ${created.status} ${JSON.stringify(created.body)}`);
      const apiKey = (created.body as { apiKey?: unknown }).apiKey;
      if (typeof apiKey !== 'string') throw new Error(`create ${id}: no apiKey in ${JSON.stringify(created.body)}`);
      for (const [service, tools] of Object.entries(grants)) {
        const g = await admin('POST', `/users/${encodeURIComponent(id)}/grants`, { service, tools });
        if (g.status !== 200) throw new Error(`grant ${id} ${service}: ${g.status} ${JSON.stringify(g.body)}`);
      }
      return apiKey;
    };

    const transportFor = (key: string, sessionId?: string): StreamableHTTPClientTransport =>
      new StreamableHTTPClientTransport(new URL(gw.url), {
        requestInit: { headers: { authorization: `Bearer ${key}` } },
        ...(sessionId === undefined ? {} : { sessionId }),
      });

    const agent = async (key: string): Promise<Agent> => {
      const transport = transportFor(key);
      const client = new Client({ name: 'e2e-agent', version: '1.0.0' });
      await client.connect(transport);
      clients.push(client);
      const sessionId = transport.sessionId;
      if (sessionId === undefined) throw new Error('initialize returned no mcp-session-id');
      return { client, transport, sessionId };
    };

    const agentOnSession = async (key: string, sessionId: string): Promise<Client> => {
      const client = new Client({ name: 'e2e-intruder', version: '1.0.0' });
      // With a session id already set, the SDK skips initialize (it is a reconnection).
      await client.connect(transportFor(key, sessionId));
      clients.push(client);
      return client;
    };

    return {
      front,
      gw,
      url: gw.url,
      fsRoot,
      privateFile,
      adminKey,
      admin,
      createUser,
      agent,
      agentOnSession,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The text parts of a CallToolResult, joined by newlines. */
export function textOf(result: unknown): string {
  const content = isRecord(result) && Array.isArray(result['content']) ? (result['content'] as unknown[]) : [];
  return content
    .map((c) => (isRecord(c) && c['type'] === 'text' && typeof c['text'] === 'string' ? c['text'] : ''))
    .filter((t) => t !== '')
    .join('\n');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The gateway's machine-readable refusal in a CallToolResult's `_meta`, or null when it is none. */
export interface Refusal {
  decision: 'deny' | 'pending';
  rule: string | null;
  approvalId: string | null;
  retryAfter: number | null;
}

export function refusalOf(result: unknown): Refusal | null {
  const meta = isRecord(result) ? result['_meta'] : undefined;
  const r = isRecord(meta) ? meta['io.mcpgw/decision'] : undefined;
  if (!isRecord(r)) return null;
  if (r['decision'] !== 'deny' && r['decision'] !== 'pending') return null;
  return {
    decision: r['decision'],
    rule: typeof r['rule'] === 'string' ? r['rule'] : null,
    approvalId: typeof r['approvalId'] === 'string' ? r['approvalId'] : null,
    retryAfter: typeof r['retryAfter'] === 'number' ? r['retryAfter'] : null,
  };
}

export async function waitUntil<T>(
  what: string,
  fn: () => Promise<T>,
  ok: (v: T) => boolean,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
