/**
 * `mcpgw pending [--watch]`, `approve <id>`, `deny <id> [reason]`. Ids may be given by any unique
 * prefix of 4+ characters (`ap-` optional, any case); the gateway resolves it, so a prefix means
 * the same to every replica.
 */
import type { Command } from 'commander';
import { approvalPageSchema, approvalSchema, type ApprovalBody } from '../../admin/contract.js';
import { AdminClientError, type AdminClient } from '../admin-client.js';
import {
  age,
  CliError,
  connection,
  colorEnabled,
  examples,
  EXIT,
  out,
  paint,
  printJson,
  run,
  shortTime,
  table,
  untilInterrupted,
} from '../output.js';
import { connect, fetchAll, seg, type ConnOptions, type JsonOption } from './common.js';

const toolOf = (a: ApprovalBody): string => `${a.service}:${a.tool}`;

/**
 * Without spaces, so a table line still splits on whitespace into one field per column; `-` rather
 * than `[]` for an unlabelled call, as other tables mark an empty cell.
 */
const labelsOf = (a: ApprovalBody): string => (a.labels.length === 0 ? '-' : `[${a.labels.join(',')}]`);

/** The columns of the product document (PACKAGING_STRATEGY §10.3); `--wide` adds the rule that asked. */
const header = (wide: boolean): string[] =>
  wide ? ['ID', 'TOOL', 'USER', 'LABELS', 'RULE', 'AGE'] : ['ID', 'TOOL', 'USER', 'LABELS', 'AGE'];
const row = (a: ApprovalBody, now: number, wide: boolean): string[] => [
  a.id,
  toolOf(a),
  a.userId,
  labelsOf(a),
  ...(wide ? [a.rule] : []),
  age(a.createdAt, now),
];

async function pendingApprovals(c: AdminClient): Promise<ApprovalBody[]> {
  // Oldest first: the one waiting longest is the one to look at first.
  return (await fetchAll(c, '/approvals', approvalPageSchema, { status: 'pending' })).reverse();
}

function pendingTable(items: readonly ApprovalBody[], wide: boolean): string {
  if (items.length === 0) return 'No pending approvals.';
  const now = Date.now();
  return table([header(wide), ...items.map((a) => row(a, now, wide))]);
}

/** Until SIGINT: a redrawn table on a terminal, otherwise each new approval once as it appears. */
async function watch(c: AdminClient, json: boolean, wide: boolean): Promise<void> {
  const redraw = colorEnabled(process.stdout) && !json;
  const seen = new Set<string>();
  let first = true;
  // Fixed, because lines are printed one by one as approvals appear; AGE, last, is not padded.
  const widths = wide ? [13, 32, 16, 28, 28] : [13, 32, 16, 28];
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (i < widths.length ? cell.padEnd(widths[i] ?? 0) : cell))
      .join(' ')
      .trimEnd();
  if (!redraw && !json) out(line(header(wide)));
  await untilInterrupted(2000, async () => {
    const items = await pendingApprovals(c);
    if (redraw) {
      // Cleared once, then overwritten from the top line by line (each line's rest erased):
      // no flicker, and the terminal's scrollback does not fill with old frames.
      const frame = [
        paint.dim(`Pending approvals at ${shortTime(new Date().toISOString())} UTC; every 2 s, Ctrl-C to stop`),
        '',
        ...pendingTable(items, wide).split('\n'),
      ];
      process.stdout.write(
        `${first ? '\u001b[2J' : ''}\u001b[H${frame.map((l) => `${l}\u001b[K`).join('\n')}\n\u001b[J`,
      );
      first = false;
    } else {
      const now = Date.now();
      for (const a of items) {
        if (seen.has(a.id)) continue;
        seen.add(a.id);
        if (json) printJson(a);
        else out(line(row(a, now, wide)));
      }
    }
  });
}

/** The id the person typed, as a failure that says what to do about it. */
async function explainDecisionError(c: AdminClient, id: string, err: unknown): Promise<never> {
  if (!(err instanceof AdminClientError)) throw err;
  const reason =
    typeof err.details === 'object' && err.details !== null && 'reason' in err.details
      ? String((err.details as { reason: unknown }).reason)
      : null;
  if (err.code === 'not_found') {
    throw new CliError(
      `no pending approval matches ${id} (${err.message})`,
      EXIT.failed,
      'see the pending ones: mcpgw pending',
      err.details,
      err.code,
    );
  }
  if (reason === 'invalid_id') {
    throw new CliError(
      err.message,
      EXIT.usage,
      'approval ids look like ap-3F2A9K7QXM; see: mcpgw pending',
      err.details,
      err.code,
    );
  }
  if (reason === 'ambiguous') {
    throw new CliError(
      `${err.message}:\n${await candidates(c, id)}`,
      EXIT.usage,
      'give more characters of the id',
      err.details,
      err.code,
    );
  }
  if (reason === 'not_pending' || reason === 'expired') {
    let what = err.message;
    try {
      const a = await c.request('GET', `/approvals/${seg(id)}`, approvalSchema);
      what =
        a.status === 'expired'
          ? `${a.id} expired at ${shortTime(a.expiresAt)} UTC; the agent has to make the call again`
          : `${a.id} was already ${a.status}${a.decidedBy === null ? '' : ` by ${a.decidedBy}`}${a.decidedAt === null ? '' : ` at ${shortTime(a.decidedAt)} UTC`}${a.decisionReason ? ` (${a.decisionReason})` : ''}`;
    } catch {
      // the server's own words will do
    }
    throw new CliError(
      `${what}; nothing changed`,
      EXIT.failed,
      'see the pending ones: mcpgw pending',
      err.details,
      err.code,
    );
  }
  if (err.code === 'forbidden') {
    throw new CliError(
      err.message,
      EXIT.notAuthorized,
      "only admins and the rule's approvers decide; an admin outside the approvers list can pass --override (audited)",
    );
  }
  throw err;
}

/** Approvals whose id starts with what was typed, one per line. */
async function candidates(c: AdminClient, typed: string): Promise<string> {
  const { normalizeApprovalPrefix } = await import('../../state/ids.js');
  const norm = normalizeApprovalPrefix(typed);
  if (norm === null) return '';
  const all = await fetchAll(c, '/approvals', approvalPageSchema, {}, 5000);
  const now = Date.now();
  return table(
    all
      .filter((a) => a.id.slice(3).startsWith(norm))
      .map((a) => [`  ${a.id}`, toolOf(a), a.userId, a.status, age(a.createdAt, now)]),
  );
}

export function registerApprovalCommands(program: Command): void {
  examples(
    connection(
      program
        .command('pending')
        .description('Calls waiting for a human decision')
        .option('-w, --watch', 'keep polling every 2 s until Ctrl-C')
        .option('--wide', 'add a RULE column: the policy rule that asked for a human')
        .option('--json', 'print JSON: {items: [approval]}; with --watch one approval per line as it appears'),
    ),
    ['mcpgw pending', 'mcpgw pending --watch --wide', 'mcpgw pending --json | jq -r ".items[].id"'],
  ).action((o: ConnOptions & JsonOption & { watch?: boolean; wide?: boolean }) =>
    run('pending', o, async () => {
      const c = await connect(o, 'list pending approvals');
      const wide = o.wide === true;
      if (o.watch) return watch(c, o.json === true, wide);
      const items = await pendingApprovals(c);
      if (o.json) return printJson({ items });
      out(
        pendingTable(items, wide),
        ...(items.length > 0 ? ['', 'Decide: mcpgw approve <id> | mcpgw deny <id> "<reason>"'] : []),
      );
    }),
  );

  examples(
    connection(
      program
        .command('approve')
        .description('Approve a pending call: the identical call then goes through once')
        .argument('<id>', 'approval id or a unique prefix of 4+ characters')
        .option('--reason <text>', 'why (audited)')
        .option('--override', "decide as an admin who is not among the rule's approvers (audited)")
        .option('--json', 'print JSON: the approval'),
    ),
    ['mcpgw approve ap-3F2A9K7QXM', 'mcpgw approve 3f2a --reason "expected cleanup"'],
  ).action((id: string, o: ConnOptions & JsonOption & { reason?: string; override?: boolean }) =>
    run('approve', o, async () => {
      const c = await connect(o, `approve ${id}`);
      const a = await c
        .request('POST', `/approvals/${seg(id)}/approve`, approvalSchema, {
          override: o.override === true,
          ...(o.reason === undefined ? {} : { reason: o.reason }),
        })
        .catch((err: unknown) => explainDecisionError(c, id, err));
      if (o.json) return printJson(a);
      out(
        `${paint.ok('✓')} Approved ${a.id}: ${toolOf(a)} for ${a.userId}`,
        `  The identical call goes through once if made within ${Math.round(a.consumeWithinSeconds / 60)} min.`,
      );
    }),
  );

  examples(
    connection(
      program
        .command('deny')
        .description('Deny a pending call; identical calls stay denied until the approval times out')
        .argument('<id>', 'approval id or a unique prefix of 4+ characters')
        .argument('[reason...]', 'why; the agent is told')
        .option('--override', "decide as an admin who is not among the rule's approvers (audited)")
        .option('--json', 'print JSON: the approval'),
    ),
    ['mcpgw deny ap-3F2A9K7QXM', 'mcpgw deny 3f2a "not during the freeze"'],
  ).action((id: string, words: string[], o: ConnOptions & JsonOption & { override?: boolean }) =>
    run('deny', o, async () => {
      const reason = words.join(' ').trim() || 'denied by an operator (no reason given)';
      const c = await connect(o, `deny ${id}`);
      const a = await c
        .request('POST', `/approvals/${seg(id)}/deny`, approvalSchema, { reason, override: o.override === true })
        .catch((err: unknown) => explainDecisionError(c, id, err));
      if (o.json) return printJson(a);
      out(`${paint.ok('✓')} Denied ${a.id}: ${toolOf(a)} for ${a.userId} (${reason})`);
    }),
  );
}
