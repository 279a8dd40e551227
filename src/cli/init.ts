/**
 * The non-interactive core of `mcpgw init`: writes `MCPGW_HOME/config.yaml` and a policy scaffold
 * from the answers (src/cli/init-answers.ts), creates the `owner` admin and a first agent, and
 * returns their keys once. The keys are shown here only; the database keeps their SHA-256 hashes.
 * The questions, the passphrase and the encrypted admin credential are src/cli/init-interactive.ts.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { homePaths } from '../config/home.js';
import { writeConfig, type McpgwConfig } from '../config/config-file.js';
import { generateApiKey, parseApiKey, type ApiKeyKind } from '../identity/api-keys.js';
import type { Role } from '../policy/layer1-types.js';
import { openStore, type Layer2Store } from '../state/index.js';
import {
  configFor,
  FIRST_AGENT,
  OWNER,
  policyFor,
  PRESET_ANSWERS,
  PRESETS,
  presetOf,
  type InitAnswers,
  type Preset,
} from './init-answers.js';

export { FIRST_AGENT, OWNER, PRESETS, type Preset };

export interface InitOptions {
  home: string;
  /** Shortcut for `answers`; default openclaw. */
  preset?: Preset;
  /** The answers to init's questions; win over `preset`. */
  answers?: InitAnswers;
  force: boolean;
  port?: number;
}

export interface InitResult {
  url: string;
  apiKey: string;
  adminKey: string;
  configPath: string;
  policyPath: string;
  /** False when an existing policy file was kept. */
  policyWritten: boolean;
  answers: InitAnswers;
  preset: Preset | 'custom';
}

export class InitError extends Error {
  override name = 'InitError';
}

/** The settings each preset stands for (interactive init asks the same questions). */
export function presetConfig(preset: Preset, policy: string, port: number): McpgwConfig {
  return configFor(PRESET_ANSWERS[preset], policy, port);
}

/** The policy scaffold of the openclaw preset. */
export function demoPolicy(home: string): string {
  return policyFor(PRESET_ANSWERS.openclaw, home);
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
  const answers = opts.answers ?? PRESET_ANSWERS[opts.preset ?? 'openclaw'];
  await mkdir(paths.home, { recursive: true, mode: 0o700 });
  await mkdir(paths.logs, { recursive: true, mode: 0o700 });
  await mkdir(paths.run, { recursive: true, mode: 0o700 });
  const port = opts.port ?? 8000;
  const policyWritten = !existsSync(paths.policy) || opts.force;
  if (policyWritten) await writeFile(paths.policy, policyFor(answers, paths.home), { mode: 0o600 });

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
  await writeConfig(paths.config, configFor(answers, paths.policy, port));
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    apiKey,
    adminKey,
    configPath: paths.config,
    policyPath: paths.policy,
    policyWritten,
    answers,
    preset: presetOf(answers),
  };
}
