/** Approval ids: `ap-` + 10 Crockford base32 characters (50 random bits). */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
export const APPROVAL_ID_PATTERN = /^ap-[0-9A-HJKMNP-TV-Z]{10}$/;

export function newApprovalId(): string {
  const b = randomBytes(7);
  let n = 0n;
  for (const byte of b) n = (n << 8n) | BigInt(byte);
  let out = '';
  for (let i = 0; i < 10; i++) {
    out = (ALPHABET[Number(n & 31n)] as string) + out;
    n >>= 5n;
  }
  return `ap-${out}`;
}

/**
 * Normalizes what a human typed (any case, with or without `ap-`, Crockford's look-alikes
 * I/L → 1 and O → 0, hyphens ignored) to the id alphabet, or null when it cannot be part of an id.
 */
export function normalizeApprovalPrefix(input: string): string | null {
  let s = input.trim().toUpperCase();
  if (s.startsWith('AP-')) s = s.slice(3);
  s = s.replace(/-/g, '').replace(/[IL]/g, '1').replace(/O/g, '0');
  if (s.length === 0 || s.length > 10) return null;
  for (const c of s) if (!ALPHABET.includes(c)) return null;
  return s;
}
