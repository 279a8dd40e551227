/**
 * `mcp-session-id` values: `<random>.<mac>`, both base64url without padding, where
 * mac = HMAC-SHA256(key, label ‖ len(random) ‖ random ‖ len(user) ‖ user).
 *
 * authz checks that a session belongs to the caller with no lookup (so it scales out and survives
 * restarts), and an agent cannot use a session id minted for another user.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SESSION_RANDOM_BYTES = 16;
const MAC_BYTES = 32;
const RANDOM_CHARS = 22; // ceil(16 * 4 / 3)
const MAC_CHARS = 43; // ceil(32 * 4 / 3)
export const SESSION_ID_LENGTH = RANDOM_CHARS + 1 + MAC_CHARS;
const SESSION_SHAPE = /^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/;

// Labels keep these MACs distinct from each other and from any other HMAC made with the same key.
const SESSION_LABEL = Buffer.from('mcpgw session v1\0', 'ascii');
const SERVER_REQUEST_LABEL = Buffer.from('mcpgw server request v1\0', 'ascii');
/** Prefix of the JSON-RPC ids the gateway gives its server→client requests. */
export const SERVER_REQUEST_ID_PREFIX = 'mcpgw-';
export const MIN_SESSION_KEY_BYTES = 32;

function checkKey(key: Uint8Array): void {
  if (key.length < MIN_SESSION_KEY_BYTES)
    throw new Error(`session key must be at least ${MIN_SESSION_KEY_BYTES} bytes`);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function mac(key: Uint8Array, label: Buffer, random: Uint8Array, boundTo: string): Buffer {
  const bound = Buffer.from(boundTo, 'utf8');
  return createHmac('sha256', key)
    .update(label)
    .update(u32(random.length))
    .update(random)
    .update(u32(bound.length))
    .update(bound)
    .digest();
}

function mintBound(key: Uint8Array, label: Buffer, boundTo: string): string {
  checkKey(key);
  const random = randomBytes(SESSION_RANDOM_BYTES);
  return `${random.toString('base64url')}.${mac(key, label, random, boundTo).toString('base64url')}`;
}

export function mintSessionId(key: Uint8Array, userId: string): string {
  return mintBound(key, SESSION_LABEL, userId);
}

/**
 * The id of a request the gateway sends to a client (sampling, elicitation, roots), bound to the
 * session, so authz lets a client *response* through only for an id issued to that session —
 * without any lookup.
 */
export function mintServerRequestId(key: Uint8Array, sessionId: string): string {
  return SERVER_REQUEST_ID_PREFIX + mintBound(key, SERVER_REQUEST_LABEL, sessionId);
}

/**
 * Decodes base64url only when `s` is the canonical encoding: otherwise several strings (differing in
 * the unused low bits of the last character) would name one session, and session-scoped state keyed
 * on the string could be dodged.
 */
function decodeCanonical(s: string, bytes: number): Buffer | null {
  const b = Buffer.from(s, 'base64url');
  if (b.length !== bytes || b.toString('base64url') !== s) return null;
  return b;
}

function verifyBound(key: Uint8Array, label: Buffer, token: string, boundTo: string): boolean {
  checkKey(key);
  if (typeof token !== 'string' || token.length !== SESSION_ID_LENGTH || !SESSION_SHAPE.test(token)) {
    return false;
  }
  const random = decodeCanonical(token.slice(0, RANDOM_CHARS), SESSION_RANDOM_BYTES);
  const given = decodeCanonical(token.slice(RANDOM_CHARS + 1), MAC_BYTES);
  if (!random || !given) return false;
  return timingSafeEqual(mac(key, label, random, boundTo), given);
}

export function verifySessionId(key: Uint8Array, sessionId: string, userId: string): boolean {
  return verifyBound(key, SESSION_LABEL, sessionId, userId);
}

export function verifyServerRequestId(key: Uint8Array, sessionId: string, id: string | number): boolean {
  if (typeof id !== 'string' || !id.startsWith(SERVER_REQUEST_ID_PREFIX)) return false;
  return verifyBound(key, SERVER_REQUEST_LABEL, id.slice(SERVER_REQUEST_ID_PREFIX.length), sessionId);
}
