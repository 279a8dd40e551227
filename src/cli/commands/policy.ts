/**
 * `mcpgw apply [file]` and `mcpgw profile add|list`: the policy goes to the running gateway through
 * `POST /admin/v1/policy`, which validates, stores a revision and swaps it in, or changes nothing.
 * The file on disk is the source of truth the gateway loads at start, so `profile add` writes it
 * only after the gateway took the new text.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Node as YamlNode } from 'yaml';
import {
  policyApplyResponseSchema,
  policyDiagnosticSchema,
  type PolicyApplyResponse,
  type PolicyDiagnosticBody,
} from '../../admin/contract.js';
import { homePaths } from '../../config/home.js';
import { mcpgwHome } from '../../config/keys.js';
import { AdminClientError, type AdminClient } from '../admin-client.js';
import { CliError, connection, examples, out, paint, plural, printJson, run, table, UsageError } from '../output.js';
import { connect, type ConnOptions, type JsonOption } from './common.js';

/** The policy the installation loads at start: `policy:` in config.yaml, else MCPGW_HOME/mcp-security.yaml. */
export async function installationPolicy(home: string = mcpgwHome()): Promise<string> {
  const paths = homePaths(home);
  if (!existsSync(paths.config)) return paths.policy;
  const { readConfig } = await import('../../config/config-file.js');
  try {
    return (await readConfig(paths.config)).policy;
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err), 1, 'fix config.yaml, or name the policy file');
  }
}

async function readPolicy(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new CliError(
      `cannot read ${file}${typeof code === 'string' ? ` (${code})` : ''}`,
      1,
      'name the policy file: mcpgw apply <file>',
    );
  }
}

export const diagnosticLine = (d: PolicyDiagnosticBody): string =>
  `${d.file}:${d.line}:${d.column}: ${d.path === '' ? '' : `${d.path}: `}${d.message}`;

/** An invalid policy names file, line, column and field of every problem. */
function explainRejected(err: unknown): never {
  if (err instanceof AdminClientError && err.code === 'invalid_policy') {
    const diags = policyDiagnosticSchema.array().safeParse(err.details);
    const lines = diags.success ? diags.data.map(diagnosticLine) : [];
    throw new CliError(
      [err.message, ...lines].join('\n'),
      1,
      'fix the file and run `mcpgw apply` again (`--dry-run` checks without applying)',
      err.details,
      err.code,
    );
  }
  throw err;
}

async function postPolicy(c: AdminClient, file: string, content: string, dryRun: boolean) {
  try {
    return await c.request('POST', '/policy', policyApplyResponseSchema, { filename: file, content, dryRun });
  } catch (err) {
    explainRejected(err);
  }
}

const SIGN = { added: '+', removed: '-', changed: '~' } as const;

function describeApply(r: PolicyApplyResponse, file: string): string[] {
  const head = r.dryRun
    ? r.diff.unchanged
      ? `Dry run: ${file} is valid and matches revision ${r.previousRevision} in force; nothing to apply`
      : `Dry run: ${file} is valid; applying it would change ${r.previousRevision} → ${r.revision} (nothing applied)`
    : r.diff.unchanged
      ? `${paint.ok('✓')} ${file}: no changes, revision ${r.revision} stays in force`
      : `${paint.ok('✓')} Applied ${file}: revision ${r.revision} (was ${r.previousRevision})`;
  const changes = r.diff.changes.map(
    (ch) => `  ${SIGN[ch.change]} ${ch.kind} ${ch.name}${ch.fields.length > 0 ? ` (${ch.fields.join(', ')})` : ''}`,
  );
  return [
    head,
    ...(r.diff.unchanged ? [] : [`  ${r.diff.summary}`, ...changes]),
    ...r.warnings.map((w) => `${paint.warn('!')} ${diagnosticLine(w)}`),
  ];
}

/** `gmail`, `security-gmail` or `@org/security-gmail` → `@org/security-gmail` (org defaults to noumena). */
function profileRef(name: string): string {
  if (/^@[a-z0-9-]+\/security-[a-z][a-z0-9-]{0,30}$/.test(name)) return name;
  const service = name.replace(/^security-/, '');
  if (/^[a-z][a-z0-9-]{0,30}$/.test(service)) return `@noumena/security-${service}`;
  throw new UsageError(
    `not a profile name: ${name}`,
    'name it like gmail or @noumena/security-gmail; see `mcpgw profile list`',
  );
}

interface ProfileSummary {
  name: string;
  service: string;
  description: string | null;
  tools: number;
  classifiers: number;
}

async function loadProfileSummary(ref: string): Promise<ProfileSummary & { file: string }> {
  const { loadProfile } = await import('../../policy/profiles.js');
  const r = loadProfile(ref);
  if (!r.ok) {
    throw new CliError(r.errors.map((e) => e.message).join('\n'), 1, 'see the available profiles: mcpgw profile list');
  }
  return {
    name: ref,
    service: r.profile.service,
    description: r.profile.description ?? null,
    tools: Object.keys(r.profile.tools).length,
    classifiers: Object.values(r.profile.tools).reduce((n, t) => n + (t.classify?.length ?? 0), 0),
    file: r.file,
  };
}

/** Services whose profile the policy file lists (any org: profiles are looked up by service). */
async function listedProfiles(text: string, file: string): Promise<{ refs: string[]; services: string[] }> {
  const { parseDocument } = await import('yaml');
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new CliError(
      `${file} is not valid YAML: ${doc.errors[0]?.message ?? ''}`,
      1,
      'fix it first; `mcpgw apply --dry-run` shows where',
    );
  }
  const js: unknown = doc.toJS();
  const rawProfiles = typeof js === 'object' && js !== null ? (js as Record<string, unknown>)['profiles'] : undefined;
  const refs = Array.isArray(rawProfiles) ? rawProfiles.filter((x): x is string => typeof x === 'string') : [];
  const rawServices = typeof js === 'object' && js !== null ? (js as Record<string, unknown>)['services'] : undefined;
  const services =
    typeof rawServices === 'object' && rawServices !== null && !Array.isArray(rawServices)
      ? Object.keys(rawServices)
      : [];
  return { refs, services };
}

/** The policy text with `ref` appended to `profiles:` (created after `version:` when absent), comments kept. */
async function withProfile(text: string, file: string, ref: string): Promise<string> {
  const { isMap, isScalar, isSeq, parseDocument } = await import('yaml');
  // Not the parsed-node typing: the new pair is created here and carries no source range.
  const doc = parseDocument<YamlNode, false>(text, { uniqueKeys: true });
  const root = doc.contents;
  if (!isMap(root))
    throw new CliError(`${file}: the top level is not a mapping`, 1, 'fix it first: mcpgw apply --dry-run');
  const existing = root.get('profiles', true);
  if (existing === undefined || existing === null || (isScalar(existing) && existing.value === null)) {
    const list = doc.createNode([ref]);
    list.flow = true;
    const at = root.items.findIndex((p) => isScalar(p.key) && p.key.value === 'version');
    const pair = doc.createPair('profiles', list);
    if (existing !== undefined) root.delete('profiles');
    root.items.splice(at < 0 ? 0 : at + 1, 0, pair);
  } else if (isSeq(existing)) {
    existing.items.push(doc.createNode(ref));
  } else {
    throw new CliError(`${file}: profiles: is not a list`, 1, 'make it a list, e.g. profiles: []');
  }
  return doc.toString();
}

const title = (service: string): string => service.charAt(0).toUpperCase() + service.slice(1);

export function registerPolicyCommands(program: Command): void {
  examples(
    connection(
      program
        .command('apply')
        .description('Validate a policy file and hot-swap it into the running gateway (or change nothing)')
        .argument('[file]', "policy file (default: the installation's mcp-security.yaml)")
        .option('--dry-run', 'validate and show what would change, without applying')
        .option('--json', 'print JSON'),
    ),
    ['mcpgw apply', 'mcpgw apply --dry-run', 'mcpgw apply ./mcp-security.yaml --json'],
    `A file with any error changes nothing: every problem is printed as file:line:column: field: message
and the previous revision stays in force (exit 1).`,
  ).action((fileArg: string | undefined, o: ConnOptions & JsonOption & { dryRun?: boolean }) =>
    run('apply', o, async () => {
      const home = mcpgwHome();
      const installed = await installationPolicy(home);
      const file = resolve(fileArg ?? installed);
      const content = await readPolicy(file);
      const c = await connect(o, o.dryRun ? `apply --dry-run ${file}` : `apply ${file}`);
      const r = await postPolicy(c, file, content, o.dryRun === true);
      if (o.json) return printJson(r);
      const lines = describeApply(r, file);
      if (r.applied && file !== resolve(installed)) {
        lines.push(
          `${paint.warn('!')} the gateway loads ${installed} at start: this policy lasts until the next restart unless you copy it there`,
        );
      }
      out(...lines);
    }),
  );

  const profile = examples(
    program
      .command('profile')
      .description('Community security profiles: tool classification (verbs, hints, labels, classifiers)'),
    ['mcpgw profile list', 'mcpgw profile add gmail'],
  );

  examples(
    connection(
      profile
        .command('add')
        .description("Add a profile to the installation's policy and apply it")
        .argument('<name>', 'profile, e.g. gmail or @noumena/security-gmail')
        .option('--file <file>', "policy file to edit (default: the installation's mcp-security.yaml)")
        .option('--json', 'print JSON'),
    ),
    ['mcpgw profile add gmail', 'mcpgw profile add @noumena/security-gmail --json'],
    `The profile is added to profiles: in the policy file, the file is applied through the admin API,
and only then written: a policy the gateway refuses leaves the file and the running policy as they were.`,
  ).action((name: string, o: ConnOptions & JsonOption & { file?: string }) =>
    run('profile add', o, async () => {
      const ref = profileRef(name);
      const summary = await loadProfileSummary(ref);
      const file = resolve(o.file ?? (await installationPolicy()));
      const text = await readPolicy(file);
      const listed = await listedProfiles(text, file);
      const { file: _profileFile, ...profileInfo } = summary;
      const already = listed.refs.find((r) => r.endsWith(`/security-${summary.service}`));
      if (already !== undefined) {
        if (o.json) return printJson({ profile: profileInfo, policyFile: file, added: false, apply: null });
        return out(
          `${title(summary.service)} profile: ${already} is already in ${file}`,
          '  If the gateway does not have it yet: mcpgw apply',
        );
      }
      const next = await withProfile(text, file, ref);
      const c = await connect(o, `apply ${file} (profile ${ref})`);
      const r = await postPolicy(c, file, next, false);
      try {
        await writeFile(file, next, { mode: 0o600 });
      } catch (err) {
        throw new CliError(
          `the gateway applied revision ${r.revision} with ${ref}, but ${file} could not be written (${err instanceof Error ? err.message : String(err)}); the next start loads the old file`,
          1,
          `add "${ref}" to profiles: in ${file} by hand`,
        );
      }
      if (o.json) return printJson({ profile: profileInfo, policyFile: file, added: true, apply: r });
      const lines = [
        `${paint.ok('✓')} ${title(summary.service)} profile: ${plural(summary.tools, 'tool')} classified, ${plural(summary.classifiers, 'argument classifier')}`,
        `${paint.ok('✓')} Added ${ref} to ${file}; revision ${r.revision} in force (was ${r.previousRevision})`,
        ...r.warnings.map((w) => `${paint.warn('!')} ${diagnosticLine(w)}`),
      ];
      if (!listed.services.includes(summary.service)) {
        lines.push(
          `${paint.warn('!')} services.${summary.service} is not in the policy yet: the profile classifies its tools once you add the service`,
        );
      }
      out(...lines);
    }),
  );

  examples(
    profile
      .command('list')
      .description("Profiles shipped with mcpgw, and which the installation's policy uses")
      .option('--file <file>', "policy file to check (default: the installation's mcp-security.yaml)")
      .option('--json', 'print JSON'),
    ['mcpgw profile list', 'mcpgw profile list --json'],
  ).action((o: JsonOption & { file?: string }) =>
    run('profile list', o, async () => {
      const { listProfiles } = await import('../../policy/profiles.js');
      const file = resolve(o.file ?? (await installationPolicy()));
      let refs: string[] | null = null;
      if (existsSync(file)) refs = (await listedProfiles(await readPolicy(file), file)).refs;
      const items = await Promise.all(
        listProfiles().map(async (service) => {
          const { file: _f, ...s } = await loadProfileSummary(`@noumena/security-${service}`);
          return { ...s, active: refs === null ? null : refs.some((r) => r.endsWith(`/security-${service}`)) };
        }),
      );
      if (o.json) return printJson({ policyFile: refs === null ? null : file, items });
      if (items.length === 0) return out('No profiles are installed with this copy of mcpgw.');
      out(
        table([
          ['NAME', 'TOOLS', 'CLASSIFIERS', 'ACTIVE', 'DESCRIPTION'],
          ...items.map((p) => [
            p.name,
            String(p.tools),
            String(p.classifiers),
            p.active === null ? '?' : p.active ? 'yes' : 'no',
            p.description ?? '',
          ]),
        ]),
        ...(refs === null ? [`(${file} not found: cannot tell which are active)`] : []),
        '',
        'Add one: mcpgw profile add <name>',
      );
    }),
  );
}
