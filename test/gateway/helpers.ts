/**
 * Shared pieces of the gateway suites: keys, a policy getter built from YAML, and a fetch that
 * adds to each request exactly what authz adds to an allowed one (a real internal JWT from the
 * real issuer, a decision id, the real request MAC over the exact body), so the official SDK client
 * can talk to the gateway directly. The end-to-end suite goes through real Envoy and authz instead.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import { gatewayPolicyFrom, type GatewayPolicy } from '../../src/aggregator/index.js';
import { PolicyHolder } from '../../src/authz/runtime.js';
import { createInternalJwtIssuer, MemoryKeyRing, type InternalJwtIssuer } from '../../src/identity/internal-jwt.js';
import { requestMac } from '../../src/identity/request-mac.js';
import { MemoryIdentityStore, type Principal } from '../../src/identity/store.js';
import { createLogger, type Logger } from '../../src/log.js';
import { loadPolicyText } from '../../src/policy/load.js';
import type { ServiceConfig } from '../../src/policy/schema.js';
import type { Role } from '../../src/policy/layer1-types.js';

export const FIXTURE_SERVER = fileURLToPath(new URL('../fixtures/backends/fixture-server.mjs', import.meta.url));

export function quietLogger(): Logger {
  return createLogger({
    level: process.env['MCPGW_TEST_LOG'] ?? 'silent',
    destination: pino.destination({ dest: 2, sync: true }),
  });
}

export interface TestKeys {
  sessionKey: Buffer;
  requestMacKey: Buffer;
  keyRing: MemoryKeyRing;
  issuer: InternalJwtIssuer;
}

export async function testKeys(): Promise<TestKeys> {
  const keyRing = await MemoryKeyRing.create();
  return {
    sessionKey: randomBytes(32),
    requestMacKey: randomBytes(32),
    keyRing,
    issuer: createInternalJwtIssuer({ ring: keyRing }),
  };
}

/** A policy getter over a real PolicyHolder; `apply` swaps in a new text (and its services). */
export async function testPolicy(
  text: string,
): Promise<{ get: () => GatewayPolicy; apply(text: string): Promise<void> }> {
  const servicesOf = (t: string): Record<string, ServiceConfig> => {
    const loaded = loadPolicyText(t, 'test.yaml');
    if (!loaded.ok) throw new Error(loaded.errors.map((e) => e.message).join('; '));
    return loaded.policy.services;
  };
  const created = await PolicyHolder.create(text, 'test.yaml');
  if ('errors' in created) throw new Error(created.errors.map((e) => `${e.path}: ${e.message}`).join('; '));
  const holder = created.holder;
  let services = servicesOf(text);
  const get = gatewayPolicyFrom(holder, () => services);
  return {
    get,
    async apply(next) {
      const r = await holder.apply(next, 'test.yaml');
      if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('; '));
      services = servicesOf(next);
    },
  };
}

export function identities(users: Principal[]): MemoryIdentityStore {
  const store = new MemoryIdentityStore();
  for (const u of users) store.addUser(u);
  return store;
}

/** What authz puts on an allowed request, for `user`. */
export function authzFetch(keys: TestKeys, user: string, role: Role = 'agent'): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    const body = init?.body === undefined || init.body === null ? '' : String(init.body);
    const decisionId = randomUUID();
    headers.set('authorization', `Bearer ${await keys.issuer.mint({ sub: user, role })}`);
    headers.set('x-mcpgw-user', user);
    headers.set('x-mcpgw-decision-id', decisionId);
    headers.set('x-mcpgw-request-mac', requestMac(keys.requestMacKey, decisionId, Buffer.from(body)));
    return fetch(input, { ...init, headers });
  };
}

export async function connect(
  url: string,
  fetchImpl: typeof fetch,
  capabilities: ClientCapabilities = {},
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: fetchImpl });
  const client = new Client({ name: 'test-agent', version: '1.0.0' }, { capabilities });
  await client.connect(transport);
  return { client, transport };
}

export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content
    .filter((c) => c.type === 'text')
    .map((c) => c.text ?? '')
    .join('\n');
}

export async function waitFor<T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
