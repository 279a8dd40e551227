/**
 * `mcpgw` command line. Exit codes (stable): 0 ok, 1 failed, 2 usage, 3 gateway not running,
 * 4 not authorized.
 */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { serveCommand } from './serve.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command();
program
  .name('mcpgw')
  .description('Security gateway for MCP tools')
  .version(pkg.version, '-v, --version')
  .exitOverride()
  .configureOutput({ outputError: (s, write) => write(s) });

program
  .command('version')
  .description('Print the version')
  .option('--json', 'print JSON')
  .action((o: { json?: boolean }) => {
    process.stdout.write(
      o.json ? `${JSON.stringify({ version: pkg.version, node: process.version })}\n` : `mcpgw ${pkg.version}\n`,
    );
  });

program
  .command('serve')
  .description('Run the gateway roles in this process (for containers, meshes and tests)')
  .addOption(new Option('--role <role>', 'which role to run').choices(['authz', 'gateway', 'all']).default('authz'))
  .option(
    '--policy <file>',
    'mcp-security.yaml to enforce (reloaded on SIGHUP; a bad file keeps the old policy)',
    process.env['MCPGW_POLICY'],
  )
  .option('--host <host>', 'authz listen address', '127.0.0.1')
  .option('--port <port>', 'authz gRPC port', (v) => parsePort(v), 9191)
  .option('--identities <file>', 'users, roles, grants and API-key hashes (YAML) until the state store is configured')
  .option('--jwks-file <file>', 'verify bearer JWTs against this JWKS file')
  .option('--jwks-url <url>', 'verify bearer JWTs against this JWKS URL')
  .option('--jwt-issuer <iss>', 'required JWT issuer')
  .option('--jwt-audience <aud>', 'required JWT audience')
  .option('--jwt-user-claim <claim>', 'claim holding the user id', 'sub')
  .option('--no-state', 'run Layer 1 only, without the state store (no approvals, limits, flows or audit)')
  .option('--drain-seconds <n>', 'seconds NOT_SERVING before shutting down on SIGTERM', (v) => Number(v), 5)
  .addHelpText(
    'after',
    `
Examples:
  mcpgw serve --role authz --policy mcp-security.yaml --identities users.yaml
  mcpgw serve --role authz --policy p.yaml --jwks-url https://idp/jwks.json --jwt-issuer https://idp --jwt-audience mcpgw`,
  )
  .action(serveCommand);

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CommanderError(2, 'mcpgw.usage', `invalid port: ${v}`);
  return n;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
      process.exit(0);
    process.exit(2);
  }
  process.stderr.write(`mcpgw: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
