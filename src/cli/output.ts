/**
 * What every `mcpgw` command shares on the way out: tables, JSON, colour and spinners only where a
 * person is watching (a TTY without `NO_COLOR`), and one place that turns failures into a message
 * on stderr plus a stable exit code (0 ok, 1 failed, 2 usage, 3 gateway not running, 4 not
 * authorized).
 */
import type { Command } from 'commander';
import { addConnectionOptions, AdminClientError } from './admin-client.js';
import { CliError as BaseCliError, EXIT, exitCodeOf, type ExitCode } from './exit.js';
import { colorEnabled, paint as paintFor, progress as spinner, type Progress } from './tty.js';

export { colorEnabled, EXIT };

/** A failure the command explains itself; `hint` says what to run next. */
export class CliError extends BaseCliError {
  constructor(
    message: string,
    exitCode: ExitCode = EXIT.failed,
    readonly hint: string | null = null,
    /** Put into `{"error": …}` on stdout under `--json`. */
    readonly details: unknown = null,
    /** The admin API's error code when the failure came from there (`not_found`, `conflict`, …). */
    readonly code: string | null = null,
  ) {
    super(message, exitCode);
    this.name = 'CliError';
  }
}

export class UsageError extends CliError {
  constructor(message: string, hint: string | null = null) {
    super(message, EXIT.usage, hint);
    this.name = 'UsageError';
  }
}

/** Colour on stdout: a terminal, and neither NO_COLOR nor TERM=dumb (see tty.ts). */
const stdoutPaint = (): ReturnType<typeof paintFor> => paintFor(colorEnabled(process.stdout));

export const paint = {
  ok: (s: string): string => stdoutPaint().green(s),
  warn: (s: string): string => stdoutPaint().yellow(s),
  bad: (s: string): string => stdoutPaint().red(s),
  dim: (s: string): string => stdoutPaint().dim(s),
};

/** Lines to stdout, each ending in a newline. */
export function out(...lines: string[]): void {
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Columns padded to the widest cell, three spaces apart; the first row is the header. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c + ' '.repeat(Math.max(0, (widths[i] ?? 0) - [...c].length)))
        .join('   ')
        .trimEnd(),
    )
    .join('\n');
}

/** `45s`, `12m`, `3h`, `2d`: how long ago `iso` was. */
export function age(iso: string, now: number = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** `2026-01-31 09:22:36` (UTC): sortable and short enough for a table. */
export function shortTime(iso: string | null): string {
  return iso === null ? '-' : iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '');
}

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/**
 * A spinner on stderr while `work` runs, for a person at a terminal only (no lines in logs or
 * pipes). It appears after a moment, so quick answers do not flicker, and is erased before
 * anything else is printed.
 */
export async function progress<T>(label: string, work: Promise<T>): Promise<T> {
  if (!colorEnabled(process.stderr)) return work;
  const shown: { spinner?: Progress } = {};
  const timer = setTimeout(() => {
    shown.spinner = spinner(`${label}…`);
  }, 400);
  try {
    return await work;
  } finally {
    clearTimeout(timer);
    shown.spinner?.stop();
  }
}

/** `--url` and `--admin-key` (and how the key is found), on every command that talks to the admin API. */
/**
 * Runs `tick` every `intervalMs` until Ctrl-C (for `--watch` and `--follow`): the interrupt ends
 * the wait at once and lets the command finish normally, so piped output is flushed, not cut.
 */
export async function untilInterrupted(intervalMs: number, tick: () => Promise<void>): Promise<void> {
  let stopped = false;
  let wake: () => void = () => undefined;
  const onSigint = (): void => {
    stopped = true;
    wake();
  };
  process.once('SIGINT', onSigint);
  try {
    while (!stopped) {
      await tick();
      if (stopped) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, intervalMs);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
}

export const connection = addConnectionOptions;

/** The "Examples:" section of `--help` (and any notes before it). */
export function examples(cmd: Command, lines: readonly string[], notes?: string): Command {
  return cmd.addHelpText(
    'after',
    `${notes === undefined ? '' : `\n${notes.trim()}\n`}\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`,
  );
}

function adminHint(err: AdminClientError): string | null {
  if (err.exitCode !== EXIT.notAuthorized) return null;
  if (err.status === 403 && /agent/i.test(err.message)) {
    return 'use an admin key (mcpgw_ak_…), e.g. the one `mcpgw init` printed for owner, in MCPGW_ADMIN_KEY';
  }
  if (err.status === 401) {
    return 'check MCPGW_ADMIN_KEY / --admin-key: it must be a current admin or approver key (mcpgw_ak_…); an admin can issue a new one with `mcpgw user rotate-key <name>`';
  }
  return null;
}

/**
 * Runs one command's work. Failures are written to stderr as `mcpgw <name>: <what happened>` and
 * the hint on the next line; with `--json` stdout also gets `{"error": {code, message, exitCode,
 * details}}`, so a script that parses stdout sees a failure rather than nothing. The exit code is
 * set rather than forced, so buffered output still reaches a pipe.
 */
export async function run(name: string, o: { json?: boolean | undefined }, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    let message: string;
    let exitCode: number;
    let hint: string | null;
    let code: string;
    let details: unknown;
    if (err instanceof CliError) {
      ({ message, exitCode, hint, details } = err);
      code =
        err.code ??
        (exitCode === EXIT.usage
          ? 'usage'
          : exitCode === EXIT.notRunning
            ? 'not_running'
            : exitCode === EXIT.notAuthorized
              ? 'unauthorized'
              : 'failed');
    } else if (err instanceof AdminClientError) {
      message = err.message;
      exitCode = err.exitCode;
      hint = adminHint(err);
      code =
        err.code ??
        (exitCode === EXIT.notRunning ? 'not_running' : exitCode === EXIT.notAuthorized ? 'unauthorized' : 'failed');
      details = err.details;
    } else {
      // Our other errors (a question without a terminal, …) carry their exit code too.
      const own = exitCodeOf(err);
      if (own === null || !(err instanceof Error)) throw err;
      message = err.message;
      exitCode = own;
      hint = null;
      code = exitCode === EXIT.usage ? 'usage' : 'failed';
      details = null;
    }
    if (o.json) printJson({ error: { code, message, exitCode, details: details ?? null } });
    process.stderr.write(`mcpgw ${name}: ${message}\n${hint === null ? '' : `  ${hint}\n`}`);
    process.exitCode = exitCode;
  }
}
