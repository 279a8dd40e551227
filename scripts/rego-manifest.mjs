// What `rego/policy.wasm` is built from, and how its manifest fingerprints those inputs. Shared by
// scripts/build-rego.mjs (which writes the manifest) and test/policy/wasm-fresh.test.ts (which checks
// it on machines without opa), so both sides hash the same bytes in the same order.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

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
