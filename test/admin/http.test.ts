/**
 * The node:http adapter over a real socket: the caller comes only from a valid internal JWT (401
 * otherwise, whatever `x-mcpgw-user` says), bodies are size-limited strict JSON, answers are JSON
 * that no cache keeps.
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHttpHandler, internalJwtCallerVerifier } from '../../src/admin/http.js';
import {
  createUserResponseSchema,
  errorBodySchema,
  statusResponseSchema,
  userPageSchema,
} from '../../src/admin/contract.js';
import { createInternalJwtIssuer, MemoryKeyRing, type InternalJwtIssuer } from '../../src/identity/internal-jwt.js';
import { openHarness, type Harness } from './helpers.js';

let h: Harness;
let server: Server;
let base: string;
let issuer: InternalJwtIssuer;
let foreign: InternalJwtIssuer;
let stale: InternalJwtIssuer;

beforeAll(async () => {
  h = await openHarness();
  const ring = await MemoryKeyRing.create();
  issuer = createInternalJwtIssuer({ ring });
  foreign = createInternalJwtIssuer({ ring: await MemoryKeyRing.create() });
  stale = createInternalJwtIssuer({ ring, now: () => Date.now() - 3_600_000 });
  const handler = adminHttpHandler(h.api, internalJwtCallerVerifier(ring), { maxBodyBytes: 2048 });
  server = createServer((req, res) => {
    handler(req, res).catch(() => {
      res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await h.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: unknown;
}

/** Raw node:http, so headers and chunked bodies are exactly what the test says. */
function send(
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string | Buffer; chunked?: boolean } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json: text === '' ? null : JSON.parse(text) });
      });
    });
    req.on('error', reject);
    if (opts.body !== undefined) {
      if (opts.chunked) {
        const body = Buffer.from(opts.body);
        for (let i = 0; i < body.length; i += 512) req.write(body.subarray(i, i + 512));
      } else {
        req.setHeader('content-length', Buffer.byteLength(opts.body));
        req.write(opts.body);
      }
    }
    req.end();
  });
}

async function as(id: string, role: 'admin' | 'approver' | 'agent', i = issuer): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await i.mint({ sub: id, role })}` };
}

const json = { 'content-type': 'application/json' };

function code(a: Answer): string {
  return errorBodySchema.parse(a.json).error.code;
}

describe('internalJwtCallerVerifier', () => {
  it('re-reads the key ring once when a token names an unknown key', async () => {
    const rotated = await MemoryKeyRing.create();
    let current = await MemoryKeyRing.create();
    let refreshes = 0;
    const verify = internalJwtCallerVerifier(
      { verificationKeys: () => current.verificationKeys() },
      {
        refreshKeys: async () => {
          refreshes++;
          current = rotated;
          return true;
        },
      },
    );
    const token = await createInternalJwtIssuer({ ring: rotated }).mint({ sub: 'owner', role: 'admin' });
    const req = { headers: { authorization: `Bearer ${token}` } } as unknown as IncomingMessage;
    expect(await verify(req)).toEqual({ id: 'owner', role: 'admin' });
    expect(refreshes).toBe(1);
    const forged = await createInternalJwtIssuer({ ring: await MemoryKeyRing.create() }).mint({
      sub: 'owner',
      role: 'admin',
    });
    const bad = { headers: { authorization: `Bearer ${forged}` } } as unknown as IncomingMessage;
    expect(await verify(bad)).toBeNull();
  });
});

describe('admin over HTTP', () => {
  it('401 without a valid internal JWT, whatever x-mcpgw-user says', async () => {
    const cases: Record<string, string>[] = [
      {},
      { 'x-mcpgw-user': 'owner' },
      { authorization: 'Bearer not-a-jwt', 'x-mcpgw-user': 'owner' },
      { authorization: 'Basic b3duZXI6cGFzcw==' },
      await as('owner', 'admin', foreign),
      await as('owner', 'admin', stale),
      { ...(await as('owner', 'admin')), 'x-mcpgw-user': 'someone-else' },
    ];
    for (const headers of cases) {
      const a = await send('GET', '/admin/v1/status', { headers });
      expect([a.status, code(a)]).toEqual([401, 'unauthorized']);
      expect(a.headers['www-authenticate']).toContain('Bearer');
      expect(a.headers['content-type']).toBe('application/json; charset=utf-8');
    }
  });

  it('a valid token: JSON answer, no-store; the token role is what counts', async () => {
    const a = await send('GET', '/admin/v1/status', {
      headers: { ...(await as('owner', 'admin')), 'x-mcpgw-user': 'owner' },
    });
    expect(a.status).toBe(200);
    expect(a.headers['cache-control']).toBe('no-store');
    expect(a.headers['x-content-type-options']).toBe('nosniff');
    expect(statusResponseSchema.parse(a.json).policy.revision).toBe(h.holder.active.engine.revision);

    const agent = await send('GET', '/admin/v1/status', { headers: await as('bot', 'agent') });
    expect([agent.status, code(agent)]).toEqual([403, 'forbidden']);
    const approver = await send('GET', '/admin/v1/users', { headers: await as('alice', 'approver') });
    expect(approver.status).toBe(403);
  });

  it('POST with a JSON body; the key comes back once with no-store', async () => {
    const a = await send('POST', '/admin/v1/users', {
      headers: { ...(await as('owner', 'admin')), ...json },
      body: JSON.stringify({ id: 'http-agent', role: 'agent' }),
    });
    expect(a.status).toBe(201);
    expect(a.headers['cache-control']).toBe('no-store');
    expect(createUserResponseSchema.parse(a.json).apiKey).toMatch(/^mcpgw_sk_/);

    const page = await send('GET', '/admin/v1/users?limit=1', { headers: await as('owner', 'admin') });
    const parsed = userPageSchema.parse(page.json);
    expect(parsed.items).toHaveLength(1);
    expect(parsed.nextCursor).toBeNull();
  });

  it('bodies: size limit (declared or chunked), content type, strict JSON', async () => {
    const admin = { ...(await as('owner', 'admin')), ...json };
    const big = JSON.stringify({ filename: 'x.yaml', content: 'x'.repeat(4096) });
    const declared = await send('POST', '/admin/v1/policy', { headers: admin, body: big });
    expect([declared.status, code(declared)]).toEqual([413, 'payload_too_large']);
    const chunked = await send('POST', '/admin/v1/policy', { headers: admin, body: big, chunked: true });
    expect([chunked.status, code(chunked)]).toEqual([413, 'payload_too_large']);

    const text = await send('POST', '/admin/v1/users', {
      headers: { ...(await as('owner', 'admin')), 'content-type': 'text/plain' },
      body: '{"id":"x","role":"agent"}',
    });
    expect([text.status, code(text)]).toEqual([415, 'unsupported_media_type']);

    const dup = await send('POST', '/admin/v1/users', {
      headers: admin,
      body: '{"id":"dup","role":"agent","role":"admin"}',
    });
    expect([dup.status, code(dup)]).toEqual([400, 'bad_request']);
    expect(await h.store.identity.findUser('dup')).toBeNull();

    const broken = await send('POST', '/admin/v1/users', { headers: admin, body: '{"id":' });
    expect([broken.status, code(broken)]).toEqual([400, 'bad_request']);
  });

  it('paths and queries: outside the base is 404, a repeated parameter 400, wrong method 405', async () => {
    const admin = await as('owner', 'admin');
    const outside = await send('GET', '/admin/v2/status', { headers: admin });
    expect([outside.status, code(outside)]).toEqual([404, 'not_found']);
    const repeated = await send('GET', '/admin/v1/users?limit=1&limit=2', { headers: admin });
    expect([repeated.status, code(repeated)]).toEqual([400, 'bad_request']);
    const wrong = await send('DELETE', '/admin/v1/status', { headers: admin });
    expect([wrong.status, wrong.headers['allow']]).toEqual([405, 'GET']);
    const dotdot = await send('GET', '/admin/v1/../v1/status', { headers: admin });
    expect(dotdot.status).toBe(200);
  });
});
