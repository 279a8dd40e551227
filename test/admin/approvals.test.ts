/**
 * Approvals through the admin API (DESIGN §7): deciders are admins or listed approvers, an admin
 * outside the list needs an audited override, agents never; store errors map to 404/409/403/400.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approvalPageSchema, approvalSchema } from '../../src/admin/contract.js';
import {
  ADMIN,
  AGENT,
  ALICE,
  CAROL,
  expectError,
  expectOk,
  openHarness,
  pendingApproval,
  uniq,
  type Harness,
} from './helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await openHarness();
});
afterAll(async () => {
  await h.close();
});

describe('approvals', () => {
  it('lists pending approvals, filtered, with cursor pagination', async () => {
    const user = uniq('agent');
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await pendingApproval(h, { user }));
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
    expect(full).toMatchObject({ id, status: 'pending', approvers: ['alice'], rule: 'approve mail' });
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
    expectError(await h.call('POST', `/approvals/${id}/deny`, { body: { reason: '  ' }, as: ALICE }), 400, 'bad_request');
    expectError(
      await h.call('POST', '/approvals/ap-0000000000/approve', { body: {}, as: ADMIN }),
      404,
      'not_found',
    );
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
