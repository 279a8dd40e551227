/**
 * Backends that die, hang, never start or go away: the agent gets a clear JSON-RPC error at once,
 * the backend comes back with exponential backoff, and everything works again.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY_BACKEND_TIMEOUT, GATEWAY_BACKEND_UNAVAILABLE } from '../../src/aggregator/index.js';
import { startGateway, type GatewayServer } from '../../src/gateway/index.js';
import { startHttpFixture } from '../fixtures/backends/fixture-server.mjs';
import {
  authzFetch,
  connect,
  FIXTURE_SERVER,
  identities,
  quietLogger,
  testKeys,
  testPolicy,
  textOf,
  waitFor,
  type TestKeys,
} from './helpers.js';

let keys: TestKeys;
let gw: GatewayServer;
let web: Awaited<ReturnType<typeof startHttpFixture>> | null;
let webPort: number;
let client: Client;

beforeAll(async () => {
  keys = await testKeys();
  web = await startHttpFixture();
  webPort = web.port;
  const policy = await testPolicy(`version: "1.0"
services:
  fx: {transport: stdio, command: node, args: [${JSON.stringify(FIXTURE_SERVER)}, stdio]}
  ghost: {transport: stdio, command: no-such-mcp-server}
  web: {transport: http, url: "http://127.0.0.1:${webPort}/mcp"}
policies:
  - {name: allow, when: {}, action: allow, priority: 1}
`);
  gw = await startGateway({
    port: 0,
    policy: policy.get,
    identities: identities([{ id: 'alice', role: 'agent', grants: { fx: ['*'], ghost: ['*'], web: ['*'] } }]),
    keys,
    logger: quietLogger(),
    backoff: { initialMs: 200, maxMs: 3000, factor: 2, stableMs: 60_000 },
    timeouts: { callMs: 1000, connectMs: 3000 },
  });
  client = (await connect(`http://127.0.0.1:${gw.port}/mcp`, authzFetch(keys, 'alice'))).client;
});

afterAll(async () => {
  await client?.close();
  await gw?.close();
  await web?.close();
});

type Outcome = { ok: true; text: string } | { ok: false; code: number; message: string; retryAfterMs?: number };

async function call(name: string, args: Record<string, unknown> = {}): Promise<Outcome> {
  try {
    return { ok: true, text: textOf(await client.callTool({ name, arguments: args })) };
  } catch (e) {
    if (!(e instanceof McpError)) throw e;
    const retry = (e.data as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
    return {
      ok: false,
      code: e.code,
      message: e.message,
      ...(typeof retry === 'number' ? { retryAfterMs: retry } : {}),
    };
  }
}

/**
 * Crashes the shared child and waits until it answers again. Returns the wait the gateway announced
 * while it was down (`retryAfterMs` of the error), which shows the backoff without timing anything.
 */
async function crashAndRecover(): Promise<{ announced: Outcome }> {
  expect((await call('fx__crash')).ok).toBe(true);
  const announced = await waitFor(
    () => call('fx__echo', { text: 'x' }),
    (o) => !o.ok && o.retryAfterMs !== undefined,
    3000,
  );
  await waitFor(
    () => call('fx__echo', { text: 'x' }),
    (o) => o.ok,
    5000,
  );
  return { announced };
}

describe('a backend that dies', () => {
  it('fails calls clearly meanwhile, restarts with growing backoff, and works again', async () => {
    let changed = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    const pid1 = await call('fx__pid');
    const first = (await crashAndRecover()).announced;
    expect(first).toMatchObject({ ok: false, code: GATEWAY_BACKEND_UNAVAILABLE });
    expect(first.ok === false && first.message).toMatch(
      /Service 'fx' is unavailable \(restarting after a failure\); retry in 1 s/,
    );
    const pid2 = await call('fx__pid');
    expect(pid2.ok && pid1.ok && pid2.text !== pid1.text).toBe(true);
    // The restart tells the agent its lists may have changed.
    await waitFor(
      () => changed,
      (n) => n >= 1,
    );
    // Down again before it was up for `stableMs`: the next wait doubles (200 ms, then 400 ms).
    const second = (await crashAndRecover()).announced;
    const wait = (o: Outcome) => (o.ok ? -1 : (o.retryAfterMs ?? -1));
    expect(wait(first)).toBeGreaterThan(0);
    expect(wait(first)).toBeLessThanOrEqual(200);
    expect(wait(second)).toBeGreaterThan(200);
    expect(wait(second)).toBeLessThanOrEqual(400);
  });

  it('a call in flight when the child dies gets an error, not a hang', async () => {
    const slow = call('fx__slow', { ms: 800 });
    await new Promise((r) => setTimeout(r, 100));
    await call('fx__crash');
    const r = await slow;
    expect(r).toMatchObject({ ok: false, code: GATEWAY_BACKEND_UNAVAILABLE });
    await waitFor(
      () => call('fx__echo', { text: 'y' }),
      (o) => o.ok,
      8000,
    );
  });
});

describe('timeouts and unreachable backends', () => {
  it('a call that takes too long is cancelled with a timeout error; the backend keeps serving', async () => {
    const t0 = Date.now();
    const r = await call('fx__slow', { ms: 5000 });
    expect(r).toMatchObject({ ok: false, code: GATEWAY_BACKEND_TIMEOUT });
    expect(r.ok === false && r.message).toMatch(/did not answer tools\/call in time/);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(await call('fx__echo', { text: 'still here' })).toEqual({ ok: true, text: 'echo: still here' });
  });

  it('a backend that cannot start leaves the others usable and says so', async () => {
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('fx__echo');
    const r = await call('ghost__anything');
    expect(r).toMatchObject({ ok: false, code: GATEWAY_BACKEND_UNAVAILABLE });
    expect(r.ok === false && r.message).toMatch(/ghost.*could not be started/);
  });

  it('an HTTP backend that goes away is reconnected once it is back', async () => {
    expect(await call('web__echo', { text: 'a' })).toEqual({ ok: true, text: 'echo: a' });
    await web?.close();
    web = null;
    const down = await call('web__echo', { text: 'b' });
    expect(down).toMatchObject({ ok: false, code: GATEWAY_BACKEND_UNAVAILABLE });
    web = await startHttpFixture({ port: webPort });
    await waitFor(
      () => call('web__echo', { text: 'c' }),
      (o) => o.ok,
      8000,
    );
  });
});
