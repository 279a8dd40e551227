/**
 * Helpers for the static checks of the packaging files (Dockerfile, .dockerignore, s6 tree, Helm
 * chart): no Docker engine or helm binary is needed, only the files.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function repoPath(...parts: string[]): string {
  return join(ROOT, ...parts);
}

export function readRepoFile(...parts: string[]): string {
  return readFileSync(repoPath(...parts), 'utf8');
}

/** YAML 1.2 with unique keys; throws on any error. */
export function parseYaml(text: string, what: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) throw new Error(`${what}: ${doc.errors.map((e) => e.message).join('; ')}`);
  return doc.toJS();
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every file under `dir`, as paths relative to it with `/` separators. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

export function isExecutable(path: string): boolean {
  return (statSync(path).mode & 0o111) === 0o111;
}

/** The interpreter line of a script, or null. */
export function shebang(path: string): string | null {
  const first = readFileSync(path, 'utf8').split('\n', 1)[0] ?? '';
  return first.startsWith('#!') ? first.slice(2).trim() : null;
}

/** Whether a shebang runs a POSIX shell (directly, or through s6-overlay's with-contenv). */
export function isShellShebang(line: string): boolean {
  return /^(\/bin\/sh|\/usr\/bin\/env sh|\/command\/with-contenv sh|\/usr\/bin\/with-contenv sh)(\s|$)/.test(line);
}

/** `sh -n`: the shell parses the file without running it. Returns the error text, or null. */
export function shellSyntaxError(path: string): string | null {
  try {
    execFileSync('sh', ['-n', path], { stdio: ['ignore', 'ignore', 'pipe'] });
    return null;
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr;
    return stderr ? stderr.toString('utf8') : String(err);
  }
}

/** The key files the application reads with loadOrCreateKey, found in its sources. */
export function applicationKeyFiles(): string[] {
  const names = new Set<string>();
  const srcDir = repoPath('src');
  for (const f of listFiles(srcDir)) {
    if (!f.endsWith('.ts') || f.startsWith('gen/')) continue;
    const text = readFileSync(join(srcDir, f), 'utf8');
    for (const m of text.matchAll(/loadOrCreateKey\([^;\n]*?,\s*'([^']+)'/g)) if (m[1]) names.add(m[1]);
    for (const m of text.matchAll(/export const [A-Z_]*KEY_FILE = '([^']+)'/g)) if (m[1]) names.add(m[1]);
  }
  return [...names].sort();
}

/** `mcpgw <args> --help` as the CLI prints it, whitespace folded (commander wraps at 80 columns). */
export function cliHelp(...args: string[]): string {
  const r = spawnSync(process.execPath, [repoPath('bin', 'mcpgw.js'), ...args, '--help'], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`mcpgw ${args.join(' ')} --help exited ${String(r.status)}: ${r.stderr}`);
  return r.stdout.replace(/\s+/g, ' ');
}
