/**
 * What applying a policy would change, for `apply --dry-run` and the answer of a real apply.
 *
 * It compares compiled policies (what actually runs), so a reformatted file or reordered YAML keys
 * show no change, while a changed `max` or a renamed label does. Only names of changed things and
 * fields are reported, never values: a service's settings (headers, env) may carry secret
 * references, and the operator has the file in front of them anyway.
 */
import { canonicalJson, type CompiledPolicy } from '../policy/compile.js';
import type { ServiceConfig } from '../policy/schema.js';
import type { DiffEntry, DiffKind, PolicyDiff } from './contract.js';

export interface DiffSide {
  compiled: CompiledPolicy;
  /** The file's `services:` settings (how each backend is run), which the catalog does not hold. */
  services: Readonly<Record<string, ServiceConfig>>;
}

type Items = Map<string, Record<string, unknown>>;

function rules(c: CompiledPolicy): Items {
  // `index` is the position in the file: moving a rule is not a change of the rule.
  return new Map(
    c.data.rules.map(({ name, priority, match, when, action, approvers, timeout }) => [
      name,
      { priority, match, when, action, approvers, timeout },
    ]),
  );
}

function layer2<T extends { name: string }, R extends object>(
  selectors: readonly T[],
  params: Readonly<Record<string, R>>,
): Items {
  const out: Items = new Map();
  for (const s of selectors) {
    const { name, ...select } = s;
    const { name: _n, ...rest } = (params[name] ?? {}) as R & { name?: string };
    out.set(name, { ...select, ...rest });
  }
  return out;
}

function services(side: DiffSide): Items {
  const out: Items = new Map();
  for (const [name, entry] of Object.entries(side.compiled.data.catalog)) {
    const config = Object.hasOwn(side.services, name) ? side.services[name] : undefined;
    const { enabled: _e, tools: _t, ...settings } = config ?? {};
    out.set(name, { enabled: entry.enabled, tools: entry.tools, ...settings });
  }
  return out;
}

/** Classification (tool overrides, classifiers, value extractors) per service. */
function classification(c: CompiledPolicy): Items {
  const out: Items = new Map();
  const sections = {
    tool_overrides: c.data.tools,
    classifiers: c.data.classifiers,
    value_extractors: c.data.extractors,
  };
  for (const [section, perService] of Object.entries(sections)) {
    for (const [service, perTool] of Object.entries(perService)) {
      const item = out.get(service) ?? {};
      item[section] = perTool;
      out.set(service, item);
    }
  }
  return out;
}

function compare(kind: DiffKind, before: Items, after: Items): DiffEntry[] {
  const out: DiffEntry[] = [];
  for (const [name, a] of before) {
    const b = after.get(name);
    if (b === undefined) {
      out.push({ kind, name, change: 'removed', fields: [] });
      continue;
    }
    const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .filter((f) => canonicalJson(a[f] ?? null) !== canonicalJson(b[f] ?? null))
      .sort();
    if (fields.length > 0) out.push({ kind, name, change: 'changed', fields });
  }
  for (const name of after.keys()) {
    if (!before.has(name)) out.push({ kind, name, change: 'added', fields: [] });
  }
  return out;
}

const PLURAL: Record<DiffKind, string> = {
  rule: 'rules',
  limit: 'limits',
  flow: 'flows',
  budget: 'budgets',
  precondition: 'preconditions',
  duty: 'duties',
  service: 'services',
  tools: 'tool classification',
  approval: 'approval settings',
};

function summarize(changes: readonly DiffEntry[]): string {
  if (changes.length === 0) return 'no changes';
  const parts: string[] = [];
  for (const kind of Object.keys(PLURAL) as DiffKind[]) {
    const of = changes.filter((c) => c.kind === kind);
    if (of.length === 0) continue;
    const counts = (['added', 'removed', 'changed'] as const)
      .map((change) => [change, of.filter((c) => c.change === change).length] as const)
      .filter(([, n]) => n > 0)
      .map(([change, n]) => `${n} ${change}`);
    parts.push(`${PLURAL[kind]}: ${counts.join(', ')}`);
  }
  return parts.join('; ');
}

export function diffPolicies(before: DiffSide, after: DiffSide): PolicyDiff {
  const b = before.compiled;
  const a = after.compiled;
  const changes = [
    ...compare('rule', rules(b), rules(a)),
    ...compare('limit', layer2(b.data.layer2.limits, b.layer2.limits), layer2(a.data.layer2.limits, a.layer2.limits)),
    ...compare('flow', layer2(b.data.layer2.flows, b.layer2.flows), layer2(a.data.layer2.flows, a.layer2.flows)),
    ...compare(
      'budget',
      layer2(b.data.layer2.budgets, b.layer2.budgets),
      layer2(a.data.layer2.budgets, a.layer2.budgets),
    ),
    ...compare(
      'precondition',
      layer2(b.data.layer2.preconditions, b.layer2.preconditions),
      layer2(a.data.layer2.preconditions, a.layer2.preconditions),
    ),
    ...compare('duty', layer2(b.data.layer2.duties, b.layer2.duties), layer2(a.data.layer2.duties, a.layer2.duties)),
    ...compare('service', services(before), services(after)),
    ...compare('tools', classification(b), classification(a)),
    ...compare('approval', new Map([['defaults', { ...b.approval }]]), new Map([['defaults', { ...a.approval }]])),
  ];
  return {
    from: b.data.revision,
    to: a.data.revision,
    unchanged: changes.length === 0,
    changes,
    summary: summarize(changes),
  };
}
