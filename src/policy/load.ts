/**
 * Reading `mcp-security.yaml` (and profiles): YAML 1.2 with unique keys → zod → a typed value, or
 * a list of `{file, line, column, path, message}` that points at the offending spot. Nothing here
 * throws on bad input.
 */
import { readFile } from 'node:fs/promises';
import {
  type Document,
  isAlias,
  isMap,
  isNode,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node as YamlNode,
  parseDocument,
  visit,
} from 'yaml';
import type { z } from 'zod';
import { type PolicyFile, policyFileSchema } from './schema.js';

export interface PolicyDiagnostic {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  /** Where in the document, e.g. `policies[2].when.labels[0]`; `""` for the whole file. */
  path: string;
  message: string;
}

export type DataPath = readonly (string | number)[];

/** A parsed file that can still point back at its text. */
export interface PolicySource {
  file: string;
  /**
   * Position of the deepest node that exists along `path`: a scalar's value, a collection's key
   * (or a list item's start); with `key`, the last key itself.
   */
  locate(path: DataPath, key?: boolean): { line: number; column: number };
  diagnostic(path: DataPath, message: string, key?: boolean): PolicyDiagnostic;
}

export type ParseResult<T> = { ok: true; value: T; source: PolicySource } | { ok: false; errors: PolicyDiagnostic[] };

export type LoadResult =
  | { ok: true; policy: PolicyFile; warnings: PolicyDiagnostic[]; source: PolicySource }
  | { ok: false; errors: PolicyDiagnostic[] };

/** `policies[2].when.labels[0]`; keys that are not plain words are quoted: `tool_overrides["a.b"]`. */
export function formatPath(path: DataPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/**
 * Core-schema tags only: a policy has no use for others, and the library would still turn some of
 * them (`!!binary`) into values that are not plain data.
 */
const ALLOWED_TAGS = new Set([
  'tag:yaml.org,2002:str',
  'tag:yaml.org,2002:int',
  'tag:yaml.org,2002:float',
  'tag:yaml.org,2002:bool',
  'tag:yaml.org,2002:null',
  'tag:yaml.org,2002:map',
  'tag:yaml.org,2002:seq',
]);

function keyText(key: unknown): string | null {
  return isScalar(key) ? String(key.value) : null;
}

/** The child node of a map or sequence under one path segment, with the key node for maps. */
function child(node: unknown, segment: string | number): { node: unknown; key: YamlNode | null } | null {
  if (isMap(node)) {
    const pair = node.items.find((p) => keyText(p.key) === String(segment));
    return pair === undefined ? null : { node: pair.value, key: isNode(pair.key) ? pair.key : null };
  }
  if (isSeq(node) && typeof segment === 'number') {
    const item: unknown = node.items[segment];
    return item === undefined ? null : { node: item, key: null };
  }
  return null;
}

function makeSource(file: string, doc: Document, counter: LineCounter): PolicySource {
  const position = (offset: number) => {
    const { line, col } = counter.linePos(offset);
    return { line, column: col };
  };
  const locate = (path: DataPath, atKey = false) => {
    let node: unknown = doc.contents;
    let offset = isNode(node) ? (node.range?.[0] ?? 0) : 0;
    for (const [i, segment] of path.entries()) {
      if (isAlias(node)) break;
      const next = child(node, segment);
      if (next === null) break;
      const last = i === path.length - 1;
      if (last && atKey && next.key?.range) {
        offset = next.key.range[0];
        break;
      }
      node = next.node;
      // A map or list under a key is named by its key: its own start is its first child's line.
      const collection = isMap(node) || isSeq(node);
      if (isNode(node) && node.range && !(collection && next.key?.range)) offset = node.range[0];
      else if (next.key?.range) offset = next.key.range[0];
    }
    return position(offset);
  };
  return {
    file,
    locate,
    diagnostic: (path, message, key) => ({ file, ...locate(path, key), path: formatPath(path), message }),
  };
}

/** The path of the deepest node around a text offset, to name where a YAML error is. */
function pathAt(doc: Document, offset: number): (string | number)[] {
  const path: (string | number)[] = [];
  const contains = (start: number | undefined, end: number | undefined) =>
    start !== undefined && end !== undefined && start <= offset && offset < end;
  let node: unknown = doc.contents;
  for (;;) {
    let next: { segment: string | number; node: unknown } | undefined;
    if (isMap(node)) {
      for (const pair of node.items) {
        const name = keyText(pair.key);
        const start = isNode(pair.key) ? pair.key.range?.[0] : undefined;
        const end = (isNode(pair.value) ? pair.value.range : isNode(pair.key) ? pair.key.range : undefined)?.[1];
        if (name !== null && contains(start, end)) {
          next = { segment: name, node: pair.value };
          break;
        }
      }
    } else if (isSeq(node)) {
      const i = node.items.findIndex((item) => isNode(item) && contains(item.range?.[0], item.range?.[1]));
      if (i >= 0) next = { segment: i, node: node.items[i] };
    }
    if (next === undefined) return path;
    path.push(next.segment);
    node = next.node;
  }
}

/** What plain JSON-ish data cannot express, reported before conversion. */
function structureErrors(doc: Document, source: PolicySource, file: string, counter: LineCounter): PolicyDiagnostic[] {
  const errors: PolicyDiagnostic[] = [];
  const at = (node: YamlNode, message: string): void => {
    const offset = node.range?.[0] ?? 0;
    const { line, col } = counter.linePos(offset);
    errors.push({ file, line, column: col, path: formatPath(pathAt(doc, offset)), message });
  };
  if (doc.directives?.yaml.explicit && doc.directives.yaml.version !== '1.2') {
    errors.push({ ...source.diagnostic([], ''), message: 'only YAML 1.2 is accepted (remove the %YAML directive)' });
  }
  visit(doc, {
    Pair(_, pair) {
      if (isPair(pair) && isNode(pair.key) && !isScalar(pair.key)) at(pair.key, 'a key must be a plain scalar');
    },
    Node(_, node) {
      if (node.tag !== undefined && !ALLOWED_TAGS.has(node.tag)) at(node, `tag ${node.tag} is not allowed here`);
    },
  });
  return errors;
}

function sortDiagnostics(list: PolicyDiagnostic[]): PolicyDiagnostic[] {
  return list.sort((a, b) => a.line - b.line || a.column - b.column);
}

function hasPath(data: unknown, path: DataPath): boolean {
  let value = data;
  for (const segment of path) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, segment)) return false;
    value = (value as Record<string | number, unknown>)[segment];
  }
  return true;
}

function issueDiagnostics(issue: z.core.$ZodIssue, data: unknown, source: PolicySource): PolicyDiagnostic[] {
  const path = issue.path.filter((s): s is string | number => typeof s !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => source.diagnostic([...path, key], `unknown key "${key}"`, true));
  }
  if (issue.code === 'invalid_key') {
    return issue.issues.map((inner) => source.diagnostic(path, `invalid key: ${inner.message}`, true));
  }
  const key = path.at(-1);
  if (key !== undefined && !hasPath(data, path) && hasPath(data, path.slice(0, -1))) {
    // zod's "expected string, received undefined" says nothing a reader can act on.
    const detail = issue.code === 'invalid_type' ? '' : ` (${issue.message})`;
    return [source.diagnostic(path, `missing required key "${key}"${detail}`)];
  }
  return [source.diagnostic(path, issue.message)];
}

/** YAML text → value of `schema`, with every problem located in the text. */
export function parseYamlAs<S extends z.ZodType>(schema: S, text: string, file: string): ParseResult<z.output<S>> {
  const counter = new LineCounter();
  const doc = parseDocument(text, { version: '1.2', uniqueKeys: true, prettyErrors: false, lineCounter: counter });
  const source = makeSource(file, doc, counter);
  const yamlProblems = [...doc.errors, ...doc.warnings].map((problem): PolicyDiagnostic => {
    const [start] = problem.pos;
    const { line, col } = counter.linePos(start);
    const path = pathAt(doc, start);
    const key = path.at(-1);
    const message =
      problem.code === 'DUPLICATE_KEY' && typeof key === 'string'
        ? `duplicate key "${key}" (keys must be unique)`
        : (problem.message.split('\n')[0] ?? problem.code);
    return { file, line, column: col, path: formatPath(path), message };
  });
  if (yamlProblems.length > 0) return { ok: false, errors: sortDiagnostics(yamlProblems) };

  const structural = structureErrors(doc, source, file, counter);
  if (structural.length > 0) return { ok: false, errors: sortDiagnostics(structural) };

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    return { ok: false, errors: [source.diagnostic([], error instanceof Error ? error.message : String(error))] };
  }
  if (data === null || data === undefined) {
    return { ok: false, errors: [source.diagnostic([], 'the document is empty')] };
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    return {
      ok: false,
      errors: sortDiagnostics(parsed.error.issues.flatMap((i) => issueDiagnostics(i, data, source))),
    };
  }
  return { ok: true, value: parsed.data, source };
}

/** A rule every call matches: `when: {}` under `match: all`. */
export function isCatchAll(rule: PolicyFile['policies'][number]): boolean {
  return rule.match === 'all' && Object.keys(rule.when).length === 0;
}

function policyWarnings(policy: PolicyFile, source: PolicySource): PolicyDiagnostic[] {
  if (policy.policies.length === 0) {
    return [source.diagnostic(['policies'], 'no policies: every tools/call will be denied', true)];
  }
  if (!policy.policies.some(isCatchAll)) {
    return [
      source.diagnostic(
        ['policies'],
        'no catch-all rule (when: {}): calls that no rule matches are denied; add one to make the default explicit',
        true,
      ),
    ];
  }
  return [];
}

export function loadPolicyText(text: string, file: string): LoadResult {
  const parsed = parseYamlAs(policyFileSchema, text, file);
  if (!parsed.ok) return parsed;
  return {
    ok: true,
    policy: parsed.value,
    source: parsed.source,
    warnings: policyWarnings(parsed.value, parsed.source),
  };
}

/** Reads with a fatal UTF-8 decoder: a policy file that is not UTF-8 is refused, not guessed at. */
export async function readPolicyText(
  path: string,
): Promise<{ ok: true; text: string } | { ok: false; errors: PolicyDiagnostic[] }> {
  try {
    const bytes = await readFile(path);
    return { ok: true, text: new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, errors: [{ file: path, line: 1, column: 1, path: '', message: `cannot read: ${message}` }] };
  }
}

export async function loadPolicyFile(path: string): Promise<LoadResult> {
  const read = await readPolicyText(path);
  return read.ok ? loadPolicyText(read.text, path) : read;
}
