/**
 * One vocabulary for JWT failures, shared by the end-user JWT verifier and the internal JWT
 * verifier. Messages are fixed strings: jose's own messages are safe today, but a fixed table makes
 * sure no token or claim value can ever reach a log line or a response through this path.
 */
import { errors } from 'jose';

export type JwtFailureCode =
  | 'malformed'
  | 'bad_algorithm'
  | 'bad_signature'
  | 'unknown_key'
  | 'bad_issuer'
  | 'bad_audience'
  | 'expired'
  | 'not_yet_valid'
  | 'bad_claims'
  | 'no_user_claim'
  | 'bad_user_claim'
  | 'jwks_unavailable';

export const JWT_FAILURE_MESSAGES: Readonly<Record<JwtFailureCode, string>> = {
  malformed: 'the token is not a well-formed JWT',
  bad_algorithm: 'the token is signed with an algorithm that is not allowed',
  bad_signature: 'the token signature does not verify',
  unknown_key: 'no known key matches the token',
  bad_issuer: 'the token was not issued by the expected issuer',
  bad_audience: 'the token is not meant for this audience',
  expired: 'the token has expired',
  not_yet_valid: 'the token is not valid yet',
  bad_claims: 'the token claims are missing or invalid',
  no_user_claim: 'the token has no user id claim',
  bad_user_claim: 'the token user id claim is not a valid user id',
  jwks_unavailable: 'the signing keys could not be loaded',
};

export interface JwtFailure<C extends JwtFailureCode = JwtFailureCode> {
  ok: false;
  code: C;
  message: string;
}

export function jwtFailure<C extends JwtFailureCode>(code: C): JwtFailure<C> {
  return { ok: false, code, message: JWT_FAILURE_MESSAGES[code] };
}

/** Marks failures of the key source itself (network, bad JWKS), as opposed to a bad token. */
export class KeySourceError extends Error {
  constructor(cause: unknown) {
    super('signing keys unavailable', { cause });
    this.name = 'KeySourceError';
  }
}

/** Compact JWS shape; checked before any decoding so junk never reaches jose. */
export const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function classifyJoseError(err: unknown): JwtFailureCode {
  if (err instanceof KeySourceError) return 'jwks_unavailable';
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'iss':
        return 'bad_issuer';
      case 'aud':
        return 'bad_audience';
      case 'nbf':
        return 'not_yet_valid';
      default:
        return 'bad_claims';
    }
  }
  if (err instanceof errors.JOSEError) {
    switch (err.code) {
      case 'ERR_JWT_EXPIRED':
        return 'expired';
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
      case 'ERR_JOSE_NOT_SUPPORTED':
        return 'bad_algorithm';
      // Multiple matching keys: the token has no `kid`, several keys fit and none verified.
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
        return 'bad_signature';
      case 'ERR_JWKS_NO_MATCHING_KEY':
        return 'unknown_key';
      case 'ERR_JWKS_INVALID':
      case 'ERR_JWKS_TIMEOUT':
      case 'ERR_JWK_INVALID':
        return 'jwks_unavailable';
      default:
        return 'malformed';
    }
  }
  return 'malformed';
}
