/**
 * Every admin command of the CLI against one real gateway, as a person runs it: `mcpgw init
 * --preset openclaw --yes --json`, `mcpgw up --native --json` (a background `serve --role all` with
 * PGlite, the demo backends and the built-in front), then each command as its own child process
 * without a terminal and with NO_COLOR, checking what it prints, its `--json` shape (parsed with
 * the admin contract) and its exit code, and what it changed in the gateway: agent calls through
 * the official MCP SDK client show that a grant, approval, condition or reset took effect.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  approvalPageSchema,
  approvalSchema,
  auditPageSchema,
  auditReportSchema,
  budgetPageSchema,
  conditionPageSchema,
  conditionSchema,
  createUserResponseSchema,
  deletedResponseSchema,
  deleteUserResponseSchema,
  grantsResponseSchema,
  limitPageSchema,
  policyApplyResponseSchema,
  policyDiagnosticSchema,
  policyInfoResponseSchema,
  resetResponseSchema,
  revokeGrantResponseSchema,
  rotateKeyResponseSchema,
  taintClearResponseSchema,
  taintPageSchema,
  userPageSchema,
} from '../../src/admin/contract.js';
import { registerAdminCommands } from '../../src/cli/commands/index.js';
import { registerSecretCommands } from '../../src/cli/secret.js';
import { registerVaultCommands } from '../../src/cli/vault.js';
import { describeWith } from '../helpers/components.js';
import { BIN, freePort } from '../secrets/helpers.js';
import { killTmuxServer, TmuxTerminal } from './tmux.js';

interface Run {
  code: number | null;
  out: string;
  err: string;
}

const home = mkdtempSync(join(tmpdir(), 'mcpgw-admin-cli-'));
const runs: Run[] = [];
let adminKey = '';
let agentKey = '';
let mcpUrl = '';
let origin = '';

function env(more: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(MCPGW_|NO_COLOR$|FORCE_COLOR$)/.test(k)) base[k] = v;
  const all: NodeJS.ProcessEnv = {
    ...base,
    MCPGW_HOME: home,
    MCPGW_FRONT: 'builtin',
    MCPGW_AUTHZ_PORT: '0',
    MCPGW_GATEWAY_PORT: '0',
    NO_COLOR: '1',
    ...more,
  };
  for (const [k, v] of Object.entries(all)) if (v === undefined) delete all[k];
  return all;
}

/**
 * One command in a session of its own (no controlling terminal, so nothing can wait on a prompt),
 * with the owner's admin key unless the test says otherwise.
 */
function start(args: string[], more: Record<string, string | undefined> = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], {
    env: env({ MCPGW_ADMIN_KEY: adminKey, ...more }),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
}

function finish(child: ChildProcess): Promise<Run> & { out: () => string } {
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<Run>((resolve) => {
    child.on('close', (code) => {
      const r = { code, out, err };
      runs.push(r);
      resolve(r);
    });
  });
  return Object.assign(done, { out: () => out });
}

const mcpgw = (args: string[], more: Record<string, string | undefined> = {}): Promise<Run> =>
  finish(start(args, more));

const json = <S extends z.ZodType>(schema: S, r: Run): z.output<S> => schema.parse(JSON.parse(r.out));

/** Lists print every page at once: `{items}` of the contract's item schema. */
const items = <T extends z.ZodType>(page: z.ZodObject<{ items: z.ZodArray<T> }>) =>
  z.strictObject({ items: page.shape.items });

/** Waits until `cond` holds, polling: for output of a long-running command, never a fixed sleep. */
async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function agent(key: string): Promise<Client> {
  const c = new Client({ name: 'admin-cli-test', version: '1' });
  await c.connect(
    new StreamableHTTPClientTransport(new URL(mcpUrl), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return c;
}

async function adminGet<S extends z.ZodType>(path: string, schema: S): Promise<z.output<S>> {
  const res = await fetch(`${origin}/admin/v1${path}`, { headers: { authorization: `Bearer ${adminKey}` } });
  expect(res.status).toBe(200);
  return schema.parse(await res.json());
}

const text = (r: unknown): string => JSON.stringify((r as { content?: unknown }).content ?? r);
const approvalIdIn = (r: unknown): string => /\((ap-[0-9A-Z]{10})\)/.exec(text(r))?.[1] ?? '';

const policyFile = join(home, 'mcp-security.yaml');

/** The demo policy plus one limit, budget, precondition and flow for the state commands. */
function testPolicy(): string {
  return `# written by the admin CLI test
version: "1.0"
services:
  everything: {transport: stdio, command: mcp-server-everything, args: [stdio]}
  memory: {transport: stdio, command: mcp-server-memory, env: {MEMORY_FILE_PATH: ${JSON.stringify(join(home, 'memory.jsonl'))}}}
tool_overrides:
  everything:
    echo: {verb: get, readOnlyHint: true}
    get-sum: {verb: get, readOnlyHint: true}
    get-tiny-image: {verb: get, readOnlyHint: true}
  memory:
    delete_entities: {verb: delete, destructiveHint: true, labels: [scope:internal, data:memory]}
policies:
  - {name: Deletes need a human, when: {verb: delete}, action: require_approval, timeout: 30m, priority: 10}
  - {name: Reads are fine, when: {readOnlyHint: true}, action: allow, priority: 50}
  - {name: Memory writes, when: {verb: create}, action: allow, priority: 60}
  - {name: Default deny, when: {}, action: deny, priority: 999}
limits:
  - {name: echo burst, select: {service: everything, tool: echo}, max: 100, per: 1h, scope: user}
budgets:
  - {name: image budget, select: {service: everything, tool: get-tiny-image}, max: 10, scope: user}
preconditions:
  - {name: sums need the window, select: {service: everything, tool: get-sum}, require: {change_window: open}}
flows:
  - {name: image then memory, after: {service: everything, tool: get-tiny-image}, then: {service: memory, verb: create}, scope: user, action: deny}
`;
}

beforeAll(async () => {
  const port = await freePort();
  const init = await mcpgw(['init', '--preset', 'openclaw', '--yes', '--json', '--port', String(port)], {
    MCPGW_ADMIN_KEY: undefined,
  });
  expect(init.code, init.err).toBe(0);
  const keys = z.object({ url: z.string(), apiKey: z.string(), adminKey: z.string() }).parse(JSON.parse(init.out));
  adminKey = keys.adminKey;
  agentKey = keys.apiKey;
  mcpUrl = keys.url;
  origin = new URL(keys.url).origin;
  const up = await mcpgw(['up', '--native', '--json']);
  expect(up.code, up.err).toBe(0);
  expect(JSON.parse(up.out)).toMatchObject({ url: keys.url, front: 'builtin' });
}, 120_000);

afterAll(async () => {
  await mcpgw(['down']);
  rmSync(home, { recursive: true, force: true });
}, 60_000);

describe('mcpgw admin commands against a running gateway', () => {
  it('gives every command and command group --help with an Examples: section', async () => {
    const program = new Command();
    registerAdminCommands(program);
    registerSecretCommands(program);
    registerVaultCommands(program);
    const missing: string[] = [];
    const walk = (cmd: Command, path: string): void => {
      for (const sub of cmd.commands) {
        const name = `${path} ${sub.name()}`.trim();
        let help = '';
        sub.configureOutput({ writeOut: (s) => (help += s) });
        sub.outputHelp();
        if (!help.includes('\nExamples:\n  mcpgw ')) missing.push(name);
        walk(sub, name);
      }
    };
    walk(program, '');
    expect(missing).toEqual([]);
    // Wired into the real binary too.
    const help = await mcpgw(['approve', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('Examples:');
    expect(help.out).toContain('--admin-key');
  });

  it('apply: a broken file names file, line and field, exits 1 and leaves the running policy alone', async () => {
    const before = await adminGet('/policy', policyInfoResponseSchema);
    const broken = join(home, 'broken.yaml');
    writeFileSync(broken, testPolicy().replace('{verb: delete}', '{verbb: delete}'));
    const line =
      testPolicy()
        .split('\n')
        .findIndex((l) => l.includes('{verb: delete}')) + 1;
    const [r, j] = await Promise.all([mcpgw(['apply', broken]), mcpgw(['apply', broken, '--json'])]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`${broken}:${line}:\\d+: policies\\[0\\]\\.when\\.verbb: unknown key`));
    expect(r.err).toContain('the running policy is unchanged');
    expect(r.err).toContain('mcpgw apply');
    expect(j.code).toBe(1);
    const body = z
      .object({
        error: z.object({
          code: z.literal('invalid_policy'),
          exitCode: z.literal(1),
          details: z.array(policyDiagnosticSchema),
        }),
      })
      .parse(JSON.parse(j.out));
    expect(body.error.details).toContainEqual(
      expect.objectContaining({ file: broken, line, path: 'policies[0].when.verbb' }),
    );
    expect((await adminGet('/policy', policyInfoResponseSchema)).revision).toBe(before.revision);
  });

  it('apply: --dry-run shows the diff without applying; apply swaps it in', async () => {
    const before = await adminGet('/policy', policyInfoResponseSchema);
    writeFileSync(policyFile, testPolicy(), { mode: 0o600 });
    const dry = await mcpgw(['apply', '--dry-run', '--json']);
    expect(dry.code, dry.err).toBe(0);
    const d = json(policyApplyResponseSchema, dry);
    expect(d).toMatchObject({ applied: false, dryRun: true, previousRevision: before.revision });
    expect(d.diff.changes).toContainEqual({
      kind: 'precondition',
      name: 'sums need the window',
      change: 'added',
      fields: [],
    });
    expect((await adminGet('/policy', policyInfoResponseSchema)).revision).toBe(before.revision);

    const applied = await mcpgw(['apply']);
    expect(applied.code, applied.err).toBe(0);
    expect(applied.out).toContain(`✓ Applied ${policyFile}: revision ${d.revision} (was ${before.revision})`);
    expect(applied.out).toContain('+ flow image then memory');
    expect((await adminGet('/policy', policyInfoResponseSchema)).revision).toBe(d.revision);

    const again = await mcpgw(['apply', '--json']);
    expect(json(policyApplyResponseSchema, again)).toMatchObject({ applied: true, diff: { unchanged: true } });
  });

  it('profile list and profile add: the profile lands in the file and in the running policy', async () => {
    const list = await mcpgw(['profile', 'list']);
    expect(list.code, list.err).toBe(0);
    expect(list.out).toMatch(/^NAME\s+TOOLS\s+CLASSIFIERS\s+ACTIVE\s+DESCRIPTION$/m);
    expect(list.out).toMatch(/^@noumena\/security-gmail\s+19\s+4\s+no\s+Gmail/m);

    const before = await adminGet('/policy', policyInfoResponseSchema);
    const add = await mcpgw(['profile', 'add', 'gmail']);
    expect(add.code, add.err).toBe(0);
    expect(add.out).toContain('✓ Gmail profile: 19 tools classified, 4 argument classifiers');
    expect(add.out).toContain('services.gmail is not in the policy yet');
    expect(readFileSync(policyFile, 'utf8')).toMatch(/^profiles: \[ "@noumena\/security-gmail" \]$/m);
    expect(readFileSync(policyFile, 'utf8')).toContain('# written by the admin CLI test');
    const after = await adminGet('/policy', policyInfoResponseSchema);
    expect(after.revision).not.toBe(before.revision);

    const listed = z
      .object({ items: z.array(z.object({ name: z.string(), active: z.boolean().nullable(), tools: z.number() })) })
      .parse(JSON.parse((await mcpgw(['profile', 'list', '--json'])).out));
    expect(listed.items).toContainEqual(expect.objectContaining({ name: '@noumena/security-gmail', active: true }));

    const [twice, unknown, bad] = await Promise.all([
      mcpgw(['profile', 'add', '@noumena/security-gmail', '--json']),
      mcpgw(['profile', 'add', 'nosuch']),
      mcpgw(['profile', 'add', 'Not A Name']),
    ]);
    expect(twice.code).toBe(0);
    expect(JSON.parse(twice.out)).toMatchObject({ added: false, apply: null });
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('profile @noumena/security-nosuch not found');
    expect(unknown.err).toContain('mcpgw profile list');
    expect(bad.code).toBe(2);
    expect((await adminGet('/policy', policyInfoResponseSchema)).revision).toBe(after.revision);
  });

  it('user add, list, grant, revoke, rotate-key, delete: each takes effect on what the key can do', async () => {
    const add = await mcpgw(['user', 'add', 'bob', '--json']);
    expect(add.code, add.err).toBe(0);
    const created = json(createUserResponseSchema, add);
    expect(created.user).toMatchObject({ id: 'bob', role: 'agent', grants: {} });
    expect(created.apiKey).toMatch(/^mcpgw_sk_/);

    const approver = await mcpgw(['user', 'add', 'carol', '--role', 'approver']);
    expect(approver.code, approver.err).toBe(0);
    expect(approver.out).toMatch(/^✓ API key for carol \(shown once\): mcpgw_ak_\w+$/m);

    const grant = await mcpgw(['user', 'grant', 'bob', 'everything', 'echo', '--json']);
    expect(grant.code, grant.err).toBe(0);
    expect(json(grantsResponseSchema, grant)).toEqual({
      userId: 'bob',
      grants: { everything: ['echo'] },
      warnings: [],
    });
    const grantAll = await mcpgw(['user', 'grant', 'bob', 'memory']);
    expect(grantAll.out).toContain('✓ bob may use every tool of memory');
    const nowhere = await mcpgw(['user', 'grant', 'bob', 'github']);
    expect(nowhere.code).toBe(0);
    expect(nowhere.out).toContain("! service github is not in the policy's catalog");

    let bob = await agent(created.apiKey);
    let tools = (await bob.listTools()).tools.map((t) => t.name);
    expect(tools).toContain('everything__echo');
    expect(tools).not.toContain('everything__get-sum');
    expect(tools).toContain('memory__read_graph');
    await bob.close();

    const list = await mcpgw(['user', 'list']);
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^NAME\s+ROLE\s+API KEY PREFIX\s+GRANTS$/m);
    expect(list.out).toMatch(/^agent\s+agent\s+mcpgw_sk_\w{8}\s+2 services \(all tools\)$/m);
    expect(list.out).toMatch(/^bob\s+agent\s+mcpgw_sk_\w{8}\s+3 services, 1 tool \+ all tools of 2$/m);
    expect(list.out).toMatch(/^owner\s+admin\s+mcpgw_ak_\w{8}\s+-$/m);
    const listed = json(items(userPageSchema), await mcpgw(['user', 'list', '--json']));
    expect(listed.items.map((u) => u.id).sort()).toEqual(['agent', 'bob', 'carol', 'owner']);

    const revoke = await mcpgw(['user', 'revoke', 'bob', 'memory', '--json']);
    expect(revoke.code, revoke.err).toBe(0);
    expect(json(revokeGrantResponseSchema, revoke)).toMatchObject({ userId: 'bob', removed: 1 });
    bob = await agent(created.apiKey);
    tools = (await bob.listTools()).tools.map((t) => t.name);
    expect(tools).not.toContain('memory__read_graph');
    await bob.close();

    const rotate = await mcpgw(['user', 'rotate-key', 'bob', '--json']);
    expect(rotate.code, rotate.err).toBe(0);
    const rotated = json(rotateKeyResponseSchema, rotate);
    expect(rotated.revoked).toEqual([created.apiKey.slice(9, 17)]);
    await expect(agent(created.apiKey)).rejects.toThrow(/401|revoked/i);
    bob = await agent(rotated.apiKey);
    await bob.close();

    const noConfirm = await mcpgw(['user', 'delete', 'bob']);
    expect(noConfirm.code).toBe(2);
    expect(noConfirm.err).toContain('--yes');
    const del = await mcpgw(['user', 'delete', 'bob', '--yes', '--json']);
    expect(del.code, del.err).toBe(0);
    expect(json(deleteUserResponseSchema, del)).toEqual({ id: 'bob', deleted: true });
    await expect(agent(rotated.apiKey)).rejects.toThrow(/401|revoked|unknown/i);
  });

  it('user commands on an unknown user or a taken name fail with exit 1 and say where to look', async () => {
    const [grant, revoke, rotate, del, dup, role] = await Promise.all([
      mcpgw(['user', 'grant', 'ghost', 'everything']),
      mcpgw(['user', 'revoke', 'ghost', 'everything', '--json']),
      mcpgw(['user', 'rotate-key', 'ghost']),
      mcpgw(['user', 'delete', 'ghost', '--yes']),
      mcpgw(['user', 'add', 'agent']),
      mcpgw(['user', 'add', 'dave', '--role', 'superuser']),
    ]);
    for (const r of [grant, revoke, rotate, del]) {
      expect(r.code).toBe(1);
      expect(r.err).toContain('no user ghost');
      expect(r.err).toContain('mcpgw user list');
    }
    expect(JSON.parse(revoke.out)).toMatchObject({ error: { code: 'not_found', exitCode: 1 } });
    expect(dup.code).toBe(1);
    expect(dup.err).toContain('user agent already exists');
    expect(role.code).toBe(2);
  });

  it('pending, approve and deny: by unique prefix, with the decision taking effect for the agent', async () => {
    const bot = await agent(agentKey);
    const call = (name: string) =>
      bot.callTool({ name: 'memory__delete_entities', arguments: { entityNames: [name] } });
    const [first, second] = [await call('one'), await call('two')];
    const idA = approvalIdIn(first);
    const idB = approvalIdIn(second);
    expect(idA).toMatch(/^ap-/);
    expect(idB).toMatch(/^ap-/);

    const [table, wide] = await Promise.all([mcpgw(['pending']), mcpgw(['pending', '--wide'])]);
    expect(table.code, table.err).toBe(0);
    // The product document's columns; the call's labels as Layer 1 classified them (sorted).
    expect(table.out).toMatch(/^ID\s+TOOL\s+USER\s+LABELS\s+AGE$/m);
    expect(table.out).toMatch(
      new RegExp(`^${idA}\\s+memory:delete_entities\\s+agent\\s+\\[data:memory,scope:internal\\]\\s+\\d+s$`, 'm'),
    );
    expect(table.out).toContain(idB);
    expect(table.out).not.toContain('Deletes need a human');
    expect(wide.code, wide.err).toBe(0);
    expect(wide.out).toMatch(/^ID\s+TOOL\s+USER\s+LABELS\s+RULE\s+AGE$/m);
    expect(wide.out).toMatch(
      new RegExp(
        `^${idA}\\s+memory:delete_entities\\s+agent\\s+\\[data:memory,scope:internal\\]\\s+Deletes need a human\\s+\\d+s$`,
        'm',
      ),
    );
    const listed = json(items(approvalPageSchema), await mcpgw(['pending', '--json']));
    expect(listed.items.map((a) => a.id)).toEqual(expect.arrayContaining([idA, idB]));
    expect(listed.items.find((a) => a.id === idA)?.labels).toEqual(['data:memory', 'scope:internal']);

    // A prefix in lower case, without "ap-", is enough.
    const approve = await mcpgw(['approve', idA.slice(3, 9).toLowerCase(), '--json']);
    expect(approve.code, approve.err).toBe(0);
    expect(json(approvalSchema, approve)).toMatchObject({ id: idA, status: 'approved', decidedBy: 'owner' });
    expect(text(await call('one'))).not.toContain('approval');

    const deny = await mcpgw(['deny', idB, 'not', 'today']);
    expect(deny.code, deny.err).toBe(0);
    expect(deny.out).toContain(`✓ Denied ${idB}: memory:delete_entities for agent (not today)`);
    const denied = await call('two');
    expect(denied.isError).toBe(true);
    expect(text(denied)).toContain('denied');

    const [again, againJson, unknown, tooShort, stillPending] = await Promise.all([
      mcpgw(['approve', idA]),
      mcpgw(['deny', idB, '--json']),
      mcpgw(['approve', 'ap-ZZZZZZZZZZ']),
      mcpgw(['deny', 'ab']),
      mcpgw(['pending']),
    ]);
    expect(again.code).toBe(1);
    expect(again.err).toContain(`${idA} was already approved by owner`);
    expect(againJson.code).toBe(1);
    expect(JSON.parse(againJson.out)).toMatchObject({ error: { code: 'conflict', exitCode: 1 } });
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('no pending approval matches ap-ZZZZZZZZZZ');
    expect(unknown.err).toContain('mcpgw pending');
    expect(tooShort.code).toBe(2);
    expect(stillPending.out).not.toContain(idA);
    expect(stillPending.out).not.toContain(idB);
    await bot.close();
  });

  it('pending --watch prints each new approval once as it appears and stops cleanly on SIGINT', async () => {
    const child = start(['pending', '--watch']);
    const watching = finish(child);
    await until(() => /^ID\s+TOOL/m.test(watching.out()), 'the header');
    const bot = await agent(agentKey);
    const id = approvalIdIn(await bot.callTool({ name: 'memory__delete_entities', arguments: { entityNames: ['w'] } }));
    await bot.close();
    await until(() => watching.out().includes(id), `${id} in the watch output`);
    child.kill('SIGINT');
    const r = await watching;
    expect(r.code).toBe(0);
    expect(r.out.split(id).length - 1).toBe(1);
    expect((await mcpgw(['deny', id, 'cleanup'])).code).toBe(0);
  });

  it('condition set, list and unset: a precondition follows the flag', async () => {
    const bot = await agent(agentKey);
    const sum = () => bot.callTool({ name: 'everything__get-sum', arguments: { a: 1, b: 2 } });
    expect(text(await sum())).toContain('sums need the window');

    const list = await mcpgw(['condition', 'list']);
    expect(list.out).toMatch(/^change_window\s+\(not set\)\s+-\s+-\s+sums need the window=open$/m);
    const set = await mcpgw(['condition', 'set', 'change_window', 'open', '--json']);
    expect(set.code, set.err).toBe(0);
    expect(json(conditionSchema, set)).toMatchObject({
      name: 'change_window',
      value: 'open',
      setBy: 'owner',
      requiredBy: [{ precondition: 'sums need the window', value: 'open' }],
    });
    expect(text(await sum())).toContain('The sum of 1 and 2 is 3');
    const listed = json(items(conditionPageSchema), await mcpgw(['condition', 'list', '--json']));
    expect(listed.items).toContainEqual(expect.objectContaining({ name: 'change_window', value: 'open' }));

    const wrong = await mcpgw(['condition', 'set', 'change_window', 'closed']);
    expect(wrong.out).toContain('! precondition sums need the window requires change_window=open');

    const unset = await mcpgw(['condition', 'unset', 'change_window', '--json']);
    expect(json(deletedResponseSchema, unset)).toEqual({ name: 'change_window', deleted: true });
    expect(text(await sum())).toContain('sums need the window');
    const twice = await mcpgw(['condition', 'unset', 'change_window']);
    expect(twice.code).toBe(1);
    expect(twice.err).toContain('flag change_window is not set');
    expect(twice.err).toContain('mcpgw condition list');
    await bot.close();
  });

  it('limits, budgets and taint: show the counters the calls left, reset and clear them', async () => {
    const bot = await agent(agentKey);
    for (const message of ['a', 'b', 'c']) await bot.callTool({ name: 'everything__echo', arguments: { message } });
    await bot.callTool({ name: 'everything__get-tiny-image', arguments: {} });
    const create = () =>
      bot.callTool({
        name: 'memory__create_entities',
        arguments: { entities: [{ name: 'e', entityType: 't', observations: [] }] },
      });
    expect(text(await create())).toContain('image then memory');

    const limits = json(items(limitPageSchema), await mcpgw(['limits', 'show', '--json']));
    expect(limits.items).toContainEqual(
      expect.objectContaining({
        rule: 'echo burst',
        scope: 'user',
        subject: 'agent',
        count: 3,
        max: 100,
        perSeconds: 3600,
      }),
    );
    const limitTable = await mcpgw(['limits', 'show', 'echo burst']);
    expect(limitTable.out).toMatch(/^echo burst\s+user\s+agent\s+3\s+100\s+3600s$/m);
    const budgets = json(items(budgetPageSchema), await mcpgw(['budgets', 'show', '--json']));
    expect(budgets.items).toContainEqual(
      expect.objectContaining({ rule: 'image budget', subject: 'agent', used: 1, max: 10, remaining: 9 }),
    );
    const taint = json(items(taintPageSchema), await mcpgw(['taint', 'list', '--json']));
    expect(taint.items).toContainEqual(expect.objectContaining({ flow: 'image then memory', userId: 'agent' }));

    const [resetLimit, resetBudget, badScope, unknownRule] = await Promise.all([
      mcpgw(['limits', 'reset', 'echo burst', '--user', 'agent', '--json']),
      mcpgw(['budgets', 'reset', 'image budget']),
      mcpgw(['limits', 'reset', 'echo burst', '--user', 'agent', '--global']),
      mcpgw(['budgets', 'reset', 'nope']),
    ]);
    expect(json(resetResponseSchema, resetLimit)).toEqual({ rule: 'echo burst', reset: 1 });
    expect(resetBudget.out).toContain('✓ Reset image budget for every scope (1 counter cleared)');
    expect(badScope.code).toBe(2);
    expect(unknownRule.code).toBe(1);
    expect(unknownRule.err).toContain('no budget nope');
    expect(json(items(limitPageSchema), await mcpgw(['limits', 'show', '--json'])).items).toEqual([]);
    expect(json(items(budgetPageSchema), await mcpgw(['budgets', 'show', '--json'])).items).toEqual([]);

    const [noTarget, clear] = [await mcpgw(['taint', 'clear']), await mcpgw(['taint', 'clear', 'agent', '--json'])];
    expect(noTarget.code).toBe(2);
    expect(json(taintClearResponseSchema, clear)).toEqual({ cleared: 1 });
    expect(text(await create())).not.toContain('image then memory');
    expect((await mcpgw(['taint', 'list'])).out).toContain('No taint marks.');
    await bot.close();
  });

  it('audit lists decisions with filters and --verify checks the chain', async () => {
    const pending = json(
      items(auditPageSchema),
      await mcpgw(['audit', '--user', 'agent', '--outcome', 'pending', '--json']),
    );
    expect(pending.items.length).toBeGreaterThanOrEqual(3);
    expect(pending.items.every((e) => e.userId === 'agent' && e.outcome === 'pending' && e.approvalId !== null)).toBe(
      true,
    );
    const limited = json(items(auditPageSchema), await mcpgw(['audit', '-n', '2', '--json']));
    expect(limited.items).toHaveLength(2);

    const table = await mcpgw(['audit', '--user', 'agent', '--outcome', 'pending', '-n', '1']);
    expect(table.out).toMatch(/^TIME \(UTC\)\s+USER\s+OUTCOME\s+TOOL\s+RULE\s+APPROVAL$/m);
    expect(table.out).toMatch(/agent\s+pending\s+memory:delete_entities\s+Deletes need a human\s+ap-/);

    const [verify, verifyWord] = await Promise.all([
      mcpgw(['audit', '--verify', '--json']),
      mcpgw(['audit', 'verify']),
    ]);
    expect(verify.code, verify.err).toBe(0);
    const report = json(auditReportSchema, verify);
    expect(report.ok).toBe(true);
    expect(report.checked).toBeGreaterThan(10);
    expect(verifyWord.out).toMatch(/^✓ Audit chain intact: \d+ rows checked/);
    expect((await mcpgw(['audit', 'nonsense'])).code).toBe(2);
  });

  it('maps failures to exit codes: gateway down 3, wrong key 4, agent key 4, no key 4', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const wrongKey = `mcpgw_ak_${'A'.repeat(38)}`;
    const [down, downEnv, downJson, wrong, asAgent, none] = await Promise.all([
      mcpgw(['user', 'list', '--url', closed]),
      mcpgw(['pending'], { MCPGW_URL: closed }),
      mcpgw(['apply', '--json'], { MCPGW_URL: closed }),
      mcpgw(['approve', 'ap-ZZZZZZZZZZ'], { MCPGW_ADMIN_KEY: wrongKey }),
      mcpgw(['user', 'add', 'mallory', '--role', 'admin'], { MCPGW_ADMIN_KEY: agentKey }),
      mcpgw(['condition', 'list'], { MCPGW_ADMIN_KEY: undefined }),
    ]);
    expect(down.code).toBe(3);
    expect(down.err).toContain(`the gateway at ${closed} does not answer`);
    expect(down.err).toContain('mcpgw status');
    expect(downEnv.code).toBe(3);
    expect(downJson.code).toBe(3);
    expect(JSON.parse(downJson.out)).toMatchObject({ error: { exitCode: 3 } });
    expect(wrong.code).toBe(4);
    expect(wrong.err).toContain('MCPGW_ADMIN_KEY');
    expect(asAgent.code).toBe(4);
    expect(asAgent.err).toContain('Agent credentials cannot use the admin API');
    expect(asAgent.err).toContain('mcpgw_ak_');
    expect(none.code).toBe(4);
    // The agent's attempt created nobody.
    expect((await adminGet('/users', userPageSchema)).items.map((u) => u.id)).not.toContain('mallory');
  });

  it('logs pretty-prints the log, --json passes the lines through, --follow tails until SIGINT', async () => {
    const pretty = await mcpgw(['logs', '-n', '5']);
    expect(pretty.code, pretty.err).toBe(0);
    const lines = pretty.out.trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO |DEBUG|WARN |ERROR|HTTP )/);
    const raw = await mcpgw(['logs', '-n', '3', '--json']);
    const objects = raw.out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg?: string });
    expect(objects).toHaveLength(3);

    const child = start(['logs', '--follow', '-n', '1']);
    const following = finish(child);
    await until(() => following.out().includes('\n'), 'the last line');
    expect((await mcpgw(['taint', 'list'])).code).toBe(0);
    await until(() => following.out().includes('route=admin'), 'the decision line of the new request');
    child.kill('SIGINT');
    expect((await following).code).toBe(0);

    const elsewhere = mkdtempSync(join(tmpdir(), 'mcpgw-nolog-'));
    const missing = await mcpgw(['logs'], { MCPGW_HOME: elsewhere });
    rmSync(elsewhere, { recursive: true, force: true });
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('no log file at');
    expect(missing.err).toContain('mcpgw up');
  });

  it('auth switch: keycloak fails honestly and changes nothing; api-key writes config.yaml', async () => {
    const config = join(home, 'config.yaml');
    const before = readFileSync(config, 'utf8');
    const keycloak = await mcpgw(['auth', 'switch', 'keycloak']);
    expect(keycloak.code).toBe(1);
    expect(keycloak.err).toContain('Keycloak mode is not available');
    expect(keycloak.err).toContain('is unchanged');
    expect(readFileSync(config, 'utf8')).toBe(before);

    const same = await mcpgw(['auth', 'switch', 'api-key', '--json']);
    expect(JSON.parse(same.out)).toEqual({
      mode: 'api-key',
      previous: 'api-key',
      changed: false,
      configPath: config,
      restartNeeded: false,
    });
    writeFileSync(config, before.replace('mode: api-key', 'mode: keycloak'));
    const back = await mcpgw(['auth', 'switch', 'api-key']);
    expect(back.code, back.err).toBe(0);
    expect(back.out).toContain('auth.mode is now api-key (was keycloak)');
    expect(back.out).toContain('mcpgw down && mcpgw up');
    expect(readFileSync(config, 'utf8')).toContain('mode: api-key');
    expect((await mcpgw(['auth', 'switch', 'ldap'])).code).toBe(2);
  });

  it('tui says the console is not built and which commands do the same', async () => {
    const r = await mcpgw(['tui']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('not part of this version');
    expect(r.err).toContain('mcpgw pending');
    expect(r.out).toBe('');
  });

  it('printed no colour codes and no spinner frames anywhere (no terminal, NO_COLOR)', () => {
    expect(runs.length).toBeGreaterThan(50);
    for (const r of runs) {
      expect(r.out).not.toContain('\u001b[');
      expect(r.err).not.toContain('\u001b[');
      expect(r.err).not.toMatch(/[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/);
    }
  });
});

describeWith(['tmux'], 'mcpgw admin commands on a real terminal', () => {
  const socket = join(home, 'tmux.sock');
  let sessions = 0;
  const terminal = (args: string[]): TmuxTerminal =>
    new TmuxTerminal(socket, `t${++sessions}`, [process.execPath, BIN, ...args], {
      MCPGW_HOME: home,
      MCPGW_ADMIN_KEY: adminKey,
    });
  afterAll(() => killTmuxServer(socket));

  it('pending --watch redraws the table in place and Ctrl-C ends it with exit 0', async () => {
    const t = terminal(['pending', '--watch']);
    await t.waitFor(/Pending approvals at .* UTC; every 2 s, Ctrl-C to stop/);
    const bot = await agent(agentKey);
    const id = approvalIdIn(
      await bot.callTool({ name: 'memory__delete_entities', arguments: { entityNames: ['tty'] } }),
    );
    await bot.close();
    const screen = await t.waitFor(new RegExp(`${id}\\s+memory:delete_entities\\s+agent`));
    // Redrawn, not appended: the header is on the screen once however many polls went by.
    expect(screen.split('Pending approvals at').length - 1).toBe(1);
    t.press('C-c');
    const { code } = await t.exit();
    expect(code).toBe(0);
    t.kill();
    expect((await mcpgw(['deny', id, 'tty test'])).code).toBe(0);
  });

  it('user delete asks on the terminal: "n" keeps the user, "y" deletes it', async () => {
    expect((await mcpgw(['user', 'add', 'erin'])).code).toBe(0);
    const no = terminal(['user', 'delete', 'erin']);
    await no.waitFor('? Delete erin (agent) with its keys and grants? (y/N)');
    no.type('n');
    const kept = await no.exit();
    expect(kept.code).toBe(1);
    expect(kept.screen).toContain('cancelled; nothing changed');
    no.kill();
    expect((await adminGet('/users', userPageSchema)).items.map((u) => u.id)).toContain('erin');

    const yes = terminal(['user', 'delete', 'erin']);
    await yes.waitFor('? Delete erin (agent) with its keys and grants? (y/N)');
    yes.type('y');
    const gone = await yes.exit();
    expect(gone.code, gone.screen).toBe(0);
    expect(gone.screen).toContain('✓ Deleted erin');
    yes.kill();
    expect((await adminGet('/users', userPageSchema)).items.map((u) => u.id)).not.toContain('erin');
  });
});
