/**
 * API keys: `mcpgw_sk_…` for agents, `mcpgw_ak_…` for people (admins and approvers).
 *
 * Layout: prefix (9) + 32 random base62 characters + 6 base62 characters of CRC32(prefix + random).
 * The fixed prefix and the checksum let secret scanners recognise a leaked key with few false
 * positives, and let us reject a mistyped or truncated key before touching the identity store.
 * The checksum is not a secret and proves nothing about authenticity: only the SHA-256 lookup does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

/** `sk`: agent keys. `ak`: keys of admins and approvers. */
export type ApiKeyKind = 'sk' | 'ak';

export const API_KEY_KINDS: readonly ApiKeyKind[] = ['sk', 'ak'];

export const API_KEY_PREFIX_LENGTH = 'mcpgw_sk_'.length;
export const API_KEY_RANDOM_LENGTH = 32;
export const API_KEY_CHECKSUM_LENGTH = 6;
export const API_KEY_LENGTH = API_KEY_PREFIX_LENGTH + API_KEY_RANDOM_LENGTH + API_KEY_CHECKSUM_LENGTH;
export const API_KEY_DISPLAY_ID_LENGTH = 8;

/**
 * For secret scanners and log redaction; matches the full key shape (the checksum is not checked).
 * Not global on purpose: a shared `g` regex carries `lastIndex` between callers.
 */
export const API_KEY_SCAN_PATTERN = /\bmcpgw_(?:sk|ak)_[0-9A-Za-z]{38}\b/;

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KEY_SHAPE = /^mcpgw_(sk|ak)_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$/;
// 248 = 4 × 62: bytes at or above it are dropped so every base62 digit is equally likely.
const REJECT_AT = 248;

export function apiKeyPrefix(kind: ApiKeyKind): string {
  return `mcpgw_${kind}_`;
}

function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    // Ask for a little more than needed: about 3% of bytes are rejected.
    const bytes = randomBytes(length - out.length + 8);
    for (const b of bytes) {
      if (b >= REJECT_AT) continue;
      out += BASE62[b % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

function checksum(prefixAndRandom: string): string {
  let n = crc32(Buffer.from(prefixAndRandom, 'ascii'));
  let out = '';
  while (n > 0) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  // 62^6 > 2^32, so six digits always suffice.
  return out.padStart(API_KEY_CHECKSUM_LENGTH, '0');
}

/** A new key. It is shown to its owner once; only `hashApiKey(key)` and the display id are stored. */
export function generateApiKey(kind: ApiKeyKind): string {
  const body = apiKeyPrefix(kind) + randomBase62(API_KEY_RANDOM_LENGTH);
  return body + checksum(body);
}

export type ApiKeyParseError = 'malformed' | 'bad_checksum';

export type ParsedApiKey =
  | {
      ok: true;
      kind: ApiKeyKind;
      /** The 8 characters after the prefix: safe to show in listings and audit rows. */
      displayId: string;
      /** SHA-256 of the whole key, the identity store's lookup key. */
      hash: Buffer;
    }
  | { ok: false; code: ApiKeyParseError };

/** Checks the shape and checksum of a presented key. Never echo `s` in an error: it may be a real key. */
export function parseApiKey(s: string): ParsedApiKey {
  if (typeof s !== 'string' || s.length !== API_KEY_LENGTH) return { ok: false, code: 'malformed' };
  const m = KEY_SHAPE.exec(s);
  if (!m) return { ok: false, code: 'malformed' };
  const kind = m[1] as ApiKeyKind;
  const random = m[2] as string;
  const sum = m[3] as string;
  // The checksum is derived from the key itself, so comparing it in variable time leaks nothing.
  if (checksum(apiKeyPrefix(kind) + random) !== sum) return { ok: false, code: 'bad_checksum' };
  return { ok: true, kind, displayId: random.slice(0, API_KEY_DISPLAY_ID_LENGTH), hash: hashApiKey(s) };
}

/** Cheap test used to route a bearer credential: API key or JWT (a JWT starts with `eyJ`). */
export function looksLikeApiKey(s: string): boolean {
  return s.startsWith('mcpgw_');
}

export function hashApiKey(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
