import { generateKeyPairSync } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createInternalJwtIssuer,
  FileKeyRing,
  INTERNAL_JWT_AUDIENCE,
  INTERNAL_JWT_ISSUER,
  MemoryKeyRing,
  RETIRED_KEY_GRACE_SECONDS,
  verifyInternalJwt,
  type KeyRing,
} from '../../src/identity/internal-jwt.js';

const T0 = Date.UTC(2030, 0, 1);

function clock(start = T0) {
  let t = start;
  return { now: () => t, advance: (seconds: number) => (t += seconds * 1000) };
}

async function forge(ring: KeyRing, claims: JWTPayload, header: { alg?: string; kid?: string | null } = {}) {
  const { kid, privateKey } = await ring.signingKey();
  const h: { alg: string; kid?: string } = { alg: header.alg ?? 'EdDSA' };
  if (header.kid !== null) h.kid = header.kid ?? kid;
  const iat = Math.floor(T0 / 1000);
  return new SignJWT({
    sub: 'alice',
    role: 'agent',
    iss: INTERNAL_JWT_ISSUER,
    aud: INTERNAL_JWT_AUDIENCE,
    iat,
    exp: iat + 300,
    jti: 'j1',
    ...claims,
  })
    .setProtectedHeader(h)
    .sign(privateKey);
}

describe('internal JWT', () => {
  it('mints an EdDSA token with the documented claims, and verifies it', async () => {
    const c = clock();
    const ring = await MemoryKeyRing.create({ now: c.now });
    const issuer = createInternalJwtIssuer({ ring, now: c.now });
    const token = await issuer.mint({ sub: 'alice', role: 'approver' });
    const header = decodeProtectedHeader(token);
    const claims = decodeJwt(token);
    const { kid } = await ring.signingKey();
    expect(header).toEqual({ alg: 'EdDSA', kid, typ: 'JWT' });
    expect(claims).toMatchObject({ sub: 'alice', role: 'approver', iss: 'mcpgw', aud: 'mcpgw-gateway' });
    expect(claims.iat).toBe(T0 / 1000);
    expect(claims.exp).toBe(T0 / 1000 + 300);
    expect(claims.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(await verifyInternalJwt(ring, token, { now: c.now })).toEqual({
      ok: true,
      sub: 'alice',
      role: 'approver',
      jti: claims.jti,
      iat: claims.iat,
      exp: claims.exp,
      kid,
    });
  });

  it('caches per subject and role until 60 s before expiry', async () => {
    const c = clock();
    const ring = await MemoryKeyRing.create({ now: c.now });
    const issuer = createInternalJwtIssuer({ ring, now: c.now });
    const a1 = await issuer.mint({ sub: 'alice', role: 'agent' });
    expect(await issuer.mint({ sub: 'alice', role: 'agent' })).toBe(a1);
    expect(await issuer.mint({ sub: 'alice', role: 'admin' })).not.toBe(a1);
    expect(await issuer.mint({ sub: 'bob', role: 'agent' })).not.toBe(a1);
    c.advance(239);
    expect(await issuer.mint({ sub: 'alice', role: 'agent' })).toBe(a1);
    c.advance(1); // 60 s left
    const a2 = await issuer.mint({ sub: 'alice', role: 'agent' });
    expect(a2).not.toBe(a1);
    expect(decodeJwt(a2).iat).toBe(T0 / 1000 + 240);
    issuer.clear();
    expect(await issuer.mint({ sub: 'alice', role: 'agent' })).not.toBe(a2);
  });

  it('does not cache tokens too short-lived to reuse, and bounds the cache', async () => {
    const c = clock();
    const ring = await MemoryKeyRing.create({ now: c.now });
    const short = createInternalJwtIssuer({ ring, now: c.now, ttlSeconds: 60 });
    expect(await short.mint({ sub: 'a', role: 'agent' })).not.toBe(await short.mint({ sub: 'a', role: 'agent' }));
    const small = createInternalJwtIssuer({ ring, now: c.now, maxCacheEntries: 2 });
    const a = await small.mint({ sub: 'a', role: 'agent' });
    await small.mint({ sub: 'b', role: 'agent' });
    await small.mint({ sub: 'c', role: 'agent' }); // evicts a, the oldest
    expect(await small.mint({ sub: 'a', role: 'agent' })).not.toBe(a);
  });

  it('refuses a TTL above five minutes and bad subjects', async () => {
    const ring = await MemoryKeyRing.create();
    expect(() => createInternalJwtIssuer({ ring, ttlSeconds: 301 })).toThrow(/1–300/);
    expect(() => createInternalJwtIssuer({ ring, ttlSeconds: 0 })).toThrow();
    const issuer = createInternalJwtIssuer({ ring });
    await expect(issuer.mint({ sub: 'a b', role: 'agent' })).rejects.toThrow(/subject/);
    await expect(issuer.mint({ sub: 'a', role: 'root' as 'admin' })).rejects.toThrow(/role/);
  });

  it('rotation: old tokens verify until the grace period ends, new tokens use the new key', async () => {
    const c = clock();
    const ring = await MemoryKeyRing.create({ now: c.now });
    const issuer = createInternalJwtIssuer({ ring, now: c.now });
    const oldKid = (await ring.signingKey()).kid;
    const t1 = await issuer.mint({ sub: 'alice', role: 'agent' });
    await ring.rotate();
    const newKid = (await ring.signingKey()).kid;
    expect(newKid).not.toBe(oldKid);
    expect((await ring.jwks()).keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
    expect(await verifyInternalJwt(ring, t1, { now: c.now })).toMatchObject({ ok: true, kid: oldKid });
    const t2 = await issuer.mint({ sub: 'alice', role: 'agent' });
    expect(t2).not.toBe(t1);
    expect(decodeProtectedHeader(t2).kid).toBe(newKid);

    c.advance(RETIRED_KEY_GRACE_SECONDS);
    expect((await ring.jwks()).keys.map((k) => k.kid)).toEqual([newKid]);
    // By now t1 is long expired too; without its key it cannot even be checked.
    expect(await verifyInternalJwt(ring, t1, { now: c.now })).toMatchObject({ ok: false, code: 'unknown_key' });
  });

  it('concurrent rotations each retire a distinct key', async () => {
    const ring = await MemoryKeyRing.create();
    const first = (await ring.signingKey()).kid;
    await Promise.all([ring.rotate(), ring.rotate(), ring.rotate()]);
    const kids = (await ring.jwks()).keys.map((k) => k.kid);
    expect(kids).toHaveLength(4);
    expect(new Set(kids).size).toBe(4);
    expect(kids.at(-1)).toBe(first);
  });

  it('jwks() is public only, and usable by any JWKS consumer', async () => {
    const ring = await MemoryKeyRing.create();
    const set = await ring.jwks();
    for (const k of set.keys) {
      expect(Object.keys(k).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x']);
      expect(k).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    }
    const token = await createInternalJwtIssuer({ ring }).mint({ sub: 'alice', role: 'agent' });
    const { payload } = await jwtVerify(token, createLocalJWKSet(set), {
      issuer: INTERNAL_JWT_ISSUER,
      audience: INTERNAL_JWT_AUDIENCE,
    });
    expect(payload.sub).toBe('alice');
  });

  describe('verifyInternalJwt failures', () => {
    let ring: KeyRing;
    const now = () => T0;
    beforeAll(async () => {
      ring = await MemoryKeyRing.create({ now });
    });

    it.each([
      ['expired', { iat: T0 / 1000 - 400, exp: T0 / 1000 - 100 }, 'expired'],
      ['not yet valid', { nbf: T0 / 1000 + 100 }, 'not_yet_valid'],
      ['issued in the future', { iat: T0 / 1000 + 100, exp: T0 / 1000 + 400 }, 'bad_claims'],
      ['wrong issuer', { iss: 'keycloak' }, 'bad_issuer'],
      ['wrong audience', { aud: 'someone-else' }, 'bad_audience'],
      ['lifetime over 5 minutes', { exp: T0 / 1000 + 3600 }, 'bad_claims'],
      ['unknown role', { role: 'root' }, 'bad_claims'],
      ['no role', { role: undefined }, 'bad_claims'],
      ['no sub', { sub: undefined }, 'bad_claims'],
      ['bad sub', { sub: 'a\nb' }, 'bad_claims'],
      ['no jti', { jti: undefined }, 'bad_claims'],
    ])('%s', async (_label, claims, code) => {
      const token = await forge(ring, claims as JWTPayload);
      const r = await verifyInternalJwt(ring, token, { now });
      expect(r).toMatchObject({ ok: false, code });
      if (!r.ok) expect(r.message).not.toContain(token.split('.')[1]);
    });

    it('tolerates a little clock skew', async () => {
      const token = await forge(ring, { iat: T0 / 1000 - 250, exp: T0 / 1000 - 3 });
      expect((await verifyInternalJwt(ring, token, { now })).ok).toBe(true);
      expect((await verifyInternalJwt(ring, token, { now, clockToleranceSeconds: 0 })).ok).toBe(false);
    });

    it('no kid, or a kid from another ring', async () => {
      expect(await verifyInternalJwt(ring, await forge(ring, {}, { kid: null }), { now })).toMatchObject({
        code: 'unknown_key',
      });
      const other = await MemoryKeyRing.create({ now });
      expect(await verifyInternalJwt(ring, await forge(other, {}), { now })).toMatchObject({ code: 'unknown_key' });
    });

    it('a key from another ring under our kid', async () => {
      const other = await MemoryKeyRing.create({ now });
      const token = await forge(other, {}, { kid: (await ring.signingKey()).kid });
      expect(await verifyInternalJwt(ring, token, { now })).toMatchObject({ code: 'bad_signature' });
    });

    it('tampered payload', async () => {
      const token = await forge(ring, { role: 'agent' });
      const [h, , s] = token.split('.');
      const payload = Buffer.from(JSON.stringify({ ...decodeJwt(token), role: 'admin' })).toString('base64url');
      expect(await verifyInternalJwt(ring, `${h}.${payload}.${s}`, { now })).toMatchObject({ code: 'bad_signature' });
    });

    it('another algorithm', async () => {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const token = await new SignJWT({ sub: 'alice', role: 'admin' })
        .setProtectedHeader({ alg: 'ES256', kid: (await ring.signingKey()).kid })
        .setIssuer(INTERNAL_JWT_ISSUER)
        .setAudience(INTERNAL_JWT_AUDIENCE)
        .setIssuedAt(T0 / 1000)
        .setExpirationTime(T0 / 1000 + 60)
        .setJti('x')
        .sign(privateKey);
      expect(await verifyInternalJwt(ring, token, { now })).toMatchObject({ code: 'bad_algorithm' });
      const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${token.split('.')[1]}.`;
      expect(await verifyInternalJwt(ring, none, { now })).toMatchObject({ code: 'bad_algorithm' });
    });

    it('junk', async () => {
      for (const token of ['', 'a.b', 'x'.repeat(5000), 'a.b.c']) {
        expect(await verifyInternalJwt(ring, token, { now })).toMatchObject({ ok: false, code: 'malformed' });
      }
    });

    it('a key source that fails', async () => {
      const broken = {
        verificationKeys: async () => {
          throw new Error('db down');
        },
      };
      const r = await verifyInternalJwt(broken, await forge(ring, {}), { now });
      expect(r).toMatchObject({ ok: false, code: 'jwks_unavailable' });
    });
  });
});

describe('FileKeyRing', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mcpgw-ring-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a 0600 file, reloads the same keys, and persists rotations', async () => {
    const path = join(dir, 'keys', 'internal-jwt.json');
    const c = clock();
    const ring = await FileKeyRing.open(path, { now: c.now });
    if (process.platform !== 'win32') {
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'keys'))).mode & 0o777).toBe(0o700);
    }
    const kid1 = (await ring.signingKey()).kid;
    const token = await createInternalJwtIssuer({ ring, now: c.now }).mint({ sub: 'alice', role: 'agent' });

    const again = await FileKeyRing.open(path, { now: c.now });
    expect((await again.signingKey()).kid).toBe(kid1);
    expect((await verifyInternalJwt(again, token, { now: c.now })).ok).toBe(true);

    await ring.rotate();
    const reopened = await FileKeyRing.open(path, { now: c.now });
    expect((await reopened.jwks()).keys.map((k) => k.kid)).toEqual([(await ring.signingKey()).kid, kid1]);
    expect((await verifyInternalJwt(reopened, token, { now: c.now })).ok).toBe(true);

    await again.reload();
    expect((await again.signingKey()).kid).toBe((await ring.signingKey()).kid);
  });

  it('refuses a group- or world-readable file', async () => {
    if (process.platform === 'win32') return;
    const path = join(dir, 'loose', 'ring.json');
    await FileKeyRing.open(path);
    await chmod(path, 0o644);
    await expect(FileKeyRing.open(path)).rejects.toThrow(`chmod 600 ${path}`);
  });

  it('refuses a damaged file without quoting key material', async () => {
    const path = join(dir, 'damaged', 'ring.json');
    await FileKeyRing.open(path);
    const doc = JSON.parse(await readFile(path, 'utf8')) as { keys: Array<{ d: string; x: string; kid: string }> };
    const secret = doc.keys[0]?.d as string;
    const swapped = { ...doc, keys: [{ ...doc.keys[0], kid: 'forged' }] };
    await writeFile(path, JSON.stringify(swapped), { mode: 0o600 });
    const err = (await FileKeyRing.open(path).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/does not match its kid/);
    expect(err.message).not.toContain(secret);
    await writeFile(path, JSON.stringify({ version: 1, keys: [{ ...doc.keys[0], d: 'short' }] }), { mode: 0o600 });
    const err2 = (await FileKeyRing.open(path).catch((e: unknown) => e)) as Error;
    expect(err2.message).toMatch(/not a key ring file \(keys\.0\.d\)/);
  });
});
