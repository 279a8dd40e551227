/**
 * The non-interactive core of `mcpgw init`: writes `MCPGW_HOME/config.yaml` and a policy scaffold,
 * creates the `owner` admin and a first agent, and returns their keys once. The keys are shown
 * here only; the database keeps their SHA-256 hashes.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { homePaths } from '../config/home.js';
import { writeConfig, type McpgwConfig } from '../config/config-file.js';
import { generateApiKey, parseApiKey, type ApiKeyKind } from '../identity/api-keys.js';
import type { Role } from '../policy/layer1-types.js';
import { openStore, type Layer2Store } from '../state/index.js';

export const PRESETS = ['openclaw', 'team', 'enterprise'] as const;
export type Preset = (typeof PRESETS)[number];

export interface InitOptions {
  home: string;
  preset: Preset;
  force: boolean;
  port?: number;
}

export interface InitResult {
  url: string;
  apiKey: string;
  adminKey: string;
  configPath: string;
  policyPath: string;
}

export class InitError extends Error {
  override name = 'InitError';
}

export const OWNER = 'owner';
export const FIRST_AGENT = 'agent';

/** The settings each preset stands for (interactive init asks the same questions). */
export function presetConfig(preset: Preset, policy: string, port: number): McpgwConfig {
  return {
    version: 1,
    listen: { host: '127.0.0.1', port },
    policy,
    auth: { mode: preset === 'enterprise' ? 'keycloak' : 'api-key' },
    secrets: { backend: 'builtin' },
    tui: preset !== 'enterprise',
    preset,
  };
}

/**
 * A policy that works out of the box with the two demo backends shipped as package dependencies
 * (bare commands resolve to the package's own node_modules/.bin, so nothing is fetched at run time):
 * reads are allowed, deletes need a human, memory writes are rate-limited, everything else is denied.
 */
export function demoPolicy(home: string): string {
  return `# mcp-security.yaml written by \`mcpgw init\`. Edit it, then \`mcpgw apply\`.
version: "1.0"
services:
  everything: {transport: stdio, command: mcp-server-everything, args: [stdio]}
  memory: {transport: stdio, command: mcp-server-memory, env: {MEMORY_FILE_PATH: ${JSON.stringify(`${home}/demo-memory.jsonl`)}}}
tool_overrides:
  everything:
    echo: {verb: get, readOnlyHint: true}
    get-sum: {verb: get, readOnlyHint: true}
    get-tiny-image: {verb: get, readOnlyHint: true}
policies:
  - {name: Deletes need a human, when: {verb: delete}, action: require_approval, timeout: 30m, priority: 10}
  - {name: Reads are fine, when: {readOnlyHint: true}, action: allow, priority: 50}
  - {name: Memory writes, when: {verb: create}, action: allow, priority: 60}
  - {name: Default deny, when: {}, action: deny, priority: 999}
limits:
  - {name: memory write burst, select: {service: memory, verb: create}, max: 30, per: 1h, scope: user, action: deny}
`;
}

async function createUserWithKey(store: Layer2Store, id: string, role: Role, kind: ApiKeyKind): Promise<string> {
  const identity = store.identity;
  await identity.deleteUser(id);
  await identity.createUser({ id, role });
  const key = generateApiKey(kind);
  const parsed = parseApiKey(key);
  if (!parsed.ok) throw new Error('generated an invalid API key');
  await identity.addApiKey({ userId: id, kind, hash: parsed.hash, displayId: parsed.displayId });
  return key;
}

export async function initInstallation(opts: InitOptions): Promise<InitResult> {
  const paths = homePaths(opts.home);
  if (existsSync(paths.config) && !opts.force) {
    throw new InitError(`already initialized: ${paths.config} exists (use --force to start over)`);
  }
  await mkdir(paths.home, { recursive: true, mode: 0o700 });
  await mkdir(paths.logs, { recursive: true, mode: 0o700 });
  await mkdir(paths.run, { recursive: true, mode: 0o700 });
  const port = opts.port ?? 8000;
  if (!existsSync(paths.policy) || opts.force) await writeFile(paths.policy, demoPolicy(paths.home), { mode: 0o600 });

  const store = await openStore({ home: paths.home });
  let apiKey: string;
  let adminKey: string;
  try {
    adminKey = await createUserWithKey(store, OWNER, 'admin', 'ak');
    apiKey = await createUserWithKey(store, FIRST_AGENT, 'agent', 'sk');
    for (const service of ['everything', 'memory']) await store.identity.grant(FIRST_AGENT, service, '*');
  } finally {
    await store.close();
  }
  await writeConfig(paths.config, presetConfig(opts.preset, paths.policy, port));
  return { url: `http://127.0.0.1:${port}/mcp`, apiKey, adminKey, configPath: paths.config, policyPath: paths.policy };
}
