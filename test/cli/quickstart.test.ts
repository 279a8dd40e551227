/**
 * The product document's OpenClaw quick start (PACKAGING_STRATEGY §10.3) as one script, typed
 * into a real terminal the way a developer would:
 *
 *   init --preset openclaw → up → secret set gmail GMAIL_OAUTH_TOKEN → (add the gmail service and
 *   an approval rule to the policy) → user grant → profile add gmail → the agent sends an external
 *   email and is told it needs approval → `mcpgw pending` lists it → `mcpgw approve <prefix>` →
 *   the identical retry goes through, once.
 *
 * Every admin command asks for the approval passphrase on the terminal (no MCPGW_ADMIN_KEY). The
 * Gmail backend is a FAKE (test/fixtures/quickstart/fake-gmail-server.mjs: Google is not
 * reachable here) that speaks real MCP over stdio and records every send in an outbox file.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWith } from '../helpers/components.js';
import { killTmuxServer, TmuxTerminal } from './tmux.js';
import { freePort } from '../helpers/net.js';

const BIN = fileURLToPath(new URL('../../bin/mcpgw.js', import.meta.url));
const FAKE_GMAIL = fileURLToPath(new URL('../fixtures/quickstart/fake-gmail-server.mjs', import.meta.url));
const PASS = 'quick-Start-passphrase';
const GMAIL_TOKEN = 'ya29.fake-oauth-token-for-the-quickstart-test';

function cli(home: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, MCPGW_HOME: home, NO_COLOR: '1' };
    delete env['MCPGW_ADMIN_KEY'];
    delete env['MCPGW_URL'];
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

interface Refusal {
  decision?: string;
  approvalId?: string;
}

function refusalOf(result: unknown): Refusal | undefined {
  const meta = (result as { _meta?: Record<string, unknown> })._meta;
  return meta?.['io.mcpgw/decision'] as Refusal | undefined;
}

function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

describeWith(['tmux'], 'the OpenClaw quick start, typed into a terminal', () => {
  let dir: string;
  let home: string;
  let port: number;
  let socket: string;
  let outbox: string;
  let agentKey = '';
  let seq = 0;

  /** Runs one `mcpgw` command in a fresh tmux window of this test's private server. */
  const terminal = (args: string[]): TmuxTerminal =>
    new TmuxTerminal(socket, `qs${++seq}`, [process.execPath, BIN, ...args], { MCPGW_HOME: home });

  /** A command that asks for the approval passphrase: type it, wait for the end. */
  async function withPassphrase(args: string[], typeAfter?: { prompt: RegExp; text: string }) {
    const t = terminal(args);
    try {
      await t.waitFor(/Approval passphrase \(to .*\): /);
      t.type(PASS);
      t.press('Enter');
      if (typeAfter) {
        await t.waitFor(typeAfter.prompt);
        t.type(typeAfter.text);
        t.press('Enter');
      }
      const r = await t.exit();
      expect(r.screen, 'the passphrase never shows').not.toContain(PASS);
      return r;
    } finally {
      t.kill();
    }
  }

  async function agent(): Promise<Client> {
    const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${agentKey}` } },
    });
    const client = new Client({ name: 'openclaw-stand-in', version: '1.0.0' });
    await client.connect(transport);
    return client;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-quickstart-'));
    home = join(dir, 'home');
    socket = join(dir, 'tmux.sock');
    outbox = join(dir, 'outbox.jsonl');
    port = await freePort();
  });

  afterAll(async () => {
    await cli(home, ['down']);
    killTmuxServer(socket);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('mcpgw init --preset openclaw asks only the passphrase and prints the agent key', async () => {
    const t = terminal(['init', '--preset', 'openclaw', '--port', String(port)]);
    try {
      await t.waitFor(/Approval passphrase \(\d+\+ characters\): /);
      t.type(PASS);
      t.press('Enter');
      await t.waitFor('Repeat the passphrase: ');
      t.type(PASS);
      t.press('Enter');
      const { code, screen } = await t.exit();
      expect(code, screen).toBe(0);
      expect(screen).not.toContain(PASS);
      expect(screen).not.toContain('Authentication mode');
      expect(screen).toContain('mcpgw up');
      agentKey = /mcpgw_sk_[0-9A-Za-z]+/.exec(screen)?.[0] ?? '';
      expect(agentKey).not.toBe('');
    } finally {
      t.kill();
    }
  }, 120_000);

  it('mcpgw up starts the gateway natively', async () => {
    const up = await cli(home, ['up']);
    expect(up.code, up.err).toBe(0);
    expect(up.out).toContain(`http://127.0.0.1:${port}/mcp`);
  }, 120_000);

  it('mcpgw secret set gmail GMAIL_OAUTH_TOKEN stores the value typed without echo', async () => {
    const { code, screen } = await withPassphrase(['secret', 'set', 'gmail', 'GMAIL_OAUTH_TOKEN'], {
      prompt: /Value for gmail\/GMAIL_OAUTH_TOKEN: /,
      text: GMAIL_TOKEN,
    });
    expect(code, screen).toBe(0);
    expect(screen).not.toContain(GMAIL_TOKEN);
    expect(screen).toMatch(/gmail/);
  }, 120_000);

  it('the gmail service and an approval rule go into the policy; the agent is granted gmail', async () => {
    const policyFile = join(home, 'mcp-security.yaml');
    const policy = readFileSync(policyFile, 'utf8');
    const service = `  gmail: {transport: stdio, command: node, args: [${JSON.stringify(FAKE_GMAIL)}], secrets: [GMAIL_OAUTH_TOKEN], env: {FAKE_GMAIL_OUTBOX: ${JSON.stringify(outbox)}}}\n`;
    const rules =
      '  - {name: External email needs a human, when: {labels: ["scope:external"]}, action: require_approval, timeout: 30m, priority: 5}\n' +
      '  - {name: Internal email is fine, when: {labels: ["scope:internal"]}, action: allow, priority: 6}\n';
    expect(policy).toMatch(/^services:\n/m);
    expect(policy).toMatch(/^policies:\n/m);
    const edited = `tenant: {company_domain: example.com}\n${policy}`
      .replace(/^services:\n/m, `services:\n${service}`)
      .replace(/^policies:\n/m, `policies:\n${rules}`);
    writeFileSync(policyFile, edited);

    const grant = await withPassphrase(['user', 'grant', 'agent', 'gmail']);
    expect(grant.code, grant.screen).toBe(0);
  }, 120_000);

  it('mcpgw profile add gmail classifies the tools and applies the policy', async () => {
    const { code, screen } = await withPassphrase(['profile', 'add', 'gmail']);
    expect(code, screen).toBe(0);
    expect(screen).toMatch(/Gmail profile: \d+ tools classified, \d+ argument classifiers/);
    expect(readFileSync(join(home, 'mcp-security.yaml'), 'utf8')).toMatch(/security-gmail/);
  }, 120_000);

  it('an external email waits for approval; mcpgw pending lists it; mcpgw approve lets the retry through once', async () => {
    const client = await agent();
    try {
      const send = { to: 'someone@elsewhere.org', subject: 'quarterly numbers', body: 'attached' };
      // The gmail child starts after the apply; wait until its tools are listed for this agent.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const { tools } = await client.listTools();
        if (tools.some((t) => t.name === 'gmail__send_email')) break;
        if (Date.now() > deadline)
          throw new Error(`gmail__send_email never listed: ${tools.map((t) => t.name).join(' ')}`);
        await new Promise((r) => setTimeout(r, 250));
      }

      const first = await client.callTool({ name: 'gmail__send_email', arguments: send });
      expect(first.isError).toBe(true);
      const refusal = refusalOf(first);
      expect(refusal?.decision).toBe('pending');
      const approvalId = refusal?.approvalId ?? '';
      expect(approvalId).toMatch(/^ap-/);
      expect(existsSync(outbox)).toBe(false);

      const pending = await withPassphrase(['pending']);
      expect(pending.code, pending.screen).toBe(0);
      const row = pending.screen.split('\n').find((l) => l.includes(approvalId));
      expect(row, pending.screen).toBeDefined();
      expect(row).toContain('gmail:send_email');
      expect(row).toContain('agent');
      // The LABELS column of the product document: why this call waits.
      expect(pending.screen).toMatch(/^ID\s+TOOL\s+USER\s+LABELS\s+AGE\s*$/m);
      expect(row).toMatch(/\[[^\]]*\bscope:external\b[^\]]*\]/);

      // A unique prefix is enough, as the product document shows.
      const approve = await withPassphrase(['approve', approvalId.slice(3, 9)]);
      expect(approve.code, approve.screen).toBe(0);
      expect(approve.screen).toContain(`Approved ${approvalId}`);

      const retry = await client.callTool({ name: 'gmail__send_email', arguments: send });
      expect(retry.isError ?? false, textOf(retry)).toBe(false);
      const digest = createHash('sha256').update(GMAIL_TOKEN).digest('hex');
      expect(textOf(retry)).toContain(`token sha256 ${digest}`);
      expect(textOf(retry)).not.toContain(GMAIL_TOKEN);
      expect(readFileSync(outbox, 'utf8').trim().split('\n')).toHaveLength(1);

      // Consumed: the same call again needs a new approval, and nothing more is sent.
      const again = await client.callTool({ name: 'gmail__send_email', arguments: send });
      expect(refusalOf(again)?.decision).toBe('pending');
      expect(refusalOf(again)?.approvalId).not.toBe(approvalId);
      expect(readFileSync(outbox, 'utf8').trim().split('\n')).toHaveLength(1);

      // An internal address needs nobody.
      const internal = await client.callTool({
        name: 'gmail__send_email',
        arguments: { to: 'colleague@example.com', subject: 'lunch', body: 'noon?' },
      });
      expect(internal.isError ?? false, textOf(internal)).toBe(false);
      expect(readFileSync(outbox, 'utf8').trim().split('\n')).toHaveLength(2);
    } finally {
      await client.close();
    }
  }, 180_000);
});
