/**
 * Contract tests over real gRPC: golden Envoy-shaped CheckRequests (test/fixtures/check/cases.json)
 * sent to the real ext_authz server (real policy Wasm, real identity checks) with the generated
 * client, and the CheckResponses compared with what each fixture expects.
 */
import { credentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthzServer, type AuthzServer } from '../../src/authz/server.js';
import {
  AuthorizationClient,
  CheckRequest,
  type CheckResponse,
} from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import { verifyRequestMac } from '../../src/identity/request-mac.js';
import { verifyInternalJwt } from '../../src/identity/internal-jwt.js';
import { createLogger } from '../../src/log.js';
import pino from 'pino';
import { createAuthzFixture, type AuthzFixture } from '../helpers/authz-fixture.js';

interface Case {
  name: string;
  http: { method: string; path: string; headers: Record<string, string> };
  body?: string;
  bodyBase64?: string;
  stringBody?: string;
  expect: {
    allowed: boolean;
    grpcCode: number;
    /** The decision code, carried in CheckResponse.status.message. */
    code?: string;
    httpStatus?: number;
    headers?: Record<string, string>;
    body?: unknown;
    bodyContains?: string;
    upstreamHeaders?: string[];
    upstreamUser?: string;
    removes?: string[];
    /** Headers we set upstream must not also be in headers_to_remove: Envoy removes after adding. */
    keeps?: string[];
  };
}

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/check/cases.json', import.meta.url), 'utf8')) as {
  cases: Case[];
};

let fx: AuthzFixture;
let server: AuthzServer;
let client: AuthorizationClient;

beforeAll(async () => {
  fx = await createAuthzFixture({ policyFile: new URL('../fixtures/check/policy.yaml', import.meta.url).pathname });
  server = await startAuthzServer({
    address: '127.0.0.1:0',
    check: (v) => fx.runtime.check(v),
    logger: createLogger({ destination: pino.destination({ dest: '/dev/null', sync: true }) }),
  });
  client = new AuthorizationClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
});

afterAll(async () => {
  client.close();
  await server.drain();
  await fx.close();
});

async function fill(s: string): Promise<string> {
  let out = s;
  for (const m of s.matchAll(/\{\{(\w+)(?::(\w+))?\}\}/g)) {
    const [whole, kind, arg = ''] = m;
    let v: string;
    switch (kind) {
      case 'key':
        v = fx.keys[arg] ?? 'missing';
        break;
      case 'typo': {
        const k = fx.keys[arg] ?? '';
        const i = 12;
        v = k.slice(0, i) + (k[i] === 'a' ? 'b' : 'a') + k.slice(i + 1);
        break;
      }
      case 'unknownKey':
        v = (await import('../../src/identity/api-keys.js')).generateApiKey('sk');
        break;
      case 'jwt':
        v = await fx.jwt(arg);
        break;
      case 'session':
        v = fx.session(arg);
        break;
      case 'serverRequestId':
        v = fx.serverRequestId(arg);
        break;
      case 'padded': {
        // A valid allowed call padded with spaces to exactly `arg` bytes.
        const call =
          '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gmail__read_email","arguments":{}}}';
        v = call + ' '.repeat(Number(arg) - call.length);
        break;
      }
      case 'deep': {
        const n = Number(arg);
        v = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gmail__read_email","arguments":{"a":${'['.repeat(n)}${']'.repeat(n)}}}}`;
        break;
      }
      default:
        throw new Error(`unknown placeholder ${whole}`);
    }
    out = out.replace(whole, v);
  }
  return out;
}

async function buildRequest(c: Case): Promise<{ req: CheckRequest; body: Buffer }> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.http.headers)) headers[k] = await fill(v);
  const body =
    c.bodyBase64 !== undefined
      ? Buffer.from(c.bodyBase64, 'base64')
      : Buffer.from(c.body !== undefined ? await fill(c.body) : '', 'utf8');
  const req = CheckRequest.fromJSON({
    attributes: {
      request: {
        http: {
          id: '1',
          method: c.http.method,
          path: c.http.path,
          host: 'localhost:8000',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers,
          body: c.stringBody ?? '',
          rawBody: c.stringBody !== undefined ? '' : body.toString('base64'),
          size: String(body.length),
        },
      },
    },
  });
  return { req, body };
}

function send(req: CheckRequest): Promise<CheckResponse> {
  return new Promise((resolve, reject) => client.check(req, (err, res) => (err ? reject(err) : resolve(res))));
}

function headerMap(list: { header?: { key: string; value: string } }[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list ?? []) if (h.header) out[h.header.key] = h.header.value;
  return out;
}

describe('golden CheckRequest → CheckResponse over real gRPC', () => {
  it('has cases for allow, deny, approval, identity failures and bad bodies', () => {
    expect(fixtures.cases.length).toBeGreaterThanOrEqual(40);
  });

  for (const c of fixtures.cases) {
    it(c.name, async () => {
      const { req, body } = await buildRequest(c);
      const res = await send(req);
      expect(res.status?.code).toBe(c.expect.grpcCode);
      if (c.expect.code !== undefined) expect(res.status?.message).toBe(c.expect.code);
      const decisionId = res.dynamicMetadata?.['decision_id'] as string | undefined;
      expect(decisionId).toMatch(/^[0-9a-f-]{36}$/);
      if (c.expect.allowed) {
        expect(res.deniedResponse).toBeUndefined();
        const up = headerMap(res.okResponse?.headers);
        for (const h of c.expect.upstreamHeaders ?? []) expect(up[h], h).toBeTruthy();
        if (c.expect.upstreamUser) {
          expect(up['x-mcpgw-user']).toBe(c.expect.upstreamUser);
          const token = (up['authorization'] ?? '').replace(/^Bearer /, '');
          const v = await verifyInternalJwt(fx.runtime.keyRing, token);
          expect(v.ok && v.sub).toBe(c.expect.upstreamUser);
          expect(up['x-mcpgw-decision-id']).toBe(decisionId);
          expect(
            verifyRequestMac(fx.runtime.requestMacKey, decisionId ?? '', body, up['x-mcpgw-request-mac'] ?? ''),
          ).toBe(true);
          expect(
            verifyRequestMac(
              fx.runtime.requestMacKey,
              decisionId ?? '',
              Buffer.from('other'),
              up['x-mcpgw-request-mac'] ?? '',
            ),
          ).toBe(false);
        }
        for (const h of c.expect.removes ?? []) expect(res.okResponse?.headersToRemove).toContain(h);
        for (const h of c.expect.keeps ?? []) expect(res.okResponse?.headersToRemove).not.toContain(h);
        return;
      }
      expect(res.okResponse).toBeUndefined();
      const denied = res.deniedResponse;
      expect(denied).toBeDefined();
      if (c.expect.httpStatus !== undefined) expect(denied?.status?.code).toBe(c.expect.httpStatus);
      const hs = headerMap(denied?.headers);
      expect(hs['content-type']).toBe('application/json');
      for (const [k, v] of Object.entries(c.expect.headers ?? {})) expect(hs[k], k).toBe(v);
      // Every denial has a JSON-RPC body, never an empty one.
      const parsed = JSON.parse(denied?.body ?? '') as Record<string, unknown>;
      expect(parsed['jsonrpc']).toBe('2.0');
      if (c.expect.body !== undefined) expect(parsed).toMatchObject(c.expect.body as Record<string, unknown>);
      if (c.expect.bodyContains) expect(denied?.body).toContain(c.expect.bodyContains);
      // No credential ever echoes back.
      for (const key of Object.values(fx.keys)) expect(denied?.body).not.toContain(key);
    });
  }
});
