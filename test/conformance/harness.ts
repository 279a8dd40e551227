/**
 * The pieces of the MCP conformance run (conformance.test.ts): the gateway as `mcpgw serve --role
 * all --no-prefix` runs it (serveAll, in this process) with the fixture backend, an agent and its
 * API key made through the state store as `mcpgw init` makes them, the official suite's CLI run as
 * a child against the test-only relay, and its per-scenario `checks.json` files folded into one
 * deterministic result.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { serveAll, type RunningGateway } from '../../src/cli/serve-all.js';
import { generateApiKey, parseApiKey } from '../../src/identity/api-keys.js';
import { quietLogger } from '../gateway/helpers.js';
import { startRelay, type Relay } from './relay.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const POLICY_FILE = join(REPO_ROOT, 'test/fixtures/conformance/policy.yaml');
export const RESULTS_FILE = fileURLToPath(new URL('./results.json', import.meta.url));
export const EXPECTED_FAILURES_FILE = fileURLToPath(new URL('./expected-failures.yaml', import.meta.url));
/** The single service of the policy (no-prefix mode). */
export const SERVICE = 'conformance';
const AGENT = 'conformance-agent';

const require = createRequire(import.meta.url);
const SUITE_PACKAGE = '@modelcontextprotocol/conformance';

/** The installed suite: its version and CLI entry point. */
export function suite(): { version: string; cli: string } {
  const pkgFile = require.resolve(`${SUITE_PACKAGE}/package.json`);
  const pkg = z
    .object({ version: z.string(), bin: z.object({ conformance: z.string() }) })
    .parse(JSON.parse(readFileSync(pkgFile, 'utf8')));
  return { version: pkg.version, cli: join(pkgFile, '..', pkg.bin.conformance) };
}

// ---------------------------------------------------------------------------------------------
// The gateway and the relay
// ---------------------------------------------------------------------------------------------

export interface ConformanceTarget {
  gateway: RunningGateway;
  relay: Relay;
  /** What the suite is pointed at: the relay's /mcp. */
  url: string;
  close(): Promise<void>;
}

export async function startTarget(
  front: { kind: 'builtin' } | { kind: 'envoy'; envoyBin: string },
): Promise<ConformanceTarget> {
  if (!existsSync(join(process.cwd(), 'test/fixtures/conformance/server.mjs'))) {
    throw new Error(`run from the repository root (${REPO_ROOT}): the policy names its backend relative to it`);
  }
  const home = await mkdtemp(join(tmpdir(), 'mcpgw-conformance-'));
  let gateway: RunningGateway | undefined;
  let relay: Relay | undefined;
  try {
    gateway = await serveAll({
      home,
      policyFile: POLICY_FILE,
      listen: { host: '127.0.0.1', port: 0 },
      authzPort: 0,
      gatewayPort: 0,
      front,
      logger: quietLogger(),
      drainSeconds: 0,
      noPrefix: true,
    });
    // The agent, as `mcpgw init` / `mcpgw user add` make one: a user, an API key, a grant.
    const key = generateApiKey('sk');
    const parsed = parseApiKey(key);
    if (!parsed.ok) throw new Error('generated an invalid API key');
    await gateway.store.identity.createUser({ id: AGENT, role: 'agent' });
    await gateway.store.identity.addApiKey({
      userId: AGENT,
      kind: 'sk',
      hash: parsed.hash,
      displayId: parsed.displayId,
    });
    await gateway.store.identity.grant(AGENT, SERVICE, '*');
    relay = await startRelay({ target: { host: '127.0.0.1', port: gateway.ports.front }, bearer: key });
  } catch (err) {
    await gateway?.close();
    await rm(home, { recursive: true, force: true });
    throw err;
  }
  const [g, r] = [gateway, relay];
  return {
    gateway: g,
    relay: r,
    url: `${r.origin}/mcp`,
    async close() {
      await r.close();
      await g.close();
      await rm(home, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Running the suite
// ---------------------------------------------------------------------------------------------

export type CheckStatus = 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO';

const rawCheckSchema = z.object({
  id: z.string(),
  status: z.enum(['SUCCESS', 'FAILURE', 'WARNING', 'INFO']),
  errorMessage: z.string().optional(),
});

export interface CheckResult {
  /** `<scenario>/<check id>`. */
  check: string;
  status: CheckStatus;
  /** The suite's error message, for FAILURE and WARNING. */
  message?: string;
}

export interface SuiteRun {
  scenarios: string[];
  checks: CheckResult[];
  /** The CLI's output, for diagnosing a run. */
  output: string;
}

function runCli(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // Asynchronous on purpose: the gateway answering the suite lives in this very process.
    const child = spawn(process.execPath, [suite().cli, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`conformance ${args[0] ?? ''} did not finish within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Every server scenario of the installed suite (`--suite all`: active and pending ones). */
export async function serverScenarios(): Promise<string[]> {
  const { code, output } = await runCli(['list', '--server'], 30_000);
  if (code !== 0) throw new Error(`conformance list failed:\n${output}`);
  return output
    .split('\n')
    .map((l) => /^\s+-\s+(\S+)\s*$/.exec(l)?.[1])
    .filter((s): s is string => s !== undefined);
}

const STATUS_RANK: Record<CheckStatus, number> = { INFO: 0, SUCCESS: 1, WARNING: 2, FAILURE: 3 };

/**
 * Runs every server scenario against `url` and folds the results: one entry per scenario and check
 * id (some ids repeat within a scenario, as trace lines; the worst status counts), sorted, with no
 * timestamps or other run-specific detail. A scenario that wrote no results counts as one failed
 * check `<scenario>/scenario-completed`.
 */
export async function runSuite(url: string, timeoutMs: number): Promise<SuiteRun> {
  const scenarios = await serverScenarios();
  const out = await mkdtemp(join(tmpdir(), 'mcpgw-conformance-results-'));
  try {
    // The exit code only says whether some check failed; the checks themselves are read below.
    const { output } = await runCli(['server', '--url', url, '--suite', 'all', '--output-dir', out], timeoutMs);
    const byScenario = new Map<string, z.infer<typeof rawCheckSchema>[]>();
    for (const dir of readdirSync(out)) {
      const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(dir);
      const file = join(out, dir, 'checks.json');
      if (!m?.[1] || !existsSync(file)) continue;
      byScenario.set(m[1], z.array(rawCheckSchema).parse(JSON.parse(readFileSync(file, 'utf8'))));
    }
    const folded = new Map<string, CheckResult>();
    for (const scenario of scenarios) {
      const raw = byScenario.get(scenario);
      if (!raw) {
        folded.set(`${scenario}/scenario-completed`, {
          check: `${scenario}/scenario-completed`,
          status: 'FAILURE',
          message: 'the scenario wrote no results (it threw; see the CLI output)',
        });
        continue;
      }
      for (const c of raw) {
        const check = `${scenario}/${c.id}`;
        const prev = folded.get(check);
        if (prev && STATUS_RANK[prev.status] >= STATUS_RANK[c.status]) continue;
        const entry: CheckResult = { check, status: c.status };
        if ((c.status === 'FAILURE' || c.status === 'WARNING') && c.errorMessage) entry.message = c.errorMessage;
        folded.set(check, entry);
      }
    }
    const checks = [...folded.values()].sort((a, b) => (a.check < b.check ? -1 : a.check > b.check ? 1 : 0));
    return { scenarios, checks, output };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The expected-failures list
// ---------------------------------------------------------------------------------------------

const expectedSchema = z.object({
  expected: z.array(
    z.object({
      check: z.string().regex(/^[a-z0-9-]+\/[A-Za-z0-9$_-]+$/, 'check is <scenario>/<check id>'),
      status: z.enum(['FAILURE', 'WARNING']),
      kind: z.enum(['design', 'gap', 'transport']),
      reason: z.string().min(10),
    }),
  ),
});
export type ExpectedFailure = z.infer<typeof expectedSchema>['expected'][number];

export function loadExpectedFailures(file = EXPECTED_FAILURES_FILE): ExpectedFailure[] {
  const parsed = expectedSchema.parse(parseYaml(readFileSync(file, 'utf8'), { uniqueKeys: true }));
  const seen = new Set<string>();
  for (const e of parsed.expected) {
    if (seen.has(e.check)) throw new Error(`${file}: ${e.check} is listed twice`);
    seen.add(e.check);
  }
  return parsed.expected;
}

/**
 * What disagrees between a run and the list: a FAILURE or WARNING not listed, a listed check
 * with another status (it passes now, or fails differently), or a listed check the run did not
 * produce. Empty when the list is honest.
 */
export function compareWithExpected(checks: readonly CheckResult[], expected: readonly ExpectedFailure[]): string[] {
  const problems: string[] = [];
  const listed = new Map(expected.map((e) => [e.check, e]));
  const seen = new Set<string>();
  for (const c of checks) {
    seen.add(c.check);
    const e = listed.get(c.check);
    const bad = c.status === 'FAILURE' || c.status === 'WARNING';
    if (!e && bad) problems.push(`unexpected ${c.status}: ${c.check}${c.message ? ` (${c.message})` : ''}`);
    if (e && e.status !== c.status) {
      problems.push(
        `${c.check} is listed as ${e.status} but is ${c.status} now: ${bad ? 'update its entry' : 'remove it from the list'}`,
      );
    }
  }
  for (const e of expected) {
    if (!seen.has(e.check)) problems.push(`${e.check} is listed but the suite no longer reports it: remove it`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// The committed result
// ---------------------------------------------------------------------------------------------

export interface ResultsFile {
  suite: string;
  command: string;
  gateway: string;
  protocolVersion: string;
  summary: Record<CheckStatus, number> & { scenarios: number; checks: number; expectedFailures: number };
  checks: CheckResult[];
}

export function resultsFile(run: SuiteRun, protocolVersion: string, expected: readonly ExpectedFailure[]): ResultsFile {
  const count = (s: CheckStatus) => run.checks.filter((c) => c.status === s).length;
  return {
    suite: `${SUITE_PACKAGE}@${suite().version}`,
    command: 'conformance server --url http://127.0.0.1:<relay>/mcp --suite all',
    gateway:
      'serveAll({noPrefix: true, front: builtin}) with test/fixtures/conformance/policy.yaml, via test/conformance/relay.ts',
    protocolVersion,
    summary: {
      scenarios: run.scenarios.length,
      checks: run.checks.length,
      SUCCESS: count('SUCCESS'),
      FAILURE: count('FAILURE'),
      WARNING: count('WARNING'),
      INFO: count('INFO'),
      expectedFailures: expected.length,
    },
    checks: run.checks,
  };
}

export function formatResults(r: ResultsFile): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}
