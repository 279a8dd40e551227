/**
 * Credential isolation end to end, as a person runs it: `mcpgw init`, the gateway `mcpgw up` runs (a real
 * background `serve --role all`), `mcpgw secret set … --stdin` through the admin API, a stdio
 * backend that receives the variable and tries every way to hand it back, and the official MCP SDK
 * client through the front, which must only ever see `[REDACTED:NAME]`.
 *
 * Then the leak test: with the gateway stopped, every file under MCPGW_HOME (logs, config, keys,
 * the PGlite data directory as raw bytes), the audit table, every admin API answer, every CLI
 * output and the agent's raw HTTP transcript are searched for each value and its encodings.
 */
import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  secretPageSchema,
  secretTestResponseSchema,
  setSecretResponseSchema,
  policyDiagnosticSchema,
  errorBodySchema,
} from '../../src/admin/contract.js';
import { openStore } from '../../src/state/index.js';
import { filesUnder, Installation, leakForms, policyText } from './helpers.js';

const DEMO = 'ghp_Demo-Token/with+base64=chars_9f3K2q';
const LOOSE = 'loose-key:Zq81-xv0-LLw2-e7c1';
const UNDECLARED = 'undeclared-value-5JmQ3vT8';
const REPLACED = 'replaced-demo-token-Wp4e9Q2n';
const VALUES = { DEMO, LOOSE, UNDECLARED, REPLACED };

interface Recorded {
  transcript: string[];
}

function recordingFetch(rec: Recorded): typeof fetch {
  return async (input, init) => {
    if (typeof init?.body === 'string') rec.transcript.push(init.body);
    const res = await fetch(input, init);
    if (res.body === null) return res;
    // Tee the body so the SDK reads one copy while the transcript keeps the raw bytes (SSE too).
    const [a, b] = res.body.tee();
    void (async () => {
      const text = await new Response(b).text();
      rec.transcript.push(text);
    })();
    return new Response(a, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

function texts(result: unknown): string[] {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.filter((c) => c.type === 'text').map((c) => c.text ?? '');
}

describe('credential isolation end to end (serve --role all child, built-in front)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-secrets-e2e-'));
  const inst = new Installation(join(dir, 'home'));
  const rec: Recorded = { transcript: [] };
  let agent: Client;

  beforeAll(async () => {
    await inst.init();
    await inst.up();
    for (const service of ['vault-demo', 'loose']) {
      const g = await inst.admin('POST', '/users/agent/grants', { service, tools: ['*'] });
      expect(g.status).toBe(200);
    }
  }, 60_000);

  afterAll(async () => {
    await agent?.close().catch(() => undefined);
    await inst.down();
    rmSync(dir, { recursive: true, force: true });
  });

  const asAdmin = { MCPGW_ADMIN_KEY: '' };
  beforeAll(() => {
    asAdmin.MCPGW_ADMIN_KEY = inst.adminKey;
  });

  it('secret set (stdin) stores values, refuses short ones and bad names, and never echoes a value', async () => {
    const [set, loose, undeclared, short, badName] = await Promise.all([
      inst.cli(['secret', 'set', 'vault-demo', 'DEMO_TOKEN', '--stdin', '--json'], {
        input: `${DEMO}\n`,
        env: asAdmin,
      }),
      inst.cli(['secret', 'set', 'loose', 'LOOSE_KEY', '--stdin'], { input: LOOSE, env: asAdmin }),
      inst.cli(['secret', 'set', 'vault-demo', 'NOT_DECLARED', '--stdin'], { input: UNDECLARED, env: asAdmin }),
      inst.cli(['secret', 'set', 'vault-demo', 'DEMO_TOKEN', '--stdin'], { input: 'abc1234', env: asAdmin }),
      inst.cli(['secret', 'set', 'vault-demo', 'lower_case', '--stdin'], { input: DEMO, env: asAdmin }),
    ]);
    expect(set.code, set.err).toBe(0);
    const body = setSecretResponseSchema.parse(JSON.parse(set.out));
    expect(body).toMatchObject({ service: 'vault-demo', variable: 'DEMO_TOKEN', created: true, backend: 'builtin' });
    expect(loose.code, loose.err).toBe(0);
    expect(loose.out).toContain('✓ Stored loose/LOOSE_KEY (builtin store)');
    expect(undeclared.code).toBe(0);
    expect(undeclared.out).toContain('not in services.vault-demo.secrets');
    expect(short.code).toBe(1);
    expect(short.err).toMatch(/7 characters; secrets shorter than 8 are refused/);
    expect(short.err).not.toContain('abc1234');
    expect(badName.code).toBe(1);
    expect(badName.err).toMatch(/variable name/);

    // Without a terminal and without --stdin there is nowhere to read a value from.
    const noTty = await inst.cli(['secret', 'set', 'vault-demo', 'DEMO_TOKEN'], { env: asAdmin });
    expect(noTty.code).toBe(2);
  });

  it('maps failures to exit codes: wrong key → 4, no key → 4, gateway unreachable → 3', async () => {
    const [wrong, none, down] = await Promise.all([
      inst.cli(['secret', 'list'], { env: { MCPGW_ADMIN_KEY: inst.agentKey } }),
      inst.cli(['secret', 'list']),
      inst.cli(['secret', 'list', '--url', 'http://127.0.0.1:1'], { env: asAdmin }),
    ]);
    expect(wrong.code).toBe(4);
    expect(none.code).toBe(4);
    expect(down.code).toBe(3);
  });

  it('secret list shows stored and declared-but-missing names, never values', async () => {
    const [json, table] = await Promise.all([
      inst.cli(['secret', 'list', '--json'], { env: asAdmin }),
      inst.cli(['secret', 'list'], { env: asAdmin }),
    ]);
    expect(json.code, json.err).toBe(0);
    const parsed = JSON.parse(json.out) as { backend: string; items: unknown[] };
    const items = secretPageSchema.shape.items.parse(parsed.items);
    expect(items.map((i) => [i.service, i.variable, i.stored, i.declared])).toEqual([
      ['loose', 'LOOSE_KEY', true, false],
      ['vault-demo', 'DEMO_OTHER', false, true],
      ['vault-demo', 'DEMO_TOKEN', true, true],
      ['vault-demo', 'NOT_DECLARED', true, false],
    ]);
    expect(table.out.split('\n')[0]).toMatch(/^SERVICE\s+VARIABLE\s+STORED$/);
    expect(table.out).toMatch(/vault-demo\s+DEMO_OTHER\s+✗ missing/);
    expect(table.out).toMatch(/vault-demo\s+DEMO_TOKEN\s+✓/);
  });

  it('secret test starts the backend with its injected environment and reports names only', async () => {
    const [r, loose] = await Promise.all([
      inst.cli(['secret', 'test', 'vault-demo', '--json'], { env: asAdmin }),
      inst.cli(['secret', 'test', 'loose'], { env: asAdmin }),
    ]);
    expect(r.code).toBe(1); // DEMO_OTHER is declared but not stored
    const body = secretTestResponseSchema.parse(JSON.parse(r.out));
    expect(body).toMatchObject({ started: true, error: null, ok: false, missing: ['DEMO_OTHER'] });
    expect(body.ignored).toEqual(['NOT_DECLARED']);
    expect(body.variables.find((v) => v.name === 'DEMO_TOKEN')).toMatchObject({ stored: true, delivered: true });
    expect(body.variables.find((v) => v.name === 'NOT_DECLARED')).toMatchObject({ stored: true, delivered: false });

    expect(loose.code, loose.out).toBe(0);
    expect(loose.out).toMatch(/LOOSE_KEY\s+✓\s+✓/);
    expect(loose.out).toContain('✓ ok');
  });

  it('the backend gets exactly its own variables; the agent sees every form of them redacted', async () => {
    agent = new Client({ name: 'secrets-agent', version: '1' });
    await agent.connect(
      new StreamableHTTPClientTransport(new URL(inst.url), {
        requestInit: { headers: { authorization: `Bearer ${inst.agentKey}` } },
        fetch: recordingFetch(rec),
      }),
    );

    const names = JSON.parse(texts(await agent.callTool({ name: 'vault-demo__envnames', arguments: {} }))[0] ?? '[]');
    expect(names).toContain('DEMO_TOKEN');
    expect(names).not.toContain('NOT_DECLARED'); // the list is authoritative
    expect(names).not.toContain('LOOSE_KEY'); // another service's secret
    expect((names as string[]).filter((n) => n.startsWith('MCPGW_'))).toEqual([]);
    const looseNames = JSON.parse(texts(await agent.callTool({ name: 'loose__envnames', arguments: {} }))[0] ?? '[]');
    expect(looseNames).toContain('LOOSE_KEY');
    expect(looseNames).not.toContain('DEMO_TOKEN');

    const result = await agent.callTool({ name: 'vault-demo__reveal', arguments: { name: 'DEMO_TOKEN' } });
    expect(texts(result)).toEqual([
      'form 1: [REDACTED:DEMO_TOKEN]',
      'form 2: [REDACTED:DEMO_TOKEN]',
      'form 3: [REDACTED:DEMO_TOKEN]',
      'form 4: {"token":"[REDACTED:DEMO_TOKEN]"}',
    ]);
    expect(result.structuredContent).toEqual({ plain: '[REDACTED:DEMO_TOKEN]', base64: '[REDACTED:DEMO_TOKEN]' });

    const failed = await agent.callTool({ name: 'loose__reveal_error', arguments: { name: 'LOOSE_KEY' } });
    expect(failed.isError).toBe(true);
    expect(texts(failed).join('\n')).toContain('[REDACTED:LOOSE_KEY]');
  });

  // Progress messages once reached the agent unredacted (src/aggregator/backend.ts `onprogress`);
  // this guards that path. It uses its own client, so the leak test below covers everything else.
  it('progress notifications (separate SSE events) carry every form redacted', async () => {
    const own = new Client({ name: 'secrets-progress', version: '1' });
    await own.connect(
      new StreamableHTTPClientTransport(new URL(inst.url), {
        requestInit: { headers: { authorization: `Bearer ${inst.agentKey}` } },
      }),
    );
    try {
      const progress: string[] = [];
      await own.callTool({ name: 'vault-demo__reveal', arguments: { name: 'DEMO_TOKEN' } }, undefined, {
        onprogress: (p) => progress.push(p.message ?? ''),
      });
      expect(progress).toHaveLength(4);
      expect(progress).toEqual([
        'form 1: [REDACTED:DEMO_TOKEN]',
        'form 2: [REDACTED:DEMO_TOKEN]',
        'form 3: [REDACTED:DEMO_TOKEN]',
        'form 4: {"token":"[REDACTED:DEMO_TOKEN]"}',
      ]);
    } finally {
      await own.close();
    }
  });

  it('a replaced value is redacted at once and the running child is restarted with it', async () => {
    const [set, del] = await Promise.all([
      inst.cli(['secret', 'set', 'vault-demo', 'DEMO_TOKEN', '--stdin', '--json'], { input: REPLACED, env: asAdmin }),
      inst.cli(['secret', 'delete', 'vault-demo', 'NOT_DECLARED'], { env: asAdmin }),
    ]);
    expect(set.code, set.err).toBe(0);
    const body = setSecretResponseSchema.parse(JSON.parse(set.out));
    expect(body.created).toBe(false);
    expect(body.restart).toMatchObject({ needed: true, done: true });
    expect(body.restart.message).toMatch(/restarted/);
    // The new child has the new value (compared by digest), and it comes back redacted.
    const digest = await agent.callTool({ name: 'vault-demo__digest', arguments: { name: 'DEMO_TOKEN' } });
    expect(texts(digest)[0]).toBe(createHash('sha256').update(REPLACED).digest('hex'));
    const result = await agent.callTool({ name: 'vault-demo__reveal', arguments: { name: 'DEMO_TOKEN' } });
    expect(texts(result)[0]).toBe('form 1: [REDACTED:DEMO_TOKEN]');

    expect(del.code, del.err).toBe(0);
    const again = await inst.cli(['secret', 'delete', 'vault-demo', 'NOT_DECLARED'], { env: asAdmin });
    expect(again.code).toBe(1);
    expect(again.err).toContain('no secret NOT_DECLARED is stored for vault-demo');
  });

  it("apply refuses a header template naming another service's secret (422 with file, line, field)", async () => {
    const calendar = [
      '  calendar:',
      '    transport: http',
      '    url: http://127.0.0.1:9/mcp',
      '    secrets: [CAL_TOKEN]',
      '    headers: {Authorization: "Bearer ${DEMO_TOKEN}"}',
      '',
    ].join('\n');
    const text = policyText().replace('\npolicies:\n', `\n${calendar}policies:\n`);
    expect(text).toContain('calendar');
    const r = await inst.admin('POST', '/policy', { filename: 'mcp-security.yaml', content: text });
    expect(r.status).toBe(422);
    const err = errorBodySchema.parse(r.body).error;
    expect(err.code).toBe('invalid_policy');
    const diags = policyDiagnosticSchema.array().parse(err.details);
    const d = diags.find((x) => x.path.includes('calendar'));
    expect(d).toBeDefined();
    expect(d).toMatchObject({ file: 'mcp-security.yaml', path: 'services.calendar.headers.Authorization' });
    expect(d?.message).toContain("${DEMO_TOKEN} is not in this service's secrets list");
    expect(text.split('\n')[(d?.line ?? 0) - 1]).toContain('Authorization');
  });

  it('leaks nothing: files under MCPGW_HOME (raw PGlite pages too), logs, audit, admin answers, CLI, agent', async () => {
    // The admin answers for the audit trail are part of what is searched.
    const audit = await inst.admin('GET', '/audit?limit=500');
    expect(audit.status).toBe(200);
    const listed = await inst.admin('GET', '/secrets');
    expect(listed.status).toBe(200);
    await agent.close();
    await inst.down();

    const log = readFileSync(join(inst.home, 'logs', 'mcpgw.log'), 'utf8');
    // The scan is meaningful: the backend did print its values to stderr, and the gateway logged them redacted.
    expect(log).toContain('secret-server got DEMO_TOKEN=[REDACTED:DEMO_TOKEN]');

    // The audit table, read directly.
    const store = await openStore({ home: inst.home, sealer: false, env: {} });
    let auditRows: string;
    try {
      const r = await store.db.query('SELECT * FROM audit_log');
      auditRows = JSON.stringify(r.rows);
      expect(auditRows).toContain('admin/secrets.set');
    } finally {
      await store.close();
    }

    const haystacks: { where: string; bytes: Buffer }[] = [
      ...filesUnder(inst.home).map((f) => ({ where: f, bytes: readFileSync(f) })),
      { where: 'audit_log rows', bytes: Buffer.from(auditRows) },
      ...inst.adminAnswers.map((a, i) => ({ where: `admin answer ${i}`, bytes: Buffer.from(a) })),
      ...inst.runs.map((r) => ({
        where: `mcpgw ${r.argv.join(' ')}`,
        bytes: Buffer.from(r.out + r.err + r.argv.join(' ')),
      })),
      ...rec.transcript.map((t, i) => ({ where: `agent transcript ${i}`, bytes: Buffer.from(t) })),
    ];
    expect(haystacks.length).toBeGreaterThan(20);
    expect(haystacks.some((h) => h.where.includes(`${join(inst.home, 'db')}/`))).toBe(true);
    const hits: string[] = [];
    for (const [name, value] of Object.entries(VALUES)) {
      for (const form of leakForms(value)) {
        for (const h of haystacks) if (h.bytes.includes(form)) hits.push(`${name} in ${h.where}`);
      }
    }
    expect(hits).toEqual([]);
  });
});
