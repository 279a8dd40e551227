/**
 * The built-in front against the real Envoy 1.40 binary: one corpus (test/front/corpus.ts) through
 * both, each in front of the same recording fake ext_authz and fake gateway. For every request the
 * two must produce the same CheckRequests, the same requests at the gateway and the same bytes at
 * the client, after normalizing only what must differ:
 *
 * CheckRequest
 * - `attributes.request.http.id`: Envoy's random stream id (both must be a decimal uint64).
 * - `attributes.request.time`: a clock reading (both must fall within the exchange).
 * - `attributes.source.address` port: the client's ephemeral port.
 * - `attributes.destination.address` port: each front listens on its own port.
 * - header `x-request-id`: a fresh UUID per request (both must be a v4 UUID, the same one the
 *   gateway receives).
 *
 * Gateway request
 * - `x-request-id` (as above). The fake gateway sees headers through node:http, so header order and
 *   line splitting of repeated headers are not compared there.
 *
 * Client response (status code, reason phrase, every header line in order, body, framing)
 * - `date`: a clock reading (present in both, same position).
 * - `server`: "envoy" vs "mcpgw", deliberately (same position).
 * - Chunk boundaries of a chunked body (timing); the de-chunked bytes are compared.
 * - Whether the server closed the socket right after: Envoy delays its close by up to 1 s
 *   (delayed_close_timeout); the `connection: close` header, which says it will, is compared.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startBuiltinFront, type BuiltinFront } from '../../src/front/builtin.js';
import { CheckRequest } from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import { describeWith, findExecutable } from '../helpers/components.js';
import {
  SSE_EVENTS,
  startEnvoy,
  startFakeAuthz,
  startFakeGateway,
  type FakeAuthz,
  type FakeGateway,
  type RunningEnvoy,
  type UpstreamHit,
} from '../envoy/harness.js';
import { CORPUS, PATHS, verdict, type Case } from './corpus.js';
import { deadPort, startScriptedGateway, type ScriptedGateway } from './scripted-gateway.js';
import { exchange, rawRequest, type WireOptions, type WireResponse } from './wire.js';

const HTTP_DATE = /^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

interface Observed {
  response: Omit<WireResponse, 'closed' | 'arrivals' | 'body'> & { body: string };
  checks: Json[];
  hits: { method: string; url: string; headers: Record<string, unknown>; body: string }[];
}

function normalizeCheck(c: CheckRequest, t0: number, t1: number): Json {
  const j = CheckRequest.toJSON(c) as { [key: string]: Json };
  const attrs = j['attributes'] as { [key: string]: Json };
  const request = attrs['request'] as { [key: string]: Json };
  const http = request['http'] as { [key: string]: Json };
  const headers = http['headers'] as { [key: string]: string };
  const id = String(http['id']);
  expect(id).toMatch(/^\d+$/);
  expect(BigInt(id) < 2n ** 64n).toBe(true);
  http['id'] = '<id>';
  const time = Date.parse(String(request['time']));
  expect(time).toBeGreaterThanOrEqual(t0 - 1000);
  expect(time).toBeLessThanOrEqual(t1 + 1000);
  request['time'] = '<time>';
  expect(headers['x-request-id']).toMatch(UUID_V4);
  headers['x-request-id'] = '<uuid>';
  for (const peer of ['source', 'destination']) {
    const sa = ((attrs[peer] as { [key: string]: Json })['address'] as { [key: string]: Json })['socketAddress'] as {
      [key: string]: Json;
    };
    expect(sa['portValue']).toBeGreaterThan(0);
    sa['portValue'] = '<port>';
  }
  return j;
}

function normalizeHit(h: UpstreamHit, requestIds: Set<string>): Observed['hits'][number] {
  const headers: Record<string, unknown> = { ...h.headers };
  const rid = headers['x-request-id'];
  // The gateway gets the request id authz saw, unless authz removed it.
  if (typeof rid === 'string') {
    expect(rid).toMatch(UUID_V4);
    if (requestIds.size > 0) expect(requestIds.has(rid)).toBe(true);
    headers['x-request-id'] = '<uuid>';
  }
  return { method: h.method, url: h.url, headers, body: h.body.toString('latin1') };
}

function normalizeResponse(r: WireResponse): Observed['response'] {
  const headers = r.headers.map(([k, v]): [string, string] => {
    const name = k.toLowerCase();
    // A date authz chose stays as it is.
    if (name === 'date' && HTTP_DATE.test(v)) return [k, '<date>'];
    if (name === 'server') return [k, '<server>'];
    return [k, v];
  });
  // A string compares at memcmp speed; a Buffer is compared element by element.
  return {
    interim: r.interim,
    status: r.status,
    reason: r.reason,
    headers,
    body: r.body.toString('latin1'),
    framing: r.framing,
  };
}

describeWith(['envoy'], 'built-in front vs real Envoy (differential)', () => {
  let authz: FakeAuthz;
  let gateway: FakeGateway;
  let envoy: RunningEnvoy;
  let builtin: BuiltinFront;

  beforeAll(async () => {
    authz = await startFakeAuthz(verdict);
    gateway = await startFakeGateway();
    const upstreams = {
      authz: { host: '127.0.0.1', port: authz.port },
      gateway: { host: '127.0.0.1', port: gateway.port },
    };
    [envoy, builtin] = await Promise.all([
      startEnvoy(findExecutable('envoy') ?? 'envoy', upstreams),
      startBuiltinFront({ ...upstreams, listen: { host: '127.0.0.1', port: 0 } }),
    ]);
  });

  afterAll(async () => {
    await builtin?.close();
    await envoy?.stop();
    await gateway?.close();
    await authz?.close();
  });

  async function observe(port: number, c: Case): Promise<{ observed: Observed; raw: WireResponse }> {
    const nChecks = authz.checks.length;
    const nHits = gateway.hits.length;
    const t0 = Date.now();
    const raw = await exchange(port, c.request, c.opts);
    const t1 = Date.now();
    const checks = authz.checks.slice(nChecks);
    const requestIds = new Set(checks.map((ch) => ch.attributes?.request?.http?.headers['x-request-id'] ?? ''));
    return {
      raw,
      observed: {
        response: normalizeResponse(raw),
        checks: checks.map((ch) => normalizeCheck(ch, t0, t1)),
        hits: gateway.hits.slice(nHits).map((h) => normalizeHit(h, requestIds)),
      },
    };
  }

  async function compare(c: Case): Promise<{ envoy: WireResponse; builtin: WireResponse }> {
    const e = await observe(envoy.port, c);
    const b = await observe(builtin.port, c);
    expect(e.raw.status, `${c.name}: Envoy answered differently than the corpus expects`).toBe(c.expectStatus);
    expect(b.observed).toEqual(e.observed);
    return { envoy: e.raw, builtin: b.raw };
  }

  for (const c of CORPUS) {
    it(c.name, async () => {
      const { envoy: e, builtin: b } = await compare(c);
      if (c.name === 'SSE GET /mcp') {
        // Streamed, not buffered: the events arrive apart on both.
        for (const r of [e, b]) {
          expect(r.body.toString()).toBe(Array.from({ length: SSE_EVENTS }, (_, i) => `data: ${i}\n\n`).join(''));
          expect(r.arrivals.length).toBeGreaterThan(1);
        }
      }
    });
  }

  it('path normalization: the same CheckRequest path (or refusal) for every path in the table', async () => {
    for (const path of PATHS) {
      const c = { name: path, request: rawRequest([`GET ${path} HTTP/1.1`, 'Host: paths.test']), expectStatus: 0 };
      const e = await observe(envoy.port, c);
      const b = await observe(builtin.port, c);
      expect({ path, ...b.observed }).toEqual({ path, ...e.observed });
    }
  });

  it('headers: 150 generated header sets (fixed seed) give the same CheckRequest, gateway request and reply', async () => {
    const names = [
      'x-a',
      'X-A',
      'x-b',
      'cookie',
      'x-forwarded-for',
      'x-forwarded-proto',
      'x-request-id',
      'te',
      'expect',
      'connection',
      'x-envoy-retry-on',
      'x-envoy-foo',
      'x-envoy-auth-partial-body',
      'upgrade',
      'keep-alive',
      'via',
      'authorization',
      'x-mcpgw-user',
      'user-agent',
      'accept',
      'mcp-session-id',
      'x-verdict',
    ];
    const values = [
      '1',
      'a b',
      '',
      ' padded ',
      'x,y',
      'close',
      'keep-alive',
      'x-a',
      'trailers',
      'gzip, trailers',
      '100-continue',
      'caf\xc3\xa9',
      '\xff\xfe',
      'deny-403',
      'mutate',
      'allow',
      'websocket',
      'h2c',
      'Upgrade',
    ];
    let seed = 0x1b873593;
    const next = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    for (let i = 0; i < 150; i++) {
      const lines: string[] = [];
      const count = next(7);
      for (let j = 0; j < count; j++) lines.push(`${names[next(names.length)]}: ${values[next(values.length)]}`);
      const method = ['GET', 'POST', 'DELETE'][next(3)] as string;
      const body = method === 'POST' ? '{"a":1}' : '';
      const request = rawRequest(
        [
          `${method} /mcp HTTP/1.1`,
          'Host: headers.test',
          ...lines,
          ...(body ? [`Content-Length: ${body.length}`] : []),
        ],
        body,
      );
      const c = { name: lines.join(' | '), request, expectStatus: 0 };
      const e = await observe(envoy.port, c);
      const b = await observe(builtin.port, c);
      expect({ lines, ...b.observed }).toEqual({ lines, ...e.observed });
    }
  });

  it('path normalization: 250 generated paths (fixed seed) get the same status and path on both', async () => {
    // Pieces that exercise dot segments (with parameters too), escapes (valid, invalid, nested),
    // backslashes and slashes. Runs of 7,500 paths with other seeds agreed as well.
    const pieces = [
      '/',
      '/',
      '.',
      '..',
      '%2e',
      '%2E',
      '%',
      '%4',
      '%41',
      '%2',
      '%32',
      '%25',
      '%3a',
      '\\',
      'a',
      'b',
      ';',
      '"',
      '~',
      '%7e',
      '?',
      '%00',
      '%2f',
      '.;',
      '..;',
      ';x',
      '%2e;',
      '//',
      '%%',
      '%7E',
      '%2a',
      '{',
      '%20',
      '%3B',
      '.%2e',
      '%c3%a9',
      '*',
    ];
    let seed = 0x2545f491;
    const next = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    for (let i = 0; i < 250; i++) {
      let path = '/admin/v1/';
      const len = 1 + next(8);
      for (let j = 0; j < len; j++) path += pieces[next(pieces.length)];
      const request = rawRequest([`GET ${path} HTTP/1.1`, 'Host: paths.test']);
      const [e, b] = [
        await observe(envoy.port, { name: path, request, expectStatus: 0 }),
        await observe(builtin.port, { name: path, request, expectStatus: 0 }),
      ];
      const summary = (o: Observed) => ({
        path,
        status: o.response.status,
        checked: o.checks.map(
          (c) => (c as { attributes: { request: { http: { path: string } } } }).attributes.request.http.path,
        ),
        forwarded: o.hits.map((h) => h.url),
      });
      expect(summary(b.observed)).toEqual(summary(e.observed));
    }
  });
});

/**
 * The gateway half: how each front passes on what the gateway answers (heads, framing, resets,
 * slowness, a gateway that is down) and what it does when the client leaves mid-stream.
 */
describeWith(['envoy'], 'built-in front vs real Envoy: gateway answers (differential)', () => {
  let authz: FakeAuthz;
  let scripted: ScriptedGateway;
  const fronts: { name: string; up: number; down: number; stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    authz = await startFakeAuthz(verdict);
    scripted = await startScriptedGateway();
    const dead = await deadPort();
    const config = (port: number) => ({
      authz: { host: '127.0.0.1', port: authz.port },
      gateway: { host: '127.0.0.1', port },
    });
    const envoyBin = findExecutable('envoy') ?? 'envoy';
    const [eUp, eDown, bUp, bDown] = await Promise.all([
      startEnvoy(envoyBin, config(scripted.port)),
      startEnvoy(envoyBin, config(dead)),
      startBuiltinFront({ ...config(scripted.port), listen: { host: '127.0.0.1', port: 0 } }),
      startBuiltinFront({ ...config(dead), listen: { host: '127.0.0.1', port: 0 } }),
    ]);
    fronts.push(
      {
        name: 'envoy',
        up: eUp.port,
        down: eDown.port,
        stop: async () => void (await Promise.all([eUp.stop(), eDown.stop()])),
      },
      {
        name: 'builtin',
        up: bUp.port,
        down: bDown.port,
        stop: async () => void (await Promise.all([bUp.close(), bDown.close()])),
      },
    );
  });

  afterAll(async () => {
    for (const f of fronts) await f.stop();
    await scripted?.close();
    await authz?.close();
  });

  /** Both fronts at once (the slow cases take seconds), compared after normalization. */
  async function compareAt(which: 'up' | 'down', request: Buffer, opts: WireOptions = {}): Promise<WireResponse[]> {
    const [e, b] = fronts.map((f) => exchange(f[which], request, opts));
    const results = await Promise.all([e, b] as Promise<WireResponse>[]);
    const [re, rb] = results as [WireResponse, WireResponse];
    expect(normalizeResponse(rb)).toEqual(normalizeResponse(re));
    return results;
  }

  const mode = (m: string, path = '/mcp', method = 'GET') =>
    rawRequest([`${method} ${path} HTTP/1.1`, 'Host: mcpgw.test', `x-mode: ${m}`]);

  it('a gateway head: reason phrase replaced, server overwritten, hop-by-hop headers dropped, the rest in order', async () => {
    const [e] = await compareAt('up', mode('headers'));
    expect(e?.reason).toBe('Created');
  });

  it('a gateway error status passes as is (no local reply body)', async () => {
    const [e] = await compareAt('up', mode('error-status'));
    expect(e?.body.toString()).toBe('gateway says no');
  });

  it('an empty 404, a 304, and a 100 Continue before the answer', async () => {
    await compareAt('up', mode('empty-404'));
    await compareAt('up', mode('not-modified'));
    const [e] = await compareAt('up', mode('continue'));
    expect(e?.interim).toEqual([]);
  });

  it('a close-delimited gateway body is re-framed as chunked', async () => {
    const [e] = await compareAt('up', mode('close-delimited'));
    expect(e?.framing).toBe('chunked');
  });

  it('HEAD through a checked route (admin)', async () => {
    await compareAt('up', mode('default', '/admin/v1/x', 'HEAD'), { head: true });
  });

  it('a 3 MiB response', async () => {
    const [e] = await compareAt('up', mode('big'));
    expect(e?.body.length).toBe(3 * 1024 * 1024);
  });

  it('the gateway resets mid-body: the client gets what was sent, then the connection closes', async () => {
    const [e] = await compareAt('up', mode('reset-mid-body'));
    expect(e?.framing).toBe('close');
  });

  it('the gateway resets before answering: 503 with a JSON-RPC body', async () => {
    const [e] = await compareAt('up', mode('reset-before-head'));
    expect(e?.status).toBe(503);
  });

  it('the gateway is down: 503 on checked and unchecked routes', async () => {
    const [e] = await compareAt('down', mode('default'));
    expect(e?.status).toBe(503);
    await compareAt('down', mode('default', '/healthz'));
  });

  it('/healthz past its 5 s route timeout: 504', async () => {
    const [e] = await compareAt('up', mode('slow', '/healthz'), { timeoutMs: 8000 });
    expect(e?.status).toBe(504);
  }, 15_000);

  it('a client that leaves a stream aborts the gateway request', async () => {
    const before = scripted.abandoned.length;
    const results = await Promise.all(
      fronts.map((f) => exchange(f.up, mode('stream'), { abortAfterMs: 200, timeoutMs: 3000 })),
    );
    for (const r of results) expect(r.body.toString()).toContain('data: first');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(scripted.abandoned.slice(before)).toEqual(['stream', 'stream']);
  });
});
