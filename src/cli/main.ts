/**
 * `mcpgw` command line. Exit codes (stable): 0 ok, 1 failed, 2 usage, 3 gateway not running,
 * 4 not authorized.
 */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { mcpgwHome } from '../config/keys.js';
import { InitError, initInstallation, PRESETS, type Preset } from './init.js';
import { clientSnippet, dockerEngineAnswers, down, EXIT, LifecycleError, status, upNative } from './lifecycle.js';
import { registerAdminCommands } from './commands/index.js';
import { registerSecretCommands } from './secret.js';
import { serveCommand } from './serve.js';
import { registerVaultCommands } from './vault.js';

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
  .option(
    '--port <port>',
    'authz gRPC port (env MCPGW_AUTHZ_PORT)',
    (v) => parsePort(v),
    envPort('MCPGW_AUTHZ_PORT', 9191),
  )
  .option('--identities <file>', 'users, roles, grants and API-key hashes (YAML) until the state store is configured')
  .option('--jwks-file <file>', 'verify bearer JWTs against this JWKS file')
  .option('--jwks-url <url>', 'verify bearer JWTs against this JWKS URL')
  .option('--jwt-issuer <iss>', 'required JWT issuer')
  .option('--jwt-audience <aud>', 'required JWT audience')
  .option('--jwt-user-claim <claim>', 'claim holding the user id', 'sub')
  .option('--config <file>', 'installation settings (default: MCPGW_HOME/config.yaml when present)')
  .addOption(
    new Option('--front <kind>', 'front for --role all: envoy when installed, else built-in (env MCPGW_FRONT)')
      .choices(['auto', 'envoy', 'builtin'])
      .default(process.env['MCPGW_FRONT'] ?? 'auto'),
  )
  .option('--listen-port <port>', 'public port of the front (--role all; default from config, else 8000)', (v) =>
    parsePort(v),
  )
  .option(
    '--gateway-port <port>',
    'gateway port on loopback (--role all; env MCPGW_GATEWAY_PORT)',
    (v) => parsePort(v),
    envPort('MCPGW_GATEWAY_PORT', 3000),
  )
  .option('--no-prefix', 'single-backend mode: tool names, prompts and URIs travel unprefixed (--role all)')
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

program
  .command('init')
  .description('Set up an installation in MCPGW_HOME: config, policy scaffold, the owner admin and a first agent key')
  .addOption(new Option('--preset <name>', 'answer every question with a preset').choices([...PRESETS]))
  .option('-y, --yes', 'non-interactive: take the preset (default openclaw) without asking')
  .option('--force', 'overwrite an existing installation')
  .option('--port <port>', 'public port of the gateway', (v) => parsePort(v), 8000)
  .option('--json', 'print one JSON object: url, apiKey, adminKey, configPath, policyPath')
  .addHelpText(
    'after',
    `
The keys are printed once; only their SHA-256 hashes are stored.

Examples:
  mcpgw init --preset openclaw --yes --json`,
  )
  .action(async (o: { preset?: Preset; yes?: boolean; force?: boolean; port: number; json?: boolean }) => {
    if (!o.yes && !o.preset) {
      process.stderr.write('mcpgw init: interactive set-up is not available yet; pass --yes (and --preset)\n');
      process.exit(EXIT.usage);
    }
    try {
      const r = await initInstallation({
        home: mcpgwHome(),
        preset: o.preset ?? 'openclaw',
        force: o.force === true,
        port: o.port,
      });
      if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        process.stdout.write(
          `Initialized ${r.configPath}\nPolicy: ${r.policyPath}\nAgent API key (shown once): ${r.apiKey}\nAdmin key (shown once): ${r.adminKey}\n\nNext: mcpgw up\n`,
        );
      }
    } catch (err) {
      if (err instanceof InitError) {
        process.stderr.write(`mcpgw init: ${err.message}\n`);
        process.exit(EXIT.failed);
      }
      throw err;
    }
  });

program
  .command('up')
  .description('Start the gateway in the background (Docker when an engine answers, else native)')
  .option('--native', 'run natively even when Docker is available (no Docker, no external database)')
  .option('--init', 'initialize MCPGW_HOME first when needed (openclaw preset)')
  .option('--json', 'print JSON')
  .action(async (o: { native?: boolean; init?: boolean; json?: boolean }) => {
    if (!o.native) {
      if (dockerEngineAnswers()) {
        process.stderr.write('mcpgw up: a Docker engine answers, but no mcpgw image is published yet; use --native\n');
        process.exit(EXIT.failed);
      }
      if (!o.json)
        process.stderr.write(
          'No Docker engine found: running natively (embedded database, built-in or local Envoy front).\n',
        );
    }
    try {
      const r = await upNative({ home: mcpgwHome(), init: o.init === true });
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify({ url: r.url, pid: r.pid, front: r.front, alreadyRunning: r.alreadyRunning, ...(r.init ? { apiKey: r.init.apiKey, adminKey: r.init.adminKey } : {}) })}\n`,
        );
        return;
      }
      const lines = [
        r.alreadyRunning
          ? `mcpgw is already running at ${r.url} (pid ${r.pid})`
          : `mcpgw is up at ${r.url} (pid ${r.pid}, front: ${r.front})`,
        `Logs: ${r.logFile}`,
      ];
      if (r.init)
        lines.push(`Agent API key (shown once): ${r.init.apiKey}`, `Admin key (shown once): ${r.init.adminKey}`);
      lines.push(
        '',
        'MCP client configuration (OpenClaw, Claude, IDEs):',
        clientSnippet(r.url, r.init?.apiKey ?? null),
        '',
        'Note: in native mode an agent running as your OS user can read files you can read; keep the admin key out of its reach.',
      );
      process.stdout.write(`${lines.join('\n')}\n`);
    } catch (err) {
      if (err instanceof LifecycleError) {
        process.stderr.write(`mcpgw up: ${err.message}\n`);
        process.exit(err.exitCode);
      }
      throw err;
    }
  });

program
  .command('down')
  .description('Stop the gateway gracefully')
  .option('--json', 'print JSON')
  .action(async (o: { json?: boolean }) => {
    const r = await down({ home: mcpgwHome() });
    if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else process.stdout.write(r.stopped ? `mcpgw stopped (pid ${r.pid})\n` : 'mcpgw was not running\n');
    if (!r.stopped) process.exit(EXIT.notRunning);
  });

program
  .command('status')
  .description('Is the gateway running and healthy?')
  .option('--json', 'print JSON')
  .action(async (o: { json?: boolean }) => {
    const r = await status({ home: mcpgwHome() });
    if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else if (r.running)
      process.stdout.write(
        `mcpgw is running at ${r.url ?? '?'} (pid ${r.pid}, front: ${r.front ?? '?'}, ${r.healthy ? 'healthy' : 'NOT healthy'})\n`,
      );
    else process.stdout.write(`mcpgw is not running (home: ${r.home}); start it with: mcpgw up\n`);
    if (!r.running) process.exit(EXIT.notRunning);
    if (!r.healthy) process.exit(EXIT.failed);
  });

registerAdminCommands(program);
registerSecretCommands(program);
registerVaultCommands(program);

function envPort(name: string, fallback: number): number {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : parsePort(v);
}

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
