/**
 * `mcpgw secret set|list|delete|test`, through the running gateway's admin API.
 *
 * A value is read from the controlling terminal without echo, or from stdin with `--stdin`; never
 * from argv (which `ps` and shell history show). It leaves this process only in the body of one
 * HTTPS/loopback request and is never printed.
 */
import { openSync, closeSync } from 'node:fs';
import { ReadStream, WriteStream } from 'node:tty';
import type { Command } from 'commander';
import {
  deleteSecretResponseSchema,
  secretPageSchema,
  secretTestResponseSchema,
  setSecretResponseSchema,
  type SecretEntryBody,
} from '../admin/contract.js';
import { mcpgwHome } from '../config/keys.js';
import { adminClient, AdminClientError, type AdminClient } from './admin-client.js';
import { EXIT } from './lifecycle.js';

interface ConnOptions {
  url?: string;
  adminKey?: string;
}

class UsageError extends Error {}

function client(o: ConnOptions): AdminClient {
  return adminClient({ home: mcpgwHome(), url: o.url, adminKey: o.adminKey });
}

const seg = (s: string): string => encodeURIComponent(s);

/** Everything on stdin, without one trailing newline (what `echo` or a here-string adds). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  const all = Buffer.concat(chunks).toString('utf8');
  return all.replace(/\r?\n$/, '');
}

/** Reads one line from the controlling terminal with echo off. */
async function promptHidden(question: string): Promise<string> {
  let fd: number;
  try {
    fd = openSync('/dev/tty', 'r+');
  } catch {
    throw new UsageError('no controlling terminal to ask for the value on; pipe it in with --stdin');
  }
  const input = new ReadStream(fd);
  const output = new WriteStream(fd);
  try {
    input.setRawMode(true);
    output.write(question);
    return await new Promise<string>((resolve, reject) => {
      let value = '';
      const onData = (buf: Buffer): void => {
        for (const ch of buf.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            input.off('data', onData);
            output.write('\n');
            resolve(value);
            return;
          }
          if (ch === '\u0003' || ch === '\u0004') {
            input.off('data', onData);
            output.write('\n');
            reject(new UsageError('cancelled'));
            return;
          }
          if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
          else value += ch;
        }
      };
      input.on('data', onData);
    });
  } finally {
    input.setRawMode(false);
    input.destroy();
    output.destroy();
    try {
      closeSync(fd);
    } catch {
      // already closed by the streams
    }
  }
}

async function run(f: () => Promise<void>): Promise<void> {
  try {
    await f();
  } catch (err) {
    if (err instanceof AdminClientError) {
      process.stderr.write(`mcpgw secret: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    if (err instanceof UsageError) {
      process.stderr.write(`mcpgw secret: ${err.message}\n`);
      process.exit(EXIT.usage);
    }
    throw err;
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('   ')
        .trimEnd(),
    )
    .join('\n');
}

function connection(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'gateway base URL (env MCPGW_URL; default: the running installation in MCPGW_HOME)')
    .option('--admin-key <key>', 'admin API key (prefer env MCPGW_ADMIN_KEY: argv is visible to other users)');
}

export function registerSecretCommands(program: Command): void {
  const secret = program
    .command('secret')
    .description('Credentials injected into backends: stored encrypted or in Vault, never shown to agents');

  connection(
    secret
      .command('set')
      .description('Store a secret for one service (asked for on the terminal without echo, or --stdin)')
      .argument('<service>', 'service name in the policy')
      .argument('<variable>', 'environment variable name, e.g. GITHUB_TOKEN')
      .option('--stdin', 'read the value from stdin (one trailing newline is dropped)')
      .option('--json', 'print JSON')
      .addHelpText(
        'after',
        `
The value is never taken from the command line. Values shorter than 8 characters are refused:
redaction could not reliably hide them from tool output.

Examples:
  mcpgw secret set github GITHUB_TOKEN
  gh auth token | mcpgw secret set github GITHUB_TOKEN --stdin`,
      ),
  ).action((service: string, variable: string, o: ConnOptions & { stdin?: boolean; json?: boolean }) =>
    run(async () => {
      const c = client(o);
      const value = o.stdin ? await readStdin() : await promptHidden(`Value for ${service}/${variable}: `);
      if (value === '') throw new UsageError('empty value: nothing stored');
      const r = await c.request('PUT', `/secrets/${seg(service)}/${seg(variable)}`, setSecretResponseSchema, {
        value,
      });
      if (o.json) {
        process.stdout.write(`${JSON.stringify(r)}\n`);
        return;
      }
      const lines = [
        `✓ ${r.created ? 'Stored' : 'Replaced'} ${r.service}/${r.variable} (${r.backend} store)`,
        `✓ Mapped: ${r.variable} → ${r.service} service`,
        ...r.warnings.map((w) => `! ${w}`),
        ...(r.restart.message !== null ? [`! ${r.restart.message}`] : []),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }),
  );

  connection(
    secret
      .command('list')
      .description('Stored secrets and the ones the policy declares but are missing (names only, never values)')
      .option('--json', 'print JSON'),
  ).action((o: ConnOptions & { json?: boolean }) =>
    run(async () => {
      const c = client(o);
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
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ backend, items })}\n`);
        return;
      }
      if (items.length === 0) {
        process.stdout.write(`No secrets stored (${backend} store). Add one: mcpgw secret set <service> <VAR>\n`);
        return;
      }
      const rows = [
        ['SERVICE', 'VARIABLE', 'STORED'],
        ...items.map((i) => [i.service, i.variable, i.stored ? '✓' : '✗ missing']),
      ];
      process.stdout.write(`${table(rows)}\n`);
    }),
  );

  connection(
    secret
      .command('delete')
      .description('Remove a stored secret')
      .argument('<service>')
      .argument('<variable>')
      .option('--json', 'print JSON'),
  ).action((service: string, variable: string, o: ConnOptions & { json?: boolean }) =>
    run(async () => {
      const r = await client(o).request(
        'DELETE',
        `/secrets/${seg(service)}/${seg(variable)}`,
        deleteSecretResponseSchema,
      );
      process.stdout.write(o.json ? `${JSON.stringify(r)}\n` : `✓ Deleted ${r.service}/${r.variable}\n`);
    }),
  );

  connection(
    secret
      .command('test')
      .description("Start the service's backend with its injected environment and report which variables arrived")
      .argument('<service>')
      .option('--json', 'print JSON'),
  ).action((service: string, o: ConnOptions & { json?: boolean }) =>
    run(async () => {
      const r = await client(o).request('POST', `/secrets/${seg(service)}/test`, secretTestResponseSchema, {});
      if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        const rows = [
          ['VARIABLE', 'STORED', 'DELIVERED'],
          ...r.variables.map((v) => [v.name, v.stored ? '✓' : '✗', v.delivered ? '✓' : '✗']),
        ];
        const lines = [
          `${r.service} (${r.transport}, ${r.backend} store)`,
          r.variables.length > 0 ? table(rows) : '(no secrets declared or stored for this service)',
          ...(r.ignored.length > 0
            ? [`! stored but not in services.${r.service}.secrets, so never injected: ${r.ignored.join(', ')}`]
            : []),
          ...(r.started === true ? ['✓ backend started with this environment and answered initialize'] : []),
          ...(r.error !== null ? [`✗ ${r.error}`] : []),
          r.ok ? '✓ ok' : `✗ not ok${r.missing.length > 0 ? `: missing ${r.missing.join(', ')}` : ''}`,
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      }
      if (!r.ok) process.exit(EXIT.failed);
    }),
  );
}
