/**
 * Each front — the real Envoy and the built-in one — in front of the real `mcpgw` ext_authz server
 * (real policy Wasm, real identity, real gRPC) and a fake gateway upstream: what a client and the
 * gateway actually receive.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthzServer, type AuthzServer } from '../../src/authz/server.js';
import { verifyInternalJwt } from '../../src/identity/internal-jwt.js';
import { verifyRequestMac } from '../../src/identity/request-mac.js';
import { createLogger } from '../../src/log.js';
import { createAuthzFixture, type AuthzFixture } from '../helpers/authz-fixture.js';
import { describeWith, findExecutable } from '../helpers/components.js';
import { startBuiltinFront } from '../../src/front/builtin.js';
import { send, startEnvoy, startFakeGateway, type FakeGateway } from './harness.js';

interface Front {
  readonly port: number;
  stop(): Promise<void>;
}
type StartFront = (authzPort: number, gatewayPort: number) => Promise<Front>;

const startRealEnvoy: StartFront = (authzPort, gatewayPort) =>
  startEnvoy(findExecutable('envoy') ?? 'envoy', {
    authz: { host: '127.0.0.1', port: authzPort },
    gateway: { host: '127.0.0.1', port: gatewayPort },
  });

const startBuiltin: StartFront = async (authzPort, gatewayPort) => {
  const f = await startBuiltinFront({
    listen: { host: '127.0.0.1', port: 0 },
    authz: { host: '127.0.0.1', port: authzPort },
    gateway: { host: '127.0.0.1', port: gatewayPort },
  });
  return { port: f.port, stop: () => f.close() };
};

describeWith(['envoy'], 'real Envoy → real mcpgw authz → gateway', () => suite(startRealEnvoy));
describe('built-in front → real mcpgw authz → gateway', () => suite(startBuiltin));

function suite(startFront: StartFront): void {
  let fx: AuthzFixture;
  let authz: AuthzServer;
  let gateway: FakeGateway;
  let envoy: Front;

  beforeAll(async () => {
    fx = await createAuthzFixture({ policyFile: new URL('../fixtures/check/policy.yaml', import.meta.url).pathname });
    authz = await startAuthzServer({
      address: '127.0.0.1:0',
      check: (v) => fx.runtime.check(v),
      logger: createLogger({ destination: pino.destination({ dest: '/dev/null', sync: true }) }),
    });
    gateway = await startFakeGateway();
    envoy = await startFront(authz.port, gateway.port);
  }, 60_000);

  afterAll(async () => {
    await envoy?.stop();
    await gateway?.close();
    await authz?.drain();
    await fx?.close();
  });

  const call = (name: string, args: Record<string, unknown>, id: number) =>
    JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
  const headers = (user: string) => ({
    authorization: `Bearer ${fx.keys[user] ?? ''}`,
    'content-type': 'application/json',
    'mcp-session-id': fx.session(user),
  });

  it('an allowed call reaches the gateway with our token, user and a MAC over the exact body, never the client key', async () => {
    const body = call('gmail__read_email', { id: 'm1' }, 1);
    const before = gateway.hits.length;
    const res = await send(envoy.port, 'POST', '/mcp', { ...headers('alice'), 'x-mcpgw-user': 'mallory' }, body);
    expect(res.status).toBe(200);
    const hit = gateway.hits[before];
    expect(hit).toBeDefined();
    expect(hit?.body.toString()).toBe(body);
    expect(hit?.headers['x-mcpgw-user']).toBe('alice');
    const token = String(hit?.headers['authorization'] ?? '').replace(/^Bearer /, '');
    expect(token).not.toContain(fx.keys['alice']);
    const v = await verifyInternalJwt(fx.runtime.keyRing, token);
    expect(v.ok && v.sub).toBe('alice');
    const decisionId = String(hit?.headers['x-mcpgw-decision-id']);
    expect(
      verifyRequestMac(
        fx.runtime.requestMacKey,
        decisionId,
        Buffer.from(body),
        String(hit?.headers['x-mcpgw-request-mac']),
      ),
    ).toBe(true);
    expect(res.headers['x-mcpgw-decision-id']).toBe(decisionId);
  });

  it('a policy denial reaches the agent as a CallToolResult it can read, and never reaches the gateway', async () => {
    const before = gateway.hits.length;
    const res = await send(
      envoy.port,
      'POST',
      '/mcp',
      headers('alice'),
      call('gmail__send_email', { to: 'a@acme.com', bcc: 'x@evil.com' }, 42),
    );
    expect(res.status).toBe(200);
    expect(res.headers['x-mcpgw-decision']).toBe('deny');
    const out = JSON.parse(res.body.toString()) as {
      id: number;
      result: { isError: boolean; _meta: Record<string, { rule: string }> };
    };
    expect(out.id).toBe(42);
    expect(out.result.isError).toBe(true);
    expect(out.result._meta['io.mcpgw/decision']?.rule).toBe('Block BCC');
    expect(gateway.hits.length).toBe(before);
  });

  it('no credentials → 401 with WWW-Authenticate and a JSON-RPC error body', async () => {
    const res = await send(
      envoy.port,
      'POST',
      '/mcp',
      { 'content-type': 'application/json' },
      '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    );
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('Bearer');
    expect(JSON.parse(res.body.toString())).toMatchObject({ jsonrpc: '2.0', error: { code: -32001 } });
  });

  it('a duplicate-key body → 400 parse error, as the strict parser says', async () => {
    const res = await send(
      envoy.port,
      'POST',
      '/mcp',
      headers('alice'),
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gmail__read_email","name":"gmail__delete_email"}}',
    );
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body.toString())).toMatchObject({ error: { code: -32700 } });
  });

  it('a body over max_request_bytes is refused as partial (413), never authorized on its first MiB', async () => {
    const big = call('gmail__read_email', { pad: 'x'.repeat(1024 * 1024 + 10) }, 3);
    const res = await send(envoy.port, 'POST', '/mcp', headers('alice'), big);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body.toString())).toMatchObject({ jsonrpc: '2.0' });
  });
}
