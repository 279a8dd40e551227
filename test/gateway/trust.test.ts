import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  accepts,
  checkProtocolVersionHeader,
  keyRefresher,
  originAllowed,
  ReplayGuard,
  verifyCaller,
} from '../../src/gateway/index.js';
import {
  createInternalJwtIssuer,
  createInternalJwtVerifier,
  FileKeyRing,
  MemoryKeyRing,
} from '../../src/identity/internal-jwt.js';
import { requestMac } from '../../src/identity/request-mac.js';
import { testKeys, type TestKeys } from './helpers.js';

let keys: TestKeys;
beforeAll(async () => {
  keys = await testKeys();
});

async function headersFor(body: string, user = 'alice', over: Record<string, string> = {}) {
  const decisionId = randomUUID();
  return {
    authorization: `Bearer ${await keys.issuer.mint({ sub: user, role: 'agent' })}`,
    'x-mcpgw-user': user,
    'x-mcpgw-decision-id': decisionId,
    'x-mcpgw-request-mac': requestMac(keys.requestMacKey, decisionId, Buffer.from(body)),
    ...over,
  };
}

const deps = () => ({ keys: keys.keyRing, requestMacKey: keys.requestMacKey, replay: new ReplayGuard() });
const body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fx__echo","arguments":{"text":"a"}}}';

describe('verifyCaller', () => {
  it('accepts what authz vouched for; the user is the token subject', async () => {
    const r = await verifyCaller(await headersFor(body), Buffer.from(body), deps());
    expect(r).toMatchObject({ ok: true, caller: { userId: 'alice', role: 'agent' } });
  });

  it('refuses another body under the same MAC', async () => {
    const h = await headersFor(body);
    const other = body.replace('"a"', '"b"');
    expect(await verifyCaller(h, Buffer.from(other), deps())).toMatchObject({ ok: false, code: 'bad_request_mac' });
  });

  it('refuses a request without the internal token, whatever x-mcpgw-user says', async () => {
    const h: Record<string, string> = await headersFor(body);
    delete h['authorization'];
    expect(await verifyCaller(h, Buffer.from(body), deps())).toMatchObject({ ok: false, code: 'no_internal_token' });
    expect(await verifyCaller({ 'x-mcpgw-user': 'alice' }, Buffer.from(body), deps())).toMatchObject({ ok: false });
  });

  it('refuses a token from a key outside the ring, and a user header that disagrees with the token', async () => {
    const foreign = createInternalJwtIssuer({ ring: await MemoryKeyRing.create() });
    const h = await headersFor(body, 'alice', {
      authorization: `Bearer ${await foreign.mint({ sub: 'alice', role: 'agent' })}`,
    });
    expect(await verifyCaller(h, Buffer.from(body), deps())).toMatchObject({
      ok: false,
      code: 'internal_token_unknown_key',
    });
    const mismatch = await headersFor(body, 'alice', { 'x-mcpgw-user': 'mallory' });
    expect(await verifyCaller(mismatch, Buffer.from(body), deps())).toMatchObject({ ok: false, code: 'user_mismatch' });
  });

  it('with the verifier cache: the same answers, and a cached token still needs a fresh decision and MAC', async () => {
    const d = { ...deps(), verifier: createInternalJwtVerifier(keys.keyRing) };
    const first = await headersFor(body);
    expect(await verifyCaller(first, Buffer.from(body), d)).toMatchObject({ ok: true, caller: { userId: 'alice' } });
    expect(d.verifier.size).toBe(1);
    // The same token (the issuer reuses it) under a new decision: accepted from the cache.
    const second = await headersFor(body);
    expect(second.authorization).toBe(first.authorization);
    expect(await verifyCaller(second, Buffer.from(body), d)).toMatchObject({ ok: true, caller: { userId: 'alice' } });
    expect(await verifyCaller(second, Buffer.from(body), d)).toMatchObject({ ok: false, code: 'replayed' });
    const swapped = await headersFor(body);
    expect(await verifyCaller(swapped, Buffer.from(`${body} `), d)).toMatchObject({
      ok: false,
      code: 'bad_request_mac',
    });
    const mismatch = await headersFor(body, 'alice', { 'x-mcpgw-user': 'mallory' });
    expect(await verifyCaller(mismatch, Buffer.from(body), d)).toMatchObject({ ok: false, code: 'user_mismatch' });
    const foreign = createInternalJwtIssuer({ ring: await MemoryKeyRing.create() });
    const other = await headersFor(body, 'alice', {
      authorization: `Bearer ${await foreign.mint({ sub: 'alice', role: 'agent' })}`,
    });
    expect(await verifyCaller(other, Buffer.from(body), d)).toMatchObject({
      ok: false,
      code: 'internal_token_unknown_key',
    });
  });

  it('accepts a decision only once', async () => {
    const d = deps();
    const h = await headersFor(body);
    expect((await verifyCaller(h, Buffer.from(body), d)).ok).toBe(true);
    expect(await verifyCaller(h, Buffer.from(body), d)).toMatchObject({ ok: false, code: 'replayed' });
  });
});

describe('key rotation by authz in another process', () => {
  it('re-reads a file ring when a token names a key it does not know yet, at most so often', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mcpgw-ring-'));
    try {
      const authzRing = await FileKeyRing.open(join(dir, 'internal-jwt.json'));
      const gatewayRing = await FileKeyRing.open(join(dir, 'internal-jwt.json'));
      await authzRing.rotate();
      const issuer = createInternalJwtIssuer({ ring: authzRing });
      const decisionId = randomUUID();
      const h = {
        authorization: `Bearer ${await issuer.mint({ sub: 'alice', role: 'agent' })}`,
        'x-mcpgw-decision-id': decisionId,
        'x-mcpgw-request-mac': requestMac(keys.requestMacKey, decisionId, Buffer.from(body)),
      };
      const stale = { keys: gatewayRing, requestMacKey: keys.requestMacKey, replay: new ReplayGuard() };
      expect(await verifyCaller(h, Buffer.from(body), stale)).toMatchObject({
        ok: false,
        code: 'internal_token_unknown_key',
      });
      let t = 0;
      const refreshKeys = keyRefresher(gatewayRing, 5000, () => t);
      // Through the verifier cache, as the gateway runs it: the unknown key is not remembered.
      const verifier = createInternalJwtVerifier(gatewayRing);
      expect((await verifyCaller(h, Buffer.from(body), { ...stale, verifier, refreshKeys })).ok).toBe(true);
      // A second unknown key within the interval does not trigger another read.
      t = 1000;
      expect(await refreshKeys()).toBe(false);
      t = 6000;
      expect(await refreshKeys()).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ReplayGuard', () => {
  it('forgets decisions whose token has expired, and stays bounded', () => {
    let now = 1_000_000;
    const g = new ReplayGuard({ max: 3, now: () => now });
    expect(g.claim('a', 1_000)).toBe(true);
    expect(g.claim('a', 1_000)).toBe(false);
    now = 2_000_000;
    expect(g.claim('b', 3_000)).toBe(true);
    expect(g.size).toBe(1);
    for (const id of ['c', 'd', 'e', 'f']) g.claim(id, 3_000);
    expect(g.size).toBeLessThanOrEqual(3);
  });
});

describe('transport header checks', () => {
  it('Origin: absent passes, loopback passes, listed passes, anything else does not', () => {
    expect(originAllowed(undefined, [], true)).toBe(true);
    expect(originAllowed('http://localhost:8000', [], true)).toBe(true);
    expect(originAllowed('http://127.0.0.1:5173', [], true)).toBe(true);
    expect(originAllowed('http://[::1]:8000', [], true)).toBe(true);
    expect(originAllowed('http://localhost:8000', [], false)).toBe(false);
    expect(originAllowed('https://evil.example', [], true)).toBe(false);
    expect(originAllowed('http://localhost.evil.example', [], true)).toBe(false);
    expect(originAllowed('null', [], true)).toBe(false);
    expect(originAllowed('http://localhost:8000/path', [], true)).toBe(false);
    expect(originAllowed('https://app.example', ['https://app.example'], false)).toBe(true);
  });

  it('MCP-Protocol-Version: absent is the fallback, supported passes, others are refused', () => {
    expect(checkProtocolVersionHeader(undefined)).toEqual({ ok: true, version: null });
    expect(checkProtocolVersionHeader('2025-06-18')).toEqual({ ok: true, version: '2025-06-18' });
    expect(checkProtocolVersionHeader('2024-11-05').ok).toBe(false);
    expect(checkProtocolVersionHeader('banana').ok).toBe(false);
  });

  it('Accept', () => {
    expect(accepts('application/json, text/event-stream', 'text/event-stream')).toBe(true);
    expect(accepts('text/*;q=0.5', 'text/event-stream')).toBe(true);
    expect(accepts('application/json', 'text/event-stream')).toBe(false);
    expect(accepts(undefined, 'text/event-stream')).toBe(false);
  });
});
