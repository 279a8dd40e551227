/**
 * The workload of `npm run bench:layer2`: users and their API keys, the pre-encoded gRPC Check
 * frames h2load sends, the answers each frame must get, and the `mcpgw_decide` inputs pgbench
 * sends (built by our own Layer 1 engine and `buildDecideInput`, so pgbench runs the SQL a
 * decision runs, with the same keys, locks and state writes).
 *
 * One frame is one user and one call (h2load sends one body per process), so "many distinct
 * users" means many frames: READERS users each read (a velocity stamp and a taint mark per allow),
 * and a few of them also try a transfer, which the flow refuses (Layer 2 deny) or Layer 1 refuses
 * (a BTC transfer).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { generateApiKey, hashApiKey, parseApiKey } from '../../src/identity/api-keys.js';
import { writeCheckFrame } from '../lib/check-frame.js';
import { compilePolicyText, type CompiledPolicy } from '../../src/policy/compile.js';
import { createLayer1Engine } from '../../src/policy/layer1.js';
import type { Layer1Input } from '../../src/policy/layer1-types.js';
import { buildDecideInput, type DecideInput } from '../../src/state/decide.js';
import {
  DEFAULT_APPROVAL_TIMEOUT_S,
  DEFAULT_CONSUME_WITHIN_S,
  DEFAULT_MAX_PENDING_PER_USER,
  type Layer2Store,
} from '../../src/state/store.js';

export const POLICY_FILE = 'bench/policy-layer2.yaml';
export const LIMIT_RULE = 'calls per user';
export const LIMIT_MAX = 200;
export const FLOW_RULE = 'no transfers after reads';

const GRANTS = { gmail: ['*'], docs: ['*'], banking: ['*'] };

export interface User {
  id: string;
  key: string;
}

/** What the server must answer to a frame: `allow:<rule>` or `deny:<rule>` (the server counts the same keys). */
export type Expect = `${'allow' | 'deny'}:${string}`;

export interface Frame {
  /** Path of the gRPC length-prefixed CheckRequest. */
  file: string;
  user: User;
  service: string;
  tool: string;
  args: Record<string, unknown>;
  /** With the Layer 2 policy (limit + flow) and a store. */
  expectL2: Expect;
  /** With the Layer-1-only variant and no store. */
  expectL1: Expect;
  /** True when the call is a flow source whose allow writes a velocity stamp and a taint mark. */
  writesState: boolean;
}

export interface Workload {
  users: User[];
  /** Reads only: the warm-up, which also taints every reader before any transfer is tried. */
  readFrames: Frame[];
  /** Reads, then the transfers: the measured mix. */
  frames: Frame[];
  identitiesFile: string;
  /** The Layer-1-only variant: the bench policy with `limits` and `flows` removed. */
  layer1PolicyFile: string;
}

const READ_TOOLS: [string, string, Record<string, unknown>][] = [
  ['gmail', 'read_email', { id: 'msg-1' }],
  ['docs', 'read_page', { page: 'handbook/security' }],
  ['banking', 'balance', { account: 'main' }],
];

function encodeFrame(
  dir: string,
  sessionKey: Buffer,
  u: User,
  index: number,
  service: string,
  tool: string,
  args: Record<string, unknown>,
): string {
  return writeCheckFrame(join(dir, `frame-${index}-${service}-${tool}.bin`), {
    id: index,
    user: u,
    sessionKey,
    name: `${service}__${tool}`,
    args,
  });
}

export function buildWorkload(dir: string, sessionKey: Buffer, readers: number, transfers: number): Workload {
  const users: User[] = [];
  const lines = ['users:'];
  for (let i = 0; i < readers; i++) {
    const id = `user${String(i).padStart(3, '0')}@acme.com`;
    const key = generateApiKey('sk');
    users.push({ id, key });
    lines.push(
      `  - {id: "${id}", role: agent, grants: ${JSON.stringify(GRANTS)}, apiKeySha256: ["${hashApiKey(key).toString('hex')}"]}`,
    );
  }
  const identitiesFile = join(dir, 'identities.yaml');
  writeFileSync(identitiesFile, `${lines.join('\n')}\n`);

  let index = 0;
  const readFrames: Frame[] = users.map((u, i) => {
    const [service, tool, args] = READ_TOOLS[i % READ_TOOLS.length] ?? ['gmail', 'read_email', {}];
    return {
      file: encodeFrame(dir, sessionKey, u, index++, service, tool, args),
      user: u,
      service,
      tool,
      args,
      expectL2: 'allow:Allow read-only',
      expectL1: 'allow:Allow read-only',
      writesState: true,
    };
  });
  const transferFrames: Frame[] = [];
  for (let i = 0; i < transfers; i++) {
    const u = users[i % users.length];
    if (!u) throw new Error('no users');
    // Half are small EUR transfers (Layer 1 allows, the flow denies: the user read before), half
    // are BTC transfers (Layer 1 denies; Layer 2 still locks the keys and writes the audit row).
    const btc = i % 2 === 1;
    const args = { amount: 10, currency: btc ? 'BTC' : 'EUR', memo: 'lunch' };
    transferFrames.push({
      file: encodeFrame(dir, sessionKey, u, index++, 'banking', 'transfer', args),
      user: u,
      service: 'banking',
      tool: 'transfer',
      args,
      expectL2: btc ? 'deny:Block crypto' : `deny:${FLOW_RULE}`,
      expectL1: btc ? 'deny:Block crypto' : 'allow:Allow small transfers',
      writesState: false,
    });
  }

  const policy = parseYaml(readFileSync(POLICY_FILE, 'utf8')) as Record<string, unknown>;
  delete policy['limits'];
  delete policy['flows'];
  const layer1PolicyFile = join(dir, 'policy-layer1-only.yaml');
  writeFileSync(layer1PolicyFile, stringifyYaml(policy));

  return { users, readFrames, frames: [...readFrames, ...transferFrames], identitiesFile, layer1PolicyFile };
}

/** Adds the users, their keys and grants to a store (PostgreSQL or PGlite). */
export async function seedUsers(store: Layer2Store, users: User[]): Promise<void> {
  for (const u of users) {
    await store.identity.createUser({ id: u.id, role: 'agent' });
    const parsed = parseApiKey(u.key);
    if (!parsed.ok) throw new Error('generated a malformed key');
    await store.identity.addApiKey({ userId: u.id, kind: 'sk', hash: parsed.hash, displayId: parsed.displayId });
    for (const [service, tools] of Object.entries(GRANTS))
      for (const tool of tools) await store.identity.grant(u.id, service, tool);
  }
}

export async function compileBenchPolicy(file: string): Promise<CompiledPolicy> {
  const r = compilePolicyText(readFileSync(file, 'utf8'), file);
  if (!r.ok) throw new Error(`${file}: ${r.errors.map((e) => e.message).join('; ')}`);
  return r.compiled;
}

/**
 * The `mcpgw_decide` input of each frame, exactly as the Check path builds it: our Layer 1 engine
 * names the Layer 2 rules, `buildDecideInput` expands them. The decision id is replaced per
 * transaction by pgbench (the audit log's decision ids are unique).
 */
export async function decideInputs(frames: Frame[], sessionOf: (u: User) => string): Promise<DecideInput[]> {
  const compiled = await compileBenchPolicy(POLICY_FILE);
  const engine = await createLayer1Engine(compiled.data);
  return frames.map((f, i) => {
    const input: Layer1Input = {
      user: { id: f.user.id, role: 'agent' },
      grants: GRANTS,
      method: 'tools/call',
      service: f.service,
      name: f.tool,
      arguments: f.args,
    };
    const l1 = engine.evaluate(input);
    return buildDecideInput(
      {
        decisionId: `pgbench-template-${i}`,
        policyRevision: engine.revision,
        userId: f.user.id,
        sessionId: sessionOf(f.user),
        method: 'tools/call',
        service: f.service,
        name: f.tool,
        arguments: f.args,
        layer1: l1,
        approval: null,
      },
      compiled.layer2,
      {
        maxPendingPerUser: DEFAULT_MAX_PENDING_PER_USER,
        approvalDefaults: {
          approvers: [],
          timeoutSeconds: DEFAULT_APPROVAL_TIMEOUT_S,
          consumeWithinSeconds: DEFAULT_CONSUME_WITHIN_S,
        },
      },
    );
  });
}
