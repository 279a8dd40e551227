// What `rego/policy.wasm` is built from, and how its manifest fingerprints those inputs. Shared by
// scripts/build-rego.mjs (which writes the manifest) and test/policy/wasm-fresh.test.ts (which checks
// it on machines without opa), so both sides hash the same bytes in the same order.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { gunzipSync } from 'node:zlib';

/** The decision, then the load-time check of a data document (see rego/authz.rego). */
export const ENTRYPOINTS = ['mcpgw/authz/decision', 'mcpgw/authz/data_problems'];
export const CAPABILITIES_FILE = 'capabilities.json';
export const WASM_FILE = 'policy.wasm';
export const MANIFEST_FILE = 'policy.wasm.json';

/** The non-test `.rego` files under `regoDir`, as sorted POSIX paths relative to it. */
export function regoSources(regoDir) {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.rego') && !e.name.endsWith('_test.rego')) out.push(relative(regoDir, p));
    }
  };
  walk(regoDir);
  // Byte order, not locale order, so every machine agrees.
  return out.map((p) => p.split(sep).join('/')).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export function sha256Hex(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * SHA-256 over the sorted sources, then the capabilities file. Each file contributes its path, a NUL,
 * its length in decimal, a NUL and its bytes, so moving text between files changes the hash.
 */
export function sourcesSha256(regoDir) {
  const h = createHash('sha256');
  for (const rel of [...regoSources(regoDir), CAPABILITIES_FILE]) {
    const bytes = readFileSync(join(regoDir, rel));
    h.update(`${rel}\0${bytes.length}\0`);
    h.update(bytes);
  }
  return h.digest('hex');
}

/** The bytes of one member of a (gzipped) ustar archive, or null. */
export function tarMember(gz, wanted) {
  const tar = gunzipSync(gz);
  const text = (buf, start, len) => {
    const s = buf.subarray(start, start + len);
    const nul = s.indexOf(0);
    return s.subarray(0, nul < 0 ? s.length : nul).toString('utf8');
  };
  for (let off = 0; off + 512 <= tar.length;) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const prefix = text(header, 345, 155);
    const name = prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100);
    const size = parseInt(text(header, 124, 12).trim() || '0', 8);
    const type = String.fromCharCode(header[156] || 48);
    const body = off + 512;
    if ((type === '0' || type === '\0') && name.replace(/^\/+/, '') === wanted) {
      return Buffer.from(tar.subarray(body, body + size));
    }
    off = body + Math.ceil(size / 512) * 512;
  }
  return null;
}
