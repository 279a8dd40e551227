/**
 * bin/mcpgw.js from a clone runs a build of src/ keyed by the sources' contents
 * (scripts/source-build.mjs): an edit must take effect on the next start, never a stale build.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sourceBuild } from '../../scripts/source-build.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'mcpgw-source-build-'));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

function tree(name: string, files: Record<string, string>): { srcDir: string; cacheDir: string } {
  const base = join(work, name);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(join(base, 'src', rel, '..'), { recursive: true });
    writeFileSync(join(base, 'src', rel), text);
  }
  return { srcDir: join(base, 'src'), cacheDir: join(base, 'cache') };
}

/** Runs `<dir>/main.js` of a build in a fresh Node and returns what it printed. */
function run(dir: string): string {
  return execFileSync(
    process.execPath,
    ['--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(join(dir, 'main.js')).href)})`],
    {
      encoding: 'utf8',
    },
  ).trim();
}

const MAIN = `import { readFileSync } from 'node:fs';
import { greeting, type Greeting } from './lib/greet.js';
const g: Greeting = greeting();
console.log(g, readFileSync(new URL('./data.txt', import.meta.url), 'utf8').trim());
`;

describe('sourceBuild', () => {
  it('transpiles src/, and a module finds its neighbours relative to its source', async () => {
    const t = tree('basic', {
      'main.ts': MAIN,
      'lib/greet.ts': `export type Greeting = string;\nexport const greeting = (): Greeting => 'hello';\n`,
      'data.txt': 'from the source directory\n',
    });
    const b = await sourceBuild(ROOT, t);
    expect(b.built).toBe(true);
    expect(readdirSync(b.dir).sort()).toEqual(['lib', 'main.js']);
    expect(run(b.dir)).toBe('hello from the source directory');
    const again = await sourceBuild(ROOT, t);
    expect(again).toEqual({ ...b, built: false });
  });

  it('an edit makes a new build, even one of the same size and mtime', async () => {
    const t = tree('edit', {
      'main.ts': MAIN,
      'lib/greet.ts': `export type Greeting = string;\nexport const greeting = (): Greeting => 'hello';\n`,
      'data.txt': 'x\n',
    });
    const first = await sourceBuild(ROOT, t);
    expect(run(first.dir)).toBe('hello x');
    const file = join(t.srcDir, 'lib', 'greet.ts');
    const before = statSync(file);
    writeFileSync(file, `export type Greeting = string;\nexport const greeting = (): Greeting => 'howdy';\n`);
    utimesSync(file, before.atime, before.mtime);
    expect(statSync(file).size).toBe(before.size);
    const second = await sourceBuild(ROOT, t);
    expect(second.built).toBe(true);
    expect(second.key).not.toBe(first.key);
    expect(run(second.dir)).toBe('howdy x');
    // A new file changes the key too, and going back to earlier sources finds their build.
    writeFileSync(join(t.srcDir, 'lib', 'extra.ts'), 'export const extra = 1;\n');
    const third = await sourceBuild(ROOT, t);
    expect(third.key).not.toBe(second.key);
    rmSync(join(t.srcDir, 'lib', 'extra.ts'));
    expect(await sourceBuild(ROOT, t)).toEqual({ ...second, built: false });
  });

  it('concurrent starts agree on one complete build', async () => {
    const t = tree('race', { 'main.ts': `console.log('raced');\n`, 'other.ts': 'export const x = 1;\n' });
    const inProcess = await Promise.all([sourceBuild(ROOT, t), sourceBuild(ROOT, t)]);
    expect(inProcess[0]).toEqual(inProcess[1]);
    rmSync(t.cacheDir, { recursive: true });
    // Separate processes (as `up` and tests start them) race through the final rename.
    const script = `import { sourceBuild } from ${JSON.stringify(pathToFileURL(join(ROOT, 'scripts', 'source-build.mjs')).href)};
const b = await sourceBuild(${JSON.stringify(ROOT)}, ${JSON.stringify(t)});
console.log(JSON.stringify(b));`;
    const outs = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<string>((resolve, reject) =>
            execFile(process.execPath, ['--input-type=module', '-e', script], (err, stdout) =>
              err ? reject(err) : resolve(stdout),
            ),
          ),
      ),
    );
    const builds = outs.map((o) => JSON.parse(o) as { dir: string; built: boolean });
    expect(new Set(builds.map((b) => b.dir)).size).toBe(1);
    expect(run(builds[0]?.dir ?? '')).toBe('raced');
    expect(readdirSync(builds[0]?.dir ?? '').sort()).toEqual(['main.js', 'other.js']);
    expect(readdirSync(t.cacheDir)).toHaveLength(1);
  });

  it('keeps a bounded number of old builds', async () => {
    const t = tree('prune', { 'main.ts': `console.log(0);\n` });
    for (let i = 1; i <= 12; i++) {
      writeFileSync(join(t.srcDir, 'main.ts'), `console.log(${i});\n`);
      await sourceBuild(ROOT, t);
    }
    const kept = readdirSync(t.cacheDir);
    expect(kept.length).toBeLessThanOrEqual(9);
    const last = await sourceBuild(ROOT, t);
    expect(last.built).toBe(false);
    expect(run(last.dir)).toBe('12');
  });

  it('refuses what it cannot build faithfully: a syntax error, import.meta.resolve', async () => {
    const broken = tree('broken', { 'main.ts': 'export const = 1;\n' });
    await expect(sourceBuild(ROOT, broken)).rejects.toThrow();
    const resolving = tree('resolving', { 'main.ts': `console.log(import.meta.resolve('./x.js'));\n` });
    await expect(sourceBuild(ROOT, resolving)).rejects.toThrow(/import\.meta/);
    expect(readdirSync(resolving.cacheDir)).toEqual([]);
  });
});

describe('bin/mcpgw.js from a clone', () => {
  /** A clone whose CLI is a stub: bin/ and scripts/ as they are, the packages of this checkout. */
  function clone(): string {
    const dir = join(work, 'clone');
    for (const d of ['bin', 'scripts', 'src/cli', 'node_modules']) mkdirSync(join(dir, d), { recursive: true });
    for (const f of ['bin/mcpgw.js', 'scripts/source-build.mjs', 'package.json', 'tsconfig.json'])
      copyFileSync(join(ROOT, f), join(dir, f));
    symlinkSync(join(ROOT, 'node_modules', 'tsx'), join(dir, 'node_modules', 'tsx'));
    return dir;
  }
  const mcpgw = (dir: string, env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [join(dir, 'bin', 'mcpgw.js')], { encoding: 'utf8', env: { ...process.env, ...env } });

  it('runs the build, sees an edit on the next start, and can still run through tsx', () => {
    const dir = clone();
    const main = join(dir, 'src', 'cli', 'main.ts');
    writeFileSync(
      main,
      `const v: string = 'one';\nconsole.log(v, new URL(import.meta.url).pathname.endsWith('/src/cli/main.ts'));\n`,
    );
    let r = mcpgw(dir);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('one true');
    const cache = join(dir, 'node_modules', '.cache', 'mcpgw');
    expect(readdirSync(cache)).toHaveLength(1);

    writeFileSync(
      main,
      `const v: string = 'two';\nconsole.log(v, new URL(import.meta.url).pathname.endsWith('/src/cli/main.ts'));\n`,
    );
    r = mcpgw(dir);
    expect(r.stdout.trim()).toBe('two true');
    expect(readdirSync(cache)).toHaveLength(2);

    r = mcpgw(dir, { MCPGW_TSX: '1' });
    expect(r.stdout.trim()).toBe('two true');

    // Sources it cannot build run through tsx, which reports the same problem its own way.
    writeFileSync(main, `console.log(import.meta.resolve('./x.js').endsWith('/src/cli/x.js'));\n`);
    r = mcpgw(dir);
    expect(r.stderr).toMatch(/running src\/ through tsx/);
    expect(r.stdout.trim()).toBe('true');
  });
});
