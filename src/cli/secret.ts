/**
 * `mcpgw secret set|list|delete|test`, through the running gateway's admin API.
 *
 * A value is read from the controlling terminal without echo, or from stdin with `--stdin`; never
 * from argv (which `ps` and shell history show). It leaves this process only in the body of one
 * HTTPS/loopback request and is never printed.
 */
import type { Command } from 'commander';
import {
  deleteSecretResponseSchema,
  secretPageSchema,
  secretTestResponseSchema,
  setSecretResponseSchema,
  type SecretEntryBody,
} from '../admin/contract.js';
import { connect, seg, type ConnOptions } from './commands/common.js';
import { connection, examples, EXIT, out, printJson, run, table, UsageError } from './output.js';
import { hasTerminal, promptHidden } from './tty.js';

/** Everything on stdin, without one trailing newline (what `echo` or a here-string adds). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  const all = Buffer.concat(chunks).toString('utf8');
  return all.replace(/\r?\n$/, '');
}

export function registerSecretCommands(program: Command): void {
  const secret = examples(
    program
      .command('secret')
      .description('Credentials injected into backends: stored encrypted or in Vault, never shown to agents'),
    ['mcpgw secret set github GITHUB_TOKEN', 'mcpgw secret list', 'mcpgw secret test github'],
  );

  examples(
    connection(
      secret
        .command('set')
        .description('Store a secret for one service (asked for on the terminal without echo, or --stdin)')
        .argument('<service>', 'service name in the policy')
        .argument('<variable>', 'environment variable name, e.g. GITHUB_TOKEN')
        .option('--stdin', 'read the value from stdin (one trailing newline is dropped)')
        .option('--json', 'print JSON: {service, variable, stored, created, backend, warnings, restart}'),
    ),
    ['mcpgw secret set github GITHUB_TOKEN', 'gh auth token | mcpgw secret set github GITHUB_TOKEN --stdin'],
    `The value is never taken from the command line. Values shorter than 8 characters are refused:
redaction could not reliably hide them from tool output.`,
  ).action((service: string, variable: string, o: ConnOptions & { stdin?: boolean; json?: boolean }) =>
    run('secret', o, async () => {
      const c = await connect(o, `set secret ${service}/${variable}`);
      if (!o.stdin && !hasTerminal())
        throw new UsageError('no terminal to ask for the value on', 'pipe it in with --stdin');
      const value = o.stdin ? await readStdin() : await promptHidden(`Value for ${service}/${variable}: `);
      if (value === '') throw new UsageError('empty value: nothing stored');
      const r = await c.request('PUT', `/secrets/${seg(service)}/${seg(variable)}`, setSecretResponseSchema, {
        value,
      });
      if (o.json) return printJson(r);
      out(
        `✓ ${r.created ? 'Stored' : 'Replaced'} ${r.service}/${r.variable} (${r.backend} store)`,
        `✓ Mapped: ${r.variable} → ${r.service} service`,
        ...r.warnings.map((w) => `! ${w}`),
        ...(r.restart.message !== null ? [`! ${r.restart.message}`] : []),
      );
    }),
  );

  examples(
    connection(
      secret
        .command('list')
        .description('Stored secrets and the ones the policy declares but are missing (names only, never values)')
        .option('--json', 'print JSON: {backend, items: [{service, variable, stored, declared, updatedAt}]}'),
    ),
    ['mcpgw secret list', 'mcpgw secret list --json'],
  ).action((o: ConnOptions & { json?: boolean }) =>
    run('secret', o, async () => {
      const c = await connect(o, 'list secrets');
      const items: SecretEntryBody[] = [];
      let backend = '';
      let cursor: string | null = null;
      do {
        const q: string = cursor === null ? '?limit=500' : `?limit=500&cursor=${encodeURIComponent(cursor)}`;
        const page = await c.request('GET', `/secrets${q}`, secretPageSchema);
        items.push(...page.items);
        backend = page.backend;
        cursor = page.nextCursor;
      } while (cursor !== null);
      if (o.json) return printJson({ backend, items });
      if (items.length === 0)
        return out(`No secrets stored (${backend} store). Add one: mcpgw secret set <service> <VAR>`);
      out(
        table([
          ['SERVICE', 'VARIABLE', 'STORED'],
          ...items.map((i) => [i.service, i.variable, i.stored ? '✓' : '✗ missing']),
        ]),
      );
    }),
  );

  examples(
    connection(
      secret
        .command('delete')
        .description('Remove a stored secret')
        .argument('<service>')
        .argument('<variable>')
        .option('--json', 'print JSON: {service, variable, deleted}'),
    ),
    ['mcpgw secret delete github GITHUB_TOKEN'],
  ).action((service: string, variable: string, o: ConnOptions & { json?: boolean }) =>
    run('secret', o, async () => {
      const c = await connect(o, `delete secret ${service}/${variable}`);
      const r = await c.request('DELETE', `/secrets/${seg(service)}/${seg(variable)}`, deleteSecretResponseSchema);
      if (o.json) return printJson(r);
      out(`✓ Deleted ${r.service}/${r.variable}`);
    }),
  );

  examples(
    connection(
      secret
        .command('test')
        .description("Start the service's backend with its injected environment and report which variables arrived")
        .argument('<service>')
        .option('--json', 'print JSON: {service, transport, backend, variables, missing, ignored, started, error, ok}'),
    ),
    ['mcpgw secret test github'],
    'Exit 1 when a declared variable does not arrive or the backend does not start.',
  ).action((service: string, o: ConnOptions & { json?: boolean }) =>
    run('secret', o, async () => {
      const c = await connect(o, `test secrets of ${service}`);
      const r = await c.request('POST', `/secrets/${seg(service)}/test`, secretTestResponseSchema, {});
      if (o.json) printJson(r);
      else {
        const rows = [
          ['VARIABLE', 'STORED', 'DELIVERED'],
          ...r.variables.map((v) => [v.name, v.stored ? '✓' : '✗', v.delivered ? '✓' : '✗']),
        ];
        out(
          `${r.service} (${r.transport}, ${r.backend} store)`,
          r.variables.length > 0 ? table(rows) : '(no secrets declared or stored for this service)',
          ...(r.ignored.length > 0
            ? [`! stored but not in services.${r.service}.secrets, so never injected: ${r.ignored.join(', ')}`]
            : []),
          ...(r.started === true ? ['✓ backend started with this environment and answered initialize'] : []),
          ...(r.error !== null ? [`✗ ${r.error}`] : []),
          r.ok ? '✓ ok' : `✗ not ok${r.missing.length > 0 ? `: missing ${r.missing.join(', ')}` : ''}`,
        );
      }
      if (!r.ok) process.exitCode = EXIT.failed;
    }),
  );
}
