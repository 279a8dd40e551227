/**
 * RFC 8785 (JCS) canonical JSON and the approval argument digest.
 *
 * Kept here until `src/util/jcs.ts` lands; the two must agree byte for byte, because the digest
 * keys approvals and a mismatch would make an approved call look like a different one.
 */
import { createHash } from 'node:crypto';

// A lone surrogate has no UTF-8 form, so two parties could not agree on its bytes.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export class CanonicalizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CanonicalizeError';
  }
}

function str(s: string): string {
  if (LONE_SURROGATE.test(s)) throw new CanonicalizeError('string holds a lone surrogate');
  // JSON.stringify escapes exactly what RFC 8785 §3.2.2.2 asks for (", \, and C0 controls).
  return JSON.stringify(s);
}

/** Canonical JSON text of a JSON value. Throws on values JSON cannot hold (NaN, bigint, functions). */
export function canonicalize(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return str(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalizeError('non-finite number');
      // ECMAScript Number-to-String is the serialization RFC 8785 §3.2.2.3 prescribes; -0 → "0".
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalize(v))).join(',')}]`;
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) throw new CanonicalizeError('not a plain JSON object');
      const rec = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is the order RFC 8785 §3.2.3 specifies.
      const keys = Object.keys(rec)
        .filter((k) => rec[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${str(k)}:${canonicalize(rec[k])}`).join(',')}}`;
    }
    default:
      throw new CanonicalizeError(`${typeof value} is not a JSON value`);
  }
}

/** Hex SHA-256 of the canonical form of `params.arguments` (DESIGN §7: never `_meta`). */
export function argumentsDigest(args: Record<string, unknown>): string {
  return createHash('sha256').update(canonicalize(args), 'utf8').digest('hex');
}
