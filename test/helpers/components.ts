/**
 * Real components a suite needs (envoy, opa, postgres, h2load…). When one is missing the suite is
 * skipped with one loud line, unless MCPGW_REQUIRE_ALL=1 (CI), where a missing component fails.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'vitest';

const extraDirs = [join(homedir(), 'go', 'bin'), '/usr/lib/postgresql/15/bin', '/usr/local/bin'];

/** Absolute path of an executable on PATH (or in the usual install folders), or null. */
export function findExecutable(name: string): string | null {
  try {
    const out = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    if (out) return out;
  } catch {
    // not on PATH
  }
  for (const dir of extraDirs) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

export const requireAll = process.env['MCPGW_REQUIRE_ALL'] === '1';

/**
 * `describe` when every named executable exists; otherwise a loud skip, or a failure under
 * MCPGW_REQUIRE_ALL=1.
 */
export function describeWith(components: string[], title: string, fn: () => void): void {
  const missing = components.filter((c) => findExecutable(c) === null);
  if (missing.length === 0) {
    describe(title, fn);
    return;
  }
  const line = `SKIPPED SUITE "${title}": missing ${missing.join(', ')} (install it, or run .ci/run)`;
  if (requireAll) {
    describe(title, () => {
      throw new Error(`MCPGW_REQUIRE_ALL=1 but ${line}`);
    });
    return;
  }
  process.stderr.write(`\n*** ${line} ***\n`);
  describe.skip(title, fn);
}
