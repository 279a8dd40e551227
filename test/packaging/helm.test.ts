/**
 * The Helm chart, checked without helm: Chart.yaml and the values files parse, the values (defaults
 * and the production example) validate against values.schema.json and the schema's cross-field
 * rules reject what they should, every `.Values.x` a template reads exists in values.yaml, every
 * `include` names a defined template, control blocks balance, and the settings the templates bake
 * in agree with the CLI, the config schema and the container image.
 *
 * `helm lint` / `helm template` are not run: helm is not installable here in reasonable time.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/config-file.js';
import { compilePolicyText } from '../../src/policy/compile.js';
import { applicationKeyFiles, cliHelp, isRecord, listFiles, parseYaml, readRepoFile, repoPath } from './lib.js';

// ---------------------------------------------------------------------------------------------
// A JSON Schema (draft-07) validator for the keywords values.schema.json uses; a test below fails
// if the schema starts using one this does not implement, so nothing is silently skipped.
// ---------------------------------------------------------------------------------------------

type Schema = Record<string, unknown>;

const KEYWORDS = new Set([
  '$schema',
  '$comment',
  '$ref',
  'title',
  'description',
  'definitions',
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'enum',
  'const',
  'minimum',
  'maximum',
  'minLength',
  'pattern',
  'allOf',
  'if',
  'then',
]);

function typeOk(type: string, v: unknown): boolean {
  switch (type) {
    case 'object':
      return isRecord(v);
    case 'array':
      return Array.isArray(v);
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number';
    case 'boolean':
      return typeof v === 'boolean';
    case 'null':
      return v === null;
    default:
      throw new Error(`unsupported type ${type}`);
  }
}

function validate(root: Schema, schema: Schema, v: unknown, path = ''): string[] {
  const errors: string[] = [];
  const at = path === '' ? '(root)' : path;
  const ref = schema['$ref'];
  if (typeof ref === 'string') {
    const m = /^#\/definitions\/(\w+)$/.exec(ref);
    const defs = root['definitions'];
    const target = m?.[1] && isRecord(defs) ? defs[m[1]] : undefined;
    if (!isRecord(target)) throw new Error(`unresolvable $ref ${ref}`);
    errors.push(...validate(root, target, v, path));
  }
  const type = schema['type'];
  if (typeof type === 'string' && !typeOk(type, v)) return [...errors, `${at}: must be ${type}`];
  if ('const' in schema && JSON.stringify(schema['const']) !== JSON.stringify(v)) {
    errors.push(`${at}: must be ${JSON.stringify(schema['const'])}`);
  }
  const en = schema['enum'];
  if (Array.isArray(en) && !en.some((x) => JSON.stringify(x) === JSON.stringify(v))) {
    errors.push(`${at}: must be one of ${JSON.stringify(en)}`);
  }
  if (typeof v === 'number') {
    const min = schema['minimum'];
    const max = schema['maximum'];
    if (typeof min === 'number' && v < min) errors.push(`${at}: must be >= ${min}`);
    if (typeof max === 'number' && v > max) errors.push(`${at}: must be <= ${max}`);
  }
  if (typeof v === 'string') {
    const minLength = schema['minLength'];
    const pattern = schema['pattern'];
    if (typeof minLength === 'number' && [...v].length < minLength) errors.push(`${at}: too short`);
    if (typeof pattern === 'string' && !new RegExp(pattern, 'u').test(v)) errors.push(`${at}: must match ${pattern}`);
  }
  if (Array.isArray(v)) {
    const minItems = schema['minItems'];
    if (typeof minItems === 'number' && v.length < minItems) errors.push(`${at}: needs ${minItems}+ items`);
    const items = schema['items'];
    if (isRecord(items)) v.forEach((x, i) => errors.push(...validate(root, items, x, `${path}[${i}]`)));
  }
  if (isRecord(v)) {
    const props = isRecord(schema['properties']) ? schema['properties'] : {};
    const required = schema['required'];
    if (Array.isArray(required)) {
      for (const r of required) if (typeof r === 'string' && !(r in v)) errors.push(`${at}: ${r} is required`);
    }
    const extra = schema['additionalProperties'];
    for (const [k, x] of Object.entries(v)) {
      const p = `${path === '' ? '' : `${path}.`}${k}`;
      const sub = props[k];
      if (isRecord(sub)) errors.push(...validate(root, sub, x, p));
      else if (extra === false) errors.push(`${p}: not allowed`);
      else if (isRecord(extra)) errors.push(...validate(root, extra, x, p));
    }
  }
  const allOf = schema['allOf'];
  if (Array.isArray(allOf)) for (const s of allOf) if (isRecord(s)) errors.push(...validate(root, s, v, path));
  const cond = schema['if'];
  const then = schema['then'];
  if (isRecord(cond) && isRecord(then) && validate(root, cond, v, path).length === 0) {
    errors.push(...validate(root, then, v, path));
  }
  return errors;
}

function keywordsUsed(schema: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(schema)) for (const x of schema) keywordsUsed(x, out);
  if (!isRecord(schema)) return out;
  for (const [k, v] of Object.entries(schema)) {
    out.add(k);
    if (k === 'properties' || k === 'definitions') {
      if (isRecord(v)) for (const sub of Object.values(v)) keywordsUsed(sub, out);
    } else if (k !== 'enum' && k !== 'const' && k !== 'required') {
      keywordsUsed(v, out);
    }
  }
  return out;
}

/** Helm's merge of user values over the chart's: maps merge, everything else replaces. */
function merge(base: unknown, over: unknown): unknown {
  if (!isRecord(base) || !isRecord(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v);
  return out;
}

// ---------------------------------------------------------------------------------------------

const CHART = repoPath('charts', 'mcpgw');
const chartFile = (...p: string[]): string => readFileSync(join(CHART, ...p), 'utf8');
const schema = JSON.parse(chartFile('values.schema.json')) as Schema;
const values = parseYaml(chartFile('values.yaml'), 'values.yaml');
const check = (v: unknown): string[] => validate(schema, schema, v);
const templates = listFiles(join(CHART, 'templates'));
const templateText = (f: string): string => chartFile('templates', f);

describe('Helm chart charts/mcpgw', () => {
  it('Chart.yaml: API v2, the name, a semver version, the app version of package.json', () => {
    const chart = parseYaml(chartFile('Chart.yaml'), 'Chart.yaml');
    expect(isRecord(chart)).toBe(true);
    if (!isRecord(chart)) return;
    expect(chart['apiVersion']).toBe('v2');
    expect(chart['name']).toBe('mcpgw');
    expect(chart['type']).toBe('application');
    expect(chart['version']).toMatch(/^\d+\.\d+\.\d+(-[\w.]+)?$/);
    const pkg = JSON.parse(readRepoFile('package.json')) as { version: string };
    expect(chart['appVersion']).toBe(pkg.version);
  });

  it('values.schema.json is draft-07 and uses only keywords this check implements', () => {
    expect(schema['$schema']).toBe('http://json-schema.org/draft-07/schema#');
    const unknown = [...keywordsUsed(schema)].filter((k) => !KEYWORDS.has(k));
    expect(unknown).toEqual([]);
  });

  it('the default values and every ci/*-values.yaml validate', () => {
    expect(check(values)).toEqual([]);
    const ciFiles = listFiles(join(CHART, 'ci'));
    expect(ciFiles.length).toBeGreaterThan(0);
    for (const f of ciFiles) {
      expect(f).toMatch(/-values\.yaml$/);
      expect(check(merge(values, parseYaml(chartFile('ci', f), f))), f).toEqual([]);
    }
  });

  it('the schema rejects what the chart cannot run', () => {
    const bad = (over: unknown): string[] => check(merge(values, over));
    // PGlite is one process: one replica.
    expect(bad({ replicaCount: 2, keys: { existingSecret: 'k' } })).toContain('replicaCount: must be 1');
    // PostgreSQL needs its URL from a Secret.
    expect(bad({ database: { embedded: false } })).toContain('database.existingSecret: too short');
    // Replicas must share keys.
    expect(bad({ replicaCount: 3, database: { embedded: false, existingSecret: 'db' } })).toContain(
      'keys.existingSecret: too short',
    );
    expect(bad({ replicaCount: 0 })).toContain('replicaCount: must be >= 1');
    expect(bad({ replicaCont: 2 })).toContain('replicaCont: not allowed');
    expect(bad({ image: { tag: 'bad tag' } })).toEqual([
      'image.tag: must match ^(|[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$',
    ]);
    expect(bad({ mode: 'sidecar' })).toHaveLength(1);
    expect(bad({ securityContext: { allowPrivilegeEscalation: true } })).toContain(
      'securityContext.allowPrivilegeEscalation: must be false',
    );
    expect(bad({ podSecurityContext: { runAsNonRoot: false } })).toContain(
      'podSecurityContext.runAsNonRoot: must be true',
    );
    expect(bad({ service: { port: 70000 } })).toContain('service.port: must be <= 65535');
    expect(bad({ secrets: { backend: 'vault' } })).toHaveLength(1);
  });

  it('secure defaults: non-root, read-only root filesystem, no privilege escalation, no capabilities', () => {
    expect(values).toMatchObject({
      podSecurityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001 },
      securityContext: {
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      },
      serviceAccount: { automount: false },
      service: { port: 8000 },
    });
    // The uid the image creates.
    expect(readRepoFile('Dockerfile')).toContain('--uid 10001');
  });

  it('templates read only values that exist in values.yaml', () => {
    const missing: string[] = [];
    let refs = 0;
    for (const f of templates) {
      for (const m of templateText(f).matchAll(/\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
        refs++;
        let node: unknown = values;
        for (const key of (m[1] ?? '').slice(1).split('.')) {
          if (!isRecord(node) || !(key in node)) {
            missing.push(`${f}: .Values${m[1] ?? ''}`);
            break;
          }
          node = node[key];
        }
      }
    }
    expect(missing).toEqual([]);
    expect(refs).toBeGreaterThan(30);
  });

  it('every include names a defined template, and control blocks balance', () => {
    const helpers = templateText('_helpers.tpl');
    const defined = new Set([...helpers.matchAll(/\{\{-?\s*define "([^"]+)"/g)].map((m) => m[1]));
    for (const f of templates) {
      const text = templateText(f);
      for (const m of text.matchAll(/include "([^"]+)"/g))
        expect(defined, `${f}: include "${m[1] ?? ''}"`).toContain(m[1]);
      const opens = [...text.matchAll(/\{\{-?\s*(if|range|with|define)\b/g)].length;
      const ends = [...text.matchAll(/\{\{-?\s*end\s*-?\}\}/g)].length;
      expect(ends, `${f}: {{ end }} count`).toBe(opens);
      // Every action is closed.
      expect(text.split('{{').length, `${f}: {{ vs }}`).toBe(text.split('}}').length);
    }
    for (const name of ['mcpgw.name', 'mcpgw.fullname', 'mcpgw.labels', 'mcpgw.selectorLabels', 'mcpgw.image']) {
      expect(defined).toContain(name);
    }
  });

  it('ships the expected manifests, NOTES.txt and a helm test', () => {
    expect(templates).toEqual([
      'NOTES.txt',
      '_helpers.tpl',
      'configmap.yaml',
      'deployment.yaml',
      'pvc.yaml',
      'service.yaml',
      'serviceaccount.yaml',
      'tests/test-connection.yaml',
    ]);
    const kinds: Record<string, string> = {
      'configmap.yaml': 'ConfigMap',
      'deployment.yaml': 'Deployment',
      'pvc.yaml': 'PersistentVolumeClaim',
      'service.yaml': 'Service',
      'serviceaccount.yaml': 'ServiceAccount',
      'tests/test-connection.yaml': 'Pod',
    };
    for (const [f, kind] of Object.entries(kinds)) {
      expect(templateText(f)).toMatch(new RegExp(`^kind: ${kind}$`, 'm'));
      expect(templateText(f)).toMatch(/^apiVersion: \S+$/m);
      // Helm sets the namespace; charts must not.
      expect(templateText(f)).not.toMatch(/^\s*namespace:/m);
    }
    expect(templateText('tests/test-connection.yaml')).toContain('helm.sh/hook: test');
    expect(existsSync(join(CHART, '.helmignore'))).toBe(true);
  });

  it('the Deployment runs `mcpgw serve --role all --front envoy` with options the CLI has, on port 8000, probing /healthz', () => {
    const d = templateText('deployment.yaml');
    const args = /args:\n((?:\s+- .+\n)+)/.exec(d)?.[1] ?? '';
    const argv = [...args.matchAll(/- (.+)/g)].map((m) => m[1]?.trim() ?? '');
    expect(argv.slice(0, 7)).toEqual([
      'serve',
      '--role',
      'all',
      '--front',
      'envoy',
      '--config',
      '/etc/mcpgw/config/config.yaml',
    ]);
    const help = cliHelp('serve');
    for (const flag of argv.filter((a) => a.startsWith('--'))) expect(help, flag).toMatch(new RegExp(` ${flag}[ ,]`));
    expect(d).toContain('- /usr/local/bin/mcpgw');
    expect(d).toMatch(/containerPort: 8000\n/);
    expect([...d.matchAll(/path: \/healthz/g)]).toHaveLength(3);
    // The database URL only ever comes from a Secret.
    expect(d).toMatch(
      /name: MCPGW_DATABASE_URL\n[\s\S]*?secretKeyRef:\n\s+name: \{\{ \.Values\.database\.existingSecret \}\}/,
    );
    expect(d).toContain('checksum/config:');
    // The keys Secret is copied into a private directory as 0600 files.
    expect(d).toContain('install -m 0600');
    expect(d).toMatch(/mkdir -p \/var\/lib\/mcpgw\/keys\n\s+chmod 0700 \/var\/lib\/mcpgw\/keys/);
  });

  it('the ConfigMap config.yaml is a valid mcpgw config listening on 8000, and the default policy compiles', () => {
    const cm = templateText('configmap.yaml');
    const block = /config\.yaml: \|\n((?: {4}.*\n)+)/.exec(cm)?.[1] ?? '';
    const text = block.replace(/^ {4}/gm, '').replace('{{ .Values.secrets.backend }}', 'builtin');
    expect(text).not.toContain('{{');
    const cfg = configSchema.parse(parseYaml(text, 'config.yaml'));
    expect(cfg.listen).toEqual({ host: '0.0.0.0', port: 8000 });
    expect(cfg.policy).toBe('/etc/mcpgw/policy/mcp-security.yaml');
    expect(templateText('deployment.yaml')).toMatch(/mountPath: \/etc\/mcpgw\/policy\n/);
    if (!isRecord(values) || !isRecord(values['policy'])) throw new Error('values.policy');
    const content = values['policy']['content'];
    expect(typeof content).toBe('string');
    expect(compilePolicyText(String(content), 'values.policy.content').ok).toBe(true);
  });

  it('values.yaml documents every key file replicas must share', () => {
    const text = chartFile('values.yaml');
    for (const k of applicationKeyFiles()) expect(text, k).toContain(k);
  });

  it('the render-time checks repeat the schema’s rules (for --skip-schema-validation)', () => {
    const helpers = templateText('_helpers.tpl');
    expect([...helpers.matchAll(/\{\{- fail "/g)]).toHaveLength(3);
    expect(templateText('deployment.yaml').startsWith('{{- include "mcpgw.validate" . }}')).toBe(true);
  });
});
