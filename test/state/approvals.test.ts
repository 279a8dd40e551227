/**
 * Human approvals on both stores: the store-and-forward flow of upstream §5.2 in our form, who
 * may decide, id prefixes, expiry, consume_within, the deny cool-down and the per-user quota.
 */
import { beforeAll, expect, it } from 'vitest';
import { ApprovalError } from '../../src/state/approvals.js';
import { APPROVAL_ID_PATTERN } from '../../src/state/ids.js';
import type { Layer2Store } from '../../src/state/store.js';
import { admin, describeStores, request, rules, sleep, uniq, type ReqSpec } from './harness.js';

const r = rules();

describeStores('approvals', (env) => {
  let store: Layer2Store;
  beforeAll(async () => {
    store = await env.open();
  });

  const needsApproval = (s: ReqSpec = {}) =>
    request({
      outcome: 'require_approval',
      rule: 'Approve creates',
      service: 'mock-calendar',
      tool: 'create_event',
      ...s,
    });

  async function pending(s: ReqSpec = {}): Promise<string> {
    const o = await store.decide(needsApproval(s), r);
    if (o.outcome !== 'pending') throw new Error(`expected pending, got ${JSON.stringify(o)}`);
    return o.approvalId;
  }

  it('§5.2: read passes, create waits for a human, approval lets exactly one identical call through', async () => {
    const user = uniq('jarvis');
    expect((await store.decide(request({ user, service: 'mock-calendar', tool: 'list_events' }), r)).outcome).toBe(
      'allow',
    );

    const args = { title: 'Approval Test Meeting', when: '2026-01-01T10:00:00Z' };
    const first = await store.decide(needsApproval({ user, args }), r);
    expect(first).toMatchObject({ outcome: 'pending', rule: 'Approve creates' });
    if (first.outcome !== 'pending') return;
    expect(first.approvalId).toMatch(APPROVAL_ID_PATTERN);

    // Retries while pending share the id; other arguments are another approval.
    expect(await pending({ user, args })).toBe(first.approvalId);
    expect(await pending({ user, args: { ...args, title: 'other' } })).not.toBe(first.approvalId);

    const list = await store.listApprovals({ status: 'pending', userId: user });
    const rec = list.items.find((a) => a.id === first.approvalId);
    expect(rec).toMatchObject({
      status: 'pending',
      userId: user,
      service: 'mock-calendar',
      tool: 'create_event',
      rule: 'Approve creates',
    });
    expect(rec?.digest).toMatch(/^[0-9a-f]{64}$/);

    const approved = await store.approve(first.approvalId, admin, { reason: 'fine' });
    expect(approved).toMatchObject({ status: 'approved', decidedBy: 'owner', override: false });

    // Key order in the arguments does not matter (JCS digest).
    const allowed = await store.decide(needsApproval({ user, args: { when: args.when, title: args.title } }), r);
    expect(allowed.outcome).toBe('allow');
    expect(allowed.reasons[0]).toContain(first.approvalId);
    expect((await store.getApproval(first.approvalId)).consumedAt).not.toBeNull();

    // Consumed: the next identical call starts a new approval.
    const again = await pending({ user, args });
    expect(again).not.toBe(first.approvalId);
  });

  it('§5.2: a deny keeps its reason and blocks identical calls until the timeout', async () => {
    const user = uniq('jarvis');
    const id = await pending({ user, args: { t: 1 }, approval: { timeoutSeconds: 0.8 } });
    const denied = await store.deny(id, admin, 'Meeting not needed');
    expect(denied).toMatchObject({ status: 'denied', decisionReason: 'Meeting not needed', decidedBy: 'owner' });
    const blocked = await store.decide(needsApproval({ user, args: { t: 1 }, approval: { timeoutSeconds: 0.8 } }), r);
    expect(blocked.outcome).toBe('deny');
    expect(blocked.reasons[0]).toContain('Meeting not needed');
    expect(blocked.outcome === 'deny' && blocked.retryAfterSeconds).toBe(1);
    await expect(store.approve(id, admin)).rejects.toMatchObject({ code: 'not_pending' });
    await sleep(900);
    const fresh = await pending({ user, args: { t: 1 }, approval: { timeoutSeconds: 0.8 } });
    expect(fresh).not.toBe(id);
  });

  it('a pending approval expires after its timeout; then it cannot be approved and a retry asks again', async () => {
    const user = uniq('exp');
    const id = await pending({ user, approval: { timeoutSeconds: 0.4 } });
    await sleep(500);
    expect((await store.getApproval(id)).status).toBe('expired');
    await expect(store.approve(id, admin)).rejects.toMatchObject({ code: 'expired' });
    const next = await pending({ user, approval: { timeoutSeconds: 0.4 } });
    expect(next).not.toBe(id);
  });

  it('an approved call unused within consume_within expires', async () => {
    const user = uniq('consume');
    const spec = { user, approval: { consumeWithinSeconds: 0.4 } };
    const id = await pending(spec);
    await store.approve(id, admin);
    await sleep(500);
    expect((await store.getApproval(id)).status).toBe('expired');
    const next = await pending(spec);
    expect(next).not.toBe(id);
  });

  it('deciders: admin, or a listed approver; an admin not listed needs override (audited); an agent never', async () => {
    const user = uniq('dec');
    const spec = { user, approval: { approvers: ['alice-approver'] } };
    const id = await pending(spec);
    await expect(store.approve(id, { id: 'eve', role: 'approver' })).rejects.toMatchObject({ code: 'forbidden' });
    await expect(store.approve(id, { id: 'agent-x', role: 'agent' })).rejects.toMatchObject({ code: 'forbidden' });
    await expect(store.approve(id, admin)).rejects.toThrow(/override/);
    const ok = await store.approve(id, admin, { override: true });
    expect(ok).toMatchObject({ status: 'approved', override: true });
    const audit = await store.db.query(
      `SELECT outcome, detail FROM audit_log WHERE approval_id = $1 AND method = 'approval/approve' ORDER BY id`,
      [id],
    );
    expect(audit.rows.map((x) => x['outcome'])).toEqual(['deny', 'deny', 'allow']);
    expect(audit.rows[2]?.['detail']).toMatchObject({ override: true, requester: user });

    // A listed approver decides without override; an approver with an empty list cannot.
    const id2 = await pending({ ...spec, args: { n: 2 } });
    expect(await store.deny(id2, { id: 'alice-approver', role: 'approver' }, 'no')).toMatchObject({ status: 'denied' });
    const id3 = await pending({ user, args: { n: 3 } });
    await expect(store.approve(id3, { id: 'alice-approver', role: 'approver' })).rejects.toMatchObject({
      code: 'forbidden',
    });
    expect(await store.approve(id3, admin)).toMatchObject({ status: 'approved', override: false });
  });

  it('a pending approval keeps the labels of the call that asked, whichever layer asked', async () => {
    const user = uniq('labels');
    const labels = ['scope:external', 'data:pii'];
    const byRule = await pending({ user, labels, args: { to: 'someone@elsewhere.org' } });
    expect((await store.getApproval(byRule)).labels).toEqual(labels);
    // Stored with the row, not looked up again: a retry while pending neither adds nor replaces.
    expect(await pending({ user, labels: ['scope:internal'], args: { to: 'someone@elsewhere.org' } })).toBe(byRule);
    const listed = (await store.listApprovals({ status: 'pending', userId: user })).items;
    expect(listed.find((a) => a.id === byRule)?.labels).toEqual(labels);

    // Layer 1 allowed; a Layer 2 limit that asks for a human creates the approval.
    const limited = await store.decide(
      request({ user, outcome: 'allow', limits: ['always ask'], labels: ['scope:internal'], args: { n: 1 } }),
      rules({
        limits: {
          'always ask': { name: 'always ask', max: 0, perSeconds: 60, scope: 'user', action: 'require_approval' },
        },
      }),
    );
    expect(limited).toMatchObject({ outcome: 'pending', rule: 'always ask' });
    if (limited.outcome !== 'pending') return;
    expect((await store.getApproval(limited.approvalId)).labels).toEqual(['scope:internal']);

    const unlabelled = await pending({ user, args: { n: 2 } });
    expect((await store.getApproval(unlabelled)).labels).toEqual([]);
    const row = await store.db.query(`SELECT labels FROM approvals WHERE id = $1`, [byRule]);
    expect(row.rows[0]?.['labels']).toEqual(labels);
  });

  it('looks approvals up by a unique prefix of 4+ characters', async () => {
    const user = uniq('prefix');
    const id = await pending({ user });
    const bare = id.slice(3);
    expect((await store.getApproval(bare.slice(0, 10).toLowerCase())).id).toBe(id);
    // Crafted ids sharing a prefix, to see ambiguity refused.
    await store.db.query(
      `INSERT INTO approvals (id, user_id, method, service, tool, digest, rule, status, timeout_s, consume_within_s,
                              created_at, expires_at, request_decision_id)
       SELECT x, $1, 'tools/call', 'svc', 'tool', md5(x), 'r', 'denied', 60, 60, clock_timestamp(), clock_timestamp(), 'd-' || x
         FROM unnest(ARRAY['ap-ZZZZ000001', 'ap-ZZZZ000002']) AS x`,
      [user],
    );
    await expect(store.getApproval('ZZZZ')).rejects.toMatchObject({ code: 'ambiguous' });
    // A row written without labels (as by mcpgw_decide before 0070) reads as unlabelled.
    expect(await store.getApproval('ap-zzzz000001')).toMatchObject({ id: 'ap-ZZZZ000001', labels: [] });
    // Crockford look-alikes: O → 0, L → 1.
    expect((await store.getApproval('zzzzOOOOOl')).id).toBe('ap-ZZZZ000001');
    await expect(store.getApproval('ZZZ')).rejects.toMatchObject({ code: 'invalid_id' });
    await expect(store.getApproval('ap-!!!!')).rejects.toBeInstanceOf(ApprovalError);
    await expect(store.getApproval('YYYY')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('lists with filters and a stable cursor', async () => {
    const user = uniq('list');
    const ids = new Set<string>();
    for (let i = 0; i < 7; i++) ids.add(await pending({ user, args: { i } }));
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await store.listApprovals({ userId: user, limit: 3 }, cursor);
      seen.push(...page.items.map((a) => a.id));
      cursor = page.nextCursor;
    } while (cursor !== null);
    expect(seen.length).toBe(7);
    expect(new Set(seen)).toEqual(ids);
    expect((await store.listApprovals({ userId: user, status: ['approved', 'denied'] })).items).toEqual([]);
  });

  it('at most N pending approvals per user (default 20)', async () => {
    const user = uniq('quota');
    for (let i = 0; i < 20; i++) await pending({ user, args: { i } });
    const over = await store.decide(needsApproval({ user, args: { i: 20 } }), r);
    expect(over.outcome).toBe('deny');
    expect(over.reasons[0]).toContain('20 approvals');
    // A retry of one already pending still gets its id.
    expect((await store.decide(needsApproval({ user, args: { i: 3 } }), r)).outcome).toBe('pending');
  });

  it('waitForDecision returns as soon as a human decides', async () => {
    const user = uniq('wait');
    const id = await pending({ user });
    const t0 = Date.now();
    const waiting = store.waitForDecision(id, 5000);
    setTimeout(() => void store.approve(id, admin), 200);
    expect((await waiting).status).toBe('approved');
    expect(Date.now() - t0).toBeLessThan(2000);
    const id2 = await pending({ user, args: { x: 1 } });
    expect((await store.waitForDecision(id2, 150)).status).toBe('pending');
  });
});
