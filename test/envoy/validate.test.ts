/** `envoy --mode validate` on the committed config, its variants and broken copies. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { renderEnvoyConfig } from '../../src/front/envoy-config.js';
import { describeWith, findExecutable } from '../helpers/components.js';
import { COMMITTED_CONFIG, misspell, MISSPELLINGS, readCommittedConfig, VARIANTS } from './fixtures.js';

function validate(envoy: string, file: string): { ok: boolean; output: string } {
  const r = spawnSync(envoy, ['--mode', 'validate', '-c', file, '--log-level', 'warn'], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

describeWith(['envoy'], 'envoy --mode validate (real envoy)', () => {
  const envoy = findExecutable('envoy') ?? 'envoy';
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-envoy-validate-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const write = (name: string, text: string): string => {
    const file = join(dir, name.replace(/[^a-z0-9]+/gi, '-') + '.yaml');
    writeFileSync(file, text);
    return file;
  };

  it('accepts envoy/envoy.yaml', () => {
    const r = validate(envoy, COMMITTED_CONFIG);
    expect(r.output).toContain('OK');
    expect(r.ok).toBe(true);
  });

  it.each(Object.entries(VARIANTS))('accepts the %s variant', (name, opts) => {
    const r = validate(envoy, write(name, renderEnvoyConfig(opts)));
    expect(r.ok, r.output).toBe(true);
  });

  it.each(MISSPELLINGS.map((m) => [m.where, m] as const))('rejects a misspelling in %s', (where, m) => {
    const r = validate(envoy, write(`bad-${where}`, misspell(readCommittedConfig(), m)));
    expect(r.ok).toBe(false);
    // Envoy names the offending key or enum value in quotes.
    expect(r.output).toContain(`'${m.bad}'`);
  });
});
