/**
 * RFC 8785 JSON Canonicalization Scheme, and the approval digest built on it (DESIGN §7): two calls
 * with the same arguments must get the same digest however the client spelled them (key order,
 * whitespace, escapes, number notation).
 *
 * JavaScript is the RFC's reference environment: strings are escaped exactly as JSON.stringify does,
 * numbers are serialized by ECMAScript's Number-to-String (what String() and JSON.stringify produce,
 * with -0 as "0"), and keys sort by UTF-16 code units, which is Array.prototype.sort's default order.
 */
import { createHash } from 'node:crypto';
import type { JsonValue } from '../authz/strict-json.js';

// With the `u` flag a surrogate range matches only unpaired surrogates; paired ones form one code point.
const LONE_SURROGATE = /[\ud800-\udfff]/u;

/** Throws TypeError for what I-JSON cannot represent: non-finite numbers, lone surrogates, non-JSON values. */
export function canonicalize(value: JsonValue): string {
  switch (typeof value) {
    case 'string':
      return serializeString(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`JCS cannot represent the number ${String(value)}`);
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        // An index loop, not map/join: a hole must throw (as undefined), not vanish into ",,".
        let out = '[';
        for (let i = 0; i < value.length; i++) out += `${i > 0 ? ',' : ''}${canonicalize(value[i] as JsonValue)}`;
        return `${out}]`;
      }
      const keys = Object.keys(value).sort();
      let out = '{';
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as string;
        if (i > 0) out += ',';
        // Own lookups only: a `__proto__` key from the strict parser is an own data property.
        out += `${serializeString(key)}:${canonicalize(value[key] as JsonValue)}`;
      }
      return `${out}}`;
    }
    default:
      throw new TypeError(`JCS cannot represent a value of type ${typeof value}`);
  }
}

function serializeString(s: string): string {
  if (LONE_SURROGATE.test(s)) throw new TypeError('JCS cannot represent a string with a lone surrogate');
  return JSON.stringify(s);
}

/** Hex SHA-256 of the UTF-8 JCS form of a call's `params.arguments` (never `_meta`): the approval key. */
export function argumentsDigest(args: JsonValue): string {
  return createHash('sha256').update(canonicalize(args), 'utf8').digest('hex');
}
