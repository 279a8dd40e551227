/**
 * Profiles + the file's own classification → one classification per tool (upstream §1.3):
 *  1. profiles in the order listed; a later profile's tool entry replaces an earlier one;
 *  2. `tool_overrides`: each hint given replaces, `verb` replaces when given, `labels` replace
 *     (no union); an override may introduce a tool no profile has;
 *  3. `classifiers` replace the profile's list for that tool;
 *  4. `value_extractors` set;
 *  5. `{key}` in classifier condition values → the tenant's value (unknown keys stay as written).
 * Services are not merged here: only `services:` makes the catalog (DESIGN §6).
 */
import { HINT_NAMES, type Hints, type Verb } from './layer1-types.js';
import type { DataPath } from './load.js';
import { quoteMeta } from './regex.js';
import type { ClassifierRule, PolicyFile, ProfileFile, ValueExtractor } from './schema.js';

export interface MergedTool {
  verb: Verb | null;
  hints: Hints;
  labels: string[];
}

/** A classifier list and where it was written, so later warnings can point at it. */
export interface MergedClassifiers {
  rules: ClassifierRule[];
  origin: DataPath;
}

export interface MergedPolicy {
  tools: Record<string, Record<string, MergedTool>>;
  classifiers: Record<string, Record<string, MergedClassifiers>>;
  extractors: Record<string, Record<string, ValueExtractor[]>>;
}

export interface MergeNote {
  at: DataPath;
  message: string;
}

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9_]*)\}/g;

/**
 * `{key}` → `tenant[key]` in every string inside `value` (objects and arrays recursively); other
 * values are returned as they are. `escape` transforms the inserted text (e.g. for regexes).
 */
export function interpolateTenant<T>(
  value: T,
  tenant: Readonly<Record<string, string>>,
  escape: (text: string) => string = (text) => text,
): T {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      return v.replace(PLACEHOLDER, (whole, key: string) =>
        Object.hasOwn(tenant, key) ? escape(tenant[key] ?? '') : whole,
      );
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, inner]) => [k, walk(inner)]));
    }
    return v;
  };
  return walk(value) as T;
}

/** Placeholders that no tenant key fills, in the order they appear. */
export function unresolvedPlaceholders(text: string, tenant: Readonly<Record<string, string>>): string[] {
  return [...text.matchAll(PLACEHOLDER)].map((m) => m[1] ?? '').filter((key) => !Object.hasOwn(tenant, key));
}

function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}

function pickHints(source: Hints): Hints {
  const hints: Hints = {};
  for (const name of HINT_NAMES) {
    const value = source[name];
    if (value !== undefined) hints[name] = value;
  }
  return hints;
}

function slot<V>(map: Record<string, Record<string, V>>, service: string): Record<string, V> {
  map[service] ??= {};
  return map[service];
}

/**
 * Only the condition values are interpolated: field names and labels are validated as written,
 * and a tenant value must not be able to turn them into something the schema rejected. In
 * `matches` the value is inserted as a literal, so `acme.com` does not also match `acmeXcom`.
 */
function interpolateRule(
  rule: ClassifierRule,
  tenant: Readonly<Record<string, string>>,
  at: DataPath,
  where: string,
  notes: MergeNote[],
): ClassifierRule {
  const out: ClassifierRule = { ...rule };
  for (const key of ['contains', 'not_contains', 'equals_value', 'matches'] as const) {
    const value = rule[key];
    if (typeof value !== 'string') continue;
    for (const missing of unresolvedPlaceholders(value, tenant)) {
      notes.push({ at, message: `${where}: {${missing}} in ${key} is not a tenant key, so it stays as written` });
    }
    out[key] = interpolateTenant(value, tenant, key === 'matches' ? quoteMeta : undefined);
  }
  return out;
}

/**
 * `profiles[i]` is the profile that `policy.profiles[i]` references. Pure: the same inputs give
 * the same output.
 */
export function mergePolicy(
  policy: PolicyFile,
  profiles: readonly ProfileFile[],
): { merged: MergedPolicy; notes: MergeNote[] } {
  const merged: MergedPolicy = { tools: {}, classifiers: {}, extractors: {} };
  const notes: MergeNote[] = [];

  profiles.forEach((profile, i) => {
    const origin = ['profiles', i];
    const tools = slot(merged.tools, profile.service);
    for (const [tool, entry] of Object.entries(profile.tools)) {
      tools[tool] = { verb: entry.verb ?? null, hints: pickHints(entry), labels: unique(entry.labels ?? []) };
      if (entry.classify !== undefined)
        slot(merged.classifiers, profile.service)[tool] = { rules: entry.classify, origin };
    }
  });

  for (const [service, overrides] of Object.entries(policy.tool_overrides)) {
    const tools = slot(merged.tools, service);
    for (const [tool, override] of Object.entries(overrides)) {
      const base = tools[tool] ?? { verb: null, hints: {}, labels: [] };
      tools[tool] = {
        verb: override.verb ?? base.verb,
        hints: { ...base.hints, ...pickHints(override) },
        labels: override.labels === undefined ? base.labels : unique(override.labels),
      };
    }
  }

  for (const [service, perTool] of Object.entries(policy.classifiers)) {
    for (const [tool, rules] of Object.entries(perTool)) {
      slot(merged.classifiers, service)[tool] = { rules, origin: ['classifiers', service, tool] };
    }
  }

  for (const [service, perTool] of Object.entries(policy.value_extractors)) {
    for (const [tool, extractors] of Object.entries(perTool)) slot(merged.extractors, service)[tool] = extractors;
  }

  for (const [service, perTool] of Object.entries(merged.classifiers)) {
    for (const [tool, entry] of Object.entries(perTool)) {
      entry.rules = entry.rules.map((rule, i) => {
        const fromProfile = entry.origin[0] === 'profiles';
        const at = fromProfile ? entry.origin : [...entry.origin, i];
        return interpolateRule(rule, policy.tenant, at, `${service}.${tool}`, notes);
      });
    }
  }

  return { merged, notes };
}
