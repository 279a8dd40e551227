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
import { exchange, rawRequest, type WireResponse } from './wire.js';

const HTTP_DATE = /^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

interface Observed {
  response: Omit<WireResponse, 'closed' | 'arrivals'>;
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
  return { interim: r.interim, status: r.status, reason: r.reason, headers, body: r.body, framing: r.framing };
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
});
