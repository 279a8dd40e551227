/**
 * rego/policy.wasm must be what rego/*.rego compiles to. Without opa (a fresh clone) the manifest is
 * checked against the sources and the Wasm by hash; with opa the policy is rebuilt and compared
 * byte for byte (opa 1.22.2 builds are reproducible: same sources and capabilities, same bytes).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  ENTRYPOINTS,
  MANIFEST_FILE,
  WASM_FILE,
  regoSources,
  sha256Hex,
  sourcesSha256,
  type RegoManifest,
} from '../../scripts/rego-manifest.mjs';
import { describeWith, findExecutable } from '../helpers/components.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const regoDir = join(root, 'rego');
const STALE = 'run `node scripts/build-rego.mjs` (needs opa) and commit rego/';

function manifest(): RegoManifest {
  return JSON.parse(readFileSync(join(regoDir, MANIFEST_FILE), 'utf8')) as RegoManifest;
}

describe('rego/policy.wasm is fresh (no opa needed)', () => {
  it('the manifest lists the current sources and entrypoints', () => {
    const m = manifest();
    expect(m.sources, STALE).toEqual(regoSources(regoDir));
    expect(m.sources).not.toContain('authz_test.rego');
    expect(m.entrypoints).toEqual(ENTRYPOINTS);
  });

  it('the sources and capabilities hash to what the Wasm was built from', () => {
    expect(sourcesSha256(regoDir), STALE).toBe(manifest().sourcesSha256);
  });

  it('the Wasm is the one the manifest describes', () => {
    expect(sha256Hex(readFileSync(join(regoDir, WASM_FILE))), STALE).toBe(manifest().wasmSha256);
  });

  it('the manifest names the opa version', () => {
    expect(manifest().opaVersion).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describeWith(['opa'], 'rego/policy.wasm is fresh (rebuilt with opa)', () => {
  it('a rebuild gives the same bytes', () => {
    const out = mkdtempSync(join(tmpdir(), 'mcpgw-wasm-fresh-'));
    try {
      try {
        execFileSync(process.execPath, [join(root, 'scripts', 'build-rego.mjs'), '--out', out], {
          cwd: root,
          env: { ...process.env, OPA: findExecutable('opa') ?? 'opa' },
          stdio: 'pipe',
        });
      } catch (e) {
        throw new Error(`build-rego failed: ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
      }
      const built = JSON.parse(readFileSync(join(out, MANIFEST_FILE), 'utf8')) as RegoManifest;
      expect(built.opaVersion, 'rebuild with the opa version that built the committed Wasm').toBe(
        manifest().opaVersion,
      );
      const rebuilt = readFileSync(join(out, WASM_FILE));
      expect(sha256Hex(rebuilt), STALE).toBe(sha256Hex(readFileSync(join(regoDir, WASM_FILE))));
      expect(readFileSync(join(out, MANIFEST_FILE), 'utf8'), STALE).toBe(
        readFileSync(join(regoDir, MANIFEST_FILE), 'utf8'),
      );
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
