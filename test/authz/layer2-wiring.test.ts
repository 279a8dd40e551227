/**
 * Layer 2 in the Check path over real gRPC, with a real (embedded PGlite) state store: pending
 * answers carry the approval id, an approval is consumed by exactly one retry, limits and flows
 * deny with reasons, and denials that never reach Layer 2 are audited too.
 */
import { credentials } from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthzServer, type AuthzServer } from '../../src/authz/server.js';
import {
  AuthorizationClient,
  CheckRequest,
  type CheckResponse,
} from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import { createLogger } from '../../src/log.js';
import { openStore, type Layer2Store } from '../../src/state/index.js';
import { createAuthzFixture, type AuthzFixture } from '../helpers/authz-fixture.js';

let fx: AuthzFixture;
let store: Layer2Store;
let server: AuthzServer;
let client: AuthorizationClient;

beforeAll(async () => {
  store = await openStore({ databaseUrl: null, pgliteDataDir: null, sealer: false, env: {} });
  fx = await createAuthzFixture({
    policyFile: new URL('../fixtures/check/policy-layer2.yaml', import.meta.url).pathname,
    store,
  });
  server = await startAuthzServer({
    address: '127.0.0.1:0',
    check: (v) => fx.runtime.check(v),
    logger: createLogger({ destination: pino.destination({ dest: '/dev/null', sync: true }) }),
  });
  client = new AuthorizationClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
}, 60_000);

afterAll(async () => {
  client.close();
  await server.drain();
  await store.close();
  await fx.close();
});

let nextId = 1;
function call(
  user: string,
  name: string,
  args: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<CheckResponse> {
  const body = Buffer.from(
    JSON.stringify({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name, arguments: args } }),
  );
  const req = CheckRequest.fromPartial({
    attributes: {
      request: {
        http: {
          method: 'POST',
          path: '/mcp',
          headers: {
            authorization: `Bearer ${fx.keys[user] ?? ''}`,
            'content-type': 'application/json',
            'mcp-session-id': fx.session(user),
            ...headers,
          },
          rawBody: body,
        },
      },
    },
  });
  return new Promise((resolve, reject) => client.check(req, (err, res) => (err ? reject(err) : resolve(res))));
}

const header = (r: CheckResponse, k: string) =>
  r.deniedResponse?.headers.find((h) => h.header?.key === k)?.header?.value;
const result = (r: CheckResponse) =>
  (
    JSON.parse(r.deniedResponse?.body ?? '{}') as {
      result?: { _meta?: Record<string, Record<string, unknown>>; content?: { text: string }[] };
    }
  ).result;

async function auditRows(): Promise<{ outcome: string; decision_id: string }[]> {
  const r = await store.db.query<{ outcome: string; decision_id: string }>(
    'SELECT outcome, decision_id FROM audit_log',
  );
  return r.rows;
}

describe('Layer 2 behind the Check handler', () => {
  it('require_approval → pending with an ap- id; identical retries share it; approval is consumed by exactly one retry', async () => {
    const args = { to: 'eve@other.com', subject: 'hello', body: 'x' };
    const first = await call('alice', 'gmail__send_email', args);
    expect(first.status?.code).toBe(7);
    expect(first.deniedResponse?.status?.code).toBe(200);
    const id = header(first, 'x-mcpgw-approval-id') ?? '';
    expect(id).toMatch(/^ap-[0-9A-HJKMNP-TV-Z]{10}$/);
    expect(header(first, 'x-mcpgw-decision')).toBe('pending');
    expect(result(first)?._meta?.['io.mcpgw/decision']).toMatchObject({
      decision: 'pending',
      approvalId: id,
      rule: 'Approve external mail',
    });
    expect(result(first)?.content?.[0]?.text).toContain(id);
    expect(result(first)?.content?.[0]?.text).not.toMatch(/mcpgw approve/);

    const again = await call('alice', 'gmail__send_email', args);
    expect(header(again, 'x-mcpgw-approval-id')).toBe(id);

    await expect(store.approve(id, { id: 'bob', role: 'agent' })).rejects.toThrow();
    await store.approve(id, { id: 'carol', role: 'approver' });
    const allowed = await call('alice', 'gmail__send_email', args);
    expect(allowed.status?.code).toBe(0);
    const after = await call('alice', 'gmail__send_email', args);
    expect(header(after, 'x-mcpgw-decision')).toBe('pending');
    expect(header(after, 'x-mcpgw-approval-id')).not.toBe(id);
  });

  it('a velocity limit denies the third read within the window, with a retry hint', async () => {
    expect((await call('dave', 'docs__read_page', { page: 'a' })).status?.code).toBe(0);
    expect((await call('dave', 'docs__read_page', { page: 'b' })).status?.code).toBe(0);
    const third = await call('dave', 'docs__read_page', { page: 'c' });
    expect(third.status?.code).toBe(7);
    expect(header(third, 'x-mcpgw-decision')).toBe('deny');
    expect(header(third, 'x-mcpgw-rule')).toBe('page reads');
    expect(Number(header(third, 'retry-after'))).toBeGreaterThan(0);
  });

  it('a flow: after a private read, the same user may not send mail (even internal mail that is otherwise allowed)', async () => {
    const internal = { to: 'bob@acme.com', subject: 's', body: 'b' };
    await fx.store.setGrants('dave', { docs: ['*'], gmail: ['*'] });
    // dave read private pages above, so the taint is already set.
    const denied = await call('dave', 'gmail__send_email', internal);
    expect(denied.status?.code).toBe(7);
    expect(header(denied, 'x-mcpgw-rule')).toBe('no mail after private reads');
    expect((await call('alice', 'gmail__send_email', internal)).status?.code).toBe(0);
  });

  it('every decision is an audit row, including denials Layer 2 never saw', async () => {
    const before = (await auditRows()).length;
    const unauth = await call('nobody', 'gmail__read_email', {});
    expect(unauth.status?.code).toBe(16);
    const id = unauth.dynamicMetadata?.['decision_id'] as string;
    const rows = await auditRows();
    expect(rows.length).toBe(before + 1);
    expect(rows.find((r) => r.decision_id === id)?.outcome).toBe('deny');
  });
});
