/**
 * Status, whoami, precondition flags, limits, budgets, taint, audit, service switches and
 * approvals, plus the routing and role gate every route shares. One file, one store: opening an
 * embedded database is most of the cost of a suite.
 *
 * Approvals (DESIGN §7): deciders are admins or listed approvers, an admin outside the list needs
 * an audited override, agents never; store errors map to 404/409/403/400.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  approvalPageSchema,
  approvalSchema,
  auditPageSchema,
  auditReportSchema,
  budgetPageSchema,
  conditionPageSchema,
  conditionSchema,
  deletedResponseSchema,
  limitPageSchema,
  resetResponseSchema,
  servicePageSchema,
  serviceSchema,
  statusResponseSchema,
  taintClearResponseSchema,
  taintPageSchema,
  whoamiResponseSchema,
} from '../../src/admin/contract.js';
import { createAdminApi } from '../../src/admin/api.js';
import { overlayServiceStates, ServiceStateStore } from '../../src/admin/services.js';
import {
  ADMIN,
  AGENT,
  ALICE,
  allowedCall,
  CAROL,
  expectError,
  expectOk,
  openHarness,
  pendingApproval,
  uniq,
  type Harness,
} from './helpers.js';

let h: Harness;
const startedAt = new Date(Date.now() - 90_000);
beforeAll(async () => {
  h = await openHarness({
    startedAt,
    version: '9.9.9-test',
    backends: () => [
      { service: 'gmail', scope: 'shared', state: 'ready' },
      { service: 'docs', scope: 'session', state: 'backoff', lastError: 'connection refused' },
    ],
  });
  await h.store.identity.createUser({ id: 'owner', role: 'admin', email: 'owner@example.com' });
});
afterAll(async () => {
  await h.close();
});

describe('status and whoami', () => {
  it('GET /status: version, uptime, revision, backends, services, pending approvals', async () => {
    await pendingApproval(h);
    const s = expectOk(await h.call('GET', '/status', { as: ALICE }), statusResponseSchema);
    expect(s).toMatchObject({
      version: '9.9.9-test',
      startedAt: startedAt.toISOString(),
      policy: { revision: h.holder.active.engine.revision, file: 'mcp-security.yaml' },
      store: { kind: 'pglite' },
      approvals: { pending: 1 },
    });
    expect(s.uptimeSeconds).toBeGreaterThanOrEqual(90);
    expect(s.backends).toEqual([
      { service: 'gmail', scope: 'shared', state: 'ready', lastError: null, healthy: true },
      { service: 'docs', scope: 'session', state: 'backoff', lastError: 'connection refused', healthy: false },
    ]);
    expect(s.services).toEqual([
      { name: 'bank', transport: 'stdio', enabled: false, suspended: false },
      { name: 'docs', transport: 'http', enabled: true, suspended: false },
      { name: 'gmail', transport: 'stdio', enabled: true, suspended: false },
    ]);
  });

  it('the version defaults to package.json, and a failing backends() does not fail status', async () => {
    const errors: string[] = [];
    const api = createAdminApi({
      store: h.store,
      policy: h.holder,
      backends: () => {
        throw new Error('aggregator down');
      },
      onError: (_err, context) => errors.push(context),
    });
    const res = await api.handle({ method: 'GET', path: '/status', caller: ADMIN });
    const s = expectOk(res, statusResponseSchema);
    expect(s.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(s.backends).toEqual([]);
    expect(errors).toEqual(['backends()']);
  });

  it('GET /whoami', async () => {
    expect(expectOk(await h.call('GET', '/whoami'), whoamiResponseSchema)).toEqual({
      id: 'owner',
      role: 'admin',
      email: 'owner@example.com',
      known: true,
    });
    expect(expectOk(await h.call('GET', '/whoami', { as: ALICE }), whoamiResponseSchema)).toMatchObject({
      id: 'alice',
      known: false,
    });
  });
});

describe('routing and roles', () => {
  it('unknown routes are 404, wrong methods 405 with Allow', async () => {
    expectError(await h.call('GET', '/nope'), 404, 'not_found');
    expectError(await h.call('GET', '/users/a/b/c/d/e'), 404, 'not_found');
    const r = await h.call('PATCH', '/users');
    expectError(r, 405, 'method_not_allowed');
    expect(r.headers?.['allow']).toBe('GET, POST');
    expect((await h.call('GET', '/status/')).status).toBe(200);
  });

  it('agents get 403 everywhere; approvers only on approvals, status and whoami', async () => {
    for (const path of ['/status', '/whoami', '/approvals', '/users', '/audit', '/services']) {
      expectError(await h.call('GET', path, { as: AGENT }), 403, 'forbidden');
    }
    for (const path of ['/conditions', '/limits', '/budgets', '/audit', '/services', '/taint']) {
      expectError(await h.call('GET', path, { as: ALICE }), 403, 'forbidden');
    }
    expectError(await h.call('POST', '/taint/clear', { body: { all: true }, as: ALICE }), 403, 'forbidden');
  });
});

describe('preconditions', () => {
  it('lists required flags (unset) and set flags; PUT, GET, DELETE one', async () => {
    const list = expectOk(await h.call('GET', '/conditions'), conditionPageSchema);
    expect(list.items).toEqual([
      {
        name: 'market_status',
        value: null,
        setBy: null,
        setAt: null,
        requiredBy: [{ precondition: 'market open', value: 'open' }],
      },
    ]);
    const set = expectOk(
      await h.call('PUT', '/conditions/market_status', { body: { value: 'open' } }),
      conditionSchema,
    );
    expect(set).toMatchObject({ name: 'market_status', value: 'open', setBy: 'owner' });
    expectOk(await h.call('PUT', '/conditions/maintenance', { body: { value: true } }), conditionSchema);
    expect(expectOk(await h.call('GET', '/conditions/maintenance'), conditionSchema).value).toBe('true');
    const page = expectOk(await h.call('GET', '/conditions', { query: { limit: '1' } }), conditionPageSchema);
    expect(page.items.map((c) => c.name)).toEqual(['maintenance']);
    const next = expectOk(
      await h.call('GET', '/conditions', { query: { limit: '1', cursor: page.nextCursor ?? '' } }),
      conditionPageSchema,
    );
    expect(next.items.map((c) => c.name)).toEqual(['market_status']);
    expect(next.nextCursor).toBeNull();

    expect(expectOk(await h.call('DELETE', '/conditions/maintenance'), deletedResponseSchema).deleted).toBe(true);
    expectError(await h.call('DELETE', '/conditions/maintenance'), 404, 'not_found');
    expectError(await h.call('GET', '/conditions/maintenance'), 404, 'not_found');
    expectError(await h.call('PUT', '/conditions/Bad Name', { body: { value: 'x' } }), 400, 'bad_request');
    expectError(await h.call('PUT', '/conditions/ok', { body: {} }), 400, 'bad_request');
    const audit = await h.store.db.query(`SELECT method FROM audit_log WHERE method LIKE 'admin/flags.%' ORDER BY id`);
    // The store audits an unset that found nothing too (count 0).
    expect(audit.rows.map((r) => r['method'])).toEqual([
      'admin/flags.set',
      'admin/flags.set',
      'admin/flags.unset',
      'admin/flags.unset',
    ]);
  });
});

describe('limits, budgets, taint', () => {
  it('GET /limits counts calls in the window; reset clears one scope or all', async () => {
    for (const user of ['lim-a', 'lim-a', 'lim-b']) {
      await allowedCall(h, { user, service: 'docs', tool: 'read_page', l2: { limits: ['page reads'] } });
    }
    const page = expectOk(await h.call('GET', '/limits'), limitPageSchema);
    expect(page.items).toEqual([
      expect.objectContaining({
        rule: 'page reads',
        scope: 'user',
        subject: 'lim-a',
        count: 2,
        max: 5,
        perSeconds: 3600,
      }),
      expect.objectContaining({ rule: 'page reads', scope: 'user', subject: 'lim-b', count: 1 }),
    ]);
    const first = expectOk(await h.call('GET', '/limits', { query: { limit: '1' } }), limitPageSchema);
    const second = expectOk(
      await h.call('GET', '/limits', { query: { limit: '1', cursor: first.nextCursor ?? '' } }),
      limitPageSchema,
    );
    expect([first.items[0]?.subject, second.items[0]?.subject, second.nextCursor]).toEqual(['lim-a', 'lim-b', null]);

    const one = expectOk(
      await h.call('POST', `/limits/${encodeURIComponent('page reads')}/reset`, {
        body: { scope: { userId: 'lim-a' } },
      }),
      resetResponseSchema,
    );
    expect(one).toEqual({ rule: 'page reads', reset: 1 });
    expect(expectOk(await h.call('GET', '/limits'), limitPageSchema).items.map((i) => i.subject)).toEqual(['lim-b']);
    expect(expectOk(await h.call('POST', '/limits/page%20reads/reset'), resetResponseSchema).reset).toBe(1);
    expectError(await h.call('POST', '/limits/no%20such/reset', { body: { scope: 'all' } }), 404, 'not_found');
    expectError(await h.call('POST', '/limits/page%20reads/reset', { body: { scope: 'some' } }), 400, 'bad_request');
  });

  it('GET /budgets shows used and remaining; reset', async () => {
    for (let i = 0; i < 2; i++) {
      await allowedCall(h, { user: 'spender', service: 'bank', tool: 'transfer', l2: { budgets: ['transfers'] } });
    }
    const page = expectOk(await h.call('GET', '/budgets'), budgetPageSchema);
    expect(page.items).toEqual([
      expect.objectContaining({ rule: 'transfers', scope: 'user', subject: 'spender', used: 2, max: 3, remaining: 1 }),
    ]);
    const r = expectOk(
      await h.call('POST', '/budgets/transfers/reset', { body: { scope: { userId: 'spender' } } }),
      resetResponseSchema,
    );
    expect(r.reset).toBe(1);
    expect(expectOk(await h.call('GET', '/budgets'), budgetPageSchema).items).toEqual([]);
    const audit = await h.store.db.query(`SELECT user_id, detail FROM audit_log WHERE method = 'admin/budgets.reset'`);
    expect(audit.rows[0]).toMatchObject({ user_id: 'owner', detail: { rule: 'transfers', scopeKey: 'u:spender' } });
  });

  it('taint: list marks, clear by user, session or all', async () => {
    const flow = 'no mail after private reads';
    for (const user of ['t1', 't2']) {
      await allowedCall(h, { user, service: 'docs', tool: 'read_page', l2: { flows: { sources: [flow], sinks: [] } } });
    }
    const marks = expectOk(await h.call('GET', '/taint'), taintPageSchema);
    expect(marks.items.map((m) => [m.flow, m.userId, m.scope])).toEqual([
      [flow, 't1', 'user'],
      [flow, 't2', 'user'],
    ]);
    expect(expectOk(await h.call('GET', '/taint', { query: { user: 't2' } }), taintPageSchema).items).toHaveLength(1);
    expect(
      expectOk(await h.call('POST', '/taint/clear', { body: { userId: 't1' } }), taintClearResponseSchema).cleared,
    ).toBe(1);
    expect(
      expectOk(await h.call('POST', '/taint/clear', { body: { sessionId: 'nope' } }), taintClearResponseSchema).cleared,
    ).toBe(0);
    expect(expectOk(await h.call('POST', '/taint/clear', { body: { all: true } }), taintClearResponseSchema)).toEqual({
      cleared: 1,
    });
    expectError(await h.call('POST', '/taint/clear', { body: { all: false } }), 400, 'bad_request');
    expectError(await h.call('POST', '/taint/clear', { body: {} }), 400, 'bad_request');
  });
});

describe('audit', () => {
  it('queries by user, outcome and time, newest first, with a cursor; never argument values', async () => {
    await allowedCall(h, { user: 'auditee', service: 'docs', tool: 'read_page', l2: {} });
    await pendingApproval(h, { user: 'auditee', args: { secret_arg: 'hunter2-value' } });
    const all = expectOk(await h.call('GET', '/audit', { query: { user: 'auditee' } }), auditPageSchema);
    expect(all.items.map((e) => e.outcome)).toEqual(['pending', 'allow']);
    expect(JSON.stringify(all.items)).not.toContain('hunter2-value');
    expect(all.items[0]?.digest).toMatch(/^[0-9a-f]{64}$/);

    const pending = expectOk(
      await h.call('GET', '/audit', { query: { user: 'auditee', outcome: 'pending' } }),
      auditPageSchema,
    );
    expect(pending.items).toHaveLength(1);

    const future = new Date(Date.now() + 3_600_000).toISOString();
    expect(expectOk(await h.call('GET', '/audit', { query: { since: future } }), auditPageSchema).items).toEqual([]);
    expect(
      expectOk(await h.call('GET', '/audit', { query: { user: 'auditee', until: future } }), auditPageSchema).items,
    ).toHaveLength(2);

    const p1 = expectOk(await h.call('GET', '/audit', { query: { limit: '3' } }), auditPageSchema);
    const p2 = expectOk(
      await h.call('GET', '/audit', { query: { limit: '3', cursor: p1.nextCursor ?? '' } }),
      auditPageSchema,
    );
    const ids = [...p1.items, ...p2.items].map((e) => Number(e.id));
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(new Set(ids).size).toBe(6);

    expectError(await h.call('GET', '/audit', { query: { outcome: 'maybe' } }), 400, 'bad_request');
    expectError(await h.call('GET', '/audit', { query: { since: 'yesterday' } }), 400, 'bad_request');
  });

  it('POST /audit/verify seals and verifies the chain', async () => {
    await h.store.sealAudit();
    const report = expectOk(await h.call('POST', '/audit/verify'), auditReportSchema);
    expect(report).toMatchObject({ ok: true, unsealed: 0, issues: [] });
    expect(report.checked).toBeGreaterThan(5);

    await h.store.db.query(`UPDATE audit_log SET reasons = '["edited"]'::jsonb WHERE seq = 2`);
    const bad = expectOk(await h.call('POST', '/audit/verify', { body: { maxIssues: 5 } }), auditReportSchema);
    expect(bad.ok).toBe(false);
    expect(bad.issues[0]).toMatchObject({ kind: 'modified', seq: 2 });
  });
});

describe('services', () => {
  it('lists the catalog with runtime state; suspend / resume / disable / enable are stored and audited', async () => {
    const list = expectOk(await h.call('GET', '/services'), servicePageSchema);
    expect(list.items.map((s) => [s.name, s.enabled, s.suspended, s.policyEnabled])).toEqual([
      ['bank', false, false, false],
      ['docs', true, false, true],
      ['gmail', true, false, true],
    ]);
    expect(list.items[1]?.tools).toEqual(['read_page', 'write_page']);

    const suspended = expectOk(
      await h.call('POST', '/services/gmail/suspend', { body: { reason: 'incident 42' } }),
      serviceSchema,
    );
    expect(suspended).toMatchObject({
      name: 'gmail',
      enabled: true,
      suspended: true,
      reason: 'incident 42',
      updatedBy: 'owner',
    });
    expect(h.servicesChanged).toBe(1);
    const enabled = expectOk(await h.call('POST', '/services/bank/enable'), serviceSchema);
    expect(enabled).toMatchObject({ enabled: true, policyEnabled: false });

    const status = expectOk(await h.call('GET', '/status'), statusResponseSchema);
    expect(status.services.find((s) => s.name === 'gmail')).toMatchObject({ suspended: true });

    // The overlay the lead applies to the Layer 1 catalog.
    const states = await new ServiceStateStore(h.store.db).list();
    const data = h.holder.active.compiled.data;
    const overlaid = overlayServiceStates(data, states);
    expect(overlaid.revision).toBe(data.revision);
    expect(overlaid.catalog['gmail']).toMatchObject({ enabled: true, suspended: true });
    expect(overlaid.catalog['bank']).toMatchObject({ enabled: true, suspended: false });
    expect(data.catalog['gmail']?.suspended).toBe(false);
    expect(overlayServiceStates(data, [])).toBe(data);
    // Runtime state never adds a service to the catalog.
    const ghost = { ...states[0]!, name: 'ghost', enabled: true };
    expect(overlayServiceStates(data, [ghost]).catalog).not.toHaveProperty('ghost');
    // The engine really denies a suspended service once the overlaid data is swapped in.
    await h.holder.active.engine.swap(overlaid);
    const d = h.holder.active.engine.evaluate({
      user: { id: 'x', role: 'agent' },
      grants: { gmail: ['*'] },
      method: 'tools/call',
      service: 'gmail',
      name: 'send_email',
      arguments: {},
    });
    expect(d).toMatchObject({ outcome: 'deny', code: 'service_suspended' });
    await h.holder.active.engine.swap(data);

    const resumed = expectOk(await h.call('POST', '/services/gmail/resume'), serviceSchema);
    expect(resumed.suspended).toBe(false);
    expect(expectOk(await h.call('POST', '/services/bank/disable'), serviceSchema).enabled).toBe(false);

    const audit = await h.store.db.query(
      `SELECT method, service, detail FROM audit_log WHERE method LIKE 'admin/services.%' ORDER BY id`,
    );
    expect(audit.rows.map((r) => [r['method'], r['service']])).toEqual([
      ['admin/services.suspend', 'gmail'],
      ['admin/services.enable', 'bank'],
      ['admin/services.resume', 'gmail'],
      ['admin/services.disable', 'bank'],
    ]);
    expect(audit.rows[0]?.['detail']).toMatchObject({ reason: 'incident 42', role: 'admin' });

    expectError(await h.call('POST', '/services/ghost/suspend'), 404, 'not_found');
    expectError(await h.call('POST', '/services/gmail/explode'), 404, 'not_found');
    expectError(await h.call('POST', '/services/gmail/suspend', { body: { why: 1 } }), 400, 'bad_request');
  });

  it('watch() hears changes made through the API', async () => {
    const seen: number[] = [];
    const stop = await new ServiceStateStore(h.store.db).watch(() => seen.push(1));
    await h.call('POST', '/services/docs/suspend');
    for (let i = 0; i < 50 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await stop();
    expect(seen.length).toBeGreaterThan(0);
  });
});

describe('approvals', () => {
  it('lists pending approvals, filtered, with cursor pagination', async () => {
    const user = uniq('agent');
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await pendingApproval(h, { user, labels: [`n:${i}`] }));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: Record<string, string> = {
        status: 'pending',
        user,
        limit: '2',
        ...(cursor === null ? {} : { cursor }),
      };
      const page = expectOk(await h.call('GET', '/approvals', { query, as: ALICE }), approvalPageSchema);
      // Each approval with the labels of its own call.
      for (const a of page.items) expect(a.labels).toEqual([`n:${ids.indexOf(a.id)}`]);
      seen.push(...page.items.map((a) => a.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual([...ids].sort());

    const none = expectOk(
      await h.call('GET', '/approvals', { query: { status: 'approved,denied', user } }),
      approvalPageSchema,
    );
    expect(none.items).toEqual([]);
    expectError(await h.call('GET', '/approvals', { query: { status: 'maybe' } }), 400, 'bad_request');
    expectError(await h.call('GET', '/approvals', { query: { cursor: 'nope' } }), 400, 'bad_request');
  });

  it('GET by full id and by unique prefix; 404 and 400 otherwise', async () => {
    const id = await pendingApproval(h);
    const full = expectOk(await h.call('GET', `/approvals/${id}`, { as: CAROL }), approvalSchema);
    expect(full).toMatchObject({
      id,
      status: 'pending',
      approvers: ['alice'],
      rule: 'approve mail',
      labels: ['scope:external'],
    });
    expect(full.digest).toMatch(/^[0-9a-f]{64}$/);
    // Lower case, without "ap-", as typed.
    const byPrefix = expectOk(await h.call('GET', `/approvals/${id.slice(3, 11).toLowerCase()}`), approvalSchema);
    expect(byPrefix.id).toBe(id);

    expectError(await h.call('GET', '/approvals/ap-0000000000'), 404, 'not_found');
    expectError(await h.call('GET', '/approvals/ZZZZZZZ0'), 404, 'not_found');
    expectError(await h.call('GET', '/approvals/ab'), 400, 'bad_request');
    expectError(await h.call('GET', '/approvals/not*an*id'), 400, 'bad_request');
  });

  it('a listed approver approves; deciding again is a 409', async () => {
    const id = await pendingApproval(h, { approvers: ['alice'] });
    const res = expectOk(
      await h.call('POST', `/approvals/${id}/approve`, { body: { reason: 'ok by me' }, as: ALICE }),
      approvalSchema,
    );
    expect(res).toMatchObject({ status: 'approved', decidedBy: 'alice', override: false, decisionReason: 'ok by me' });

    const again = expectError(await h.call('POST', `/approvals/${id}/approve`, { as: ALICE }), 409, 'conflict');
    expect(again.details).toEqual({ reason: 'not_pending' });
    expectError(await h.call('POST', `/approvals/${id}/deny`, { body: { reason: 'no' }, as: ALICE }), 409, 'conflict');
  });

  it('an approver not in the list is refused; the refusal is audited', async () => {
    const id = await pendingApproval(h, { approvers: ['alice'] });
    const e = expectError(await h.call('POST', `/approvals/${id}/approve`, { as: CAROL }), 403, 'forbidden');
    expect(e.message).toContain('not among the approvers');
    // An approver cannot override.
    expectError(
      await h.call('POST', `/approvals/${id}/approve`, { body: { override: true }, as: CAROL }),
      403,
      'forbidden',
    );
    expect(expectOk(await h.call('GET', `/approvals/${id}`), approvalSchema).status).toBe('pending');
    const rows = await h.store.db.query(
      `SELECT user_id, outcome FROM audit_log WHERE approval_id = $1 AND method = 'approval/approve'`,
      [id],
    );
    expect(rows.rows).toEqual([
      { user_id: 'carol', outcome: 'deny' },
      { user_id: 'carol', outcome: 'deny' },
    ]);
  });

  it('an admin outside the list needs override, which is recorded', async () => {
    const id = await pendingApproval(h, { approvers: ['alice'] });
    const e = expectError(await h.call('POST', `/approvals/${id}/approve`, { as: ADMIN }), 403, 'forbidden');
    expect(e.message).toContain('override');
    const res = expectOk(
      await h.call('POST', `/approvals/${id}/approve`, { body: { override: true }, as: ADMIN }),
      approvalSchema,
    );
    expect(res).toMatchObject({ status: 'approved', decidedBy: 'owner', override: true });
    const row = await h.store.db.query(
      `SELECT detail FROM audit_log WHERE approval_id = $1 AND outcome = 'allow' AND method = 'approval/approve'`,
      [id],
    );
    expect(row.rows[0]?.['detail']).toMatchObject({ override: true, role: 'admin' });
  });

  it('an admin decides approvals with no approvers list without override', async () => {
    const id = await pendingApproval(h, { approvers: [] });
    const res = expectOk(
      await h.call('POST', `/approvals/${id}/deny`, { body: { reason: 'not now' }, as: ADMIN }),
      approvalSchema,
    );
    expect(res).toMatchObject({ status: 'denied', decisionReason: 'not now', override: false });
  });

  it('deny needs a reason; unknown ids are 404; agents never reach approvals', async () => {
    const id = await pendingApproval(h);
    expectError(await h.call('POST', `/approvals/${id}/deny`, { body: {}, as: ALICE }), 400, 'bad_request');
    expectError(
      await h.call('POST', `/approvals/${id}/deny`, { body: { reason: '  ' }, as: ALICE }),
      400,
      'bad_request',
    );
    expectError(await h.call('POST', '/approvals/ap-0000000000/approve', { body: {}, as: ADMIN }), 404, 'not_found');
    expectError(await h.call('POST', '/approvals/ap-0000000000/deny', { body: { reason: 'x' } }), 404, 'not_found');
    expectError(await h.call('GET', '/approvals', { as: AGENT }), 403, 'forbidden');
    expectError(await h.call('POST', `/approvals/${id}/approve`, { as: AGENT }), 403, 'forbidden');
    expect(expectOk(await h.call('GET', `/approvals/${id}`), approvalSchema).status).toBe('pending');
  });

  it('an ambiguous prefix is a 400 that says so', async () => {
    // With enough approvals, two share their first 4 characters only by chance; force it instead.
    await h.store.db.query(
      `INSERT INTO approvals (id, user_id, method, service, tool, digest, rule, status, timeout_s, consume_within_s,
                              created_at, expires_at, request_decision_id)
       SELECT id, 'u', 'tools/call', 's', 't', id, 'r', 'pending', 60, 60, now(), now() + interval '1 hour', id
         FROM (VALUES ('ap-QQQQ000001'), ('ap-QQQQ000002')) AS v(id)`,
    );
    const e = expectError(await h.call('GET', '/approvals/qqqq'), 400, 'bad_request');
    expect(e.details).toEqual({ reason: 'ambiguous' });
    expect(expectOk(await h.call('GET', '/approvals/QQQQ000001'), approvalSchema).id).toBe('ap-QQQQ000001');
  });
});

describe('failures', () => {
  // Last: it closes the suite's store.
  it('a closed store answers 503 unavailable, not a stack trace', async () => {
    await h.store.close();
    const r = await h.call('GET', '/users');
    expectError(r, 503, 'unavailable');
    expect(JSON.stringify(r.body)).not.toContain('closed');
    expect(h.errors.map((e) => e.context)).toEqual(['listUsers']);
  });
});
