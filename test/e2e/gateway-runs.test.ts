/**
 * "The gateway runs", end to end: the official MCP SDK client → the front (the real Envoy, and the
 * built-in front) → authz (Layer 1 Wasm + Layer 2 in PGlite) → the gateway's aggregator → real MCP
 * servers from npm (server-everything and server-filesystem over stdio) and a Streamable HTTP
 * backend. Every scenario runs once per front on one stack started for that front (test/e2e/stack.ts);
 * each scenario has its own users, so Layer 2 state (approvals, counters, taint) never crosses.
 */
import { spawnSync } from 'node:child_process';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeWith } from '../helpers/components.js';
import { refusalOf, startStack, textOf, waitUntil, PRIVATE_TEXT, type FrontKind, type Stack } from './stack.js';

const SESSION_ID = /^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/;
const APPROVAL_ID = /^ap-[0-9A-HJKMNP-TV-Z]{10}$/;

interface BackendStatus {
  service: string;
  state: string;
  scope: string | null;
  lastError: string | null;
  healthy: boolean;
}

/** Pids of this process's children whose command line contains `needle`. */
function childPids(needle: string): number[] {
  const ps = spawnSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  const out: number[] = [];
  for (const line of ps.stdout.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (m && Number(m[2]) === process.pid && (m[3] ?? '').includes(needle)) out.push(Number(m[1]));
  }
  return out;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function mcpErrorOf(p: Promise<unknown>): Promise<McpError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof McpError) return err;
    throw err;
  }
  throw new Error('expected the call to fail with a JSON-RPC error');
}

function scenarios(front: FrontKind): void {
  let s: Stack;
  const key: Record<string, string> = {};
  const everything = { everything: ['*'] };

  beforeAll(async () => {
    s = await startStack(front);
    // Every user through POST /admin/v1/users (+ grants), as the owner, through the front.
    key['jarvis'] = await s.createUser('jarvis', 'agent', { everything: ['*'], fs: ['*'], web: ['*'] });
    key['carol'] = await s.createUser('carol', 'approver');
    key['dora'] = await s.createUser('dora', 'agent', { web: ['*'] });
    key['vel'] = await s.createUser('vel', 'agent', everything);
    key['tina'] = await s.createUser('tina', 'agent', { fs: ['*'], web: ['*'] });
    key['tom'] = await s.createUser('tom', 'agent', { fs: ['*'], web: ['*'] });
    key['wendy'] = await s.createUser('wendy', 'agent', { web: ['echo'] });
    key['bob'] = await s.createUser('bob', 'agent', everything);
    key['kim'] = await s.createUser('kim', 'agent', everything);
    key['alice'] = await s.createUser('alice', 'agent');
  }, 60_000);

  afterAll(async () => {
    await s?.close();
  });

  it('users and keys come from the admin API; an agent key is refused there', async () => {
    expect(s.gw.frontKind).toBe(front);
    expect(key['jarvis']).toMatch(/^mcpgw_sk_[0-9A-Za-z]{38}$/);
    expect(key['carol']).toMatch(/^mcpgw_ak_[0-9A-Za-z]{38}$/);
    const jarvis = await s.admin('GET', '/users/jarvis');
    expect(jarvis.status).toBe(200);
    expect(jarvis.body).toMatchObject({
      id: 'jarvis',
      role: 'agent',
      grants: { everything: ['*'], fs: ['*'], web: ['*'] },
    });
    const asAgent = await s.admin('GET', '/users', undefined, key['jarvis']);
    expect(asAgent.status).toBe(403);
    const noKey = await fetch(`http://127.0.0.1:${s.gw.ports.front}/admin/v1/users`);
    expect(noKey.status).toBe(401);
  });

  // 1. allow, deny, require_approval
  it('allows a read, denies by a rule and by the default rule (audited)', async () => {
    const { client } = await s.agent(key['jarvis'] ?? '');
    const ok = await client.callTool({ name: 'everything__echo', arguments: { message: 'hi' } });
    expect(ok.isError).toBeFalsy();
    expect(textOf(ok)).toBe('Echo: hi');
    expect(refusalOf(ok)).toBeNull();

    const denied = await client.callTool({ name: 'everything__get-env', arguments: {} });
    expect(denied.isError).toBe(true);
    expect(refusalOf(denied)).toEqual({ decision: 'deny', rule: 'no env dumps', approvalId: null, retryAfter: null });
    expect(textOf(denied)).toMatch(/denied by the gateway's security policy/);
    // The environment of the child never came back.
    expect(textOf(denied)).not.toMatch(/PATH|HOME/);

    const fallback = await client.callTool({ name: 'everything__get-tiny-image', arguments: {} });
    expect(refusalOf(fallback)).toMatchObject({ decision: 'deny', rule: 'default deny' });

    const audit = await s.admin('GET', '/audit?user=jarvis&tool=get-env&outcome=deny');
    expect(audit.status).toBe(200);
    const rows = (audit.body as { items: { rule: string | null; service: string | null }[] }).items;
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(rows[0]).toMatchObject({ rule: 'no env dumps', service: 'everything' });
  });

  it('require_approval: pending → approved by the listed approver → the identical retry passes once', async () => {
    const { client } = await s.agent(key['dora'] ?? '');
    const call = { name: 'web__add', arguments: { a: 2, b: 3 } };
    const first = await client.callTool(call);
    expect(first.isError).toBe(true);
    const pending = refusalOf(first);
    expect(pending).toMatchObject({ decision: 'pending', rule: 'additions need a human' });
    const id = pending?.approvalId ?? '';
    expect(id).toMatch(APPROVAL_ID);
    expect(textOf(first)).toContain(`needs a human's approval (${id})`);
    // The text never says how to approve.
    expect(textOf(first)).not.toMatch(/admin|approve /i);

    // The same call again shares the pending approval.
    expect(refusalOf(await client.callTool(call))).toMatchObject({ decision: 'pending', approvalId: id });
    // Other arguments are another approval.
    const other = refusalOf(await client.callTool({ name: 'web__add', arguments: { a: 2, b: 4 } }));
    expect(other?.decision).toBe('pending');
    expect(other?.approvalId).not.toBe(id);

    const listed = await s.admin('GET', '/approvals?status=pending&user=dora', undefined, key['carol']);
    expect(listed.status).toBe(200);
    expect((listed.body as { items: { id: string }[] }).items.map((a) => a.id)).toContain(id);

    // Neither the agent nor an admin outside the approvers list (without the audited override) decides.
    expect((await s.admin('POST', `/approvals/${id}/approve`, {}, key['dora'])).status).toBe(403);
    expect((await s.admin('POST', `/approvals/${id}/approve`, {})).status).toBe(403);
    expect(refusalOf(await client.callTool(call))).toMatchObject({ decision: 'pending', approvalId: id });

    const approved = await s.admin('POST', `/approvals/${id}/approve`, { reason: 'fine' }, key['carol']);
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ id, status: 'approved', decidedBy: 'carol', consumedAt: null });

    const retry = await client.callTool(call);
    expect(retry.isError).toBeFalsy();
    expect(textOf(retry)).toBe('5');

    const again = await client.callTool(call);
    expect(again.isError).toBe(true);
    const next = refusalOf(again);
    expect(next?.decision).toBe('pending');
    expect(next?.approvalId).toMatch(APPROVAL_ID);
    expect(next?.approvalId).not.toBe(id);

    // A denied approval: the identical call is denied (with the approver's reason), not pending again.
    const otherId = other?.approvalId ?? '';
    const denied = await s.admin('POST', `/approvals/${otherId}/deny`, { reason: 'not this one' }, key['carol']);
    expect(denied.status).toBe(200);
    expect(denied.body).toMatchObject({ id: otherId, status: 'denied', decisionReason: 'not this one' });
    const refused = await client.callTool({ name: 'web__add', arguments: { a: 2, b: 4 } });
    expect(refusalOf(refused)).toMatchObject({ decision: 'deny', rule: 'additions need a human' });
    expect(textOf(refused)).toContain(`denied by carol (${otherId}): not this one`);

    const consumed = await s.admin('GET', `/approvals/${id}`, undefined, key['carol']);
    expect(consumed.body).toMatchObject({ status: 'approved', consumedBy: expect.any(String) });
    expect((consumed.body as { consumedAt: unknown }).consumedAt).not.toBeNull();
  });

  // 2. velocity
  it('a velocity limit denies the third call within the window, with a retry hint', async () => {
    const { client } = await s.agent(key['vel'] ?? '');
    const sum = { name: 'everything__get-sum', arguments: { a: 1, b: 2 } };
    for (let i = 0; i < 2; i++) {
      const r = await client.callTool(sum);
      expect(r.isError).toBeFalsy();
      expect(textOf(r)).toBe('The sum of 1 and 2 is 3.');
    }
    const third = await client.callTool(sum);
    expect(third.isError).toBe(true);
    const refusal = refusalOf(third);
    expect(refusal).toMatchObject({ decision: 'deny', rule: 'sum burst' });
    expect(refusal?.retryAfter).toBeGreaterThan(0);
    expect(refusal?.retryAfter).toBeLessThanOrEqual(60);
    expect(textOf(third)).toMatch(new RegExp(`retry after ${refusal?.retryAfter ?? 'x'} seconds`));

    // The counter is per user: someone else still gets through.
    const kim = (await s.agent(key['kim'] ?? '')).client;
    expect(textOf(await kim.callTool(sum))).toBe('The sum of 1 and 2 is 3.');

    const limits = await s.admin('GET', '/limits?rule=sum%20burst');
    expect(limits.status).toBe(200);
    const usage = (limits.body as { items: { subject: string | null; count: number; max: number | null }[] }).items;
    expect(usage.find((u) => u.subject === 'vel')).toMatchObject({ count: 2, max: 2 });
  });

  // 3. taint
  it('after reading a data:private file, the same user cannot make a scope:external call; another user can', async () => {
    const tina = (await s.agent(key['tina'] ?? '')).client;
    const tom = (await s.agent(key['tom'] ?? '')).client;
    const send = { name: 'web__echo', arguments: { text: 'quarterly numbers' } };
    // Before the read, the external call is fine.
    expect(textOf(await tina.callTool(send))).toBe('echo: quarterly numbers');

    const read = await tina.callTool({ name: 'fs__read_text_file', arguments: { path: s.privateFile } });
    expect(read.isError).toBeFalsy();
    expect(textOf(read)).toContain(PRIVATE_TEXT.trim());

    const blocked = await tina.callTool(send);
    expect(blocked.isError).toBe(true);
    expect(refusalOf(blocked)).toMatchObject({ decision: 'deny', rule: 'no exfiltration after private reads' });
    // In a new session too: the taint is the user's.
    const tina2 = (await s.agent(key['tina'] ?? '')).client;
    expect(refusalOf(await tina2.callTool(send))?.decision).toBe('deny');

    const fine = await tom.callTool(send);
    expect(fine.isError).toBeFalsy();
    expect(textOf(fine)).toBe('echo: quarterly numbers');

    const marks = await s.admin('GET', '/taint?user=tina');
    expect((marks.body as { items: { flow: string; userId: string }[] }).items).toEqual([
      expect.objectContaining({ flow: 'no exfiltration after private reads', userId: 'tina' }),
    ]);
    expect((await s.admin('GET', '/taint?user=tom')).body).toMatchObject({ items: [] });
  });

  // 4. tools/list per user
  it('tools/list differs per user (grants)', async () => {
    const jarvis = (await (await s.agent(key['jarvis'] ?? '')).client.listTools()).tools.map((t) => t.name);
    const wendy = (await (await s.agent(key['wendy'] ?? '')).client.listTools()).tools.map((t) => t.name);
    expect(wendy).toEqual(['web__echo']);
    expect(jarvis).toEqual(
      expect.arrayContaining([
        'everything__echo',
        'everything__get-sum',
        'fs__read_text_file',
        'fs__list_allowed_directories',
        'web__echo',
        'web__add',
      ]),
    );
    // What Layer 1 denies for every argument is not listed (the deny rule, the default deny).
    expect(jarvis).not.toContain('everything__get-env');
    expect(jarvis).not.toContain('everything__get-tiny-image');
    expect(jarvis).not.toContain('web__slow');
  });

  // 5. sessions are bound to their user
  it("another user's session id is rejected", async () => {
    const jarvis = await s.agent(key['jarvis'] ?? '');
    const bob = await s.agentOnSession(key['bob'] ?? '', jarvis.sessionId);
    for (const attempt of [
      () => bob.callTool({ name: 'everything__echo', arguments: { message: 'x' } }),
      () => bob.listTools(),
    ]) {
      const err = await attempt().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StreamableHTTPError);
      expect(err).toMatchObject({ code: 404, message: expect.stringContaining('Unknown or foreign MCP session') });
    }
    // The raw answer is a JSON-RPC error from authz, not the gateway's.
    const raw = await fetch(s.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key['bob'] ?? ''}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': jarvis.sessionId,
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: { name: 'everything__echo', arguments: { message: 'x' } },
      }),
    });
    expect(raw.status).toBe(404);
    expect(await raw.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32600 } });
    // Nor can bob end jarvis's session.
    const del = await fetch(s.url, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${key['bob'] ?? ''}`, 'mcp-session-id': jarvis.sessionId },
    });
    expect(del.status).toBe(404);
    // The owner's session is untouched.
    expect(textOf(await jarvis.client.callTool({ name: 'everything__echo', arguments: { message: 'still' } }))).toBe(
      'Echo: still',
    );
  });

  // 6. a killed backend comes back
  it('a killed stdio backend gives a clear error, then works again after the backoff', async () => {
    const { client } = await s.agent(key['jarvis'] ?? '');
    const echo = { name: 'everything__echo', arguments: { message: 'before' } };
    expect(textOf(await client.callTool(echo))).toBe('Echo: before');
    const before = childPids('server-everything');
    expect(before).toHaveLength(1);
    process.kill(before[0] ?? 0, 'SIGKILL');

    const err = await mcpErrorOf(client.callTool({ name: 'everything__echo', arguments: { message: 'during' } }));
    expect(err.code).toBe(-32003);
    // Which one depends on when the call meets the dying child: mid-call, while writing to its
    // closed stdin, or in the backoff that follows.
    expect(err.message).toMatch(
      /^MCP error -32003: Service 'everything' (went away during tools\/call; it is being restarted|is unreachable; it is being reconnected|is unavailable \(restarting after a failure\); retry in \d+ s)$/,
    );

    const status = async (): Promise<BackendStatus | undefined> => {
      const r = await s.admin('GET', '/status');
      return (r.body as { backends: BackendStatus[] }).backends.find((b) => b.service === 'everything');
    };
    const back = await waitUntil('everything ready again', status, (b) => b?.healthy === true, 15_000);
    expect(back?.state).toBe('ready');
    const after = await client.callTool({ name: 'everything__echo', arguments: { message: 'after' } });
    expect(after.isError).toBeFalsy();
    expect(textOf(after)).toBe('Echo: after');
    const now = childPids('server-everything');
    expect(now).toHaveLength(1);
    expect(now[0]).not.toBe(before[0]);
  });

  // 7. the reference's end-to-end scenarios (§5.3), in our terms
  describe('reference §5.3', () => {
    it('initialize answers 200 with a session id', async () => {
      const res = await fetch(s.url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key['jarvis'] ?? ''}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
        }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('mcp-session-id')).toMatch(SESSION_ID);
      const text = await res.text();
      const json = text.startsWith('{') ? text : (/^data: (.*)$/m.exec(text)?.[1] ?? '');
      const body = JSON.parse(json) as { jsonrpc: string; id: number; result: Record<string, unknown> };
      expect(body).toMatchObject({ jsonrpc: '2.0', id: 1 });
      expect(body.result['protocolVersion']).toBe('2025-06-18');
      expect(body.result['serverInfo']).toMatchObject({ name: 'mcpgw' });

      const sdk = await s.agent(key['jarvis'] ?? '');
      expect(sdk.sessionId).toMatch(SESSION_ID);
      expect(sdk.client.getServerVersion()?.name).toBe('mcpgw');
    });

    it('tools/list is namespaced <service>__<tool>', async () => {
      const names = (await (await s.agent(key['jarvis'] ?? '')).client.listTools()).tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(['everything__echo', 'fs__read_text_file', 'web__echo']));
      for (const n of names) expect(n).toMatch(/^(everything|fs|web)__[^_]/);
    });

    it('a user without grants can initialize and list (nothing), is denied calls; grant → allowed; revoke → denied', async () => {
      const { client } = await s.agent(key['alice'] ?? '');
      let listChanged = 0;
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
        listChanged++;
      });
      expect((await client.listTools()).tools).toEqual([]);
      const echo = { name: 'web__echo', arguments: { text: 'hello' } };
      expect(refusalOf(await client.callTool(echo))?.decision).toBe('deny');

      const beforeGrant = listChanged;
      const granted = await s.admin('POST', '/users/alice/grants', { service: 'web', tools: ['echo'] });
      expect(granted.status).toBe(200);
      expect(granted.body).toMatchObject({ grants: { web: ['echo'] }, warnings: [] });
      // The session is told its tools changed (over its GET stream, through the front).
      await waitUntil(
        'tools/list_changed after the grant',
        async () => listChanged,
        (n) => n > beforeGrant,
        5000,
      );
      const ok = await client.callTool(echo);
      expect(ok.isError).toBeFalsy();
      expect(textOf(ok)).toBe('echo: hello');
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['web__echo']);

      const beforeRevoke = listChanged;
      const revoked = await s.admin('DELETE', '/users/alice/grants/web/echo');
      expect(revoked.status).toBe(200);
      expect(revoked.body).toMatchObject({ removed: 1, grants: {} });
      await waitUntil(
        'tools/list_changed after the revocation',
        async () => listChanged,
        (n) => n > beforeRevoke,
        5000,
      );
      expect(refusalOf(await client.callTool(echo))?.decision).toBe('deny');
      expect((await client.listTools()).tools).toEqual([]);
    });

    it('suspend a service → calls denied; resume → allowed', async () => {
      const { client } = await s.agent(key['jarvis'] ?? '');
      const echo = { name: 'web__echo', arguments: { text: 'ping' } };
      expect(textOf(await client.callTool(echo))).toBe('echo: ping');

      const suspended = await s.admin('POST', '/services/web/suspend', { reason: 'incident' });
      expect(suspended.status).toBe(200);
      expect(suspended.body).toMatchObject({ name: 'web', suspended: true, reason: 'incident' });
      const refused = await client.callTool(echo);
      expect(refused.isError).toBe(true);
      expect(refusalOf(refused)?.decision).toBe('deny');
      // Other services are not affected.
      expect(textOf(await client.callTool({ name: 'everything__echo', arguments: { message: 'x' } }))).toBe('Echo: x');

      const resumed = await s.admin('POST', '/services/web/resume');
      expect(resumed.status).toBe(200);
      expect(resumed.body).toMatchObject({ name: 'web', suspended: false });
      const back = await client.callTool(echo);
      expect(back.isError).toBeFalsy();
      expect(textOf(back)).toBe('echo: ping');
    });

    it('health and the JWKS answer without a token; the admin status reports every backend', async () => {
      const base = `http://127.0.0.1:${s.gw.ports.front}`;
      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
      const jwks = await fetch(`${base}/.well-known/jwks.json`);
      expect(jwks.status).toBe(200);
      const keys = ((await jwks.json()) as { keys: { kty?: string; crv?: string }[] }).keys;
      expect(keys.length).toBeGreaterThan(0);
      expect(keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519' });

      // Backends start with the first session that needs them.
      await s.agent(key['jarvis'] ?? '');
      const backendsOf = (r: { body: unknown }): BackendStatus[] =>
        (r.body as { backends?: BackendStatus[] }).backends ?? [];
      const status = await waitUntil(
        'every backend ready',
        () => s.admin('GET', '/status'),
        (r) => r.status === 200 && backendsOf(r).length >= 3 && backendsOf(r).every((b) => b.healthy),
      );
      expect(status.body).toMatchObject({ store: { kind: 'pglite' }, policy: { file: expect.any(String) } });
      // stdio children are shared; an HTTP backend is one connection per agent session.
      const backends = backendsOf(status);
      expect([...new Set(backends.map((b) => b.service))].sort()).toEqual(['everything', 'fs', 'web']);
      expect(backends.filter((b) => b.service !== 'web').map((b) => b.scope)).toEqual(['shared', 'shared']);
      for (const b of backends) expect(b).toMatchObject({ healthy: true, state: 'ready' });
    });

    it('no token → 401 with a JSON-RPC body', async () => {
      const res = await fetch(s.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      expect(res.status).toBe(401);
      // The reply is the front's own: Envoy names itself, the built-in front says mcpgw.
      expect(res.headers.get('server')).toBe(front === 'envoy' ? 'envoy' : 'mcpgw');
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const body = (await res.json()) as { jsonrpc: string; error: { code: number; message: string } };
      expect(body).toMatchObject({ jsonrpc: '2.0', error: { code: -32001 } });
      expect(body.error.message.length).toBeGreaterThan(0);
    });
  });

  // Last: closing the product stops what it started.
  it('close() stops every child it started: the stdio backends and the front', async () => {
    const started = [...childPids('server-everything'), ...childPids('server-filesystem'), ...childPids('envoy -c')];
    expect(started.length).toBe(front === 'envoy' ? 3 : 2);
    await s.close();
    const left = await waitUntil(
      'children gone',
      async () => started.filter((pid) => isAlive(pid)),
      (pids) => pids.length === 0,
      5000,
    );
    expect(left).toEqual([]);
    const refused = await fetch(s.url, { method: 'POST', body: '{}' }).then(
      () => 'answered',
      () => 'refused',
    );
    expect(refused).toBe('refused');
  });
}

describe('the gateway runs: SDK client → built-in front → mcpgw → real MCP servers', () => scenarios('builtin'));
describeWith(['envoy'], 'the gateway runs: SDK client → real Envoy → mcpgw → real MCP servers', () =>
  scenarios('envoy'),
);
