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
  if (typeof token !== 'string' || token.length > MAX_INTERNAL_JWT_LENGTH || !COMPACT_JWS.test(token)) {
    return jwtFailure('malformed');
  }
  const tolerance = options.clockToleranceSeconds ?? 5;
  const nowMs = (options.now ?? Date.now)();
  let kid = '';
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
    kid = found.kid;
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
      return jwtFailure('bad_claims');
    }
    return { ok: true, sub, role: role as Role, jti, iat, exp, kid };
  } catch (err) {
    const code = classifyJoseError(err);
    return jwtFailure(code === 'no_user_claim' || code === 'bad_user_claim' ? 'bad_claims' : code);
  }
}
