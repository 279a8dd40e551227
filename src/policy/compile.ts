/**
 * A validated policy file (+ its profiles) → the documents the gateway runs on:
 *  - `data`: the Layer 1 data document given to the Wasm policy (layer1-types.ts);
 *  - `layer2`: the stateful rules, looked up by name by the Layer 2 store (layer2-types.ts);
 *  - `approval`: approval defaults.
 * Pure and deterministic: equal inputs give byte-equal JSON and the same revision.
 */
import { createHash } from 'node:crypto';
import { durationToSeconds } from './duration.js';
import {
  type Action,
  type ClassifierOp,
  type CompiledClassifier,
  type CompiledRule,
  type CompiledSelector,
  HINT_NAMES,
  type Hints,
  type Layer1Data,
} from './layer1-types.js';
import type { ApprovalSettings, Layer2Rules } from './layer2-types.js';
import {
  type DataPath,
  formatPath,
  isCatchAll,
  loadPolicyText,
  type PolicyDiagnostic,
  readPolicyText,
} from './load.js';
import { type MergeNote, mergePolicy } from './merge.js';
import { profileService, resolveProfiles } from './profiles.js';
import { anchorPattern, globToPattern } from './regex.js';
import type { ClassifierRule, PolicyFile, PolicyRule, ProfileFile, Selector } from './schema.js';

export interface ApprovalDefaults {
  /** An approved call must be retried within this many seconds. */
  consumeWithinSeconds: number;
  maxPendingPerUser: number;
  /** How long a call is held for a quick decision before "pending" is answered. */
  waitSeconds: number;
  /** For require_approval rules without a `timeout`. */
  timeoutSeconds: number;
}

export const APPROVAL_DEFAULTS: ApprovalDefaults = {
  consumeWithinSeconds: 15 * 60,
  maxPendingPerUser: 20,
  waitSeconds: 0,
  timeoutSeconds: 24 * 3600,
};

export interface CompileWarning {
  /** Where in the policy file (`at`, formatted as `path`) the warning is about. */
  at: DataPath;
  path: string;
  message: string;
}

export interface CompiledPolicy {
  data: Layer1Data;
  layer2: Layer2Rules;
  approval: ApprovalDefaults;
  warnings: CompileWarning[];
}

export interface CompileOptions {
  /** The profiles the file references, keyed by reference (see `resolveProfiles`). */
  profiles?: Readonly<Record<string, ProfileFile>>;
}

/** The approval settings a call gets when `rule` (from `data.rules`) asks for approval. */
export function approvalSettingsFor(
  rule: Pick<CompiledRule, 'approvers' | 'timeout'>,
  defaults: ApprovalDefaults,
): ApprovalSettings {
  return {
    approvers: [...rule.approvers],
    timeoutSeconds: rule.timeout === null ? defaults.timeoutSeconds : durationToSeconds(rule.timeout),
    consumeWithinSeconds: defaults.consumeWithinSeconds,
  };
}

/** JSON with object keys sorted at every depth: the form the revision is computed over. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

const sortedKeys = (record: object): string[] => Object.keys(record).sort();

function mapSorted<V, W>(record: Readonly<Record<string, V>>, fn: (value: V, key: string) => W): Record<string, W> {
  return Object.fromEntries(sortedKeys(record).map((key) => [key, fn(record[key] as V, key)]));
}

function compileHints(source: Hints): Hints {
  const hints: Hints = {};
  for (const name of HINT_NAMES) {
    const value = source[name];
    if (value !== undefined) hints[name] = value;
  }
  return hints;
}

function compileClassifier(rule: ClassifierRule): CompiledClassifier {
  const labels = [...new Set(rule.set_labels)];
  const of = (op: ClassifierOp, value?: string | number): CompiledClassifier =>
    value === undefined ? { field: rule.field, op, labels } : { field: rule.field, op, value, labels };
  if (rule.contains !== undefined) return of('contains', rule.contains);
  if (rule.not_contains !== undefined) return of('not_contains', rule.not_contains);
  if (rule.present !== undefined) return of(rule.present ? 'present' : 'absent');
  if (rule.greater_than !== undefined) return of('greater_than', rule.greater_than);
  if (rule.less_than !== undefined) return of('less_than', rule.less_than);
  if (rule.equals_value !== undefined) return of('equals', rule.equals_value);
  if (rule.matches !== undefined) return of('matches', anchorPattern(rule.matches));
  // The schema admits exactly one condition, so this is a programming error, not bad input.
  throw new Error(`classifier on ${rule.field} has no condition`);
}

function compileSelector(selector: Selector): CompiledSelector {
  const out: CompiledSelector = {};
  if (selector.service !== undefined) out.service = globToPattern(selector.service);
  if (selector.tool !== undefined) out.tool = globToPattern(selector.tool);
  if (selector.verb !== undefined) out.verb = globToPattern(selector.verb);
  if (selector.labels !== undefined) out.labels = selector.labels.map(globToPattern);
  if (selector.hints !== undefined) out.hints = compileHints(selector.hints);
  return out;
}

function actionOf(rule: PolicyRule): Action {
  return rule.action === 'npl_evaluate' ? 'require_approval' : rule.action;
}

function compileRule(rule: PolicyRule, index: number): CompiledRule {
  const when: CompiledRule['when'] = compileHints(rule.when);
  if (rule.when.verb !== undefined) when.verb = rule.when.verb;
  if (rule.when.labels !== undefined) when.labels = [...new Set(rule.when.labels)];
  return {
    name: rule.name,
    index,
    priority: rule.priority,
    match: rule.match,
    when,
    action: actionOf(rule),
    approvers: [...new Set(rule.approvers ?? [])],
    timeout: rule.timeout ?? null,
  };
}

/** Lower priority first; equal priorities keep file order (a stable sort over the file's order). */
function sortRules(rules: CompiledRule[]): CompiledRule[] {
  return [...rules].sort((a, b) => a.priority - b.priority || a.index - b.index);
}

function ruleWarnings(policy: PolicyFile, sorted: CompiledRule[]): MergeNote[] {
  const notes: MergeNote[] = [];
  for (const rule of sorted) {
    const source = policy.policies[rule.index];
    const at = ['policies', rule.index];
    if (source !== undefined && source.match === 'any' && Object.keys(source.when).length === 0) {
      notes.push({ at, message: `rule "${rule.name}" never matches: match: any needs at least one condition` });
    }
    if (rule.action !== 'require_approval' && (source?.approvers !== undefined || source?.timeout !== undefined)) {
      notes.push({ at, message: `rule "${rule.name}" is ${rule.action}: its approvers and timeout are never used` });
    }
  }
  const first = sorted.findIndex((rule) => {
    const source = policy.policies[rule.index];
    return source !== undefined && isCatchAll(source);
  });
  const catchAll = sorted[first];
  if (catchAll !== undefined) {
    for (const rule of sorted.slice(first + 1)) {
      notes.push({
        at: ['policies', rule.index],
        message: `rule "${rule.name}" never applies: the catch-all "${catchAll.name}" (priority ${catchAll.priority}) comes first`,
      });
    }
  }
  return notes;
}

/** Classification for services the catalog does not know is dead weight: their calls are denied. */
function catalogWarnings(policy: PolicyFile): MergeNote[] {
  const notes: MergeNote[] = [];
  const known = (service: string) => Object.hasOwn(policy.services, service);
  policy.profiles.forEach((ref, i) => {
    const service = profileService(ref);
    if (service !== null && !known(service)) {
      notes.push({
        at: ['profiles', i],
        message: `${ref}: service "${service}" is not in services:, so its calls are denied`,
      });
    }
  });
  for (const section of ['tool_overrides', 'classifiers', 'value_extractors'] as const) {
    for (const [service, perTool] of Object.entries(policy[section])) {
      if (!known(service)) {
        notes.push({
          at: [section, service],
          message: `service "${service}" is not in services:, so its calls are denied`,
        });
        continue;
      }
      const allowed = policy.services[service]?.tools;
      if (allowed === undefined) continue;
      for (const tool of Object.keys(perTool)) {
        if (!allowed.includes(tool)) {
          notes.push({
            at: [section, service, tool],
            message: `tool "${tool}" is not in services.${service}.tools, so its calls are denied`,
          });
        }
      }
    }
  }
  return notes;
}

function compileLayer2(policy: PolicyFile): { data: Layer1Data['layer2']; rules: Layer2Rules } {
  const byName = <T extends { name: string }, R>(items: readonly T[], fn: (item: T) => R): Record<string, R> =>
    Object.fromEntries(items.map((item) => [item.name, fn(item)]));
  return {
    data: {
      limits: policy.limits.map((l) => ({ name: l.name, select: compileSelector(l.select) })),
      budgets: policy.budgets.map((b) => ({ name: b.name, select: compileSelector(b.select) })),
      preconditions: policy.preconditions.map((p) => ({ name: p.name, select: compileSelector(p.select) })),
      flows: policy.flows.map((f) => ({
        name: f.name,
        after: compileSelector(f.after),
        then: compileSelector(f.then),
      })),
      duties: policy.duties.map((d) => ({
        name: d.name,
        first: compileSelector(d.first),
        then: compileSelector(d.then),
      })),
    },
    rules: {
      limits: byName(policy.limits, (l) => ({
        name: l.name,
        max: l.max,
        perSeconds: durationToSeconds(l.per),
        scope: l.scope,
        action: l.action,
      })),
      budgets: byName(policy.budgets, (b) => ({ name: b.name, max: b.max, scope: b.scope })),
      preconditions: byName(policy.preconditions, (p) => ({
        name: p.name,
        require: mapSorted(p.require, (value) => String(value)),
      })),
      flows: byName(policy.flows, (f) => ({
        name: f.name,
        scope: f.scope,
        ttlSeconds: f.ttl === undefined ? null : durationToSeconds(f.ttl),
        action: f.action,
      })),
      duties: byName(policy.duties, (d) => ({ name: d.name, kind: d.kind, entity: [...d.entity] })),
    },
  };
}

function compileApproval(policy: PolicyFile): ApprovalDefaults {
  const a = policy.approval ?? {};
  return {
    consumeWithinSeconds:
      a.consume_within === undefined ? APPROVAL_DEFAULTS.consumeWithinSeconds : durationToSeconds(a.consume_within),
    maxPendingPerUser: a.max_pending_per_user ?? APPROVAL_DEFAULTS.maxPendingPerUser,
    waitSeconds: a.wait === undefined ? APPROVAL_DEFAULTS.waitSeconds : durationToSeconds(a.wait),
    timeoutSeconds: a.timeout === undefined ? APPROVAL_DEFAULTS.timeoutSeconds : durationToSeconds(a.timeout),
  };
}

function dedupeNotes(notes: readonly MergeNote[]): CompileWarning[] {
  const seen = new Set<string>();
  const out: CompileWarning[] = [];
  for (const note of notes) {
    const path = formatPath(note.at);
    const key = `${path}\n${note.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ at: note.at, path, message: note.message });
  }
  return out;
}

/**
 * Throws only on a programming error: a referenced profile missing from `opts.profiles` (resolve
 * them first with `resolveProfiles`, or use `compilePolicyText`).
 */
export function compilePolicy(policy: PolicyFile, opts: CompileOptions = {}): CompiledPolicy {
  const profiles = policy.profiles.map((ref) => {
    const profile = opts.profiles?.[ref];
    if (profile === undefined) throw new Error(`profile ${ref} was not resolved before compiling`);
    return profile;
  });
  const { merged, notes: mergeNotes } = mergePolicy(policy, profiles);

  const rules = sortRules(policy.policies.map(compileRule));
  const layer2 = compileLayer2(policy);
  const approval = compileApproval(policy);

  const body: Omit<Layer1Data, 'revision'> = {
    catalog: mapSorted(policy.services, (service) => ({
      enabled: service.enabled,
      suspended: false,
      tools: service.tools === undefined ? null : [...new Set(service.tools)].sort(),
    })),
    tools: mapSorted(merged.tools, (perTool) =>
      mapSorted(perTool, (tool) => ({ verb: tool.verb, hints: compileHints(tool.hints), labels: [...tool.labels] })),
    ),
    classifiers: mapSorted(merged.classifiers, (perTool) =>
      mapSorted(perTool, (entry) => entry.rules.map(compileClassifier)),
    ),
    extractors: mapSorted(merged.extractors, (perTool) =>
      mapSorted(perTool, (list) => list.map((e) => ({ field: e.field, prefix: e.label_prefix }))),
    ),
    rules,
    layer2: layer2.data,
  };
  // The revision covers everything compiled, so changing only a limit's `max` is a new revision too.
  const revision = createHash('sha256')
    .update(canonicalJson({ data: body, layer2: layer2.rules, approval }))
    .digest('hex')
    .slice(0, 16);

  const warnings = dedupeNotes([...mergeNotes, ...ruleWarnings(policy, rules), ...catalogWarnings(policy)]);
  return { data: { revision, ...body }, layer2: layer2.rules, approval, warnings };
}

export type CompileTextResult =
  | { ok: true; policy: PolicyFile; compiled: CompiledPolicy; warnings: PolicyDiagnostic[] }
  | { ok: false; errors: PolicyDiagnostic[] };

export interface CompileTextOptions {
  /** Where profiles live; default: the package's `profiles/`. */
  profilesDir?: string;
}

/** load → resolve profiles → compile, with every problem located in the file. Never throws on bad input. */
export function compilePolicyText(text: string, file: string, opts: CompileTextOptions = {}): CompileTextResult {
  const loaded = loadPolicyText(text, file);
  if (!loaded.ok) return loaded;
  const resolved = resolveProfiles(loaded.policy, loaded.source, opts.profilesDir);
  if (!resolved.ok) return resolved;
  const compiled = compilePolicy(loaded.policy, { profiles: resolved.profiles });
  const warnings = [
    ...loaded.warnings,
    ...compiled.warnings.map((w) => loaded.source.diagnostic(w.at, w.message)),
  ].sort((a, b) => a.line - b.line || a.column - b.column);
  return { ok: true, policy: loaded.policy, compiled, warnings };
}

export async function compilePolicyFile(path: string, opts: CompileTextOptions = {}): Promise<CompileTextResult> {
  const read = await readPolicyText(path);
  return read.ok ? compilePolicyText(read.text, path, opts) : read;
}
