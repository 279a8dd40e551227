import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  base64url,
  CompactSign,
  exportJWK,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJwtVerifier, type JwtVerifier, type JwtVerifyResult } from '../../src/identity/jwt.js';

const ISSUER = 'https://idp.example/realms/mcpgateway';
const AUDIENCE = 'mcpgw';

interface TestKey {
  alg: 'RS256' | 'ES256' | 'EdDSA' | 'RS384';
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function makeKey(alg: TestKey['alg'], kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { alg, kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const nowSec = () => Math.floor(Date.now() / 1000);

function sign(
  key: TestKey,
  claims: JWTPayload,
  opts: { kid?: string | null; alg?: string; noExp?: boolean } = {},
): Promise<string> {
  const header: { alg: string; kid?: string; typ: string } = { alg: opts.alg ?? key.alg, typ: 'JWT' };
  if (opts.kid !== null) header.kid = opts.kid ?? key.kid;
  const jwt = new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: 'alice', iat: nowSec(), ...claims }).setProtectedHeader(
    header,
  );
  if (!opts.noExp && claims.exp === undefined) jwt.setExpirationTime(nowSec() + 300);
  return jwt.sign(key.privateKey);
}

function expectFailure(result: JwtVerifyResult, code: string, token: string): void {
  expect(result).toMatchObject({ ok: false, code });
  if (!result.ok) {
    // The message is fixed text: never the token, nor any part of it.
    for (const part of token.split('.')) if (part.length > 3) expect(result.message).not.toContain(part);
  }
}

let dir: string;
let rsa: TestKey;
let ec: TestKey;
let ed: TestKey;
let rsa384: TestKey;
let stranger: TestKey;
let jwksFile: string;
let verifier: JwtVerifier;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mcpgw-jwt-'));
  rsa = await makeKey('RS256', 'rsa-1');
  ec = await makeKey('ES256', 'ec-1');
  ed = await makeKey('EdDSA', 'ed-1');
  rsa384 = await makeKey('RS384', 'rsa384-1');
  stranger = await makeKey('RS256', 'rsa-1'); // same kid as a trusted key, different key
  jwksFile = join(dir, 'jwks.json');
  const set: JSONWebKeySet = { keys: [rsa.publicJwk, ec.publicJwk, ed.publicJwk, rsa384.publicJwk] };
  await writeFile(jwksFile, JSON.stringify(set));
  verifier = await createJwtVerifier({ jwks: { file: jwksFile }, issuer: ISSUER, audience: AUDIENCE });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('createJwtVerifier with a JWKS file', () => {
  it.each(['RS256', 'ES256', 'EdDSA'] as const)('accepts a good %s token', async (alg) => {
    const key = { RS256: rsa, ES256: ec, EdDSA: ed }[alg];
    const r = await verifier.verify(await sign(key, { sub: 'alice', extra: 1 }));
    expect(r).toMatchObject({ ok: true, userId: 'alice', claims: { sub: 'alice', extra: 1, iss: ISSUER } });
  });

  it('accepts a token without kid when one key fits', async () => {
    const r = await verifier.verify(await sign(ec, {}, { kid: null }));
    expect(r.ok).toBe(true);
  });

  it('accepts any of several audiences', async () => {
    const v = await createJwtVerifier({ jwks: { file: jwksFile }, issuer: ISSUER, audience: ['other', AUDIENCE] });
    expect((await v.verify(await sign(rsa, { aud: [AUDIENCE, 'account'] }))).ok).toBe(true);
  });

  it('expired', async () => {
    const token = await sign(rsa, { exp: nowSec() - 10 });
    expectFailure(await verifier.verify(token), 'expired', token);
  });

  it('honours clockToleranceSeconds', async () => {
    const v = await createJwtVerifier({
      jwks: { file: jwksFile },
      issuer: ISSUER,
      audience: AUDIENCE,
      clockToleranceSeconds: 60,
    });
    expect((await v.verify(await sign(rsa, { exp: nowSec() - 10 }))).ok).toBe(true);
    expect((await v.verify(await sign(rsa, { nbf: nowSec() + 30 }))).ok).toBe(true);
    expectFailure(await v.verify(await sign(rsa, { exp: nowSec() - 120 })), 'expired', '');
  });

  it('not_yet_valid', async () => {
    const token = await sign(rsa, { nbf: nowSec() + 120 });
    expectFailure(await verifier.verify(token), 'not_yet_valid', token);
  });

  it('requires exp', async () => {
    const token = await sign(rsa, {}, { noExp: true });
    expectFailure(await verifier.verify(token), 'bad_claims', token);
  });

  it('bad_issuer (wrong or missing)', async () => {
    const token = await sign(rsa, { iss: 'https://evil.example' });
    expectFailure(await verifier.verify(token), 'bad_issuer', token);
    const none = await sign(rsa, { iss: undefined });
    expectFailure(await verifier.verify(none), 'bad_issuer', none);
  });

  it('bad_audience (wrong or missing)', async () => {
    const token = await sign(rsa, { aud: 'account' });
    expectFailure(await verifier.verify(token), 'bad_audience', token);
    const none = await sign(rsa, { aud: undefined });
    expectFailure(await verifier.verify(none), 'bad_audience', none);
  });

  it('bad_signature: signed by another key under a trusted kid', async () => {
    const token = await sign(stranger, {});
    expectFailure(await verifier.verify(token), 'bad_signature', token);
  });

  it('bad_signature: payload changed after signing', async () => {
    const token = await sign(ed, { sub: 'alice' });
    const [h, , s] = token.split('.');
    const forged = `${h}.${base64url.encode(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: 'owner', exp: nowSec() + 60 }))}.${s}`;
    expectFailure(await verifier.verify(forged), 'bad_signature', forged);
  });

  it('unknown_key: kid not in the set', async () => {
    const token = await sign(rsa, {}, { kid: 'nope' });
    expectFailure(await verifier.verify(token), 'unknown_key', token);
  });

  it('bad_algorithm: alg none', async () => {
    const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
    const payload = base64url.encode(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: 'owner', exp: nowSec() + 60 }));
    for (const token of [`${header}.${payload}.`, `${header}.${payload}.c2ln`]) {
      expectFailure(await verifier.verify(token), 'bad_algorithm', token);
    }
  });

  it('bad_algorithm: HS256, even with the public key bytes as the secret', async () => {
    const secret = new TextEncoder().encode(JSON.stringify(rsa.publicJwk));
    const token = await new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: 'owner' })
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
      .setExpirationTime('5m')
      .sign(secret);
    expectFailure(await verifier.verify(token), 'bad_algorithm', token);
  });

  it('bad_algorithm: an asymmetric algorithm outside the allow-list', async () => {
    const token = await sign(rsa384, {});
    expectFailure(await verifier.verify(token), 'bad_algorithm', token);
    const esOnly = await createJwtVerifier({
      jwks: { file: jwksFile },
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: ['ES256'],
    });
    expectFailure(await esOnly.verify(await sign(rsa, {})), 'bad_algorithm', '');
    expect((await esOnly.verify(await sign(ec, {}))).ok).toBe(true);
  });

  it.each([
    ['garbage', 'not a token'],
    ['two parts', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0'],
    ['bad header JSON', `${base64url.encode('{alg')}.${base64url.encode('{}')}.c2ln`],
    ['padding', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0=.c2ln'],
    ['too long', `eyJhbGciOiJSUzI1NiJ9.${'A'.repeat(17_000)}.c2ln`],
    ['empty', ''],
  ])('malformed: %s', async (_label, token) => {
    expectFailure(await verifier.verify(token), 'malformed', token);
  });

  it('malformed: a correctly signed payload that is not a JSON object', async () => {
    for (const payload of ['nope', '[1,2]']) {
      const token = await new CompactSign(new TextEncoder().encode(payload))
        .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
        .sign(rsa.privateKey);
      expectFailure(await verifier.verify(token), 'malformed', token);
    }
  });

  it('malformed: a non-string does not throw', async () => {
    expect(await verifier.verify(42 as unknown as string)).toMatchObject({ ok: false, code: 'malformed' });
  });

  it('no_user_claim and bad_user_claim', async () => {
    const none = await sign(rsa, { sub: undefined });
    expectFailure(await verifier.verify(none), 'no_user_claim', none);
    const num = await sign(rsa, { sub: 123 as unknown as string });
    expectFailure(await verifier.verify(num), 'bad_user_claim', num);
    const inject = await sign(rsa, { sub: 'alice\r\nx-mcpgw-user: owner' });
    expectFailure(await verifier.verify(inject), 'bad_user_claim', inject);
  });

  it('reads the user id from a custom claim', async () => {
    const v = await createJwtVerifier({
      jwks: { file: jwksFile },
      issuer: ISSUER,
      audience: AUDIENCE,
      userClaim: 'preferred_username',
    });
    expect(await v.verify(await sign(rsa, { sub: 'f81d4fae', preferred_username: 'alice' }))).toMatchObject({
      ok: true,
      userId: 'alice',
    });
    expectFailure(await v.verify(await sign(rsa, { sub: 'f81d4fae' })), 'no_user_claim', '');
  });

  it('returns email only when email_verified is exactly true', async () => {
    const verified = await verifier.verify(await sign(rsa, { email: 'a@example.com', email_verified: true }));
    expect(verified).toMatchObject({ ok: true, email: 'a@example.com' });
    for (const extra of [{ email_verified: false }, { email_verified: 'true' }, {}]) {
      const r = await verifier.verify(await sign(rsa, { email: 'a@example.com', ...extra }));
      expect(r.ok).toBe(true);
      expect(r).not.toHaveProperty('email');
    }
  });

  it('refuses dangerous configurations', async () => {
    const base = { jwks: { file: jwksFile }, issuer: ISSUER, audience: AUDIENCE };
    for (const algorithms of [['HS256'], ['none'], [], ['RS256', 'HS512']]) {
      await expect(createJwtVerifier({ ...base, algorithms: algorithms as ['RS256'] })).rejects.toThrow();
    }
    await expect(createJwtVerifier({ ...base, issuer: '' })).rejects.toThrow(/issuer/);
    await expect(createJwtVerifier({ ...base, audience: [] })).rejects.toThrow(/audience/);
    await expect(createJwtVerifier({ ...base, clockToleranceSeconds: -1 })).rejects.toThrow();
  });

  it('refuses a JWKS file holding private or symmetric keys, or no set at all', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const cases: Array<[string, unknown, RegExp]> = [
      ['private.json', { keys: [await exportJWK(privateKey)] }, /private key material/],
      ['oct.json', { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }, /kty oct/],
      ['noset.json', [rsa.publicJwk], /not a JSON Web Key Set/],
    ];
    for (const [name, doc, message] of cases) {
      const file = join(dir, name);
      await writeFile(file, JSON.stringify(doc));
      const err: unknown = await createJwtVerifier({ jwks: { file }, issuer: ISSUER, audience: AUDIENCE }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(message);
      // The error must not quote key material.
      expect((err as Error).message).not.toMatch(/"d"|c2VjcmV0/);
    }
    await expect(
      createJwtVerifier({ jwks: { file: join(dir, 'missing.json') }, issuer: ISSUER, audience: AUDIENCE }),
    ).rejects.toThrow();
  });

  it('tries every fitting key when the token has no kid', async () => {
    const rsa2 = await makeKey('RS256', 'rsa-2');
    const file = join(dir, 'two-rsa.json');
    await writeFile(file, JSON.stringify({ keys: [rsa.publicJwk, rsa2.publicJwk] }));
    const v = await createJwtVerifier({ jwks: { file }, issuer: ISSUER, audience: AUDIENCE });
    expect((await v.verify(await sign(rsa2, {}, { kid: null }))).ok).toBe(true);
    const token = await sign(stranger, {}, { kid: null });
    expectFailure(await v.verify(token), 'bad_signature', token);
  });

  it('refresh() picks up a rotated file', async () => {
    const file = join(dir, 'rotating.json');
    await writeFile(file, JSON.stringify({ keys: [rsa.publicJwk] }));
    const v = await createJwtVerifier({ jwks: { file }, issuer: ISSUER, audience: AUDIENCE });
    const token = await sign(ec, {});
    expectFailure(await v.verify(token), 'unknown_key', token);
    await writeFile(file, JSON.stringify({ keys: [rsa.publicJwk, ec.publicJwk] }));
    await v.refresh();
    expect((await v.verify(token)).ok).toBe(true);
  });
});

describe('createJwtVerifier with a JWKS URL', () => {
  let server: Server;
  let baseUrl: string;
  let served: { status: number; body: string; hang?: boolean };
  let hits = 0;

  beforeAll(async () => {
    served = { status: 200, body: JSON.stringify({ keys: [rsa.publicJwk] }) };
    server = createServer((req, res) => {
      hits++;
      if (served.hang) return; // never answers
      res.writeHead(served.status, { 'content-type': 'application/json' });
      res.end(served.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const urlVerifier = (extra: Record<string, unknown> = {}) =>
    createJwtVerifier({ jwks: { url: `${baseUrl}/jwks`, ...extra }, issuer: ISSUER, audience: AUDIENCE });

  it('fetches the set and verifies', async () => {
    served = { status: 200, body: JSON.stringify({ keys: [rsa.publicJwk, ed.publicJwk] }) };
    const v = await urlVerifier();
    expect(await v.verify(await sign(ed, { sub: 'bob' }))).toMatchObject({ ok: true, userId: 'bob' });
  });

  it('refetches on an unknown kid after the cooldown (IdP key rotation)', async () => {
    served = { status: 200, body: JSON.stringify({ keys: [rsa.publicJwk] }) };
    const v = await urlVerifier({ cooldownMs: 0 });
    expect((await v.verify(await sign(rsa, {}))).ok).toBe(true);
    served = { status: 200, body: JSON.stringify({ keys: [rsa.publicJwk, ec.publicJwk] }) };
    expect((await v.verify(await sign(ec, {}))).ok).toBe(true);
  });

  it('jwks_unavailable when the server errors', async () => {
    served = { status: 500, body: 'oops' };
    const v = await urlVerifier();
    const token = await sign(rsa, {});
    expectFailure(await v.verify(token), 'jwks_unavailable', token);
  });

  it('jwks_unavailable when the body is not a JWKS', async () => {
    served = { status: 200, body: '<html>' };
    expectFailure(await (await urlVerifier()).verify(await sign(rsa, {})), 'jwks_unavailable', '');
    served = { status: 200, body: JSON.stringify({ nope: true }) };
    expectFailure(await (await urlVerifier()).verify(await sign(rsa, {})), 'jwks_unavailable', '');
  });

  it('jwks_unavailable when the server does not answer in time', async () => {
    served = { status: 200, body: '', hang: true };
    const v = await urlVerifier({ timeoutMs: 200 });
    const started = Date.now();
    expectFailure(await v.verify(await sign(rsa, {})), 'jwks_unavailable', '');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('jwks_unavailable when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const v = await createJwtVerifier({
      jwks: { url: `http://127.0.0.1:${port}/jwks` },
      issuer: ISSUER,
      audience: AUDIENCE,
    });
    expectFailure(await v.verify(await sign(rsa, {})), 'jwks_unavailable', '');
  });

  it('does not fetch for a token refused before key selection', async () => {
    served = { status: 200, body: JSON.stringify({ keys: [rsa.publicJwk] }) };
    const v = await urlVerifier();
    const before = hits;
    expectFailure(await v.verify('junk'), 'malformed', 'junk');
    const hs = await new SignJWT({ sub: 'x' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1m')
      .sign(new Uint8Array(32));
    expectFailure(await v.verify(hs), 'bad_algorithm', hs);
    expect(hits).toBe(before);
  });

  it('refuses plain http to a non-loopback host unless allowed', async () => {
    const base = { issuer: ISSUER, audience: AUDIENCE };
    await expect(createJwtVerifier({ ...base, jwks: { url: 'http://idp.example/jwks' } })).rejects.toThrow(/https/);
    await expect(createJwtVerifier({ ...base, jwks: { url: 'https://idp.example/jwks' } })).resolves.toBeDefined();
    await expect(
      createJwtVerifier({ ...base, jwks: { url: 'http://keycloak:8080/jwks', allowInsecureHttp: true } }),
    ).resolves.toBeDefined();
    await expect(createJwtVerifier({ ...base, jwks: { url: 'http://[::1]:8080/jwks' } })).resolves.toBeDefined();
    await expect(createJwtVerifier({ ...base, jwks: { url: 'ftp://127.0.0.1/jwks' } })).rejects.toThrow();
  });
});
