/**
 * followPolicyRevisions on PGlite (one process: its NOTIFY reaches only itself). The process's own
 * admin apply must not swap a second time; a row stored by "another replica" is adopted; a row
 * that does not compile keeps the running policy and is logged with its id. The same code against
 * PostgreSQL with separate processes is covered by test/cli/serve-gateway.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordPolicyRevision } from '../../src/admin/policy.js';
import { followPolicyRevisions } from '../../src/authz/policy-follower.js';
import { createLogger } from '../../src/log.js';
import { compilePolicyText } from '../../src/policy/compile.js';
import { waitFor } from '../gateway/helpers.js';
import { expectOk, openHarness, POLICY, type Harness } from '../admin/helpers.js';
import { policyApplyResponseSchema } from '../../src/admin/contract.js';

let h: Harness;
let stop: () => Promise<void>;
const lines: { level: number; msg: string; revisionId?: string }[] = [];

beforeAll(async () => {
  h = await openHarness();
  const logger = createLogger({
    level: 'info',
    destination: { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) },
  });
  stop = await followPolicyRevisions({ store: h.store, holder: h.holder, logger });
});
afterAll(async () => {
  await stop();
  await h.close();
});

/** Inserts a row that does not compile and waits until the follower has logged it. */
async function barrier(id: string): Promise<void> {
  await h.store.putPolicyRevision({
    id,
    source: 'version: "1.0"\npolicies: [{name: x, action: explode}]\n',
    compiled: { revision: `sha256:${id}`, file: 'broken.yaml' },
  });
  await waitFor(
    () => lines.filter((l) => l.revisionId === id),
    (ls) => ls.length > 0,
  );
}

describe('followPolicyRevisions', () => {
  it('the NOTIFY of this process’s own admin apply swaps nothing', async () => {
    const content = POLICY.replace('max: 5, per: 1h', 'max: 6, per: 1h');
    const res = expectOk(
      await h.call('POST', '/policy', { body: { filename: 'own.yaml', content } }),
      policyApplyResponseSchema,
    );
    const active = h.holder.active;
    expect(active.engine.revision).toBe(res.revision);
    // Notifications are handled in order: once the barrier's is logged, the apply's was handled.
    await barrier('barrier-1');
    expect(h.holder.active).toBe(active);
    expect(lines.some((l) => l.msg.includes('adopted'))).toBe(false);
  });

  it('adopts a revision another replica stored', async () => {
    const content = POLICY.replace('max: 5, per: 1h', 'max: 9, per: 1h');
    const compiled = compilePolicyText(content, 'elsewhere.yaml');
    if (!compiled.ok) throw new Error('fixture does not compile');
    const id = await recordPolicyRevision(h.store, {
      source: content,
      file: 'elsewhere.yaml',
      compiled: compiled.compiled,
      createdBy: 'root2',
    });
    const active = await waitFor(
      () => h.holder.active,
      (a) => a.engine.revision === compiled.compiled.data.revision,
    );
    expect(active).toMatchObject({ source: 'elsewhere.yaml', text: content });
    expect(lines).toContainEqual(expect.objectContaining({ revisionId: id, msg: expect.stringContaining('adopted') }));
  });

  it('a revision that does not compile keeps the running policy and logs its id', async () => {
    const before = h.holder.active;
    await barrier('broken-2');
    expect(h.holder.active).toBe(before);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 50,
        revisionId: 'broken-2',
        msg: 'policy revision failed to load; the running policy stays in force',
      }),
    );
  });
});
