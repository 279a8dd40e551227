/**
 * Verification of end-user JWTs (Keycloak or any OIDC provider) with jose.
 *
 * Only asymmetric algorithms are accepted: the JWKS is public, so an HMAC "key" taken from it would
 * let anyone mint tokens; `none` is never accepted. `exp` is required. Neither the token nor any
 * claim value is ever put in a result message, since both are attacker-controlled and the token is a
 * credential.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  jwtVerify,
  type CryptoKey,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
} from 'jose';
import {
  classifyJoseError,
  COMPACT_JWS,
  jwtFailure,
  KeySourceError,
  type JwtFailure,
  type JwtFailureCode,
} from './jose-errors.js';
import { isValidUserId } from './store.js';

export const ASYMMETRIC_JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
export type JwtAlgorithm = (typeof ASYMMETRIC_JWT_ALGORITHMS)[number];

export const DEFAULT_JWT_ALGORITHMS: readonly JwtAlgorithm[] = ['RS256', 'ES256', 'EdDSA'];

/** Largest token looked at; real access tokens are a few KiB, and this bounds work before crypto. */
export const MAX_JWT_LENGTH = 16 * 1024;

export type JwksSource =
  | { file: string }
  | {
      url: string | URL;
      /** Per fetch; jose's default is 5 s, too long for a request path with a 1 s ext_authz budget. */
      timeoutMs?: number;
      /** Minimum time between refetches triggered by an unknown `kid`. */
      cooldownMs?: number;
      /** How long a fetched set is used before it is refetched. */
      cacheMaxAgeMs?: number;
      /** Plain http is refused except to loopback, since a JWKS is a trust anchor. */
      allowInsecureHttp?: boolean;
    };

export interface JwtVerifierOptions {
  jwks: JwksSource;
  issuer: string;
  audience: string | string[];
  algorithms?: readonly JwtAlgorithm[];
  /** Claim that holds the user id. */
  userClaim?: string;
  clockToleranceSeconds?: number;
}

export type { JwtFailure, JwtFailureCode };

export interface JwtVerified {
  ok: true;
  userId: string;
  /** Present only when the token says `email_verified: true`. */
  email?: string;
  claims: JWTPayload;
}

export type JwtVerifyResult = JwtVerified | JwtFailure;

export interface JwtVerifier {
  verify(token: string): Promise<JwtVerifyResult>;
  /** Re-reads the JWKS file or refetches the URL now (at startup, or after an IdP key rotation). */
  refresh(): Promise<void>;
}

type KeyResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

const PUBLIC_KTY = new Set(['RSA', 'EC', 'OKP']);
// Members that only private (or symmetric) JWKs carry.
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** Throws (naming the file, never key material) when the document is not a public JWKS. */
function checkPublicJwks(doc: unknown, where: string): JSONWebKeySet {
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw new Error(`${where}: not a JSON Web Key Set (expected {"keys": [...]})`);
  }
  const keys = (doc as { keys: unknown[] }).keys;
  keys.forEach((k, i) => {
    if (typeof k !== 'object' || k === null) throw new Error(`${where}: keys[${i}] is not an object`);
    const kty = (k as { kty?: unknown }).kty;
    if (typeof kty !== 'string' || !PUBLIC_KTY.has(kty)) {
      throw new Error(`${where}: keys[${i}] has kty ${String(kty)}; only RSA, EC and OKP public keys are accepted`);
    }
    if (PRIVATE_MEMBERS.some((m) => Object.hasOwn(k, m))) {
      throw new Error(`${where}: keys[${i}] contains private key material; publish only public keys`);
    }
  });
  // Fails early on structurally broken sets, at load rather than at the first request.
  createLocalJWKSet(doc as JSONWebKeySet);
  return doc as JSONWebKeySet;
}

async function readJwksFile(file: string): Promise<JSONWebKeySet> {
  const text = await readFile(file, 'utf8');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error(`${file}: not valid JSON`);
  }
  return checkPublicJwks(doc, file);
}

/**
 * A token without `kid` may fit several keys of the set (same kty and alg); jose then hands back the
 * candidates and leaves trying them to the caller. The first whose signature verifies decides; if
 * none does, the multiple-match error stands and is reported as a bad signature.
 */
async function verifyWithCandidates(token: string, getKey: KeyResolver, opts: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, getKey, opts)).payload;
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    for await (const candidate of err) {
      try {
        return (await jwtVerify(token, candidate, opts)).payload;
      } catch (inner) {
        if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
      }
    }
    throw err;
  }
}

export async function createJwtVerifier(options: JwtVerifierOptions): Promise<JwtVerifier> {
  const algorithms = [...(options.algorithms ?? DEFAULT_JWT_ALGORITHMS)];
  if (algorithms.length === 0) throw new Error('JWT verifier: the algorithm allow-list is empty');
  for (const alg of algorithms) {
    if (!(ASYMMETRIC_JWT_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new Error(`JWT verifier: algorithm ${String(alg)} is not allowed (asymmetric algorithms only)`);
    }
  }
  if (!options.issuer) throw new Error('JWT verifier: issuer is required');
  const audience = Array.isArray(options.audience) ? [...options.audience] : options.audience;
  if (audience.length === 0) throw new Error('JWT verifier: audience is required');
  const userClaim = options.userClaim ?? 'sub';
  const clockTolerance = options.clockToleranceSeconds ?? 0;
  if (!Number.isFinite(clockTolerance) || clockTolerance < 0 || clockTolerance > 300) {
    throw new Error('JWT verifier: clockToleranceSeconds must be between 0 and 300');
  }

  let resolve: KeyResolver;
  let refresh: () => Promise<void>;
  const source = options.jwks;
  if ('file' in source) {
    let local = createLocalJWKSet(await readJwksFile(source.file));
    resolve = (h, t) => local(h, t);
    refresh = async () => {
      local = createLocalJWKSet(await readJwksFile(source.file));
    };
  } else {
    const url = new URL(source.url);
    if (
      url.protocol !== 'https:' &&
      !(url.protocol === 'http:' && (isLoopbackHost(url.hostname) || source.allowInsecureHttp))
    ) {
      throw new Error(`JWT verifier: JWKS URL must be https (or http to loopback): ${url.origin}`);
    }
    const remote = createRemoteJWKSet(url, {
      timeoutDuration: source.timeoutMs ?? 1000,
      cooldownDuration: source.cooldownMs ?? 30_000,
      cacheMaxAge: source.cacheMaxAgeMs ?? 600_000,
    });
    resolve = (h, t) => remote(h, t);
    refresh = () => remote.reload();
  }

  const verifyOptions: JWTVerifyOptions = {
    algorithms,
    issuer: options.issuer,
    audience,
    clockTolerance,
    requiredClaims: ['exp'],
  };

  const getKey: KeyResolver = async (header, token) => {
    try {
      return await resolve(header, token);
    } catch (err) {
      // These describe the token's key selection, not the key source; the multiple-match error must
      // reach `verify` unchanged, since it carries the candidate keys.
      if (
        err instanceof errors.JWKSNoMatchingKey ||
        err instanceof errors.JWKSMultipleMatchingKeys ||
        err instanceof errors.JOSENotSupported
      ) {
        throw err;
      }
      throw new KeySourceError(err);
    }
  };

  return {
    refresh,
    async verify(token: string): Promise<JwtVerifyResult> {
      if (typeof token !== 'string' || token.length > MAX_JWT_LENGTH || !COMPACT_JWS.test(token)) {
        return jwtFailure('malformed');
      }
      let claims: JWTPayload;
      try {
        claims = await verifyWithCandidates(token, getKey, verifyOptions);
      } catch (err) {
        return jwtFailure(classifyJoseError(err));
      }
      const user: unknown = claims[userClaim];
      if (user === undefined || user === null || user === '') return jwtFailure('no_user_claim');
      if (!isValidUserId(user)) return jwtFailure('bad_user_claim');
      const out: JwtVerified = { ok: true, userId: user, claims };
      // An unverified address may belong to someone else; it must never match an approver list.
      if (typeof claims['email'] === 'string' && claims['email_verified'] === true) out.email = claims['email'];
      return out;
    },
  };
}
