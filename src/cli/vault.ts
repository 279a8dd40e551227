/**
 * `mcpgw vault enable|disable`: move every secret between the builtin store and Vault/OpenBao
 * (`migrateSecrets`: copy, read back, then delete from the source) and switch `secrets:` in
 * `MCPGW_HOME/config.yaml`.
 *
 * It runs with the gateway stopped and opens the stores itself, rather than through an admin route:
 * the gateway picks its secret backend at start (its injection hook and redactor are built on it),
 * so a switch takes a restart anyway; the embedded database accepts one process at a time; and an
 * offline move has no window in which a backend starts from a store that is half emptied. The
 * config file changes only after every secret was verified in the target, so a failure at any point
 * leaves the installation on its old backend with every value still readable there.
 */
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { readConfig, writeConfig, type McpgwConfig } from '../config/config-file.js';
import { homePaths } from '../config/home.js';
import { mcpgwHome } from '../config/keys.js';
import { openStore, type Layer2Store } from '../state/index.js';
import {
  migrateSecrets,
  openSecretStore,
  secretsConfigSchema,
  SecretStoreError,
  type MigrateSecretsReport,
  type SecretStore,
  type SecretsConfig,
} from '../vault/index.js';
import { alive, readPid } from './lifecycle.js';
import type { ExitCode } from './exit.js';
import { CliError, EXIT, run } from './output.js';

class VaultCommandError extends CliError {
  constructor(message: string, exitCode: ExitCode = EXIT.failed) {
    super(message, exitCode);
    this.name = 'VaultCommandError';
  }
}

interface EnableOptions {
  address: string;
  mount: string;
  namespace?: string;
  tokenFile?: string;
  allowInsecureHttp?: boolean;
  overwrite?: boolean;
  yes?: boolean;
  json?: boolean;
}

interface CommonOptions {
  overwrite?: boolean;
  yes?: boolean;
  json?: boolean;
}

export interface SwitchResult {
  from: SecretsConfig['backend'];
  to: SecretsConfig['backend'];
  report: MigrateSecretsReport;
  configPath: string;
}

function gatewayMustBeDown(home: string): void {
  const pid = readPid(homePaths(home));
  if (pid !== null && alive(pid)) {
    throw new VaultCommandError(
      `the gateway is running (pid ${pid}); stop it first (mcpgw down): the secret backend is chosen at start, so the switch takes a restart anyway`,
    );
  }
}

async function confirm(question: string, o: CommonOptions): Promise<void> {
  if (o.yes) return;
  if (!process.stdin.isTTY) throw new VaultCommandError('not a terminal: pass --yes to confirm', EXIT.usage);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question} [y/N] `)).trim().toLowerCase();
    if (answer !== 'y' && answer !== 'yes') throw new VaultCommandError('cancelled; nothing changed');
  } finally {
    rl.close();
  }
}

/**
 * Moves everything from the store of `current` to the store of `next` and, when nothing is left
 * behind, writes `next` into the config. Conflicts (different values on both sides) keep the
 * config as it was unless `overwrite`.
 */
export async function switchSecretsBackend(
  home: string,
  next: SecretsConfig,
  o: CommonOptions & { progress?: (line: string) => void },
): Promise<SwitchResult> {
  const paths = homePaths(home);
  gatewayMustBeDown(home);
  const cfg: McpgwConfig = await readConfig(paths.config);
  const current = cfg.secrets;
  let state: Layer2Store | null = null;
  const opened: SecretStore[] = [];
  try {
    const needsDb = current.backend === 'builtin' || next.backend === 'builtin';
    if (needsDb) state = await openStore({ home, sealer: false });
    const open = async (c: SecretsConfig): Promise<SecretStore> => {
      const s = await openSecretStore(c, { ...(state ? { db: state.db } : {}), keyDir: paths.keys });
      opened.push(s);
      await s.check();
      return s;
    };
    const from = await open(current);
    const to = await open(next);
    const count = (await from.list()).filter((l) => l.stored).length;
    await confirm(`Move ${count} secret(s) from the ${current.backend} store to the ${next.backend} store?`, o);
    const report = await migrateSecrets(from, to, {
      onConflict: o.overwrite ? 'overwrite' : 'keep-target',
      onProgress: (e) => o.progress?.(`${e.step}: ${e.service}/${e.variable}`),
    });
    if (report.conflicts.length > 0) {
      const names = report.conflicts.map((c) => `${c.service}/${c.variable}`).join(', ');
      throw new VaultCommandError(
        `${report.conflicts.length} secret(s) hold different values in both stores (${names}); both were kept and ` +
          `${paths.config} still says ${current.backend}. Rerun with --overwrite to let the ${current.backend} values win.`,
      );
    }
    await writeConfig(paths.config, { ...cfg, secrets: next });
    return { from: current.backend, to: next.backend, report, configPath: paths.config };
  } finally {
    for (const s of opened) await s.close().catch(() => undefined);
    await state?.close().catch(() => undefined);
  }
}

function print(r: SwitchResult, json: boolean | undefined, extra: string[]): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const n = (xs: unknown[]): number => xs.length;
  process.stdout.write(
    `${[
      `✓ Moved ${n(r.report.copied) + n(r.report.alreadyPresent)} secret(s) from ${r.from} to ${r.to} (copied ${n(r.report.copied)}, already there ${n(r.report.alreadyPresent)}, removed from ${r.from} ${n(r.report.deleted)})`,
      `✓ ${r.configPath}: secrets.backend is now ${r.to}`,
      ...extra,
      'Start the gateway again: mcpgw up',
    ].join('\n')}\n`,
  );
}

/** A store that cannot be reached or refuses is reported as such: the switch did not happen. */
function runVault(o: CommonOptions, f: () => Promise<void>): Promise<void> {
  return run('vault', o, async () => {
    try {
      await f();
    } catch (err) {
      if (err instanceof SecretStoreError) throw new CliError(`${err.message} (nothing was switched)`);
      throw err;
    }
  });
}

const HELP_OFFLINE = `
Run it with the gateway stopped (mcpgw down): it opens the state store and the secret stores
itself, moves every secret (copy, read back and compare, then delete from the source) and only then
rewrites secrets: in MCPGW_HOME/config.yaml. A failure leaves the old backend in place with every
value still in it; running the command again completes an interrupted move.`;

export function registerVaultCommands(program: Command): void {
  const vault = program
    .command('vault')
    .description('Keep backend credentials in Vault/OpenBao instead of the builtin store')
    .addHelpText(
      'after',
      '\nExamples:\n  mcpgw vault enable --address https://vault.example:8200 --token-file ~/.vault-token\n  mcpgw vault disable',
    );

  vault
    .command('enable')
    .description('Move every secret from the builtin store to Vault/OpenBao (KV v2) and switch to it')
    .requiredOption('--address <url>', 'Vault/OpenBao address, e.g. https://vault.example:8200')
    .option('--mount <path>', 'KV v2 mount', 'secret')
    .option('--namespace <ns>', 'Vault Enterprise / OpenBao namespace')
    .option(
      '--token-file <file>',
      'file holding the token (mode 0600); without it the gateway reads MCPGW_VAULT_TOKEN, VAULT_TOKEN or BAO_TOKEN',
    )
    .option('--allow-insecure-http', 'allow plain http to a non-loopback address')
    .option('--overwrite', 'where both stores hold a different value, the builtin one wins')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--json', 'print JSON: {from, to, report, configPath}')
    .addHelpText(
      'after',
      `${HELP_OFFLINE}\n\nSecrets live at <mount>/data/services/<service>.\n\nExamples:\n  mcpgw down && mcpgw vault enable --address https://vault.example:8200 --token-file ~/.vault-token && mcpgw up\n  mcpgw vault enable --address http://127.0.0.1:8200 --yes --json`,
    )
    .action((o: EnableOptions) =>
      runVault(o, async () => {
        const parsed = secretsConfigSchema.safeParse({
          backend: 'vault',
          address: o.address,
          mount: o.mount,
          ...(o.namespace !== undefined ? { namespace: o.namespace } : {}),
          ...(o.tokenFile !== undefined ? { tokenFile: o.tokenFile } : {}),
          ...(o.allowInsecureHttp ? { allowInsecureHttp: true } : {}),
        });
        if (!parsed.success) {
          throw new VaultCommandError(parsed.error.issues[0]?.message ?? 'invalid vault settings', EXIT.usage);
        }
        const home = mcpgwHome();
        const r = await switchSecretsBackend(home, parsed.data, {
          ...o,
          progress: (l) => {
            if (!o.json) process.stderr.write(`  ${l}\n`);
          },
        });
        print(
          r,
          o.json,
          o.tokenFile === undefined
            ? ['! No --token-file: the gateway needs MCPGW_VAULT_TOKEN (or VAULT_TOKEN / BAO_TOKEN) in its environment']
            : [],
        );
      }),
    );

  vault
    .command('disable')
    .description('Move every secret from Vault/OpenBao back into the builtin store and switch to it')
    .option('--overwrite', 'where both stores hold a different value, the Vault one wins')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--json', 'print JSON: {from, to, report, configPath}')
    .addHelpText(
      'after',
      `${HELP_OFFLINE}\n\nExamples:\n  mcpgw down && mcpgw vault disable && mcpgw up\n  mcpgw vault disable --yes --json`,
    )
    .action((o: CommonOptions) =>
      runVault(o, async () => {
        const home = mcpgwHome();
        const cfg = await readConfig(homePaths(home).config);
        if (cfg.secrets.backend !== 'vault') {
          throw new VaultCommandError(`secrets.backend is ${cfg.secrets.backend}, not vault: nothing to disable`);
        }
        const r = await switchSecretsBackend(
          home,
          { backend: 'builtin' },
          {
            ...o,
            progress: (l) => {
              if (!o.json) process.stderr.write(`  ${l}\n`);
            },
          },
        );
        print(r, o.json, []);
      }),
    );
}
