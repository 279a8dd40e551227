/**
 * The `mcpgw` command tree. Command modules with heavy dependencies (the state store, gRPC, the MCP
 * SDK) are imported inside their actions, so `mcpgw --help`, `version` and `status` start fast;
 * `scope: 'core'` leaves out the commands registered by other modules when the command line names
 * one of the commands defined here.
 */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { mcpgwHome } from '../config/keys.js';
import { ADMIN_KEY_HELP, CliError, EXIT, EXIT_CODES_HELP } from './exit.js';
import type { ServeOptions } from './serve.js';
import { PRESETS, PRESETS_HELP } from './init-answers.js';
import type { InitCommandOptions } from './init-interactive.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
export const VERSION = pkg.version;

/** Commands defined in this file: when argv names one of them, nothing else is loaded. */
export const CORE_COMMANDS = ['version', 'serve', 'init', 'up', 'down', 'status'] as const;

/** `vault` is registered by src/cli/vault.ts, which loads the state store; top-level help shows this. */
export const VAULT_DESCRIPTION = 'Keep backend credentials in Vault/OpenBao instead of the builtin store';

export type Scope = 'core' | 'help' | 'full';

function envPort(name: string, fallback: number): number {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : parsePort(v);
}

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CommanderError(2, 'mcpgw.usage', `invalid port: ${v}`);
  return n;
}

function examples(cmd: Command, lines: string[], notes?: string): Command {
  return cmd.addHelpText(
    'after',
    `${notes === undefined ? '' : `\n${notes.trim()}\n`}\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`,
  );
}

/** Which part of the tree a command line needs (see CORE_COMMANDS). */
export function scopeFor(argv: readonly string[]): Scope {
  const words = argv.filter((a) => !a.startsWith('-'));
  const first = words[0];
  if (first === undefined || (first === 'help' && words.length === 1)) return 'help';
  return (CORE_COMMANDS as readonly string[]).includes(first) ? 'core' : 'full';
}

export async function buildProgram(scope: Scope = 'full'): Promise<Command> {
  const program = new Command();
  program
    .name('mcpgw')
    .description('Security gateway for MCP tools')
    .version(VERSION, '-v, --version')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) })
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      `
Examples:
  mcpgw init                     set up MCPGW_HOME (questions, then an approval passphrase)
  mcpgw up                       start the gateway (Docker when an engine answers, else native)
  mcpgw status                   is it running and healthy?
  mcpgw pending                  calls waiting for a human
  mcpgw approve ap-7F3K          approve one (asks for your passphrase)
  source <(mcpgw completion bash)

Environment:
  MCPGW_HOME       where the installation lives (default ~/.mcpgw)
  MCPGW_URL        the gateway admin commands talk to (default: the running installation)
  MCPGW_ADMIN_KEY  admin key for automation; see below
  NO_COLOR         no colour and no spinners (neither is used when output is not a terminal)

${ADMIN_KEY_HELP}`,
    )
    .addHelpText('afterAll', `\n${EXIT_CODES_HELP}`);

  examples(
    program
      .command('version')
      .description('Print the version')
      .option('--json', 'print JSON')
      .action((o: { json?: boolean }) => {
        process.stdout.write(
          o.json ? `${JSON.stringify({ version: VERSION, node: process.version })}\n` : `mcpgw ${VERSION}\n`,
        );
      }),
    ['mcpgw version', 'mcpgw version --json'],
  );

  program
    .command('serve')
    .description('Run the gateway roles in this process (for containers, meshes and tests)')
    .addOption(new Option('--role <role>', 'which role to run').choices(['authz', 'gateway', 'all']).default('authz'))
    .option(
      '--policy <file>',
      'mcp-security.yaml to enforce (reloaded on SIGHUP; a bad file keeps the old policy)',
      process.env['MCPGW_POLICY'],
    )
    .option('--host <host>', 'listen address of the authz and gateway roles', '127.0.0.1')
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
      'gateway HTTP port (--role gateway and all; env MCPGW_GATEWAY_PORT)',
      (v) => parsePort(v),
      envPort('MCPGW_GATEWAY_PORT', 3000),
    )
    .option('--no-prefix', 'single-backend mode: tool names, prompts and URIs travel unprefixed (every role)')
    .option('--no-state', 'run Layer 1 only, without the state store (no approvals, limits, flows or audit)')
    .option('--drain-seconds <n>', 'seconds NOT_SERVING before shutting down on SIGTERM', (v) => Number(v), 5)
    .addHelpText(
      'after',
      `
Examples:
  mcpgw serve --role all
  mcpgw serve --role authz --policy mcp-security.yaml --port 9191       # with MCPGW_DATABASE_URL set
  mcpgw serve --role gateway --policy mcp-security.yaml --gateway-port 3000   # same database and MCPGW_HOME/keys
  mcpgw serve --role authz --policy mcp-security.yaml --identities users.yaml
  mcpgw serve --role authz --policy p.yaml --jwks-url https://idp/jwks.json --jwt-issuer https://idp --jwt-audience mcpgw`,
    )
    .action(async (o: ServeOptions) => {
      const { serveCommand } = await import('./serve.js');
      await serveCommand(o);
    });

  program
    .command('init')
    .description('Set up an installation in MCPGW_HOME: config, policy, the owner admin (passphrase) and an agent key')
    .addOption(new Option('--preset <name>', 'answer the setup questions with a preset').choices([...PRESETS]))
    .option('-y, --yes', 'non-interactive: no questions, no passphrase; prints the admin key once (MCPGW_ADMIN_KEY)')
    .option('--force', 'overwrite an existing installation without asking (issues new keys)')
    .option('--port <port>', 'public port of the gateway', (v) => parsePort(v), 8000)
    .addOption(new Option('--auth <mode>', 'answer "Authentication mode"').choices(['api-key', 'keycloak']))
    .option('--vault', 'answer "credential vault": yes')
    .option('--no-vault', 'answer "credential vault": no (secrets.backend: none)')
    .option('--tui', 'answer "TUI console": yes')
    .option('--no-tui', 'answer "TUI console": no')
    .addOption(new Option('--users <who>', 'answer "Who will use this gateway"').choices(['single', 'team']))
    .option('--json', 'print one JSON object: url, apiKey, adminKey (with --yes) or adminCredential, paths')
    .addHelpText(
      'after',
      `
Without --yes, init asks on the terminal (never stdin): authentication mode, credential vault,
TUI console, who will use the gateway (unless --preset or the flags above answer them), and then an
approval passphrase, twice. The owner's admin key is stored encrypted under it in
MCPGW_HOME/admin-credential.json (0600); approve, deny, apply and grant changes ask for it. With
--yes nothing is asked and nothing is stored: the admin key is printed once, for MCPGW_ADMIN_KEY.
An existing config.yaml is only replaced after you say so, or with --force. The keys are printed
once; the database keeps only their SHA-256 hashes, and no key is written to a config file.

${PRESETS_HELP}

Examples:
  mcpgw init
  mcpgw init --preset openclaw
  mcpgw init --preset team --port 8100
  mcpgw init --preset openclaw --yes --json
  mcpgw init --yes --auth api-key --no-vault --no-tui --users single`,
    )
    .action(async (o: InitCommandOptions) => {
      const { initCommand } = await import('./init-interactive.js');
      await initCommand(o);
    });

  examples(
    program
      .command('up')
      .description('Start the gateway in the background (Docker when an engine answers, else native)')
      .option('--native', 'run natively even when Docker is available (no Docker, no external database)')
      .option('--init', 'initialize MCPGW_HOME first when needed (openclaw preset, non-interactive)')
      .option('--image <image>', 'Docker image (env MCPGW_IMAGE)')
      .option('--json', 'print JSON')
      .action(async (o: { native?: boolean; init?: boolean; image?: string; json?: boolean }) => {
        const { upCommand } = await import('./up.js');
        await upCommand(o, VERSION);
      }),
    ['mcpgw up', 'mcpgw up --native', 'mcpgw up --native --init --json', 'MCPGW_IMAGE=mcpgw mcpgw up'],
    `With a Docker engine (\`docker info\` answers), up pulls the image with progress (unless it is
already there), runs it as the container "mcpgw" with MCPGW_HOME as its volume (/var/lib/mcpgw) and
the front on the configured port, and waits for /healthz. No image is published yet: up then says
so; use --native, or build one (docker build -t mcpgw .) and set MCPGW_IMAGE=mcpgw.
Without an engine it runs natively: one background \`mcpgw serve --role all\`, the embedded
database in MCPGW_HOME, Envoy when installed, else the built-in front.`,
  );

  examples(
    program
      .command('down')
      .description('Stop the gateway gracefully (SIGTERM, or docker stop in Docker mode)')
      .option('--json', 'print JSON')
      .action(async (o: { json?: boolean }) => {
        const { down } = await import('./lifecycle.js');
        const r = await down({ home: mcpgwHome() });
        if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
        else if (r.stopped)
          process.stdout.write(
            r.mode === 'docker' ? `mcpgw stopped (container ${r.container ?? ''})\n` : `mcpgw stopped (pid ${r.pid})\n`,
          );
        else process.stdout.write('mcpgw was not running\n');
        if (!r.stopped) process.exitCode = EXIT.notRunning;
      }),
    ['mcpgw down', 'mcpgw down --json'],
  );

  examples(
    program
      .command('status')
      .description('Is the gateway running and healthy?')
      .option('--json', 'print JSON')
      .action(async (o: { json?: boolean }) => {
        const { status } = await import('./lifecycle.js');
        const r = await status({ home: mcpgwHome() });
        if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
        else if (!r.running) process.stdout.write(`mcpgw is not running (home: ${r.home}); start it with: mcpgw up\n`);
        else {
          const health = r.healthy ? 'healthy' : 'NOT healthy';
          const how =
            r.mode === 'native'
              ? `pid ${r.pid}, front: ${r.front ?? '?'}`
              : r.mode === 'docker'
                ? 'container mcpgw'
                : `no pid file in ${r.home}: started by Docker, s6 or another process`;
          process.stdout.write(`mcpgw is running at ${r.url ?? '?'} (${how}, ${health})\n`);
        }
        if (!r.running) process.exitCode = EXIT.notRunning;
        else if (!r.healthy) process.exitCode = EXIT.failed;
      }),
    ['mcpgw status', 'mcpgw status --json', 'MCPGW_URL=http://gateway.internal:8000 mcpgw status'],
    `Without a pid file in MCPGW_HOME (in the container, under s6, or in Docker mode) status asks the
health endpoint at MCPGW_URL, else at the port in MCPGW_HOME/config.yaml.`,
  );

  if (scope === 'core') return program;

  examples(
    program
      .command('completion')
      .description('Print a shell completion script (bash or zsh)')
      .argument('<shell>', 'bash or zsh')
      .action(async (shell: string) => {
        const { bashCompletion, zshCompletion } = await import('./completion.js');
        if (shell === 'bash') process.stdout.write(bashCompletion(program));
        else if (shell === 'zsh') process.stdout.write(zshCompletion(program));
        else throw new CliError(`no completion for ${JSON.stringify(shell)}: choose bash or zsh`, EXIT.usage);
      }),
    [
      'source <(mcpgw completion bash)',
      'mcpgw completion bash > ~/.local/share/bash-completion/completions/mcpgw',
      'mcpgw completion zsh > "${fpath[1]}/_mcpgw"   # then restart zsh (compinit)',
    ],
  );

  const [{ registerAdminCommands }, { registerSecretCommands }] = await Promise.all([
    import('./commands/index.js'),
    import('./secret.js'),
  ]);
  registerAdminCommands(program);
  registerSecretCommands(program);
  if (scope === 'help') program.command('vault').description(VAULT_DESCRIPTION);
  else (await import('./vault.js')).registerVaultCommands(program);
  explainAdminKey(program);
  return program;
}

/**
 * Every command that takes `--admin-key` says, in its help, where the credential comes from and
 * what MCPGW_ADMIN_KEY gives away. Added here, once for all modules, so no command can forget it.
 */
function explainAdminKey(cmd: Command): void {
  for (const sub of cmd.commands) {
    if (sub.options.some((o) => o.long === '--admin-key')) sub.addHelpText('after', `\n${ADMIN_KEY_HELP}`);
    explainAdminKey(sub);
  }
}
