/**
 * `GET/POST /policy`: a valid file is stored as a revision and swapped in; a dry run only diffs; a
 * broken file is a 422 with located diagnostics and leaves the running revision in force.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  policyApplyResponseSchema,
  policyDiagnosticSchema,
  policyInfoResponseSchema,
} from '../../src/admin/contract.js';
import { ADMIN, expectError, expectOk, openHarness, POLICY, type Harness } from './helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await openHarness();
});
afterAll(async () => {
  await h.close();
});

const edited = POLICY.replace('max: 5, per: 1h', 'max: 7, per: 1h')
  .replace(
    '  - {name: default deny',
    '  - {name: lists are fine, when: {verb: list}, action: allow, priority: 60}\n  - {name: default deny',
  )
  .replace(/duties:\n.*\n/, '')
  .replace('command: gmail-mcp}', 'command: gmail-mcp-v2}');

async function revisionCount(): Promise<number> {
  const r = await h.store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM policy_revisions');
  return Number(r.rows[0]?.n);
}

describe('policy', () => {
  it('GET /policy names the revision and file in force', async () => {
    const info = expectOk(await h.call('GET', '/policy'), policyInfoResponseSchema);
    expect(info).toMatchObject({
      revision: h.holder.active.engine.revision,
      file: 'mcp-security.yaml',
      storedAs: null,
      appliedBy: null,
    });
  });

  it('a dry run returns the diff and changes nothing', async () => {
    const before = h.holder.active;
    const revs = await revisionCount();
    const res = expectOk(
      await h.call('POST', '/policy', { body: { filename: 'next.yaml', content: edited, dryRun: true } }),
      policyApplyResponseSchema,
    );
    expect(res).toMatchObject({
      applied: false,
      dryRun: true,
      storedAs: null,
      previousRevision: before.engine.revision,
    });
    expect(res.revision).not.toBe(before.engine.revision);
    expect(res.diff.changes).toEqual(
      expect.arrayContaining([
        { kind: 'limit', name: 'page reads', change: 'changed', fields: ['max'] },
        { kind: 'rule', name: 'lists are fine', change: 'added', fields: [] },
        { kind: 'duty', name: 'four eyes', change: 'removed', fields: [] },
        // How a backend is run is not part of the compiled revision, but it is a change.
        { kind: 'service', name: 'gmail', change: 'changed', fields: ['command'] },
      ]),
    );
    expect(res.diff.changes).toHaveLength(4);
    expect(res.diff.summary).toContain('rules: 1 added');
    expect(res.diff.summary).toContain('limits: 1 changed');
    expect(res.diff.summary).toContain('duties: 1 removed');
    expect(h.holder.active).toBe(before);
    expect(await revisionCount()).toBe(revs);
  });

  it('a broken file is refused with file/line/field diagnostics, and the old revision stays', async () => {
    const before = h.holder.active;
    const broken = POLICY.replace('max: 5, per: 1h', 'max: 5, per: 1 hour');
    const err = expectError(
      await h.call('POST', '/policy', { body: { filename: 'broken.yaml', content: broken } }),
      422,
      'invalid_policy',
    );
    expect(err.message).toContain('the running policy is unchanged');
    const details = policyDiagnosticSchema.array().parse(err.details);
    const line = broken.split('\n').findIndex((l) => l.includes('1 hour')) + 1;
    expect(details).toContainEqual(expect.objectContaining({ file: 'broken.yaml', line, path: 'limits[0].per' }));
    expect(details[0]?.column).toBeGreaterThan(0);
    expect(h.holder.active).toBe(before);
    expect(await revisionCount()).toBe(0);

    // YAML syntax errors and duplicate keys are located too.
    const dup = expectError(
      await h.call('POST', '/policy', { body: { filename: 'dup.yaml', content: 'version: "1.0"\nversion: "1.0"\n' } }),
      422,
      'invalid_policy',
    );
    expect(policyDiagnosticSchema.array().parse(dup.details)[0]).toMatchObject({ file: 'dup.yaml', line: 2 });
    expect(h.holder.active).toBe(before);
  });

  it('rejects a malformed request body before looking at the policy', async () => {
    expectError(await h.call('POST', '/policy', { body: { content: POLICY } }), 400, 'bad_request');
    expectError(
      await h.call('POST', '/policy', { body: { filename: 'x.yaml', content: POLICY, extra: 1 } }),
      400,
      'bad_request',
    );
    expectError(await h.call('POST', '/policy', { body: undefined }), 400, 'bad_request');
  });

  it('applies: stores a revision, swaps, audits', async () => {
    const before = h.holder.active.engine.revision;
    const res = expectOk(
      await h.call('POST', '/policy', { body: { filename: 'next.yaml', content: edited } }),
      policyApplyResponseSchema,
    );
    expect(res).toMatchObject({ applied: true, dryRun: false, previousRevision: before });
    expect(h.holder.active.engine.revision).toBe(res.revision);
    expect(res.storedAs).toBe(res.revision);
    const stored = await h.store.getPolicyRevision(res.revision);
    expect(stored).toMatchObject({ source: edited, createdBy: 'owner' });
    expect(stored?.compiled).toMatchObject({ revision: res.revision, file: 'next.yaml' });

    const info = expectOk(await h.call('GET', '/policy'), policyInfoResponseSchema);
    expect(info).toMatchObject({
      revision: res.revision,
      file: 'next.yaml',
      storedAs: res.revision,
      appliedBy: 'owner',
    });
    expect(info.appliedAt).not.toBeNull();

    const audit = await h.store.db.query(`SELECT user_id, detail FROM audit_log WHERE method = 'admin/policy.apply'`);
    expect(audit.rows).toHaveLength(1);
    expect(audit.rows[0]).toMatchObject({
      user_id: 'owner',
      detail: { revision: res.revision, previousRevision: before },
    });

    const back = expectOk(
      await h.call('POST', '/policy', { body: { filename: 'mcp-security.yaml', content: POLICY, dryRun: true } }),
      policyApplyResponseSchema,
    );
    expect(back.diff.changes).toContainEqual({
      kind: 'service',
      name: 'gmail',
      change: 'changed',
      fields: ['command'],
    });
  });

  it('re-applying a stored revision (a rollback) stores a new row so replicas hear of it', async () => {
    const first = h.holder.active.engine.revision;
    const orig = expectOk(
      await h.call('POST', '/policy', { body: { filename: 'mcp-security.yaml', content: POLICY } }),
      policyApplyResponseSchema,
    );
    const again = expectOk(
      await h.call('POST', '/policy', { body: { filename: 'next.yaml', content: edited } }),
      policyApplyResponseSchema,
    );
    expect(again.revision).toBe(first);
    expect(again.storedAs).toBe(`${first}.2`);
    expect(orig.storedAs).toBe(orig.revision);
    const same = expectOk(
      await h.call('POST', '/policy', { body: { filename: 'next.yaml', content: edited, dryRun: true } }),
      policyApplyResponseSchema,
    );
    expect(same.diff).toMatchObject({ unchanged: true, summary: 'no changes', changes: [] });
  });

  it('concurrent applies are serialized: the last one wins and both are stored', async () => {
    const a = POLICY.replace('max: 5,', 'max: 11,');
    const b = POLICY.replace('max: 5,', 'max: 12,');
    const [ra, rb] = await Promise.all([
      h.call('POST', '/policy', { body: { filename: 'a.yaml', content: a } }),
      h.call('POST', '/policy', { body: { filename: 'b.yaml', content: b } }),
    ]);
    const pa = expectOk(ra, policyApplyResponseSchema);
    const pb = expectOk(rb, policyApplyResponseSchema);
    expect(pb.previousRevision).toBe(pa.revision);
    expect(h.holder.active.engine.revision).toBe(pb.revision);
    expect(h.holder.active.compiled.layer2.limits['page reads']?.max).toBe(12);
  });

  it('approvers cannot read or change the policy', async () => {
    expectError(await h.call('GET', '/policy', { as: { id: 'alice', role: 'approver' } }), 403, 'forbidden');
    expectError(
      await h.call('POST', '/policy', {
        body: { filename: 'x', content: POLICY },
        as: { id: 'alice', role: 'approver' },
      }),
      403,
      'forbidden',
    );
    expect(ADMIN.role).toBe('admin');
  });
});
