/**
 * The internal JWT: minted by authz for every allowed request, whatever the client's auth mode, and
 * checked by the gateway, so the gateway trusts one token format and never the client's credential.
 * EdDSA (Ed25519), at most five minutes, cached per subject and role so a busy agent does not cost a
 * signature per request.
 */
import { randomBytes } from 'node:crypto';
import { errors, jwtVerify, SignJWT, type JWSHeaderParameters, type KeyObject } from 'jose';
import { ROLES, type Role } from '../policy/layer1-types.js';
import { classifyJoseError, COMPACT_JWS, jwtFailure, KeySourceError, type JwtFailure } from './jose-errors.js';
import { MAX_INTERNAL_JWT_TTL_SECONDS, type KeyRing, type PublicKeySource, type RingPublicKey } from './key-ring.js';
import { isValidUserId } from './store.js';

export {
  FileKeyRing,
  MAX_INTERNAL_JWT_TTL_SECONDS,
  MemoryKeyRing,
  RETIRED_KEY_GRACE_SECONDS,
  type Ed25519PublicJwk,
  type KeyRing,
  type KeyRingOptions,
  type PublicKeySource,
  type RingPublicKey,
  type RingSigningKey,
} from './key-ring.js';

export const INTERNAL_JWT_ISSUER = 'mcpgw';
export const INTERNAL_JWT_AUDIENCE = 'mcpgw-gateway';
export const DEFAULT_INTERNAL_JWT_TTL_SECONDS = 300;
/** A cached token is reused only while it has more than this left, so it never expires in flight. */
export const INTERNAL_JWT_REFRESH_MARGIN_SECONDS = 60;
const MAX_INTERNAL_JWT_LENGTH = 2048;

export interface InternalJwtSubject {
  sub: string;
  role: Role;
}

export interface InternalJwtIssuerOptions {
  ring: KeyRing;
  ttlSeconds?: number;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  /** Bound on cached tokens; expired ones go first, then the oldest. */
  maxCacheEntries?: number;
}

export interface InternalJwtIssuer {
  mint(subject: InternalJwtSubject): Promise<string>;
  /** Drops every cached token (e.g. after an emergency rotation, or a role change). */
  clear(): void;
}

interface CacheEntry {
  token: string;
  kid: string;
  exp: number;
}

export function createInternalJwtIssuer(options: InternalJwtIssuerOptions): InternalJwtIssuer {
  const ttl = options.ttlSeconds ?? DEFAULT_INTERNAL_JWT_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_INTERNAL_JWT_TTL_SECONDS) {
    throw new Error(`internal JWT TTL must be 1–${MAX_INTERNAL_JWT_TTL_SECONDS} seconds`);
  }
  const now = options.now ?? Date.now;
  const maxEntries = options.maxCacheEntries ?? 10_000;
  const cache = new Map<string, CacheEntry>();

  const evict = (nowSec: number): void => {
    for (const [k, e] of cache) if (e.exp - nowSec <= INTERNAL_JWT_REFRESH_MARGIN_SECONDS) cache.delete(k);
    // Map iteration is insertion order, so this drops the oldest entries.
    for (const k of cache.keys()) {
      if (cache.size < maxEntries) break;
      cache.delete(k);
    }
  };

  return {
    clear: () => cache.clear(),
    async mint({ sub, role }: InternalJwtSubject): Promise<string> {
      if (!isValidUserId(sub)) throw new Error('internal JWT: invalid subject');
      if (!(ROLES as readonly string[]).includes(role)) throw new Error('internal JWT: invalid role');
      const signing = await options.ring.signingKey();
      const nowSec = Math.floor(now() / 1000);
      // Neither part can contain a NUL (roles are fixed words, user ids visible ASCII).
      const cacheKey = `${role}\0${sub}`;
      const hit = cache.get(cacheKey);
      // A token from a rotated-out key is still valid, but new tokens should move to the new key.
      if (hit && hit.kid === signing.kid && hit.exp - nowSec > INTERNAL_JWT_REFRESH_MARGIN_SECONDS) return hit.token;

      const exp = nowSec + ttl;
      const token = await new SignJWT({ role })
        .setProtectedHeader({ alg: 'EdDSA', kid: signing.kid, typ: 'JWT' })
        .setSubject(sub)
        .setIssuer(INTERNAL_JWT_ISSUER)
        .setAudience(INTERNAL_JWT_AUDIENCE)
        .setIssuedAt(nowSec)
        .setExpirationTime(exp)
        .setJti(randomBytes(16).toString('base64url'))
        .sign(signing.privateKey);
      if (exp - nowSec > INTERNAL_JWT_REFRESH_MARGIN_SECONDS) {
        cache.delete(cacheKey);
        if (cache.size >= maxEntries) evict(nowSec);
        cache.set(cacheKey, { token, kid: signing.kid, exp });
      }
      return token;
    },
  };
}

export interface InternalJwtClaims {
  ok: true;
  sub: string;
  role: Role;
  jti: string;
  iat: number;
  exp: number;
  kid: string;
}

export type InternalJwtFailureCode =
  | 'malformed'
  | 'bad_algorithm'
  | 'bad_signature'
  | 'unknown_key'
  | 'bad_issuer'
  | 'bad_audience'
  | 'expired'
  | 'not_yet_valid'
  | 'bad_claims'
  | 'jwks_unavailable';

export type InternalJwtVerifyResult = InternalJwtClaims | JwtFailure<InternalJwtFailureCode>;

export interface VerifyInternalJwtOptions {
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  clockToleranceSeconds?: number;
}

/** The gateway's check of `authorization: Bearer <internal JWT>`. */
export async function verifyInternalJwt(
  keys: PublicKeySource,
  token: string,
  options: VerifyInternalJwtOptions = {},
): Promise<InternalJwtVerifyResult> {
  return (await verifyWithKey(keys, token, (options.now ?? Date.now)(), options.clockToleranceSeconds ?? 5)).result;
}

/** verifyInternalJwt at `nowMs`, with the ring key that verified the signature when it did. */
async function verifyWithKey(
  keys: PublicKeySource,
  token: string,
  nowMs: number,
  tolerance: number,
): Promise<{ result: InternalJwtVerifyResult; key?: RingPublicKey }> {
  if (typeof token !== 'string' || token.length > MAX_INTERNAL_JWT_LENGTH || !COMPACT_JWS.test(token)) {
    return { result: jwtFailure('malformed') };
  }
  let used: RingPublicKey | undefined;
  const getKey = async (header: JWSHeaderParameters): Promise<KeyObject> => {
    let candidates: RingPublicKey[];
    try {
      candidates = await keys.verificationKeys();
    } catch (err) {
      throw new KeySourceError(err);
    }
    // Our tokens always name their key; a token without a kid was not minted here.
    const found = typeof header.kid === 'string' ? candidates.find((k) => k.kid === header.kid) : undefined;
    if (!found) throw new errors.JWKSNoMatchingKey();
    used = found;
    return found.publicKey;
  };
  try {
    const { payload } = await jwtVerify(token, getKey, {
      algorithms: ['EdDSA'],
      issuer: INTERNAL_JWT_ISSUER,
      audience: INTERNAL_JWT_AUDIENCE,
      requiredClaims: ['sub', 'iat', 'exp', 'jti'],
      maxTokenAge: MAX_INTERNAL_JWT_TTL_SECONDS,
      clockTolerance: tolerance,
      currentDate: new Date(nowMs),
    });
    const { sub, role, jti, iat, exp } = payload;
    if (
      !isValidUserId(sub) ||
      typeof role !== 'string' ||
      !(ROLES as readonly string[]).includes(role) ||
      typeof jti !== 'string' ||
      typeof iat !== 'number' ||
      typeof exp !== 'number' ||
      // A token that claims a longer life than we ever mint was not made by this code.
      exp - iat > MAX_INTERNAL_JWT_TTL_SECONDS ||
      exp <= iat
    ) {
      return { result: jwtFailure('bad_claims') };
    }
    if (!used) return { result: jwtFailure('unknown_key') };
    return { result: { ok: true, sub, role: role as Role, jti, iat, exp, kid: used.kid }, key: used };
  } catch (err) {
    const code = classifyJoseError(err);
    return { result: jwtFailure(code === 'no_user_claim' || code === 'bad_user_claim' ? 'bad_claims' : code) };
  }
}

export interface InternalJwtVerifierOptions extends VerifyInternalJwtOptions {
  /** Bound on remembered tokens; the least recently used go first. Default 4096. */
  maxEntries?: number;
  /** A remembered token is verified in full again after this long, whatever its expiry. Default 30 s. */
  maxAgeMs?: number;
}

export interface InternalJwtVerifier {
  /** The same answer as verifyInternalJwt, without the signature check for a token verified recently. */
  verify(token: string): Promise<InternalJwtVerifyResult>;
  clear(): void;
  readonly size: number;
}

interface VerifiedEntry {
  claims: Readonly<InternalJwtClaims>;
  /** The public key that verified it: the entry holds only while the ring still trusts that key. */
  x: string;
  verifiedAt: number;
  /** Never later than the uncached check would accept the token (see below). */
  until: number;
}

/**
 * verifyInternalJwt behind a cache of successful results keyed by the exact token string: authz
 * reuses one token per subject and role for minutes, and an Ed25519 verification per request was a
 * measurable share of the gateway's time. Only successes are kept, and a hit still asks the key
 * source whether the token's key is trusted, so a rotated-out or removed key stops its tokens at
 * the same moment as without the cache. An entry ends at the token's `exp` and at `iat` + the
 * longest token life, without the clock tolerance the full check grants (past that point the full
 * check decides), and after `maxAgeMs` in any case.
 */
export function createInternalJwtVerifier(
  keys: PublicKeySource,
  options: InternalJwtVerifierOptions = {},
): InternalJwtVerifier {
  const now = options.now ?? Date.now;
  const maxEntries = options.maxEntries ?? 4096;
  const maxAgeMs = options.maxAgeMs ?? 30_000;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new Error('maxEntries must be a positive integer');
  if (!(maxAgeMs > 0)) throw new Error('maxAgeMs must be positive');
  const tolerance = options.clockToleranceSeconds ?? 5;
  const cache = new Map<string, VerifiedEntry>();
  // clear() while a check awaits the key source must win over what that check would store.
  let generation = 0;

  const stillTrusted = async (e: VerifiedEntry): Promise<boolean> => {
    let ring: RingPublicKey[];
    try {
      ring = await keys.verificationKeys();
    } catch {
      return false; // the full check reports jwks_unavailable
    }
    return ring.some((k) => k.kid === e.claims.kid && k.jwk.x === e.x);
  };

  return {
    get size() {
      return cache.size;
    },
    clear: () => {
      generation++;
      cache.clear();
    },
    async verify(token: string): Promise<InternalJwtVerifyResult> {
      const gen = generation;
      const hit = cache.get(token);
      if (hit) {
        const t = now();
        // A clock that went back re-checks too: the full check refuses tokens issued in its future.
        if (t >= hit.verifiedAt && t < hit.until && (await stillTrusted(hit)) && gen === generation) {
          // Map order is insertion order: re-inserting makes this the most recently used.
          cache.delete(token);
          cache.set(token, hit);
          return hit.claims;
        }
        cache.delete(token);
      }
      const verifiedAt = now();
      const { result: r, key } = await verifyWithKey(keys, token, verifiedAt, tolerance);
      if (!r.ok || !key) return r;
      const until = Math.min(r.exp * 1000, (r.iat + MAX_INTERNAL_JWT_TTL_SECONDS) * 1000, verifiedAt + maxAgeMs);
      if (until <= verifiedAt || gen !== generation) return r;
      const x = key.jwk.x;
      const claims = Object.freeze({ ...r });
      cache.delete(token);
      while (cache.size >= maxEntries) {
        const oldest = cache.keys().next();
        if (oldest.done) break;
        cache.delete(oldest.value);
      }
      cache.set(token, { claims, x, verifiedAt, until });
      return claims;
    },
  };
}
