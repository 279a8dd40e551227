/**
 * The built-in front with an in-process Check (`--role all`) against the same front over gRPC:
 * - the front's corpus (test/front/corpus.ts) through both, with the same fake authz verdicts: the
 *   CheckRequest the in-process handler gets deep-equals (types included) the one the gRPC server
 *   decoded, and the client and the gateway see the same thing;
 * - the outcomes only an in-process handler can produce (a synchronous throw, no message, a
 *   malformed message, a late answer, a cancelled call) end as a failed RPC does, fail closed;
 * - the real authz server (real runtime, the golden cases of test/fixtures/check) behind both: the
 *   same answers, the same decision log lines, and CheckResponses that need no wire to be read;
 * - the drain waits for in-process calls and refuses new ones, as it does for RPCs;
 * - the hop to the gateway reuses keep-alive connections under 16 concurrent clients.
 */
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthzServer, type AuthzServer } from '../../src/authz/server.js';
import type { CheckResult } from '../../src/authz/check.js';
import {
  startBuiltinFront,
  startBuiltinFrontFromConfig,
  type BuiltinFront,
  type InProcessCheck,
} from '../../src/front/builtin.js';
import { buildCheckRequest } from '../../src/front/builtin/check-request.js';
import { compileFrontConfig } from '../../src/front/builtin/config.js';
import { asReceived } from '../../src/front/builtin/in-process-check.js';
import { envoyBootstrap } from '../../src/front/envoy-config.js';
import { CheckRequest, CheckResponse } from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import { generateApiKey } from '../../src/identity/api-keys.js';
import { createLogger } from '../../src/log.js';
import { createAuthzFixture, type AuthzFixture } from '../helpers/authz-fixture.js';
import { startFakeAuthz, startFakeGateway, type FakeAuthz, type FakeGateway } from '../envoy/harness.js';
import { CORPUS, PATHS, verdict } from './corpus.js';
import { startScriptedGateway, type ScriptedGateway } from './scripted-gateway.js';
import { exchange, rawRequest, type WireResponse } from './wire.js';

const HTTP_DATE = /^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

/** The fields that differ between any two exchanges (stream id, clock, ports, request id), blanked. */
function blankPerExchange(c: CheckRequest): CheckRequest {
  const attrs = c.attributes;
  const http = attrs?.request?.http;
  if (!attrs?.request || !http) throw new Error('a CheckRequest without HTTP attributes');
  expect(http.id).toMatch(/^\d+$/);
  http.id = '<id>';
  expect(attrs.request.time).toBeInstanceOf(Date);
  attrs.request.time = new Date(0);
  for (const peer of [attrs.source, attrs.destination]) {
    const sa = peer?.address?.socketAddress;
    if (!sa) throw new Error('a peer without a socket address');
    expect(sa.portValue).toBeGreaterThan(0);
    sa.portValue = 0;
  }
  if (http.headers['x-request-id'] !== undefined) http.headers['x-request-id'] = '<uuid>';
  return c;
}

function blankResponse(r: WireResponse, ids: RegExp | null = null) {
  const headers = r.headers.map(([k, v]): [string, string] => {
    const name = k.toLowerCase();
    if (name === 'date' && HTTP_DATE.test(v)) return [k, '<date>'];
    if (ids && name === 'x-mcpgw-decision-id') return [k, '<decision>'];
    return [k, v];
  });
  const body = r.body.toString('latin1');
  return {
    interim: r.interim,
    status: r.status,
    reason: r.reason,
    headers,
    body: ids ? body.replace(ids, '<uuid>') : body,
    framing: r.framing,
    closed: r.closed,
  };
}

function blankHit(h: { method: string; url: string; headers: IncomingHttpHeaders; body: Buffer }, minted = false) {
  const headers: Record<string, unknown> = { ...h.headers };
  const blank = (name: string) => {
    if (headers[name] !== undefined) headers[name] = `<${name}>`;
  };
  blank('x-request-id');
  if (minted) for (const n of ['authorization', 'x-mcpgw-decision-id', 'x-mcpgw-request-mac']) blank(n);
  return { method: h.method, url: h.url, headers, body: h.body.toString('latin1') };
}

describe('in-process Check and gateway connection vs gRPC and TCP: the front corpus', () => {
  let authz: FakeAuthz;
  let gateway: FakeGateway;
  let viaGrpc: BuiltinFront;
  let inProcess: BuiltinFront;
  const received: CheckRequest[] = [];

  beforeAll(async () => {
    authz = await startFakeAuthz(verdict);
    gateway = await startFakeGateway();
    const opts = {
      authz: { host: '127.0.0.1', port: authz.port },
      gateway: { host: '127.0.0.1', port: gateway.port },
      listen: { host: '127.0.0.1', port: 0 },
    };
    const check: InProcessCheck = (req) => {
      received.push(req);
      return verdict(req);
    };
    // The in-process front also reaches the gateway over in-memory sockets (as under --role all),
    // so the corpus compares that hop with TCP too.
    [viaGrpc, inProcess] = await Promise.all([
      startBuiltinFront(opts),
      startBuiltinFront(opts, { check, connectGateway: () => gateway.connect() }),
    ]);
  });

  afterAll(async () => {
    await inProcess?.close();
    await viaGrpc?.close();
    await gateway?.close();
    await authz?.close();
  });

  /** One request through each front; both see the same Checks, gateway requests and answers. */
  async function compare(name: string, request: Buffer, opts: { head?: boolean } = {}) {
    const observe = async (front: BuiltinFront, checks: CheckRequest[]) => {
      const [nChecks, nHits] = [checks.length, gateway.hits.length];
      const r = await exchange(front.port, request, { ...opts, closeWaitMs: 20 });
      return {
        checks: checks.slice(nChecks).map(blankPerExchange),
        hits: gateway.hits.slice(nHits).map((h) => blankHit(h)),
        response: blankResponse(r),
      };
    };
    const g = await observe(viaGrpc, authz.checks);
    const p = await observe(inProcess, received);
    // Strict: Buffer vs Uint8Array, a missing vs an undefined field and prototypes all count.
    expect(p.checks, name).toStrictEqual(g.checks);
    for (const [i, c] of p.checks.entries()) {
      const headers = c.attributes?.request?.http?.headers;
      const decoded = g.checks[i]?.attributes?.request?.http?.headers;
      expect(headers && Object.getPrototypeOf(headers)).toBe(decoded && Object.getPrototypeOf(decoded));
      expect(Object.keys(headers ?? {})).toEqual(Object.keys(decoded ?? {}));
    }
    expect({ name, ...p.response }).toEqual({ name, ...g.response });
    expect({ name, hits: p.hits }).toEqual({ name, hits: g.hits });
    return g;
  }

  for (const c of CORPUS) {
    it(c.name, async () => {
      const g = await compare(c.name, c.request, c.opts?.head ? { head: true } : {});
      expect(g.response.status).toBe(c.expectStatus);
    });
  }

  it('every path of the normalization table', async () => {
    for (const path of PATHS) await compare(path, rawRequest([`GET ${path} HTTP/1.1`, 'Host: paths.test']));
  });

  it('header names a map can trip over (`__proto__` never gets this far: underscores are refused), and body bytes of every value', async () => {
    const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const g = await compare(
      'odd names',
      rawRequest(
        [
          'POST /mcp HTTP/1.1',
          'Host: mcpgw.test',
          'constructor: c',
          'toString: t',
          '123: digits',
          '0: zero',
          'hasOwnProperty: h',
          `Content-Length: ${body.length}`,
        ],
        body,
      ),
    );
    expect(g.checks.length).toBe(1);
    const headers = g.checks[0]?.attributes?.request?.http?.headers ?? {};
    expect(Object.hasOwn(headers, 'constructor')).toBe(true);
    expect(headers['123']).toBe('digits');
    expect(g.checks[0]?.attributes?.request?.http?.rawBody).toEqual(body);
  });
});

describe('asReceived', () => {
  const input = {
    id: '1',
    time: new Date('2026-01-02T03:04:05.678Z'),
    method: 'POST',
    path: '/mcp',
    authority: 'a.test',
    headers: ['__proto__', 'x', 'x-a', '1', '7', 'n'],
    body: { bytes: Buffer.from('{"a":1}'), size: 7, partial: false },
    source: { address: '127.0.0.1', port: 1 },
    destination: { address: '127.0.0.1', port: 2 },
  };

  it('is what decoding the encoded request gives', () => {
    const built = buildCheckRequest(input);
    expect(asReceived(built)).toStrictEqual(CheckRequest.decode(CheckRequest.encode(built).finish()));
  });

  it('hands over a body of its own: the handler cannot change what the front forwards', () => {
    const built = buildCheckRequest(input);
    const got = asReceived(built);
    got.attributes?.request?.http?.rawBody.fill(0x20);
    expect(built.attributes?.request?.http?.rawBody.toString()).toBe('{"a":1}');
  });
});

describe('in-process Check: outcomes gRPC cannot produce end as a failed RPC does', () => {
  let gateway: ScriptedGateway;
  let authz: FakeAuthz;
  let viaGrpc: BuiltinFront;
  let front: BuiltinFront;
  let behave: InProcessCheck = () => Promise.resolve(CheckResponse.fromPartial({ status: { code: 0 } }));
  let failedRpc: ReturnType<typeof blankResponse>;

  beforeAll(async () => {
    gateway = await startScriptedGateway();
    authz = await startFakeAuthz(() => Promise.reject(new Error('down')));
    const upstreams = {
      authz: { host: '127.0.0.1', port: authz.port },
      gateway: { host: '127.0.0.1', port: gateway.port },
      listen: { host: '127.0.0.1', port: 0 },
    };
    const cfg = compileFrontConfig(envoyBootstrap(upstreams));
    // A shorter ext_authz timeout than the bootstrap's 1 s, on both.
    const quick = { ...cfg, authz: { ...cfg.authz, timeoutMs: 200 } };
    viaGrpc = await startBuiltinFrontFromConfig(quick);
    front = await startBuiltinFrontFromConfig(quick, { check: (req, deadline) => behave(req, deadline) });
    failedRpc = blankResponse(await exchange(viaGrpc.port, get('default'), { closeWaitMs: 20 }));
  });

  afterAll(async () => {
    await front?.close();
    await viaGrpc?.close();
    await authz?.close();
    await gateway?.close();
  });

  function get(mode: string): Buffer {
    return rawRequest(['GET /mcp HTTP/1.1', 'Host: mcpgw.test', `x-mode: ${mode}`]);
  }

  async function expectFailedRpc(check: InProcessCheck): Promise<void> {
    behave = check;
    const before = gateway.requests.length;
    const r = await exchange(front.port, get('default'), { closeWaitMs: 20 });
    expect(failedRpc.status).toBe(503);
    expect(blankResponse(r)).toEqual(failedRpc);
    expect(gateway.requests.length).toBe(before);
  }

  it('a synchronous throw', async () => {
    await expectFailedRpc(() => {
      throw new Error('boom');
    });
  });

  it('a rejection with something that is not an Error', async () => {
    await expectFailedRpc(() => Promise.reject('nope' as unknown as Error));
  });

  it('no message', async () => {
    await expectFailedRpc(() => Promise.resolve(null as unknown as CheckResponse));
  });

  it('a message missing parts a decoded one always has', async () => {
    await expectFailedRpc(() => Promise.resolve({ status: { code: 0 }, okResponse: {} } as unknown as CheckResponse));
  });

  it('no answer within the timeout, and a late allow is ignored', async () => {
    let late: (() => void) | null = null;
    const t0 = Date.now();
    await expectFailedRpc(
      () =>
        new Promise((resolve) => {
          late = () => resolve(CheckResponse.fromPartial({ status: { code: 0 } }));
        }),
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    const before = gateway.requests.length;
    (late as (() => void) | null)?.();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(gateway.requests.length).toBe(before);
  });

  it('the deadline handed over is the timeout from now', async () => {
    let seen = 0;
    const t0 = Date.now();
    behave = (_req, deadline) => {
      seen = deadline;
      return Promise.resolve(CheckResponse.fromPartial({ status: { code: 0 } }));
    };
    const r = await exchange(front.port, get('default'));
    expect(r.status).toBe(200);
    expect(seen).toBeGreaterThanOrEqual(t0 + 200);
    expect(seen).toBeLessThanOrEqual(Date.now() + 200);
  });

  it('a client that leaves during the Check: the answer that comes later goes nowhere', async () => {
    let answer: (() => void) | null = null;
    behave = () =>
      new Promise((resolve) => {
        answer = () => resolve(CheckResponse.fromPartial({ status: { code: 0 } }));
      });
    const before = gateway.requests.length;
    await exchange(front.port, get('default'), { abortAfterMs: 50, timeoutMs: 1000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    (answer as (() => void) | null)?.();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(gateway.requests.length).toBe(before);
  });
});

interface GoldenCase {
  name: string;
  http: { method: string; path: string; headers: Record<string, string> };
  body?: string;
  bodyBase64?: string;
  stringBody?: string;
}

describe('in-process Check vs gRPC: the real authz server', () => {
  let fx: AuthzFixture;
  let server: AuthzServer;
  let gateway: FakeGateway;
  let viaGrpc: BuiltinFront;
  let inProcess: BuiltinFront;
  const lines: { decision?: string; code?: string; msg?: string }[] = [];
  const answered: CheckResponse[] = [];
  const cases = (
    JSON.parse(readFileSync(new URL('../fixtures/check/cases.json', import.meta.url), 'utf8')) as {
      cases: GoldenCase[];
    }
  ).cases.filter((c) => c.stringBody === undefined);

  beforeAll(async () => {
    fx = await createAuthzFixture({ policyFile: new URL('../fixtures/check/policy.yaml', import.meta.url).pathname });
    server = await startAuthzServer({
      address: '127.0.0.1:0',
      check: (v) => fx.runtime.check(v),
      logger: createLogger({
        destination: { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) },
      }),
    });
    gateway = await startFakeGateway();
    const opts = {
      authz: { host: '127.0.0.1', port: server.port },
      gateway: { host: '127.0.0.1', port: gateway.port },
      listen: { host: '127.0.0.1', port: 0 },
    };
    const check: InProcessCheck = async (req) => {
      const res = await server.check(req);
      answered.push(res);
      return res;
    };
    [viaGrpc, inProcess] = await Promise.all([startBuiltinFront(opts), startBuiltinFront(opts, { check })]);
  });

  afterAll(async () => {
    await inProcess?.close();
    await viaGrpc?.close();
    await gateway?.close();
    await server?.drain();
    await fx?.close();
  });

  async function fill(s: string): Promise<string> {
    let out = s;
    for (const m of s.matchAll(/\{\{(\w+)(?::(\w+))?\}\}/g)) {
      const [whole, kind, arg = ''] = m;
      const call = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gmail__read_email","arguments":{';
      const values: Record<string, () => string | Promise<string>> = {
        key: () => fx.keys[arg] ?? 'missing',
        typo: () => {
          const k = fx.keys[arg] ?? '';
          return k.slice(0, 12) + (k[12] === 'a' ? 'b' : 'a') + k.slice(13);
        },
        unknownKey: () => generateApiKey('sk'),
        jwt: () => fx.jwt(arg),
        session: () => fx.session(arg),
        serverRequestId: () => fx.serverRequestId(arg),
        padded: () => `${call}}}}`.padEnd(Number(arg), ' '),
        deep: () => `${call}"a":${'['.repeat(Number(arg))}${']'.repeat(Number(arg))}}}}`,
      };
      const v = values[kind ?? ''];
      if (!v) throw new Error(`unknown placeholder ${whole}`);
      out = out.replace(whole, await v());
    }
    return out;
  }

  async function toHttp(c: GoldenCase): Promise<Buffer> {
    const body =
      c.bodyBase64 !== undefined
        ? Buffer.from(c.bodyBase64, 'base64')
        : Buffer.from(c.body !== undefined ? await fill(c.body) : '', 'utf8');
    const head = [`${c.http.method} ${c.http.path} HTTP/1.1`, 'Host: localhost:8000'];
    for (const [k, v] of Object.entries(c.http.headers)) head.push(`${k}: ${await fill(v)}`);
    if (body.length > 0 || c.http.method === 'POST') head.push(`Content-Length: ${body.length}`);
    return rawRequest(head, body);
  }

  let logged = 0;

  it('runs the golden cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
  });

  afterAll(() => {
    // Most cases reach authz (not a vacuous comparison).
    expect(logged).toBeGreaterThanOrEqual(cases.length - 5);
  });

  for (const c of cases) {
    it(c.name, async () => {
      const request = await toHttp(c);
      const observe = async (front: BuiltinFront) => {
        const [nHits, nLines] = [gateway.hits.length, lines.length];
        const r = await exchange(front.port, request, { closeWaitMs: 20 });
        // The decision line follows the answer.
        await new Promise((resolve) => setTimeout(resolve, 5));
        return {
          response: blankResponse(r, UUID),
          hits: gateway.hits.slice(nHits).map((h) => blankHit(h, true)),
          log: lines
            .slice(nLines)
            .filter((l) => l.msg === 'decision')
            .map((l) => ({ decision: l.decision, code: l.code })),
        };
      };
      const nAnswered = answered.length;
      const g = await observe(viaGrpc);
      const p = await observe(inProcess);
      expect(p).toEqual(g);
      // One decision line per Check; routes without ext_authz, and local replies, have none.
      expect(g.log.length).toBeLessThanOrEqual(1);
      logged += g.log.length;
      // The handler's message reads the same without the wire in between.
      for (const res of answered.slice(nAnswered)) {
        expect(CheckResponse.decode(CheckResponse.encode(res).finish())).toStrictEqual(res);
      }
    });
  }
});

describe('AuthzServer.check and the drain', () => {
  it('the drain waits for in-process calls in flight, then refuses new ones', async () => {
    let release: ((r: CheckResult) => void) | null = null;
    const server = await startAuthzServer({
      address: '127.0.0.1:0',
      check: () => new Promise((resolve) => (release = resolve)),
      logger: createLogger({ destination: pino.destination({ dest: '/dev/null', sync: true }) }),
    });
    const req = buildCheckRequest({
      id: '1',
      time: new Date(),
      method: 'GET',
      path: '/healthz',
      authority: 'a.test',
      headers: [],
      body: null,
      source: { address: '127.0.0.1', port: 1 },
      destination: { address: '127.0.0.1', port: 2 },
    });
    const answer = server.check(asReceived(req));
    let drained = false;
    const drain = server.drain().then(() => (drained = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(drained).toBe(false);
    await expect(server.check(asReceived(req))).rejects.toThrow(/shut down/);
    (release as ((r: CheckResult) => void) | null)?.({
      kind: 'allow',
      decisionId: 'd-1',
      upstreamHeaders: {},
      removeHeaders: [],
      facts: {
        route: 'public',
        httpMethod: 'GET',
        userId: null,
        rpcMethod: null,
        service: null,
        name: null,
        code: 'public',
        rule: null,
        reasons: [],
        approvalId: null,
        policyRevision: null,
        audited: false,
      },
    });
    expect((await answer).status?.code).toBe(0);
    await drain;
    expect(drained).toBe(true);
  });
});

describe('the hop to the gateway', () => {
  it('16 concurrent clients, 25 requests each: at most one gateway connection per client', async () => {
    const gateway = await startScriptedGateway();
    const front = await startBuiltinFront(
      {
        authz: { host: '127.0.0.1', port: 1 },
        gateway: { host: '127.0.0.1', port: gateway.port },
        listen: { host: '127.0.0.1', port: 0 },
      },
      { check: () => Promise.resolve(CheckResponse.fromPartial({ status: { code: 0 } })) },
    );
    try {
      const request = rawRequest(['GET /mcp HTTP/1.1', 'Host: mcpgw.test', 'x-mode: default']);
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let i = 0; i < 25; i++) expect((await exchange(front.port, request)).status).toBe(200);
        }),
      );
      expect(gateway.requests.length).toBe(400);
      const connections = new Set(gateway.requests.map((r) => r.remotePort)).size;
      expect(connections).toBeLessThanOrEqual(16);
    } finally {
      await front.close();
      await gateway.close();
    }
  });
});
