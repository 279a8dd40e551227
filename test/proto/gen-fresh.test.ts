/**
 * src/gen/ is generated (buf + ts-proto from Envoy's protos as npm ships them, and proto/); this
 * regenerates it into a temp dir and requires identical files, so nobody hand-edits it and a
 * dependency bump that changes the protos cannot slip by.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = new URL('../..', import.meta.url).pathname;
const out = join(mkdtempSync(join(tmpdir(), 'mcpgw-gen-')), 'gen');
afterAll(() => rmSync(out, { recursive: true, force: true }));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

describe('generated protobuf code', () => {
  it('src/gen matches a fresh `buf generate`', () => {
    const r = spawnSync(process.execPath, ['scripts/gen-proto.mjs', '--out', out], { cwd: repo, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const committed = files(join(repo, 'src/gen'))
      .map((f) => relative(join(repo, 'src/gen'), f))
      .sort();
    const fresh = files(out)
      .map((f) => relative(out, f))
      .sort();
    expect(fresh).toEqual(committed);
    expect(committed).toContain('envoy/service/auth/v3/external_auth.ts');
    expect(committed).toContain('grpc/health/v1/health.ts');
    for (const f of committed) {
      expect(readFileSync(join(out, f), 'utf8'), f).toBe(readFileSync(join(repo, 'src/gen', f), 'utf8'));
    }
  });
});
