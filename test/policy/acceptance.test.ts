/**
 * Layer 1 acceptance: the policy/grant/catalog/classification cases of upstream's
 * `mcp_authz_test.rego` (reference §4) and the Gmail-profile decisions of `test_gmail_profile.py`,
 * run end to end: YAML fixture → our compiler → the committed `rego/policy.wasm` through the
 * evaluator in src/policy/layer1.ts (the npm OPA SDK, i.e. the Wasm builtins, not Go's).
 *
 * Every reference case 1-74 is accounted for once: either in CASES (same outcome as upstream), or
 * in DEVIATIONS (we deliberately decide differently, or another component owns it).
 */
import { describe, expect, test } from 'vitest';
import type { Layer1Data, Layer1Decision, Layer1Input } from '../../src/policy/layer1-types.js';
import { createLayer1Engine } from '../../src/policy/layer1.js';
import { compileFixture, mustCompile } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// Fixtures: reference §4 users and grants (grants are runtime state, so they are per call)
// ---------------------------------------------------------------------------------------------

interface User {
  id: string;
  grants: Record<string, string[]>;
}

const JARVIS: User = { id: 'jarvis@acme.com', grants: { duckduckgo: ['*'], 'mock-calendar': ['*'], gmail: ['*'] } };
const ALICE: User = { id: 'alice@acme.com', grants: {} };
/** An identity with no grants at all; resolving identities is the Check handler's job. */
const UNKNOWN: User = { id: 'unknown@acme.com', grants: {} };

type Source = { fixture: string } | { yaml: string };

interface Call {
  service: string;
  name: string;
  arguments?: Record<string, unknown>;
  user?: User;
}

interface Expected {
  outcome: Layer1Decision['outcome'];
  code: Layer1Decision['code'];
  rule?: string | null;
  verb?: string | null;
  hints?: Partial<Layer1Decision['classification']['hints']>;
  labels?: string[];
  approvers?: string[];
  reason?: RegExp;
}

interface Case {
  /** Reference case number (`mcp_authz_test.rego`), or `gmail:…` for `test_gmail_profile.py`. */
  id: string;
  name: string;
  source: Source;
  /** Runtime state the file does not hold (suspension, a narrowed catalog). */
  patch?: (data: Layer1Data) => Layer1Data;
  call: Call;
  expect: Expected;
}

const ddg = (name: string, user: User = JARVIS): Call => ({ service: 'duckduckgo', name, user });
const gmail = (name: string, args: Record<string, unknown> = {}): Call => ({ service: 'gmail', name, arguments: args });
const catalog = { fixture: 'catalog' };
const s1 = { fixture: 's1' };
const s2 = { fixture: 's2' };
const s3 = { fixture: 's3' };
const s4 = { fixture: 's4' };
const acme = { fixture: 'acme-gmail' };

const withCatalog =
  (service: string, entry: Partial<Layer1Data['catalog'][string]> | null) =>
  (data: Layer1Data): Layer1Data => {
    const next = { ...data.catalog };
    if (entry === null) delete next[service];
    else next[service] = { enabled: true, suspended: false, tools: null, ...next[service], ...entry };
    return { ...data, catalog: next };
  };

/** S3 with the approval rule's approvers left out (case 74). */
const S3_NO_APPROVERS = `
version: "1.0"
tenant: {company_domain: acme.com}
services: {gmail: {transport: stdio, command: gmail-mcp}}
tool_overrides: {gmail: {send_email: {openWorldHint: true, verb: create}}}
classifiers:
  gmail: {send_email: [{field: to, not_contains: "@{company_domain}", set_labels: [scope:external]}]}
policies:
  - {name: Approve external, when: {labels: [scope:external]}, action: npl_evaluate, priority: 20}
  - {name: Default allow, when: {}, action: allow, priority: 999}
`;

const SERVICES_ONLY = `
version: "1.0"
services: {duckduckgo: {transport: http, url: "http://duckduckgo-mcp:8000/mcp"}}
`;

// ---------------------------------------------------------------------------------------------
// Cases with upstream's outcome
// ---------------------------------------------------------------------------------------------

const CASES: Case[] = [
  // Catalog and grants (catalog fixture: duckduckgo {search, fetch_content}, mock-calendar {list_events, create_event}).
  {
    id: '8',
    name: 'allow_namespaced_tool_call',
    source: catalog,
    call: ddg('search'),
    expect: { outcome: 'allow', code: 'rule', rule: 'Default allow' },
  },
  {
    id: '9',
    name: 'allow_calendar_tool_call',
    source: catalog,
    call: { service: 'mock-calendar', name: 'list_events', user: JARVIS },
    expect: { outcome: 'allow', code: 'rule' },
  },
  {
    id: '10',
    name: 'deny_tool_call_service_not_available',
    source: catalog,
    call: { service: 'github', name: 'create_issue', user: JARVIS },
    expect: { outcome: 'deny', code: 'unknown_service', rule: null, reason: /service 'github' is not in the catalog/ },
  },
  {
    id: '11',
    name: 'deny_tool_call_service_suspended',
    source: catalog,
    patch: withCatalog('duckduckgo', { suspended: true }),
    call: ddg('search'),
    expect: { outcome: 'deny', code: 'service_suspended' },
  },
  {
    id: '12',
    name: 'deny_tool_call_tool_not_enabled',
    source: catalog,
    patch: withCatalog('duckduckgo', { tools: ['search'] }),
    call: ddg('fetch_content'),
    expect: { outcome: 'deny', code: 'tool_disabled' },
  },
  {
    id: '13',
    name: 'deny_tool_call_user_no_access',
    source: catalog,
    call: ddg('search', ALICE),
    expect: { outcome: 'deny', code: 'no_grant' },
  },
  {
    id: '14',
    name: 'deny_tool_call_unknown_user',
    source: catalog,
    call: ddg('search', UNKNOWN),
    expect: { outcome: 'deny', code: 'no_grant' },
  },
  {
    id: '17',
    name: 'deny_tools_call_when_policy_data_empty',
    source: { yaml: 'version: "1.0"\n' },
    call: ddg('search', { id: 'jarvis@acme.com', grants: {} }),
    expect: { outcome: 'deny', code: 'unknown_service' },
  },
  {
    id: '18',
    name: 'wildcard_grants_any_tool',
    source: catalog,
    call: ddg('fetch_content'),
    expect: { outcome: 'allow', code: 'rule' },
  },
  {
    id: '19',
    name: 'specific_tool_access_allowed',
    source: catalog,
    call: ddg('search', { id: 'jarvis@acme.com', grants: { duckduckgo: ['search'] } }),
    expect: { outcome: 'allow', code: 'rule' },
  },
  {
    id: '20',
    name: 'specific_tool_access_denied_for_other_tool',
    source: catalog,
    call: ddg('fetch_content', { id: 'jarvis@acme.com', grants: { duckduckgo: ['search'] } }),
    expect: { outcome: 'deny', code: 'no_grant' },
  },

  // Security policy S1-S4.
  {
    id: '37',
    name: 'allow_still_works_with_security_policy',
    source: s1,
    call: ddg('search'),
    expect: { outcome: 'allow', code: 'rule', rule: 'Default allow' },
  },
  {
    id: '38',
    name: 'sp_read_only_tool_allowed',
    source: s2,
    call: gmail('read_email'),
    expect: { outcome: 'allow', code: 'rule', rule: 'Allow read-only' },
  },
  {
    id: '39',
    name: 'sp_destructive_tool_denied',
    source: s2,
    call: gmail('delete_email'),
    expect: { outcome: 'deny', code: 'rule', rule: 'Deny destructive' },
  },
  {
    id: '40',
    name: 'sp_external_send_denied',
    source: s2,
    call: gmail('send_email', { to: 'external@other.com' }),
    expect: { outcome: 'deny', code: 'rule', rule: 'Deny external', labels: ['scope:external'] },
  },
  {
    id: '41',
    name: 'sp_internal_send_allowed',
    source: s2,
    call: gmail('send_email', { to: 'colleague@acme.com' }),
    expect: { outcome: 'allow', code: 'rule', rule: 'Default allow', labels: ['scope:internal'] },
  },
  {
    id: '42',
    name: 'sp_unclassified_tool_default_allow',
    source: s2,
    call: ddg('search'),
    expect: { outcome: 'allow', code: 'rule', rule: 'Default allow' },
  },
  {
    id: '44',
    name: 'sp_tool_name_fallback_read_only',
    source: { fixture: 'fallback' },
    call: { service: 'mock-calendar', name: 'list_events', user: JARVIS },
    expect: {
      outcome: 'allow',
      code: 'rule',
      rule: 'Allow read-only',
      verb: 'list',
      hints: { readOnlyHint: true, idempotentHint: true, destructiveHint: false, openWorldHint: false },
    },
  },
  {
    id: '45',
    name: 'sp_tool_name_fallback_destructive',
    source: { fixture: 'fallback' },
    call: { service: 'mock-calendar', name: 'delete_event', user: JARVIS },
    expect: {
      outcome: 'deny',
      code: 'rule',
      rule: 'Deny destructive',
      verb: 'delete',
      hints: { destructiveHint: true },
    },
  },
  {
    id: '46',
    name: 'sp_verb_based_policy',
    source: { fixture: 'fallback' },
    call: gmail('send_email', { to: 'a@acme.com' }),
    expect: { outcome: 'deny', code: 'rule', rule: 'Default deny', verb: 'create' },
  },
  {
    id: '47',
    name: 'sp_deny_reason_header',
    source: s2,
    call: gmail('delete_email'),
    expect: { outcome: 'deny', code: 'rule', reason: /Deny destructive/ },
  },
  {
    id: '48',
    name: 'sp_tracing_headers',
    source: s2,
    call: gmail('read_email'),
    expect: {
      outcome: 'allow',
      code: 'rule',
      rule: 'Allow read-only',
      verb: 'get',
      labels: ['category:communication'],
    },
  },
  {
    id: '49',
    name: 'sp_npl_evaluate_with_route',
    source: s3,
    call: gmail('send_email', { to: 'external@other.com' }),
    expect: { outcome: 'require_approval', code: 'rule', rule: 'Approve external' },
  },
  {
    id: '52',
    name: 'sp_deny_not_bypassed_by_contextual_route',
    source: s3,
    call: gmail('delete_email'),
    expect: { outcome: 'deny', code: 'rule', rule: 'Deny destructive' },
  },
  {
    id: '53',
    name: 'sp_allow_bypasses_contextual_route',
    source: s3,
    call: gmail('read_email'),
    expect: { outcome: 'allow', code: 'rule', rule: 'Allow read-only' },
  },
  {
    id: '54',
    name: 'sp_internal_send_allowed_with_contextual_route',
    source: s3,
    call: gmail('send_email', { to: 'colleague@acme.com' }),
    expect: { outcome: 'allow', code: 'rule', rule: 'Default allow' },
  },
  {
    id: '60',
    name: 'sp_approvers_extracted',
    source: s3,
    call: gmail('send_email', { to: 'external@other.com' }),
    expect: { outcome: 'require_approval', code: 'rule', approvers: ['compliance', 'legal'] },
  },
  {
    id: '69',
    name: 'numeric_greater_than_deny',
    source: s4,
    call: {
      service: 'banking',
      name: 'transfer',
      arguments: { amount: 1500, currency: 'USD' },
      user: { id: 'jarvis@acme.com', grants: { banking: ['*'] } },
    },
    expect: { outcome: 'deny', code: 'rule', rule: 'Block high value', labels: ['constraint:high-value'] },
  },
  {
    id: '70',
    name: 'numeric_under_threshold_allow',
    source: s4,
    call: {
      service: 'banking',
      name: 'transfer',
      arguments: { amount: 500, currency: 'USD' },
      user: { id: 'jarvis@acme.com', grants: { banking: ['*'] } },
    },
    expect: { outcome: 'allow', code: 'rule', rule: 'Default allow' },
  },
  {
    id: '71',
    name: 'value_extractor_labels',
    source: s4,
    call: {
      service: 'banking',
      name: 'transfer',
      arguments: { amount: 500, currency: 'USD' },
      user: { id: 'jarvis@acme.com', grants: { banking: ['*'] } },
    },
    expect: { outcome: 'allow', code: 'rule', labels: ['arg:amount:500', 'arg:currency:USD', 'category:banking'] },
  },
  {
    id: '72',
    name: 'equals_value_classifier',
    source: s4,
    call: {
      service: 'banking',
      name: 'transfer',
      arguments: { amount: 50, currency: 'BTC' },
      user: { id: 'jarvis@acme.com', grants: { banking: ['*'] } },
    },
    expect: { outcome: 'allow', code: 'rule', labels: ['constraint:crypto', 'arg:currency:BTC'] },
  },
  {
    id: '74',
    name: 'sp_approvers_empty_when_not_specified',
    source: { yaml: S3_NO_APPROVERS },
    call: gmail('send_email', { to: 'external@other.com' }),
    expect: { outcome: 'require_approval', code: 'rule', rule: 'Approve external', approvers: [] },
  },

  // test_gmail_profile.py: the Acme policy over profiles/gmail.yaml; `to` values are arrays.
  ...(['read_email', 'search_emails', 'list_email_labels', 'download_attachment'] as const).map((name): Case => ({
    id: `gmail:${name}`,
    name: `${name} is allowed (read-only)`,
    source: acme,
    call: gmail(name),
    expect: { outcome: 'allow', code: 'rule', rule: 'Allow read-only' },
  })),
  {
    id: 'gmail:send-internal',
    name: 'send_email to colleagues is allowed',
    source: acme,
    call: gmail('send_email', { to: ['colleague@acme.com', 'boss@acme.com'], subject: 's', body: 'b' }),
    expect: { outcome: 'allow', code: 'rule', rule: 'Allow internal email', labels: ['scope:internal'] },
  },
  {
    id: 'gmail:send-external',
    name: 'send_email outside needs approval',
    source: acme,
    call: gmail('send_email', { to: ['partner@other.com'], subject: 's', body: 'b' }),
    expect: {
      outcome: 'require_approval',
      code: 'rule',
      rule: 'Approve external email',
      approvers: ['manager'],
      labels: ['scope:external'],
    },
  },
  {
    id: 'gmail:send-mixed',
    name: 'one outside recipient among colleagues is enough to need approval',
    source: acme,
    call: gmail('send_email', { to: ['colleague@acme.com', 'partner@other.com'] }),
    expect: {
      outcome: 'require_approval',
      code: 'rule',
      rule: 'Approve external email',
      labels: ['scope:external', 'scope:internal'],
    },
  },
  {
    id: 'gmail:send-bcc',
    name: 'send_email with BCC is denied, even internally',
    source: acme,
    call: gmail('send_email', { to: ['colleague@acme.com'], bcc: ['hidden@acme.com'] }),
    expect: { outcome: 'deny', code: 'rule', rule: 'Block BCC', labels: ['data:bcc-used'] },
  },
  ...(['delete_email', 'batch_delete_emails'] as const).map((name): Case => ({
    id: `gmail:${name}`,
    name: `${name} needs approval`,
    source: acme,
    call: gmail(name, { messageIds: ['m1'] }),
    expect: { outcome: 'require_approval', code: 'rule', rule: 'Approve deletes' },
  })),
  {
    id: 'gmail:draft-internal',
    name: 'draft_email to colleagues is allowed',
    source: acme,
    call: gmail('draft_email', { to: ['colleague@acme.com'] }),
    expect: { outcome: 'allow', code: 'rule', rule: 'Allow drafts' },
  },
  {
    id: 'gmail:draft-external',
    name: 'draft_email outside is allowed (a draft sends nothing)',
    source: acme,
    call: gmail('draft_email', { to: ['partner@other.com'] }),
    expect: { outcome: 'allow', code: 'rule', rule: 'Allow drafts', labels: ['scope:external'] },
  },
  ...(['create_filter', 'modify_email'] as const).map((name): Case => ({
    id: `gmail:${name}`,
    name: `${name} falls to the default deny`,
    source: acme,
    call: gmail(name),
    expect: { outcome: 'deny', code: 'rule', rule: 'Default deny' },
  })),
];

// ---------------------------------------------------------------------------------------------
// The one table of deviations: what we invert on purpose, and what another component covers
// ---------------------------------------------------------------------------------------------

type Deviation =
  | { kind: 'inverted'; cases: string[]; upstream: string; why: string; run: Omit<Case, 'id' | 'name'> }
  | { kind: 'covered elsewhere'; cases: string[]; upstream: string; where: string };

const DEVIATIONS: Deviation[] = [
  {
    kind: 'inverted',
    cases: ['21'],
    upstream: 'allow_when_no_catalog_entry_exists: a service with no catalog entry passes the catalog check',
    why: 'DESIGN §6: a service absent from services: is denied; a typo or an unreviewed backend must not be reachable',
    run: {
      source: catalog,
      patch: withCatalog('duckduckgo', null),
      call: ddg('search'),
      expect: { outcome: 'deny', code: 'unknown_service' },
    },
  },
  {
    kind: 'inverted',
    cases: ['36', '43'],
    upstream: 'security_policy_default_empty / sp_empty_policy_allows: no policies bypasses the security layer',
    why: 'DESIGN §6: an empty policies list denies every tools/call (an empty or truncated file must not open everything)',
    run: {
      source: { yaml: SERVICES_ONLY },
      call: ddg('search'),
      expect: { outcome: 'deny', code: 'no_policies', rule: null },
    },
  },
  {
    kind: 'inverted',
    cases: ['§1.5 no matching rule'],
    upstream: "rules exist, none matches: allow as 'no matching policy (default allow)'",
    why: 'DESIGN §6: a tools/call that no rule matches is denied; apply warns when a file has no catch-all',
    run: {
      source: {
        yaml: `${SERVICES_ONLY}policies: [{name: Allow read-only, when: {readOnlyHint: true}, action: allow, priority: 50}]\n`,
      },
      call: ddg('search'),
      expect: { outcome: 'deny', code: 'no_matching_rule', rule: null },
    },
  },
  {
    kind: 'inverted',
    cases: ['50', '51'],
    upstream:
      "sp_npl_evaluate_without_route(_reason): npl_evaluate with no contextual route is a 403 'no contextual route'",
    why: 'npl_evaluate is an alias of require_approval and approvals are built into Layer 2: there is no route to forget',
    run: {
      source: s3,
      call: gmail('send_email', { to: 'external@other.com' }),
      expect: {
        outcome: 'require_approval',
        code: 'rule',
        rule: 'Approve external',
        reason: /policy rule 'Approve external' requires a human's approval/,
      },
    },
  },
  {
    kind: 'inverted',
    cases: ['§1.5 ties'],
    upstream: 'two matching rules with the same priority and different actions: OPA conflict error (no decision)',
    why: 'DESIGN §6: ties in priority break by file order, so every file has one meaning',
    run: {
      source: {
        yaml: `${SERVICES_ONLY}policies:
  - {name: first in file, when: {}, action: deny, priority: 50}
  - {name: second in file, when: {}, action: allow, priority: 50}
`,
      },
      call: ddg('search'),
      expect: { outcome: 'deny', code: 'rule', rule: 'first in file' },
    },
  },
  {
    kind: 'inverted',
    cases: ['§1.5 not_contains on lists'],
    upstream:
      'Rego: not_contains on an array argument is a type error, so it always matches (internal mail looks external)',
    why: 'DESIGN §6: a list argument matches if any element matches; an all-internal list is not external',
    run: {
      source: s2,
      call: gmail('send_email', { to: ['colleague@acme.com'] }),
      expect: { outcome: 'allow', code: 'rule', rule: 'Default allow', labels: ['scope:internal'] },
    },
  },
  {
    kind: 'inverted',
    cases: ['§1.5 contains on lists'],
    upstream: 'Rego: contains on an array argument never matches, so Gmail mail to colleagues is never internal',
    why: 'DESIGN §6: a list argument matches if any element matches (as the upstream Python simulator did)',
    run: {
      source: acme,
      call: gmail('send_email', { to: ['colleague@acme.com'] }),
      expect: { outcome: 'allow', code: 'rule', rule: 'Allow internal email', labels: ['scope:internal'] },
    },
  },
  {
    kind: 'inverted',
    cases: ['§1.5 labels under any'],
    upstream: 'Rego: under match: any, `labels` still needs every listed label',
    why: "upstream's docs and pytest treat each label as its own condition under any; Rego was the odd one out",
    run: {
      source: {
        yaml: `${S3_NO_APPROVERS.replace(
          'policies:',
          'policies:\n  - {name: Risky, when: {labels: [scope:external, data:bcc-used]}, match: any, action: deny, priority: 1}',
        )}`,
      },
      call: gmail('send_email', { to: 'external@other.com' }),
      expect: { outcome: 'deny', code: 'rule', rule: 'Risky' },
    },
  },
  {
    kind: 'covered elsewhere',
    cases: ['1', '2', '3', '4'],
    upstream: 'non-tool methods (initialize, tools/list, ping, notifications) allowed',
    where: 'Check handler (src/authz): they need a valid identity and never reach Layer 1',
  },
  {
    kind: 'covered elsewhere',
    cases: ['5', '6', '7', '22'],
    upstream: 'stream setup (GET /mcp, empty body) and empty-body POST',
    where: 'Check handler (src/authz): routing, sessions and body checks',
  },
  {
    kind: 'covered elsewhere',
    cases: ['15', '16'],
    upstream: 'missing tool name; no Authorization header',
    where: 'Check handler (src/authz, src/identity): the request is refused before Layer 1',
  },
  {
    kind: 'covered elsewhere',
    cases: ['23', '24', '25', '26', '61', '62', '63', '64', '65', '66', '73'],
    upstream: 'contextual routes to NPL (lookup, wildcard, route groups and/or, legacy format)',
    where:
      'not applicable: Layer 2 rules are declared in the file and named by Layer 1 (decision.layer2); Layer 2 store (src/state)',
  },
  {
    kind: 'covered elsewhere',
    cases: ['27', '28', '29', '30', '31', '32'],
    upstream: 'x-granted-services and x-user-id headers',
    where: 'Check handler (src/authz) and the aggregator (tools/list filtering)',
  },
  {
    kind: 'covered elsewhere',
    cases: ['55', '56', '57', '58', '59'],
    upstream: 'NPL evaluate results (pending:<id>, allow, deny) and the approval id / retry-after headers',
    where: 'Layer 2 approvals (src/state) and the Check handler answer (src/authz)',
  },
  {
    kind: 'covered elsewhere',
    cases: ['67', '68'],
    upstream: 'mcp-session-id extraction',
    where: 'Check handler (src/authz) and sessions (src/identity)',
  },
  {
    kind: 'covered elsewhere',
    cases: ['33', '34', '35'],
    upstream: 'bundle data passthrough of the S1 security policy',
    where: 'this file, "compiled data" below: our data document is compiled, not passed through',
  },
];

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

function compiledData(source: Source): Layer1Data {
  return ('fixture' in source ? compileFixture(source.fixture) : mustCompile(source.yaml)).data;
}

async function decide(run: Omit<Case, 'id' | 'name'>): Promise<Layer1Decision> {
  const data = compiledData(run.source);
  const engine = await createLayer1Engine(run.patch ? run.patch(data) : data);
  const user = run.call.user ?? JARVIS;
  const input: Layer1Input = {
    user: { id: user.id, role: 'agent' },
    grants: user.grants,
    method: 'tools/call',
    service: run.call.service,
    name: run.call.name,
    arguments: run.call.arguments ?? {},
  };
  return engine.evaluate(input);
}

function check(decision: Layer1Decision, want: Expected): void {
  expect({ outcome: decision.outcome, code: decision.code }).toEqual({ outcome: want.outcome, code: want.code });
  if (want.rule !== undefined) expect(decision.rule).toBe(want.rule);
  if (want.verb !== undefined) expect(decision.classification.verb).toBe(want.verb);
  if (want.hints !== undefined) expect(decision.classification.hints).toMatchObject(want.hints);
  if (want.labels !== undefined) expect(decision.classification.labels).toEqual(expect.arrayContaining(want.labels));
  if (want.reason !== undefined) expect(decision.reasons.join('\n')).toMatch(want.reason);
  if (want.outcome === 'require_approval') {
    expect(decision.approval).not.toBeNull();
    if (want.approvers !== undefined) expect(decision.approval?.approvers).toEqual(want.approvers);
  } else {
    expect(decision.approval).toBeNull();
  }
}

describe('reference cases with upstream outcome', () => {
  test.each(CASES)('$id $name', async (c) => {
    check(await decide(c), c.expect);
  });
});

describe('deliberate inversions', () => {
  const inverted = DEVIATIONS.flatMap((d) => (d.kind === 'inverted' ? [d] : []));
  test.each(inverted)('$cases: $why', async (d) => {
    check(await decide(d.run), d.run.expect);
  });
});

describe('compiled data (reference 33-36: upstream passed the policy through; we compile it)', () => {
  test('S1: send_email is create, read_email is read-only, three rules, Block BCC first', () => {
    const { data } = compileFixture('s1');
    expect(data.tools['gmail']?.['send_email']?.verb).toBe('create');
    expect(data.tools['gmail']?.['read_email']?.hints.readOnlyHint).toBe(true);
    expect(data.classifiers['gmail']?.['send_email']).toHaveLength(3);
    expect(data.rules).toHaveLength(3);
    expect(data.rules[0]).toMatchObject({ name: 'Block BCC', action: 'deny', priority: 0 });
  });

  test('an empty file compiles to no rules', () => {
    expect(mustCompile('version: "1.0"\n').data).toMatchObject({ catalog: {}, tools: {}, classifiers: {}, rules: [] });
  });
});

test('every reference case 1-74 is accounted for exactly once', () => {
  const ids = [...CASES.map((c) => c.id), ...DEVIATIONS.flatMap((d) => d.cases)].filter((id) => /^\d+$/.test(id));
  const sorted = ids.map(Number).sort((a, b) => a - b);
  expect(sorted).toEqual(Array.from({ length: 74 }, (_, i) => i + 1));
});
