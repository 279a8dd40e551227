/**
 * The CLI's exit codes. They are part of its interface (scripts branch on them), so they never
 * change meaning; `mcpgw --help` lists them.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, notRunning: 3, notAuthorized: 4 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP =
  'Exit codes: 0 ok, 1 failed, 2 usage, 3 gateway not running, 4 not authorized (wrong or missing admin credential).';

/**
 * How an admin command finds its credential (DESIGN §4, local threat model); shown in
 * `mcpgw --help` and in the help of every admin command.
 */
export const ADMIN_KEY_HELP = `Admin credential, first found wins:
  --admin-key <key>    visible to other users in ps and kept in shell history: avoid
  MCPGW_ADMIN_KEY      for automation (CI, scripts). Whoever can read it (your agent too, if it
                       runs as your OS user) can approve its own calls and change grants.
  otherwise            the key \`mcpgw init\` stored encrypted in MCPGW_HOME/admin-credential.json,
                       unlocked with your approval passphrase, asked on this terminal (never
                       read from argv or stdin).`;

/** An error the CLI reports as one line and turns into its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failed,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The exit code an error carries (`exitCode` of our error classes), if it is one of ours. */
export function exitCodeOf(err: unknown): ExitCode | null {
  if (!(err instanceof Error)) return null;
  const code = (err as { exitCode?: unknown }).exitCode;
  return typeof code === 'number' && (Object.values(EXIT) as number[]).includes(code) ? (code as ExitCode) : null;
}
