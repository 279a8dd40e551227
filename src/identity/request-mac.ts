/**
 * `x-mcpgw-request-mac`: HMAC-SHA256(key, label ‖ len(decision id) ‖ decision id ‖ SHA-256(body)),
 * base64url. authz sets it on an allowed request; the gateway recomputes it over the body it
 * actually received, so an internal token and decision id cannot be replayed with another body.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

const LABEL = Buffer.from('mcpgw request mac v1\0', 'ascii');
const MAC_BYTES = 32;
const MAC_SHAPE = /^[A-Za-z0-9_-]{43}$/;
export const MIN_REQUEST_MAC_KEY_BYTES = 32;

function checkKey(key: Uint8Array): void {
  if (key.length < MIN_REQUEST_MAC_KEY_BYTES) {
    throw new Error(`request MAC key must be at least ${MIN_REQUEST_MAC_KEY_BYTES} bytes`);
  }
}

function compute(key: Uint8Array, decisionId: string, body: Uint8Array): Buffer {
  checkKey(key);
  const id = Buffer.from(decisionId, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(id.length);
  const bodyHash = createHash('sha256').update(body).digest();
  return createHmac('sha256', key).update(LABEL).update(len).update(id).update(bodyHash).digest();
}

export function requestMac(key: Uint8Array, decisionId: string, body: Uint8Array): string {
  return compute(key, decisionId, body).toString('base64url');
}

export function verifyRequestMac(key: Uint8Array, decisionId: string, body: Uint8Array, mac: string): boolean {
  checkKey(key);
  if (typeof mac !== 'string' || !MAC_SHAPE.test(mac)) return false;
  const given = Buffer.from(mac, 'base64url');
  // Non-canonical spellings of the same bytes are refused so one MAC has exactly one header value.
  if (given.length !== MAC_BYTES || given.toString('base64url') !== mac) return false;
  return timingSafeEqual(compute(key, decisionId, body), given);
}
