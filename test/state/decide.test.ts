/**
 * Layer 2 semantics (DESIGN §7) on both stores: the reference scenarios of upstream §5.1 (CP budget,
 * PP precondition, FP flow, IP duties, RL rate limit) in our declarative form, precedence, and
 * what a deny or a pending result may and may not change.
 */
import { beforeAll, expect, it } from 'vitest';
import type { Layer2Store } from '../../src/state/store.js';
import { admin, describeStores, request, rules, sleep, uniq } from './harness.js';

async function auditRow(store: Layer2Store, decisionId: string): Promise<Record<string, unknown> | undefined> {
  const r = await store.db.query('SELECT * FROM audit_log WHERE decision_id = $1', [decisionId]);
  return r.rows[0];
}

describeStores('layer 2 decisions', (env) => {
  let store: Layer2Store;
  beforeAll(async () => {
    store = await env.open();
  });

  it('CP: a budget allows max calls per user, then denies; counters are per user; an admin reset restores', async () => {
    const b = uniq('transfers');
    const r = rules({ budgets: { [b]: { name: b, max: 3, scope: 'user' } } });
    const call = (user: string) =>
      store.decide(request({ user, service: 'banking', tool: 'transfer', budgets: [b] }), r);
    for (let i = 0; i < 3; i++) expect((await call('alice')).outcome).toBe('allow');
    const fourth = await call('alice');
    expect(fourth).toMatchObject({ outcome: 'deny', rule: b });
    expect(fourth.reasons[0]).toContain('used up (3 of 3)');
    expect((await call('bob')).outcome).toBe('allow');
    expect(await store.resetBudget(b, { userId: 'alice' }, admin)).toBe(1);
    expect((await call('alice')).outcome).toBe('allow');
    const counters = await store.listBudgets(b);
    expect(counters.map((c) => [c.scopeKey, c.used])).toEqual([
      ['u:alice', 1],
      ['u:bob', 1],
    ]);
    await expect(store.resetBudget(b, 'all', { id: 'approver1', role: 'approver' })).rejects.toThrow(/only an admin/);
  });

  it('CP: a budget of 0 blocks the tool; global scope counts everyone together', async () => {
    const zero = uniq('blocked');
    const glob = uniq('global');
    const r = rules({
      budgets: { [zero]: { name: zero, max: 0, scope: 'user' }, [glob]: { name: glob, max: 2, scope: 'global' } },
    });
    expect((await store.decide(request({ budgets: [zero] }), r)).outcome).toBe('deny');
    expect((await store.decide(request({ user: 'u1', budgets: [glob] }), r)).outcome).toBe('allow');
    expect((await store.decide(request({ user: 'u2', budgets: [glob] }), r)).outcome).toBe('allow');
    expect((await store.decide(request({ user: 'u3', budgets: [glob] }), r)).outcome).toBe('deny');
  });

  it('PP: a precondition needs its flag with the required value; a missing flag denies', async () => {
    const flag = uniq('market_status');
    const p = uniq('market open');
    const r = rules({ preconditions: { [p]: { name: p, require: { [flag]: 'open' } } } });
    const trade = () => store.decide(request({ service: 'trading', tool: 'execute_trade', preconditions: [p] }), r);
    const missing = await trade();
    expect(missing.outcome).toBe('deny');
    expect(missing.reasons[0]).toContain('is not set');
    await store.setFlag(flag, 'open', admin);
    expect((await trade()).outcome).toBe('allow');
    await store.setFlag(flag, 'closed', admin);
    const closed = await trade();
    expect(closed).toMatchObject({ outcome: 'deny', rule: p });
    expect(closed.reasons[0]).toContain('"closed", needs "open"');
    expect(await store.unsetFlag(flag, admin)).toBe(true);
    expect((await trade()).outcome).toBe('deny');
    // PP-5: a call no precondition selects is not affected.
    expect((await store.decide(request({ service: 'trading', tool: 'get_portfolio' }), r)).outcome).toBe('allow');
    expect((await store.listFlags()).some((f) => f.name === flag)).toBe(false);
    await expect(store.setFlag(flag, 'open', { id: 'agent1', role: 'agent' })).rejects.toThrow(/only an admin/);
  });

  it('FP: a source call taints its session; the sink is denied there only', async () => {
    const f = uniq('no exfiltration');
    const r = rules({ flows: { [f]: { name: f, scope: 'session', ttlSeconds: null, action: 'deny' } } });
    const send = (session: string) =>
      store.decide(request({ session, service: 'email', tool: 'send_email', sinks: [f] }), r);
    const read = (session: string) =>
      store.decide(request({ session, service: 'crm', tool: 'get_customer', sources: [f] }), r);
    expect((await send('A')).outcome).toBe('allow');
    expect((await read('B')).outcome).toBe('allow');
    const denied = await send('B');
    expect(denied).toMatchObject({ outcome: 'deny', rule: f });
    expect(denied.outcome === 'deny' && denied.retryAfterSeconds).toBeUndefined();
    expect((await send('C')).outcome).toBe('allow');
    expect(await store.clearTaint({ sessionId: 'B' }, admin)).toBe(1);
    expect((await send('B')).outcome).toBe('allow');
  });

  it('FP: user-scoped taint follows the user across sessions, expires with its TTL, and can ask for approval', async () => {
    const f = uniq('private to external');
    const g = uniq('ask first');
    const user = uniq('fp-user');
    const r = rules({
      flows: {
        [f]: { name: f, scope: 'user', ttlSeconds: 0.6, action: 'deny' },
        [g]: { name: g, scope: 'user', ttlSeconds: null, action: 'require_approval' },
      },
    });
    expect((await store.decide(request({ user, session: 's1', sources: [f, g] }), r)).outcome).toBe('allow');
    const d = await store.decide(request({ user, session: 's2', sinks: [f] }), r);
    expect(d.outcome).toBe('deny');
    expect(d.outcome === 'deny' && d.retryAfterSeconds).toBe(1);
    const pend = await store.decide(request({ user, session: 's2', sinks: [g], args: { to: 'x' } }), r);
    expect(pend).toMatchObject({ outcome: 'pending', rule: g });
    expect((await store.listTaint({ userId: user })).map((m) => m.flow).sort()).toEqual([f, g].sort());
    await sleep(700);
    expect((await store.decide(request({ user, session: 's2', sinks: [f] }), r)).outcome).toBe('allow');
    expect(await store.clearTaint({ userId: user }, admin)).toBe(2);
    expect((await store.decide(request({ user, session: 's2', sinks: [g], args: { to: 'y' } }), r)).outcome).toBe(
      'allow',
    );
  });

  it('FP: a call that is both source and sink is judged on the state before it', async () => {
    const f = uniq('both');
    const user = uniq('both-user');
    const r = rules({ flows: { [f]: { name: f, scope: 'user', ttlSeconds: null, action: 'deny' } } });
    expect((await store.decide(request({ user, sources: [f], sinks: [f] }), r)).outcome).toBe('allow');
    expect((await store.decide(request({ user, sources: [f], sinks: [f] }), r)).outcome).toBe('deny');
  });

  it('IP: separation of duties, four eyes and exclusive actor, by the named argument fields', async () => {
    const sod = uniq('sod');
    const four = uniq('four');
    const excl = uniq('excl');
    const r = rules({
      duties: {
        [sod]: { name: sod, kind: 'separation_of_duties', entity: ['payment_id'] },
        [four]: { name: four, kind: 'four_eyes', entity: ['transfer_id'] },
        [excl]: { name: excl, kind: 'exclusive_actor', entity: ['space', 'page'] },
      },
    });
    const d = (user: string, phase: 'first' | 'then', duty: string, args: Record<string, unknown>) =>
      store.decide(request({ user, args, [phase]: [duty] }), r);

    // IP-2..4: the entity is the named field only; other arguments do not matter.
    expect((await d('alice', 'first', sod, { payment_id: 'e1', amount: 5 })).outcome).toBe('allow');
    expect((await d('alice', 'then', sod, { payment_id: 'e1', note: 'other args' })).outcome).toBe('deny');
    expect((await d('bob', 'then', sod, { payment_id: 'e1' })).outcome).toBe('allow');
    expect((await d('alice', 'then', sod, { payment_id: 'e9' })).outcome).toBe('allow');

    // IP-5..7
    expect((await d('alice', 'first', four, { transfer_id: 'e2' })).outcome).toBe('allow');
    const alone = await d('alice', 'then', four, { transfer_id: 'e2' });
    expect(alone).toMatchObject({ outcome: 'deny', rule: four });
    expect((await d('bob', 'first', four, { transfer_id: 'e2' })).outcome).toBe('allow');
    expect((await d('alice', 'then', four, { transfer_id: 'e2' })).outcome).toBe('allow');

    // IP-8..10, with a two-field entity.
    expect((await d('alice', 'first', excl, { space: 'docs', page: 'p1' })).outcome).toBe('allow');
    expect((await d('alice', 'then', excl, { space: 'docs', page: 'p1' })).outcome).toBe('allow');
    expect((await d('bob', 'then', excl, { space: 'docs', page: 'p1' })).outcome).toBe('deny');
    expect((await d('bob', 'then', excl, { space: 'docs', page: 'p2' })).outcome).toBe('allow');

    // A second step without the entity fields cannot be checked: denied.
    const missing = await d('bob', 'then', sod, { other: 1 });
    expect(missing.outcome).toBe('deny');
    expect(missing.reasons[0]).toContain('payment_id');

    // History holds hashes, never argument values.
    const h = await store.db.query('SELECT entity FROM duty_history WHERE duty = $1', [sod]);
    for (const row of h.rows) expect(String(row['entity'])).toMatch(/^[0-9a-f]{64}$/);
  });

  it('RL: a sliding window allows max calls per window and per user; reset and expiry restore', async () => {
    const l = uniq('search');
    const short = uniq('burst');
    const r = rules({
      limits: {
        [l]: { name: l, max: 5, perSeconds: 3600, scope: 'user', action: 'deny' },
        [short]: { name: short, max: 2, perSeconds: 0.5, scope: 'session', action: 'deny' },
      },
    });
    const search = (user: string) =>
      store.decide(request({ user, service: 'search', tool: 'web_search', limits: [l] }), r);
    for (let i = 0; i < 5; i++) expect((await search('alice')).outcome).toBe('allow');
    const sixth = await search('alice');
    expect(sixth).toMatchObject({ outcome: 'deny', rule: l });
    expect(sixth.outcome === 'deny' && sixth.retryAfterSeconds).toBeGreaterThan(3500);
    expect((await search('bob')).outcome).toBe('allow');
    expect(await store.resetLimit(l, { userId: 'alice' }, admin)).toBe(1);
    expect((await search('alice')).outcome).toBe('allow');
    // RL-6: a call no limit selects is not counted.
    expect((await store.decide(request({ service: 'other' }), r)).outcome).toBe('allow');

    const burst = () => store.decide(request({ session: 'burst-s', limits: [short] }), r);
    expect((await burst()).outcome).toBe('allow');
    expect((await burst()).outcome).toBe('allow');
    expect((await burst()).outcome).toBe('deny');
    await sleep(550);
    expect((await burst()).outcome).toBe('allow');
    // Only the last `max` times are kept per key.
    const v = await store.db.query('SELECT cardinality(stamps) AS n FROM velocity WHERE rule = $1', [short]);
    expect(Number(v.rows[0]?.['n'])).toBe(2);
  });

  it('RL: a limit can ask for approval instead of denying', async () => {
    const l = uniq('ask-after-1');
    const user = uniq('rl-user');
    const r = rules({
      limits: { [l]: { name: l, max: 1, perSeconds: 3600, scope: 'user', action: 'require_approval' } },
    });
    expect((await store.decide(request({ user, limits: [l] }), r)).outcome).toBe('allow');
    const p = await store.decide(request({ user, limits: [l] }), r);
    expect(p.outcome).toBe('pending');
    if (p.outcome !== 'pending') return;
    await store.approve(p.approvalId, admin);
    expect((await store.decide(request({ user, limits: [l] }), r)).outcome).toBe('allow');
    expect((await store.decide(request({ user, limits: [l] }), r)).outcome).toBe('pending');
  });

  it('deny > require_approval > allow, and a deny or pending result changes no counter', async () => {
    const b = uniq('b');
    const spent = uniq('spent');
    const l = uniq('l');
    const user = uniq('prec');
    const r = rules({
      budgets: { [b]: { name: b, max: 10, scope: 'user' }, [spent]: { name: spent, max: 0, scope: 'user' } },
      limits: { [l]: { name: l, max: 10, perSeconds: 3600, scope: 'user', action: 'deny' } },
    });
    // Layer 1 wants approval, Layer 2 denies: deny, and no approval row is created.
    const d = await store.decide(request({ user, outcome: 'require_approval', budgets: [b, spent], limits: [l] }), r);
    expect(d).toMatchObject({ outcome: 'deny', rule: spent });
    const ap = await store.db.query('SELECT count(*) AS n FROM approvals WHERE user_id = $1', [user]);
    expect(Number(ap.rows[0]?.['n'])).toBe(0);
    // Pending: only the approval row.
    const p = await store.decide(request({ user, outcome: 'require_approval', budgets: [b], limits: [l] }), r);
    expect(p.outcome).toBe('pending');
    const used = await store.db.query('SELECT count(*) AS n FROM budgets WHERE rule = $1', [b]);
    expect(Number(used.rows[0]?.['n'])).toBe(0);
    const vel = await store.db.query('SELECT count(*) AS n FROM velocity WHERE rule = $1', [l]);
    expect(Number(vel.rows[0]?.['n'])).toBe(0);
    // Layer 1 deny wins over everything and is audited with its own rule.
    const l1deny = request({ user, outcome: 'deny', rule: 'default deny', budgets: [b] });
    expect(await store.decide(l1deny, r)).toMatchObject({ outcome: 'deny', rule: 'default deny' });
    expect(await auditRow(store, l1deny.decisionId)).toMatchObject({ outcome: 'deny', rule: 'default deny' });
  });

  it('fails closed on unknown rules, missing rule sets and session-scoped rules without a session', async () => {
    const known = uniq('known');
    const r = rules({ limits: { [known]: { name: known, max: 5, perSeconds: 60, scope: 'session', action: 'deny' } } });
    const unknown = await store.decide(request({ budgets: ['nope'] }), r);
    expect(unknown.outcome).toBe('deny');
    expect(unknown.reasons[0]).toContain('"nope" is not in the Layer 2 rules');
    const noSession = await store.decide(request({ session: null, limits: [known] }), r);
    expect(noSession.outcome).toBe('deny');
    expect(noSession.reasons[0]).toContain('no session');
    // Through setRules: the request's revision picks the rule set.
    const noRules = await store.decide(request({ revision: 'rev-unknown', limits: [known] }));
    expect(noRules.reasons[0]).toContain('no Layer 2 rules are loaded for policy revision rev-unknown');
    store.setRules('rev-known', r);
    expect((await store.decide(request({ revision: 'rev-known', limits: [known] }))).outcome).toBe('allow');
    // No Layer 2 rule named: no rule set needed.
    expect((await store.decide(request({ revision: 'rev-unknown' }))).outcome).toBe('allow');
  });

  it('writes one audit row per decision with the digest and never the argument values', async () => {
    const req = request({ args: { secret_value: 'hunter2-should-not-appear', n: 1 }, outcome: 'allow' });
    await store.decide(req, rules());
    const row = await auditRow(store, req.decisionId);
    expect(row).toMatchObject({
      user_id: 'alice',
      session_id: 'sess-1',
      method: 'tools/call',
      service: 'svc',
      tool: 'tool',
      outcome: 'allow',
      policy_revision: 'rev-1',
    });
    expect(String(row?.['digest'])).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(row)).not.toContain('hunter2');
  });
});
