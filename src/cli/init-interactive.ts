/**
 * `mcpgw init` as a person runs it: the questions (three toggles and who uses the gateway), the
 * approval passphrase (DESIGN §4) on the controlling terminal, the owner's admin key stored
 * encrypted under it, and what to do next. `--yes` is the non-interactive form for scripts: no
 * questions and no passphrase, so the admin key is printed once for MCPGW_ADMIN_KEY.
 *
 * The files written depend on the answers alone (src/cli/init-answers.ts), however they were
 * given: questions, --preset or flags.
 */
import { existsSync, rmSync } from 'node:fs';
import { homePaths } from '../config/home.js';
import { mcpgwHome } from '../config/keys.js';
import { credentialPath, passphraseProblem, writeAdminCredential, MIN_PASSPHRASE_LENGTH } from './credential.js';
import { CliError, EXIT } from './exit.js';
import {
  describeAnswers,
  OWNER,
  PRESET_ANSWERS,
  type AuthMode,
  type InitAnswers,
  type Preset,
  type Users,
} from './init-answers.js';
import type { InitResult } from './init.js';
import { alive, clientSnippets, KEYCLOAK_NOT_RUN, readPid } from './lifecycle.js';
import { colorEnabled, NO_TERMINAL, paint, progress, Terminal, TerminalError } from './tty.js';

export interface InitCommandOptions {
  preset?: Preset;
  yes?: boolean;
  force?: boolean;
  port: number;
  json?: boolean;
  auth?: AuthMode;
  vault?: boolean;
  tui?: boolean;
  users?: Users;
}

/** Answers fixed on the command line (a preset, then single flags over it). */
function givenAnswers(o: InitCommandOptions): Partial<InitAnswers> {
  const base: Partial<InitAnswers> = o.preset ? { ...PRESET_ANSWERS[o.preset] } : {};
  if (o.auth !== undefined) base.auth = o.auth;
  if (o.vault !== undefined) base.vault = o.vault;
  if (o.tui !== undefined) base.tui = o.tui;
  if (o.users !== undefined) base.users = o.users;
  return base;
}

async function askAnswers(t: Terminal, given: Partial<InitAnswers>): Promise<InitAnswers> {
  const auth =
    given.auth ??
    (await t.select<AuthMode>('Authentication mode:', [
      { value: 'api-key', label: 'API key', hint: 'local development, single user, small teams' },
      { value: 'keycloak', label: 'Keycloak', hint: 'OIDC/SAML, user federation; not started by `mcpgw up` yet' },
    ]));
  const vault =
    given.vault ??
    (await t.select<boolean>('Enable the credential vault?', [
      { value: true, label: 'Yes', hint: 'recommended: agents never see your API keys' },
      { value: false, label: 'No', hint: 'you manage credentials yourself' },
    ]));
  const tui =
    given.tui ??
    (await t.select<boolean>('Enable the TUI management console?', [
      { value: true, label: 'Yes', hint: 'interactive terminal UI' },
      { value: false, label: 'No', hint: 'CLI only' },
    ]));
  const users =
    given.users ??
    (await t.select<Users>('Who will use this gateway?', [
      { value: 'single', label: 'Just me' },
      { value: 'team', label: 'A team', hint: 'a cap on pending approvals per person' },
    ]));
  return { auth, vault, tui, users };
}

async function askPassphrase(t: Terminal): Promise<string> {
  t.write(
    `\nChoose an approval passphrase. It encrypts the owner's admin key on disk, and approve, deny,\n` +
      `apply and grant changes ask for it on this terminal, so an agent running as you cannot\n` +
      `approve its own calls. It cannot be recovered (init --force issues new keys).\n`,
  );
  for (let attempt = 0; attempt < 3; attempt++) {
    const first = await t.hidden(`Approval passphrase (${MIN_PASSPHRASE_LENGTH}+ characters): `);
    const problem = passphraseProblem(first);
    if (problem !== null) {
      t.write(`${problem}; try again.\n`);
      continue;
    }
    const second = await t.hidden('Repeat the passphrase: ');
    if (second === first) return first;
    t.write('The two passphrases differ; try again.\n');
  }
  throw new CliError('no passphrase chosen after 3 attempts; nothing changed', EXIT.failed);
}

function gatewayMustBeDown(home: string): void {
  const pid = readPid(homePaths(home));
  if (pid !== null && alive(pid)) {
    throw new CliError(
      `the gateway of ${home} is running (pid ${pid}) and holds its database; stop it first: mcpgw down`,
      EXIT.failed,
    );
  }
}

interface Printed {
  r: InitResult;
  credential: string | null;
}

function summary({ r, credential }: Printed): string {
  const p = paint(colorEnabled(process.stdout));
  const ok = p.green('✓');
  const lines = [
    ...describeAnswers(r.answers).map((l) => `${ok} ${l}`),
    `${ok} Config written: ${r.configPath}`,
    r.policyWritten
      ? `${ok} Policy written: ${r.policyPath}`
      : `${ok} Policy kept: ${r.policyPath} (it was already there; --force replaces it)`,
  ];
  if (r.answers.auth === 'keycloak') lines.push(`${p.yellow('!')} ${KEYCLOAK_NOT_RUN}`);
  if (credential !== null) {
    lines.push(
      `${ok} Admin key of ${OWNER}: stored encrypted under your passphrase in ${credential}`,
      `  Admin commands ask for the passphrase on the terminal; for automation set MCPGW_ADMIN_KEY.`,
    );
  } else {
    lines.push(
      `${ok} Admin key of ${OWNER} (shown once): ${r.adminKey}`,
      `  No passphrase was set (--yes), so nothing stores it: admin commands read it from`,
      `  MCPGW_ADMIN_KEY, e.g. export MCPGW_ADMIN_KEY=${r.adminKey}`,
      `  Whoever can read MCPGW_ADMIN_KEY can approve; keep it out of your agent's reach.`,
      `  (Run \`mcpgw init --force\` in a terminal to choose a passphrase instead.)`,
    );
  }
  lines.push(
    `${ok} Agent API key (shown once): ${r.apiKey}`,
    '',
    p.bold('Next: start the gateway'),
    '  mcpgw up',
    '',
    p.bold(`Then point your MCP client at ${r.url}:`),
    clientSnippets(r.url, r.apiKey),
  );
  return `${lines.join('\n')}\n`;
}

function printJson({ r, credential }: Printed): void {
  const out = {
    url: r.url,
    apiKey: r.apiKey,
    ...(credential === null ? { adminKey: r.adminKey } : {}),
    adminCredential: credential,
    configPath: r.configPath,
    policyPath: r.policyPath,
    preset: r.preset,
    answers: r.answers,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

export async function initCommand(o: InitCommandOptions): Promise<void> {
  const home = mcpgwHome();
  const paths = homePaths(home);
  const exists = existsSync(paths.config);
  const given = givenAnswers(o);
  let answers: InitAnswers;
  let passphrase: string | null = null;
  let force = o.force === true;

  if (o.yes) {
    if (exists && !force) {
      throw new CliError(`already initialized: ${paths.config} exists (use --force to start over)`, EXIT.failed);
    }
    answers = { ...PRESET_ANSWERS.openclaw, ...given };
  } else {
    let t: Terminal;
    try {
      t = Terminal.open();
    } catch (err) {
      if (!(err instanceof TerminalError)) throw err;
      throw new CliError(
        `the set-up questions and the approval passphrase are asked on a terminal, and ${NO_TERMINAL}. ` +
          'Run it in a terminal, or pass --yes (and --preset): the admin key is then printed once, for MCPGW_ADMIN_KEY',
        EXIT.usage,
      );
    }
    try {
      gatewayMustBeDown(home);
      if (exists && !force) {
        const again = await t.confirm(
          `${paths.config} exists. Start over (new config, policy and keys; the old keys stop working)?`,
          false,
        );
        if (!again) throw new CliError(`kept the existing installation in ${home}; nothing changed`, EXIT.failed);
        force = true;
      }
      if (o.preset)
        t.write(`Preset ${o.preset}: ${describeAnswers({ ...PRESET_ANSWERS[o.preset], ...given }).join('; ')}\n`);
      answers = await askAnswers(t, given);
      passphrase = await askPassphrase(t);
    } catch (err) {
      if (err instanceof TerminalError) throw new CliError(err.message, err.exitCode);
      throw err;
    } finally {
      t.close();
    }
  }
  gatewayMustBeDown(home);

  const spin = progress('Creating the database, the owner admin and the first agent key', { quiet: o.json === true });
  const { initInstallation } = await import('./init.js');
  let r: InitResult;
  try {
    r = await initInstallation({ home, answers, force, port: o.port });
  } catch (err) {
    spin.fail('Initialization failed');
    throw err;
  }
  let credential: string | null = null;
  if (passphrase !== null) {
    try {
      credential = await writeAdminCredential(home, { user: OWNER, key: r.adminKey }, passphrase);
    } catch (err) {
      spin.fail('Could not store the admin key');
      throw new CliError(
        `could not write ${credentialPath(home)} (${err instanceof Error ? err.message : String(err)}); ` +
          `the owner's admin key is ${r.adminKey}: keep it in MCPGW_ADMIN_KEY, or fix the problem and run \`mcpgw init --force\``,
        EXIT.failed,
      );
    }
  } else {
    // The owner key it held was just replaced: a stale file would only fail later, confusingly.
    rmSync(credentialPath(home), { force: true });
  }
  spin.done(`Initialized ${home}`);
  if (o.json) printJson({ r, credential });
  else process.stdout.write(summary({ r, credential }));
}
