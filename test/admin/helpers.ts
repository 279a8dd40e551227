/**
 * A real admin API over a real in-memory store (PGlite) and a real PolicyHolder, plus builders for
 * the Layer 2 state the routes read (pending approvals, counters, taint).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { z } from 'zod';
import { createAdminApi, type AdminApi, type AdminDeps } from '../../src/admin/api.js';
import { errorBodySchema, type ErrorCode } from '../../src/admin/contract.js';
import type { AdminCaller, AdminResponse } from '../../src/admin/handler.js';
import { PolicyHolder } from '../../src/authz/runtime.js';
import type { Layer1Decision } from '../../src/policy/layer1-types.js';
import type { Layer2Request } from '../../src/policy/layer2-types.js';
import { openStore, type Layer2Store } from '../../src/state/index.js';

export const POLICY = `# admin API fixture
version: "1.0"
services:
  gmail: {transport: stdio, command: gmail-mcp}
  docs: {transport: http, url: "http://127.0.0.1:9000/mcp", tools: [read_page, write_page]}
  bank: {transport: stdio, command: bank-mcp, enabled: false}
tool_overrides:
  docs:
    read_page: {verb: get, readOnlyHint: true, labels: [data:private]}
policies:
  - {name: approve mail, when: {verb: create}, action: require_approval, approvers: [alice], timeout: 30m, priority: 10}
  - {name: reads are fine, when: {readOnlyHint: true}, action: allow, priority: 50}
  - {name: default deny, when: {}, action: deny, priority: 999}
limits:
  - {name: page reads, select: {service: docs, tool: read_*}, max: 5, per: 1h, scope: user}
flows:
  - {name: no mail after private reads, after: {labels: [data:private]}, then: {service: gmail}, scope: user, ttl: 1h}
budgets:
  - {name: transfers, select: {service: bank, tool: transfer}, max: 3, scope: user}
preconditions:
  - {name: market open, select: {service: bank, tool: transfer}, require: {market_status: open}}
duties:
  - {name: four eyes, kind: four_eyes, first: {service: bank, tool: review}, then: {service: bank, tool: release}, entity: [payout_id]}
`;

export const ADMIN: AdminCaller = { id: 'owner', role: 'admin' };
export const OTHER_ADMIN: AdminCaller = { id: 'root2', role: 'admin' };
export const ALICE: AdminCaller = { id: 'alice', role: 'approver' };
export const CAROL: AdminCaller = { id: 'carol', role: 'approver' };
export const AGENT: AdminCaller = { id: 'bot', role: 'agent' };

export interface Harness {
  store: Layer2Store;
  holder: PolicyHolder;
  api: AdminApi;
  errors: { err: unknown; context: string }[];
  grantsChanged: string[];
  servicesChanged: number;
  call(
    method: string,
    path: string,
    opts?: { body?: unknown; query?: Record<string, string>; as?: AdminCaller },
  ): Promise<AdminResponse>;
  close(): Promise<void>;
}

export async function openHarness(opts: Partial<AdminDeps> & { policy?: string } = {}): Promise<Harness> {
  const home = mkdtempSync(join(tmpdir(), 'mcpgw-admin-'));
  const store = await openStore({
    databaseUrl: null,
    pgliteDataDir: null,
    sealer: false,
    env: {},
    home,
    auditKey: randomBytes(32),
  });
  const created = await PolicyHolder.create(opts.policy ?? POLICY, 'mcp-security.yaml', {
    onSwap: (active) => store.setRules(active.engine.revision, active.compiled.layer2),
  });
  if ('errors' in created) throw new Error(JSON.stringify(created.errors));
  const holder = created.holder;
  const h: Harness = {
    store,
    holder,
    errors: [],
    grantsChanged: [],
    servicesChanged: 0,
    api: undefined as unknown as AdminApi,
    call: (method, path, o = {}) =>
      h.api.handle({ method, path, query: o.query ?? {}, body: o.body, caller: o.as ?? ADMIN }),
    async close() {
      await store.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
  const { policy: _p, ...deps } = opts;
  h.api = createAdminApi({
    store,
    policy: holder,
    onError: (err, context) => h.errors.push({ err, context }),
    onGrantsChanged: (id) => h.grantsChanged.push(id),
    onServicesChanged: () => {
      h.servicesChanged++;
    },
    ...deps,
  });
  return h;
}

/** Asserts the answer and parses its body with the contract schema. */
export function expectOk<S extends z.ZodType>(res: AdminResponse, schema: S, status = 200): z.output<S> {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  return schema.parse(res.body);
}

export function expectError(res: AdminResponse, status: number, code: ErrorCode) {
  const body = errorBodySchema.parse(res.body);
  expect({ status: res.status, code: body.error.code }).toEqual({ status, code });
  return body.error;
}

let n = 0;
export const uniq = (p: string): string => `${p}-${++n}`;

export function layer1(outcome: Layer1Decision['outcome'], rule: string, l2: Partial<Layer1Decision['layer2']> = {}) {
  const d: Layer1Decision = {
    outcome,
    code: 'rule',
    rule,
    reasons: [`matched ${rule}`],
    classification: {
      verb: null,
      hints: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
      labels: [],
    },
    approval: outcome === 'require_approval' ? { approvers: [], timeout: null } : null,
    layer2: {
      limits: [],
      budgets: [],
      preconditions: [],
      flows: { sources: [], sinks: [] },
      duties: { first: [], then: [] },
      ...l2,
    },
  };
  return d;
}

function request(
  h: Harness,
  s: { user: string; service: string; tool: string; args?: Record<string, unknown>; layer1: Layer1Decision },
  approval: Layer2Request['approval'] = null,
): Layer2Request {
  return {
    decisionId: `dc-${randomUUID()}`,
    policyRevision: h.holder.active.engine.revision,
    userId: s.user,
    sessionId: 'sess-1',
    method: 'tools/call',
    service: s.service,
    name: s.tool,
    arguments: s.args ?? {},
    layer1: s.layer1,
    approval,
  };
}

/** A pending approval of `user`'s call (classified with `labels`), decidable by `approvers`. */
export async function pendingApproval(
  h: Harness,
  s: { user?: string; approvers?: string[]; args?: Record<string, unknown>; labels?: string[] } = {},
): Promise<string> {
  const l1 = layer1('require_approval', 'approve mail');
  l1.classification.labels = s.labels ?? ['scope:external'];
  const out = await h.store.decide(
    request(
      h,
      {
        user: s.user ?? uniq('agent'),
        service: 'gmail',
        tool: 'send_email',
        args: s.args ?? { n: uniq('a') },
        layer1: l1,
      },
      { approvers: s.approvers ?? ['alice'], timeoutSeconds: 1800, consumeWithinSeconds: 900 },
    ),
  );
  if (out.outcome !== 'pending') throw new Error(`expected pending, got ${JSON.stringify(out)}`);
  return out.approvalId;
}

/** An allowed call that counts against `limits`/`budgets` and may taint via `sources`. */
export async function allowedCall(
  h: Harness,
  s: { user: string; service: string; tool: string; l2: Partial<Layer1Decision['layer2']> },
): Promise<void> {
  const out = await h.store.decide(
    request(h, { user: s.user, service: s.service, tool: s.tool, layer1: layer1('allow', 'reads are fine', s.l2) }),
  );
  if (out.outcome !== 'allow') throw new Error(`expected allow, got ${JSON.stringify(out)}`);
}
