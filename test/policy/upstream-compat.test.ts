/**
 * The 21 cases of upstream's `security-policy.test.ts` (reference §4, "Related acceptance
 * suites"), against our loader, profiles and merge. An upstream file must keep loading.
 */
import { describe, expect, test } from 'vitest';
import { compilePolicy } from '../../src/policy/compile.js';
import { mergePolicy, interpolateTenant } from '../../src/policy/merge.js';
import { loadProfile } from '../../src/policy/profiles.js';
import type { ProfileFile } from '../../src/policy/schema.js';
import { compileFixture, fixtureText, loadErrors, mustLoad, policyYaml } from './helpers.js';

function gmailProfile(): ProfileFile {
  const loaded = loadProfile('@openclaw/security-gmail');
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return loaded.profile;
}

const rule = { name: 'r', when: {}, action: 'allow', priority: 1 };

describe('upstream security-policy.test.ts', () => {
  test('1. a valid config loads', () => {
    const policy = mustLoad(fixtureText('upstream-example'));
    expect(policy.version).toBe('1.0');
    expect(policy.policies).toHaveLength(4);
  });

  test('2. a wrong version is rejected', () => {
    const [error] = loadErrors(policyYaml({ version: '2.0' }));
    expect(error).toMatchObject({ path: 'version', line: 1 });
  });

  test('3. a bad profile name is rejected', () => {
    const [error] = loadErrors(policyYaml({ profiles: ['gmail'] }));
    expect(error).toMatchObject({ path: 'profiles[0]', message: expect.stringContaining('@<org>/security-<service>') });
  });

  test('4. verb "execute" is rejected', () => {
    const [error] = loadErrors(policyYaml({ tool_overrides: { gmail: { send_email: { verb: 'execute' } } } }));
    expect(error?.path).toBe('tool_overrides.gmail.send_email.verb');
  });

  test('5. label "INVALID" is rejected', () => {
    const [error] = loadErrors(policyYaml({ policies: [{ ...rule, when: { labels: ['INVALID'] } }] }));
    expect(error?.path).toBe('policies[0].when.labels[0]');
  });

  test('6. valid labels are accepted', () => {
    const labels = ['scope:internal', 'scope:external', 'category:communication', 'data:bcc-used', 'env:prod'];
    expect(mustLoad(policyYaml({ policies: [{ ...rule, when: { labels } }] })).policies[0]?.when.labels).toEqual(
      labels,
    );
  });

  test('7. npl_evaluate without approvers is valid', () => {
    const policy = mustLoad(policyYaml({ policies: [{ ...rule, action: 'npl_evaluate' }] }));
    expect(policy.policies[0]?.action).toBe('npl_evaluate');
    expect(compilePolicy(policy).data.rules[0]).toMatchObject({ action: 'require_approval', approvers: [] });
  });

  test('8. priority 1000 is rejected', () => {
    expect(loadErrors(policyYaml({ policies: [{ ...rule, priority: 1000 }] }))[0]?.path).toBe('policies[0].priority');
  });

  test('9. action "block" is rejected', () => {
    expect(loadErrors(policyYaml({ policies: [{ ...rule, action: 'block' }] }))[0]?.path).toBe('policies[0].action');
  });

  const tenant = { company_domain: 'acme.com', region: 'eu' };

  test('10. interpolation in a string', () => {
    expect(interpolateTenant('@{company_domain}', tenant)).toBe('@acme.com');
  });

  test('11. interpolation in nested objects and arrays', () => {
    expect(interpolateTenant({ a: ['x@{company_domain}', { b: '{region}-1' }] }, tenant)).toEqual({
      a: ['x@acme.com', { b: 'eu-1' }],
    });
  });

  test('12. an unknown placeholder is left as it is', () => {
    expect(interpolateTenant('{unknown} @{company_domain}', tenant)).toBe('{unknown} @acme.com');
  });

  test('13. null, numbers and booleans pass through', () => {
    expect(interpolateTenant([null, 42, true, false], tenant)).toEqual([null, 42, true, false]);
  });

  test('14. the gmail profile resolves', () => {
    const profile = gmailProfile();
    expect(profile.service).toBe('gmail');
    expect(Object.keys(profile.tools)).toHaveLength(19);
  });

  test('15. an invalid profile name is rejected', () => {
    const loaded = loadProfile('gmail');
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.errors[0]?.message).toMatch(/invalid profile name "gmail"/);
  });

  test('16. a missing profile is rejected', () => {
    const loaded = loadProfile('@openclaw/security-nonexistent');
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.errors[0]?.message).toMatch(/profile @openclaw\/security-nonexistent not found/);
  });

  test('17. an override sets destructiveHint and keeps verb and openWorldHint; classifiers get @acme.com', () => {
    const policy = mustLoad(
      policyYaml({
        tenant: { company_domain: 'acme.com' },
        profiles: ['@openclaw/security-gmail'],
        tool_overrides: { gmail: { send_email: { destructiveHint: true } } },
      }),
    );
    const { merged } = mergePolicy(policy, [gmailProfile()]);
    expect(merged.tools['gmail']?.['send_email']).toEqual({
      verb: 'create',
      hints: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
      labels: ['category:communication'],
    });
    const values = merged.classifiers['gmail']?.['send_email']?.rules.map((r) => r.contains ?? r.not_contains);
    expect(values).toEqual(['@acme.com', '@acme.com', undefined]);
  });

  test('18. an override may create a tool no profile has', () => {
    const policy = mustLoad(policyYaml({ tool_overrides: { gmail: { archive_all: { verb: 'update' } } } }));
    expect(mergePolicy(policy, []).merged.tools['gmail']?.['archive_all']).toEqual({
      verb: 'update',
      hints: {},
      labels: [],
    });
  });

  test('19. rules come only from the config, never from profiles', () => {
    const policy = mustLoad(policyYaml({ profiles: ['@openclaw/security-gmail'], policies: [rule] }));
    const compiled = compilePolicy(policy, { profiles: { '@openclaw/security-gmail': gmailProfile() } });
    expect(compiled.data.rules.map((r) => r.name)).toEqual(['r']);
  });

  test('20. an empty config merges to nothing', () => {
    const { merged } = mergePolicy(mustLoad(policyYaml({})), []);
    expect(merged).toEqual({ tools: {}, classifiers: {}, extractors: {} });
    expect(compilePolicy(mustLoad(policyYaml({}))).data).toMatchObject({ tools: {}, classifiers: {}, rules: [] });
  });

  test('21. the full acme-corp pipeline (profile, tenant, rules)', () => {
    const { data } = compileFixture('acme-gmail');
    expect(Object.keys(data.tools['gmail'] ?? {})).toHaveLength(19);
    expect(data.classifiers['gmail']?.['send_email']).toEqual([
      { field: 'to', op: 'contains', value: '@acme.com', labels: ['scope:internal'] },
      { field: 'to', op: 'not_contains', value: '@acme.com', labels: ['scope:external'] },
      { field: 'bcc', op: 'present', labels: ['data:bcc-used'] },
    ]);
    expect(data.rules.map((r) => [r.priority, r.name, r.action])).toEqual([
      [0, 'Block BCC', 'deny'],
      [10, 'Approve external email', 'require_approval'],
      [20, 'Approve deletes', 'require_approval'],
      [50, 'Allow read-only', 'allow'],
      [60, 'Allow internal email', 'allow'],
      [70, 'Allow drafts', 'allow'],
      [999, 'Default deny', 'deny'],
    ]);
    expect(data.catalog).toEqual({ gmail: { enabled: true, suspended: false, tools: null } });
  });
});
