/**
 * Layer 2 state from the command line: `audit [--verify]`, `taint list|clear`,
 * `condition set|list|unset`, `limits show|reset`, `budgets show|reset`.
 */
import { Option, type Command } from 'commander';
import {
  AUDIT_OUTCOMES,
  auditPageSchema,
  auditReportSchema,
  budgetPageSchema,
  conditionPageSchema,
  conditionSchema,
  deletedResponseSchema,
  limitPageSchema,
  resetResponseSchema,
  taintClearResponseSchema,
  taintPageSchema,
  type AuditEntryBody,
  type ResetRequest,
  type TaintClearRequest,
} from '../../admin/contract.js';
import { AdminClientError } from '../admin-client.js';
import {
  CliError,
  connection,
  examples,
  EXIT,
  out,
  paint,
  plural,
  printJson,
  run,
  shortTime,
  table,
  UsageError,
} from '../output.js';
import { connect, fetchAll, seg, type ConnOptions, type JsonOption } from './common.js';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`not a positive whole number: ${v}`);
  return n;
}

/** A 404 on a named thing is a plain failure that says where to look. */
async function orNotFound<T>(work: Promise<T>, hint: string): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof AdminClientError && err.code === 'not_found')
      throw new CliError(err.message, EXIT.failed, hint, err.details, err.code);
    throw err;
  }
}

const auditTool = (e: AuditEntryBody): string =>
  e.service === null ? e.method : `${e.service}:${e.tool ?? ''}${e.method === 'tools/call' ? '' : ` (${e.method})`}`;

interface ScopeOptions {
  user?: string;
  session?: string;
  global?: boolean;
}

function scopeOf(o: ScopeOptions): ResetRequest['scope'] {
  const given = [o.user !== undefined, o.session !== undefined, o.global === true].filter(Boolean).length;
  if (given > 1) throw new UsageError('give at most one of --user, --session, --global');
  if (o.user !== undefined) return { userId: o.user };
  if (o.session !== undefined) return { sessionId: o.session };
  return o.global ? 'global' : 'all';
}

const scopeText = (s: ResetRequest['scope']): string =>
  s === undefined || s === 'all'
    ? 'every scope'
    : s === 'global'
      ? 'the global scope'
      : 'userId' in s
        ? `user ${s.userId}`
        : `session ${s.sessionId}`;

function addScopeOptions(cmd: Command): Command {
  return cmd
    .option('--user <id>', "reset only this user's counter")
    .option('--session <id>', "reset only this session's counter")
    .option('--global', 'reset only the global counter');
}

export function registerStateCommands(program: Command): void {
  examples(
    connection(
      program
        .command('audit')
        .description('Recent decisions, newest first; or check the tamper-evident chain')
        .argument('[verify]', 'the word "verify": same as --verify')
        .option('--verify', 'check the audit chain (sequence and HMAC links) instead of listing')
        .option('--user <id>', 'only this user')
        .addOption(new Option('--outcome <outcome>', 'only this outcome').choices([...AUDIT_OUTCOMES]))
        .option('--service <name>', 'only this service')
        .option('--tool <name>', 'only this tool')
        .option('--since <iso>', 'only from this time on (ISO 8601, e.g. 2026-01-31T09:00:00Z)')
        .option('-n, --limit <n>', 'how many rows', positiveInt, 20)
        .option('--json', 'print JSON: {items: [entry], nextCursor}; with --verify the report'),
    ),
    [
      'mcpgw audit',
      'mcpgw audit --user agent --outcome deny -n 50',
      'mcpgw audit --verify',
      'mcpgw audit verify --json',
    ],
    'Rows name who, what and the verdict; argument values are never recorded, only their digest.',
  ).action(
    (
      word: string | undefined,
      o: ConnOptions &
        JsonOption & {
          verify?: boolean;
          user?: string;
          outcome?: string;
          service?: string;
          tool?: string;
          since?: string;
          limit: number;
        },
    ) =>
      run('audit', o, async () => {
        if (word !== undefined && word !== 'verify') {
          throw new UsageError(`unknown argument ${word}`, 'mcpgw audit [verify] [--user …] [--limit n]');
        }
        if (o.verify || word === 'verify') {
          const c = await connect(o, 'verify the audit chain');
          const r = await c.request('POST', '/audit/verify', auditReportSchema, {});
          if (o.json) printJson(r);
          else if (r.ok) {
            out(
              `${paint.ok('✓')} Audit chain intact: ${plural(r.checked, 'row')} checked${r.head === null ? '' : `, head #${r.head.seq} (${r.head.hash.slice(0, 16)}…)`}${r.unsealed > 0 ? `, ${r.unsealed} not sealed yet` : ''}`,
            );
          } else {
            out(
              `${paint.bad('✗')} Audit chain broken: ${plural(r.issues.length, 'issue')} in ${plural(r.checked, 'row')}`,
              ...r.issues.map((i) => `  ${i.kind}${i.seq === null ? '' : ` #${i.seq}`}: ${i.message}`),
            );
          }
          if (!r.ok) process.exitCode = EXIT.failed;
          return;
        }
        const c = await connect(o, 'read the audit log');
        const params = {
          user: o.user,
          outcome: o.outcome,
          service: o.service,
          tool: o.tool,
          since: o.since,
        };
        const items = await fetchAll(c, '/audit', auditPageSchema, params, o.limit);
        if (o.json) return printJson({ items });
        if (items.length === 0) return out('No audit rows match.');
        out(
          table([
            ['TIME (UTC)', 'USER', 'OUTCOME', 'TOOL', 'RULE', 'APPROVAL'],
            ...items.map((e) => [
              shortTime(e.at),
              e.userId ?? '-',
              e.outcome,
              auditTool(e),
              e.rule ?? e.reasons[0] ?? '-',
              e.approvalId ?? '',
            ]),
          ]),
        );
      }),
  );

  const taint = examples(
    program.command('taint').description('Taint marks set by flow rules (e.g. after reading private data)'),
    ['mcpgw taint list', 'mcpgw taint clear agent'],
  );

  examples(
    connection(
      taint
        .command('list')
        .description('Current taint marks')
        .option('--user <id>', 'only this user')
        .option('--json', 'print JSON: {items: [mark]}'),
    ),
    ['mcpgw taint list', 'mcpgw taint list --user agent --json'],
  ).action((o: ConnOptions & JsonOption & { user?: string }) =>
    run('taint list', o, async () => {
      const c = await connect(o, 'list taint marks');
      const items = await fetchAll(c, '/taint', taintPageSchema, { user: o.user });
      if (o.json) return printJson({ items });
      if (items.length === 0) return out('No taint marks.');
      out(
        table([
          ['FLOW', 'SCOPE', 'USER', 'SESSION', 'SET (UTC)', 'EXPIRES (UTC)'],
          ...items.map((m) => [
            m.flow,
            m.scope,
            m.userId,
            m.sessionId ?? '-',
            shortTime(m.setAt),
            m.expiresAt === null ? 'never' : shortTime(m.expiresAt),
          ]),
        ]),
      );
    }),
  );

  examples(
    connection(
      taint
        .command('clear')
        .description("Clear a user's taint marks (or one session's, or all)")
        .argument('[user]', 'user whose marks to clear')
        .option('--session <id>', "clear one session's marks instead")
        .option('--all', 'clear every mark')
        .option('--json', 'print JSON: {cleared}'),
    ),
    ['mcpgw taint clear agent', 'mcpgw taint clear --session 8c1f…', 'mcpgw taint clear --all'],
    'Audited. Clear a mark only when you know the tainted data has not left through another path.',
  ).action((user: string | undefined, o: ConnOptions & JsonOption & { session?: string; all?: boolean }) =>
    run('taint clear', o, async () => {
      const given = [user !== undefined, o.session !== undefined, o.all === true].filter(Boolean).length;
      if (given !== 1) throw new UsageError('name exactly one of: a user, --session <id>, --all');
      const body: TaintClearRequest =
        user !== undefined ? { userId: user } : o.session !== undefined ? { sessionId: o.session } : { all: true };
      const what = user !== undefined ? `user ${user}` : o.session !== undefined ? `session ${o.session}` : 'everyone';
      const c = await connect(o, `clear taint of ${what}`);
      const r = await c.request('POST', '/taint/clear', taintClearResponseSchema, body);
      if (o.json) return printJson(r);
      out(`${paint.ok('✓')} Cleared ${plural(r.cleared, 'taint mark')} of ${what}`);
    }),
  );

  const condition = examples(
    program.command('condition').description('Flags that preconditions read (e.g. change_window=open)'),
    ['mcpgw condition list', 'mcpgw condition set change_window open', 'mcpgw condition unset change_window'],
  );

  examples(
    connection(
      condition
        .command('list')
        .description('Flags that are set, and flags the policy requires')
        .option('--json', 'print JSON: {items: [condition]}'),
    ),
    ['mcpgw condition list'],
  ).action((o: ConnOptions & JsonOption) =>
    run('condition list', o, async () => {
      const c = await connect(o, 'list conditions');
      const items = await fetchAll(c, '/conditions', conditionPageSchema);
      if (o.json) return printJson({ items });
      if (items.length === 0) return out('No flags are set and no precondition requires one.');
      out(
        table([
          ['NAME', 'VALUE', 'SET BY', 'SET AT (UTC)', 'REQUIRED BY'],
          ...items.map((f) => [
            f.name,
            f.value ?? '(not set)',
            f.setBy ?? '-',
            shortTime(f.setAt),
            f.requiredBy.map((r) => `${r.precondition}=${r.value}`).join(', ') || '-',
          ]),
        ]),
      );
    }),
  );

  examples(
    connection(
      condition
        .command('set')
        .description('Set a flag (audited)')
        .argument('<name>', 'flag name: lowercase letters, digits, "_", "." and "-"')
        .argument('[value]', 'value (default: true)', 'true')
        .option('--json', 'print JSON: the condition'),
    ),
    ['mcpgw condition set change_window open', 'mcpgw condition set maintenance'],
  ).action((name: string, value: string, o: ConnOptions & JsonOption) =>
    run('condition set', o, async () => {
      const c = await connect(o, `set condition ${name}=${value}`);
      const r = await c.request('PUT', `/conditions/${seg(name)}`, conditionSchema, { value });
      if (o.json) return printJson(r);
      const unmet = r.requiredBy.filter((p) => p.value !== r.value);
      out(
        `${paint.ok('✓')} ${r.name} = ${r.value ?? ''}`,
        ...r.requiredBy.filter((p) => p.value === r.value).map((p) => `  satisfies precondition ${p.precondition}`),
        ...unmet.map((p) => `${paint.warn('!')} precondition ${p.precondition} requires ${r.name}=${p.value}`),
      );
    }),
  );

  examples(
    connection(
      condition
        .command('unset')
        .description('Remove a flag (preconditions that require it then deny)')
        .argument('<name>')
        .option('--json', 'print JSON: {name, deleted}'),
    ),
    ['mcpgw condition unset change_window'],
  ).action((name: string, o: ConnOptions & JsonOption) =>
    run('condition unset', o, async () => {
      const c = await connect(o, `unset condition ${name}`);
      const r = await orNotFound(
        c.request('DELETE', `/conditions/${seg(name)}`, deletedResponseSchema),
        'see the flags: mcpgw condition list',
      );
      if (o.json) return printJson(r);
      out(`${paint.ok('✓')} ${r.name} is no longer set`);
    }),
  );

  for (const kind of ['limits', 'budgets'] as const) {
    const one = kind === 'limits' ? 'limit' : 'budget';
    const group = examples(
      program
        .command(kind)
        .description(kind === 'limits' ? 'Rate limits: calls counted in their window' : 'Budgets: amounts used so far'),
      [`mcpgw ${kind} show`, `mcpgw ${kind} reset <rule> [--user <id>]`],
    );

    examples(
      connection(
        group
          .command('show')
          .description(`Current ${one} counters`)
          .argument('[rule]', `only this ${one}`)
          .option('--json', `print JSON: {items: [${one} usage]}`),
      ),
      [`mcpgw ${kind} show`, `mcpgw ${kind} show "memory write burst" --json`],
    ).action((rule: string | undefined, o: ConnOptions & JsonOption) =>
      run(`${kind} show`, o, async () => {
        const c = await connect(o, `show ${kind}`);
        if (kind === 'limits') {
          const items = await fetchAll(c, '/limits', limitPageSchema, { rule });
          if (o.json) return printJson({ items });
          if (items.length === 0) return out(`No ${one} counters${rule === undefined ? '' : ` for ${rule}`} yet.`);
          return out(
            table([
              ['RULE', 'SCOPE', 'SUBJECT', 'COUNT', 'MAX', 'WINDOW'],
              ...items.map((l) => [
                l.rule,
                l.scope,
                l.subject ?? '-',
                String(l.count),
                l.max === null ? '-' : String(l.max),
                l.perSeconds === null ? '(not in policy)' : `${l.perSeconds}s`,
              ]),
            ]),
          );
        }
        const items = await fetchAll(c, '/budgets', budgetPageSchema, { rule });
        if (o.json) return printJson({ items });
        if (items.length === 0) return out(`No ${one} counters${rule === undefined ? '' : ` for ${rule}`} yet.`);
        out(
          table([
            ['RULE', 'SCOPE', 'SUBJECT', 'USED', 'MAX', 'REMAINING'],
            ...items.map((b) => [
              b.rule,
              b.scope,
              b.subject ?? '-',
              String(b.used),
              b.max === null ? '-' : String(b.max),
              b.remaining === null ? '-' : String(b.remaining),
            ]),
          ]),
        );
      }),
    );

    examples(
      connection(
        addScopeOptions(
          group
            .command('reset')
            .description(`Reset a ${one}'s counters (all scopes, or one; audited)`)
            .argument('<rule>', `${one} name in the policy`),
        ).option('--json', 'print JSON: {rule, reset}'),
      ),
      [`mcpgw ${kind} reset "memory write burst"`, `mcpgw ${kind} reset "memory write burst" --user agent`],
    ).action((rule: string, o: ConnOptions & JsonOption & ScopeOptions) =>
      run(`${kind} reset`, o, async () => {
        const scope = scopeOf(o);
        const c = await connect(o, `reset ${one} ${rule} (${scopeText(scope)})`);
        const r = await orNotFound(
          c.request('POST', `/${kind}/${seg(rule)}/reset`, resetResponseSchema, { scope }),
          `see the ${kind}: mcpgw ${kind} show`,
        );
        if (o.json) return printJson(r);
        out(`${paint.ok('✓')} Reset ${r.rule} for ${scopeText(scope)} (${plural(r.reset, 'counter')} cleared)`);
      }),
    );
  }
}
