/** `mcpgw user add|list|grant|revoke|delete|rotate-key`: people and agents, their keys and grants. */
import { Option, type Command } from 'commander';
import {
  createUserRequestSchema,
  createUserResponseSchema,
  deleteUserResponseSchema,
  grantsResponseSchema,
  revokeGrantResponseSchema,
  rotateKeyResponseSchema,
  userPageSchema,
  userSchema,
  type UserBody,
} from '../../admin/contract.js';
import { AdminClientError } from '../admin-client.js';
import {
  CliError,
  connection,
  EXIT,
  examples,
  out,
  paint,
  plural,
  printJson,
  run,
  table,
  UsageError,
} from '../output.js';
import { confirm, hasTerminal } from '../tty.js';
import { connect, fetchAll, seg, type ConnOptions, type JsonOption } from './common.js';

/** An unknown user (or grant) is a plain failure with the way to find the right name. */
async function orUnknownUser<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof AdminClientError && err.code === 'not_found') {
      throw new CliError(
        err.message,
        EXIT.failed,
        'see the users and their grants: mcpgw user list',
        err.details,
        err.code,
      );
    }
    throw err;
  }
}

/** `3 services, 12 tools`; a `*` grant counts as every tool of its service. */
export function grantSummary(grants: UserBody['grants']): string {
  const services = Object.entries(grants);
  if (services.length === 0) return 'none';
  const whole = services.filter(([, tools]) => tools.includes('*')).length;
  const tools = services.filter(([, t]) => !t.includes('*')).reduce((n, [, t]) => n + t.length, 0);
  const head = plural(services.length, 'service');
  if (whole === services.length) return `${head} (all tools)`;
  return `${head}, ${plural(tools, 'tool')}${whole > 0 ? ` + all tools of ${whole}` : ''}`;
}

const keyPrefix = (u: UserBody): string =>
  u.keys.length === 0
    ? '(no key)'
    : `mcpgw_${u.keys[0]?.kind ?? 'sk'}_${u.keys[0]?.displayId ?? ''}${u.keys.length > 1 ? ` (+${u.keys.length - 1})` : ''}`;

function keyAdvice(u: UserBody): string {
  return u.role === 'agent'
    ? `Put it in the agent's MCP client config; give it tools: mcpgw user grant ${u.id} <service>`
    : `It opens the admin API as ${u.role}: hand it to ${u.id} only, e.g. as MCPGW_ADMIN_KEY`;
}

/** Asked on the controlling terminal (never stdin: a piped "y" from an agent must not count). */
async function confirmed(question: string, yes: boolean | undefined): Promise<void> {
  if (yes) return;
  if (!hasTerminal()) throw new UsageError('there is no terminal to confirm on', 'pass --yes');
  if (!(await confirm(question))) throw new CliError('cancelled; nothing changed');
}

export function registerUserCommands(program: Command): void {
  const user = examples(
    program.command('user').description('Users (agents, approvers, admins), their API keys and grants'),
    ['mcpgw user add alice', 'mcpgw user grant alice github', 'mcpgw user list'],
  );

  examples(
    connection(
      user
        .command('add')
        .description('Create a user and print its API key (shown once: only its hash is stored)')
        .argument('<name>', 'user id, e.g. alice')
        .addOption(
          new Option('--role <role>', 'what the key may do')
            .choices([...createUserRequestSchema.shape.role.options])
            .default('agent'),
        )
        .option('--email <email>', 'contact address (informative)')
        .option('--json', 'print JSON: {user, apiKey}'),
    ),
    ['mcpgw user add alice', 'mcpgw user add bob --role approver', 'mcpgw user add ci --json | jq -r .apiKey'],
    'Agents get an mcpgw_sk_ key for /mcp; approvers and admins an mcpgw_ak_ key for the admin API.',
  ).action((name: string, o: ConnOptions & JsonOption & { role: string; email?: string }) =>
    run('user add', o, async () => {
      const c = await connect(o, `add user ${name} (${o.role})`);
      const r = await c.request('POST', '/users', createUserResponseSchema, {
        id: name,
        role: o.role,
        ...(o.email === undefined ? {} : { email: o.email }),
      });
      if (o.json) return printJson(r);
      out(
        `${paint.ok('✓')} Created ${r.user.id} (${r.user.role})`,
        `${paint.ok('✓')} API key for ${r.user.id} (shown once): ${r.apiKey}`,
        `  ${keyAdvice(r.user)}`,
      );
    }),
  );

  examples(
    connection(
      user
        .command('list')
        .description('Users, their key prefixes and a summary of their grants')
        .option('--json', 'print JSON: {items: [user]}'),
    ),
    ['mcpgw user list', 'mcpgw user list --json'],
  ).action((o: ConnOptions & JsonOption) =>
    run('user list', o, async () => {
      const c = await connect(o, 'list users');
      const items = await fetchAll(c, '/users', userPageSchema);
      if (o.json) return printJson({ items });
      out(
        table([
          ['NAME', 'ROLE', 'API KEY PREFIX', 'GRANTS'],
          ...items.map((u) => [u.id, u.role, keyPrefix(u), u.role === 'agent' ? grantSummary(u.grants) : '-']),
        ]),
      );
    }),
  );

  examples(
    connection(
      user
        .command('grant')
        .description('Let a user call a service (every tool, or the ones named)')
        .argument('<user>')
        .argument('<service>', 'service name in the policy')
        .argument('[tools...]', 'tool, prompt or resource names (default: all of them)')
        .option('--json', 'print JSON: {userId, grants, warnings}'),
    ),
    ['mcpgw user grant alice github', 'mcpgw user grant alice gmail read_email search_emails'],
    'Grants decide what a user may reach at all; the policy rules still decide each call.',
  ).action((name: string, service: string, tools: string[], o: ConnOptions & JsonOption) =>
    run('user grant', o, async () => {
      const which = tools.length === 0 ? ['*'] : tools;
      const c = await connect(o, `grant ${name} ${service}${tools.length === 0 ? '' : ` ${tools.join(' ')}`}`);
      const r = await orUnknownUser(
        c.request('POST', `/users/${seg(name)}/grants`, grantsResponseSchema, { service, tools: which }),
      );
      if (o.json) return printJson(r);
      out(
        `${paint.ok('✓')} ${name} may use ${tools.length === 0 ? `every tool of ${service}` : `${service}: ${tools.join(', ')}`}`,
        ...r.warnings.map((w) => `${paint.warn('!')} ${w}`),
      );
    }),
  );

  examples(
    connection(
      user
        .command('revoke')
        .description("Take back a user's grant on a service (all of it, or one tool)")
        .argument('<user>')
        .argument('<service>')
        .argument('[tool]', 'one tool (default: every grant on the service)')
        .option('--json', 'print JSON: {userId, removed, grants}'),
    ),
    ['mcpgw user revoke alice github', 'mcpgw user revoke alice gmail send_email'],
  ).action((name: string, service: string, tool: string | undefined, o: ConnOptions & JsonOption) =>
    run('user revoke', o, async () => {
      const c = await connect(o, `revoke ${name} ${service}${tool === undefined ? '' : ` ${tool}`}`);
      const path = `/users/${seg(name)}/grants/${seg(service)}${tool === undefined ? '' : `/${seg(tool)}`}`;
      const r = await orUnknownUser(c.request('DELETE', path, revokeGrantResponseSchema));
      if (o.json) return printJson(r);
      out(
        `${paint.ok('✓')} Revoked ${plural(r.removed, 'grant')} of ${name} on ${service}${tool === undefined ? '' : `:${tool}`}`,
      );
    }),
  );

  examples(
    connection(
      user
        .command('delete')
        .description('Delete a user with its keys and grants')
        .argument('<user>')
        .option('-y, --yes', 'do not ask for confirmation')
        .option('--json', 'print JSON: {id, deleted}'),
    ),
    ['mcpgw user delete alice', 'mcpgw user delete alice --yes --json'],
    'The last admin cannot be deleted.',
  ).action((name: string, o: ConnOptions & JsonOption & { yes?: boolean }) =>
    run('user delete', o, async () => {
      const c = await connect(o, `delete user ${name}`);
      // Look first, so a typo is reported before anyone is asked to confirm it.
      const u = await orUnknownUser(c.request('GET', `/users/${seg(name)}`, userSchema));
      await confirmed(`Delete ${u.id} (${u.role}) with its keys and grants?`, o.yes);
      const r = await orUnknownUser(c.request('DELETE', `/users/${seg(name)}`, deleteUserResponseSchema));
      if (o.json) return printJson(r);
      out(`${paint.ok('✓')} Deleted ${r.id}; its keys no longer work`);
    }),
  );

  examples(
    connection(
      user
        .command('rotate-key')
        .description('Issue a new API key for a user and revoke its old ones (the new key is shown once)')
        .argument('<user>')
        .option('--json', 'print JSON: {user, apiKey, revoked}'),
    ),
    ['mcpgw user rotate-key alice', 'mcpgw user rotate-key ci --json | jq -r .apiKey'],
  ).action((name: string, o: ConnOptions & JsonOption) =>
    run('user rotate-key', o, async () => {
      const c = await connect(o, `rotate the key of ${name}`);
      const r = await orUnknownUser(c.request('POST', `/users/${seg(name)}/rotate-key`, rotateKeyResponseSchema));
      if (o.json) return printJson(r);
      const kind = r.user.keys[0]?.kind ?? (r.user.role === 'agent' ? 'sk' : 'ak');
      out(
        `${paint.ok('✓')} New API key for ${r.user.id} (shown once): ${r.apiKey}`,
        r.revoked.length === 0
          ? '  (there was no old key to revoke)'
          : `${paint.ok('✓')} Revoked: ${r.revoked.map((d) => `mcpgw_${kind}_${d}`).join(', ')}`,
        `  ${keyAdvice(r.user)}`,
      );
    }),
  );
}
