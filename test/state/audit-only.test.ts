/**
 * Decisions that only write an audit row (Layer 1 allowed, no Layer 2 rule applies) go to
 * mcpgw_audit_allow instead of mcpgw_decide (0080_audit_allow.sql). Both functions must write the
 * same row and give the same answer for every such input, on PGlite and PostgreSQL; every other
 * decision must still go through mcpgw_decide.
 */
import { beforeAll, expect, it } from 'vitest';
import type { Layer2Request } from '../../src/policy/layer2-types.js';
import { buildDecideInput, isAuditOnly, type DecideConfig } from '../../src/state/decide.js';
import type { Layer2Store } from '../../src/state/store.js';
import { AUDIT_ONLY, describeStores, request, rules, type ReqSpec } from './harness.js';

const cfg: DecideConfig = {
  approvalDefaults: { approvers: [], timeoutSeconds: 1800, consumeWithinSeconds: 900 },
  maxPendingPerUser: 10,
};

const COLUMNS = `user_id, session_id, method, service, tool, outcome, rule, reasons, policy_revision, digest,
  approval_id, detail, seq, hash`;

describeStores('audit-only decisions', (env) => {
  let store: Layer2Store;
  beforeAll(async () => {
    store = await env.open({ sealer: false });
  });

  async function viaFunction(fn: 'mcpgw_decide' | 'mcpgw_audit_allow', req: Layer2Request) {
    const input = buildDecideInput(req, rules(), cfg);
    const r = await store.db.query<{ r: unknown }>(`SELECT ${fn}($1::jsonb) AS r`, [JSON.stringify(input)]);
    const row = await store.db.query(`SELECT ${COLUMNS} FROM audit_log WHERE decision_id = $1`, [req.decisionId]);
    return { answer: r.rows[0]?.r, rows: row.rows };
  }

  it('mcpgw_audit_allow writes the row mcpgw_decide writes and answers the same', async () => {
    for (const spec of AUDIT_ONLY) {
      const a = request(spec);
      const b = { ...a, decisionId: `${a.decisionId}-b` };
      expect(isAuditOnly(buildDecideInput(a, rules(), cfg)), JSON.stringify(spec)).toBe(true);
      const full = await viaFunction('mcpgw_decide', a);
      const fast = await viaFunction('mcpgw_audit_allow', b);
      expect(full.rows).toHaveLength(1);
      expect(fast, JSON.stringify(spec)).toEqual(full);
      expect(full.answer).toMatchObject({ outcome: 'allow' });
    }
  });

  it('the store sends a rule-free allow through it, and its row is audited like any other', async () => {
    const req = request({ reasons: ['matched reads'] });
    expect(await store.decide(req, rules())).toEqual({
      outcome: 'allow',
      rule: 'allow rule',
      reasons: ['matched reads'],
    });
    const row = await store.db.query(`SELECT outcome, rule, reasons FROM audit_log WHERE decision_id = $1`, [
      req.decisionId,
    ]);
    expect(row.rows).toEqual([{ outcome: 'allow', rule: 'allow rule', reasons: ['matched reads'] }]);
  });

  it('anything Layer 2 could change still goes to mcpgw_decide', async () => {
    const cases: ReqSpec[] = [
      { outcome: 'deny' },
      { outcome: 'require_approval' },
      { limits: ['per minute'] },
      { budgets: ['daily'] },
      { preconditions: ['business hours'] },
      { sources: ['private data'] },
      { sinks: ['private data'] },
      { first: ['four eyes'], args: { id: 7 } },
      { then: ['four eyes'], args: { id: 7 } },
    ];
    const set = rules({
      limits: { 'per minute': { name: 'per minute', max: 1, perSeconds: 60, scope: 'user', action: 'deny' } },
      budgets: { daily: { name: 'daily', max: 1, scope: 'user' } },
      preconditions: { 'business hours': { name: 'business hours', require: { open: 'yes' } } },
      flows: { 'private data': { name: 'private data', scope: 'user', ttlSeconds: 60, action: 'deny' } },
      duties: { 'four eyes': { name: 'four eyes', kind: 'four_eyes', entity: ['id'] } },
    });
    for (const spec of cases) {
      expect(isAuditOnly(buildDecideInput(request(spec), set, cfg)), JSON.stringify(spec)).toBe(false);
    }
    // A rule the revision does not define becomes a rule error: not audit-only either.
    expect(isAuditOnly(buildDecideInput(request({ limits: ['unknown'] }), rules(), cfg))).toBe(false);
    // And the store enforces such a rule: the second call within the minute is refused.
    const limited = rules({
      limits: { 'per minute': { name: 'per minute', max: 1, perSeconds: 60, scope: 'user', action: 'deny' } },
    });
    const user = `limited-${Date.now()}`;
    expect((await store.decide(request({ user, limits: ['per minute'] }), limited)).outcome).toBe('allow');
    expect((await store.decide(request({ user, limits: ['per minute'] }), limited)).outcome).toBe('deny');
  });
});
