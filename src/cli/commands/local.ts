/**
 * Commands that work on the installation's files rather than the admin API: `logs [--follow]`,
 * `auth switch <mode>` (config.yaml, read at start) and `tui` (not built yet).
 */
import { open, stat } from 'node:fs/promises';
import { Argument, type Command } from 'commander';
import { homePaths } from '../../config/home.js';
import { mcpgwHome } from '../../config/keys.js';
import { alive, readPid } from '../lifecycle.js';
import { CliError, examples, EXIT, out, paint, printJson, run, shortTime, untilInterrupted } from '../output.js';
import type { JsonOption } from './common.js';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** One pino JSON line as `time LEVEL msg  key=value…`; anything else unchanged. */
export function prettyLogLine(line: string): string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return line;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return line;
  const { time, level, msg, pid: _pid, hostname: _host, name: _name, ...rest } = v as Record<string, unknown>;
  const when = typeof time === 'string' ? shortTime(time) : String(time ?? '');
  // Envoy's access log (the Envoy front) has no level or message: one request per line.
  if (
    level === undefined &&
    msg === undefined &&
    typeof rest['method'] === 'string' &&
    typeof rest['path'] === 'string'
  ) {
    const user = typeof rest['user'] === 'string' && rest['user'] !== '-' ? `  user=${rest['user']}` : '';
    return `${when} HTTP  ${rest['method']} ${rest['path']} → ${String(rest['status'] ?? '?')} (${String(rest['duration_ms'] ?? '?')} ms)${user}`;
  }
  const lvl = typeof level === 'number' ? (LEVELS[level] ?? String(level)) : String(level ?? '');
  const paintLevel =
    typeof level === 'number' && level >= 50
      ? paint.bad
      : typeof level === 'number' && level >= 40
        ? paint.warn
        : (s: string) => s;
  const extras = Object.entries(rest)
    .map(([k, val]) => `${k}=${typeof val === 'string' ? val : JSON.stringify(val)}`)
    .join(' ');
  return `${when} ${paintLevel(lvl.padEnd(5))} ${typeof msg === 'string' ? msg : ''}${extras === '' ? '' : `  ${paint.dim(extras)}`}`;
}

/** The last `n` lines of `file` (reading backwards, so a large log is not read whole) and its size. */
async function lastLines(file: string, n: number): Promise<{ lines: string[]; size: number }> {
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    let pos = size;
    let buf = Buffer.alloc(0);
    let newlines = 0;
    while (pos > 0 && newlines <= n) {
      const len = Math.min(64 * 1024, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      await fh.read(chunk, 0, len, pos);
      for (const b of chunk) if (b === 0x0a) newlines++;
      buf = Buffer.concat([chunk, buf]);
    }
    const lines = buf.toString('utf8').split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return { lines: n === 0 ? [] : lines.slice(-n), size };
  } finally {
    await fh.close();
  }
}

/** New complete lines appended after `from`, until SIGINT; a truncated or replaced file is read from its start. */
async function follow(file: string, from: number, emit: (line: string) => void): Promise<void> {
  let pos = from;
  let partial = '';
  await untilInterrupted(250, async () => {
    const size = (await stat(file).catch(() => null))?.size ?? 0;
    if (size < pos) {
      pos = 0;
      partial = '';
    }
    if (size <= pos) return;
    const fh = await open(file, 'r');
    try {
      const chunk = Buffer.alloc(size - pos);
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
      pos += bytesRead;
      const lines = (partial + chunk.subarray(0, bytesRead).toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) emit(l);
    } finally {
      await fh.close();
    }
  });
}

function wholeNumber(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CliError(`not a whole number: ${v}`, EXIT.usage);
  return n;
}

export function registerLocalCommands(program: Command): void {
  examples(
    program
      .command('logs')
      .description("The gateway's log (MCPGW_HOME/logs/mcpgw.log), pretty-printed")
      .option('-f, --follow', 'keep printing new lines until Ctrl-C')
      .option('-n, --lines <n>', 'how many of the last lines to show first', wholeNumber, 50)
      .option('--json', 'print the raw JSON lines (one object per line)'),
    ['mcpgw logs', 'mcpgw logs -f', 'mcpgw logs -n 200 --json | jq -c "select(.level >= 40)"'],
    'Log lines name ids, rules and codes; they never hold keys, tokens, secret values or call arguments.',
  ).action((o: JsonOption & { follow?: boolean; lines: number }) =>
    run('logs', {}, async () => {
      const file = homePaths(mcpgwHome()).log;
      const emit = (line: string): void => {
        if (line !== '') out(o.json ? line : prettyLogLine(line));
      };
      let tail: { lines: string[]; size: number };
      try {
        tail = await lastLines(file, o.lines);
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
        throw new CliError(
          `no log file at ${file}`,
          EXIT.failed,
          'the gateway writes it once started here: mcpgw up (or set MCPGW_HOME to the installation)',
        );
      }
      for (const l of tail.lines) emit(l);
      if (o.follow) await follow(file, tail.size, emit);
    }),
  );

  const auth = examples(program.command('auth').description('How agents and people authenticate to the gateway'), [
    'mcpgw auth switch api-key',
  ]);
  examples(
    auth
      .command('switch')
      .description('Switch the authentication mode in config.yaml (takes effect at the next start)')
      .addArgument(new Argument('<mode>', 'authentication mode').choices(['api-key', 'keycloak']))
      .option('--json', 'print JSON: {mode, previous, changed, configPath, restartNeeded}'),
    ['mcpgw auth switch api-key'],
    `api-key: mcpgw_sk_/mcpgw_ak_ keys issued by \`mcpgw user add\`, checked by the gateway itself.
keycloak: not available yet (see the message it prints).`,
  ).action((mode: 'api-key' | 'keycloak', o: JsonOption) =>
    run('auth switch', o, async () => {
      const { readConfig, writeConfig } = await import('../../config/config-file.js');
      const home = mcpgwHome();
      const paths = homePaths(home);
      let cfg;
      try {
        cfg = await readConfig(paths.config);
      } catch (err) {
        throw new CliError(
          err instanceof Error ? err.message : String(err),
          EXIT.failed,
          'set the installation up first: mcpgw init',
        );
      }
      const previous = cfg.auth.mode;
      if (mode === 'keycloak') {
        throw new CliError(
          [
            'Keycloak mode is not available in this version: nothing starts Keycloak or imports the mcpgateway realm,',
            'and `mcpgw serve --role all` does not read auth.mode (it always checks mcpgw API keys).',
            previous === 'keycloak'
              ? `${paths.config} already says keycloak (the enterprise preset writes it), but the gateway still runs API-key auth.`
              : `${paths.config} is unchanged (auth.mode: ${previous}).`,
          ].join('\n  '),
          EXIT.failed,
          'to verify an external IdP today run the authz role on its own: mcpgw serve --role authz --jwks-url <url> --jwt-issuer <iss> --jwt-audience <aud>',
        );
      }
      const changed = previous !== mode;
      if (changed) await writeConfig(paths.config, { ...cfg, auth: { ...cfg.auth, mode } });
      const pid = readPid(paths);
      const running = pid !== null && alive(pid);
      const restartNeeded = changed && running;
      if (o.json) return printJson({ mode, previous, changed, configPath: paths.config, restartNeeded });
      out(
        changed
          ? `${paint.ok('✓')} ${paths.config}: auth.mode is now ${mode} (was ${previous})`
          : `auth.mode is already ${mode} in ${paths.config}; nothing changed`,
        ...(restartNeeded ? ['  The running gateway keeps its mode until restarted: mcpgw down && mcpgw up'] : []),
      );
    }),
  );

  examples(program.command('tui').description('The interactive management console (not built yet)'), [
    'mcpgw tui',
  ]).action(() =>
    run('tui', {}, () => {
      const lines = [
        'The TUI management console is not part of this version yet. The same operations from the CLI:',
        '  approvals        mcpgw pending [--watch] · mcpgw approve <id> · mcpgw deny <id> [reason]',
        '  users & grants   mcpgw user add|list|grant|revoke|delete|rotate-key',
        '  policy           mcpgw apply [file] · mcpgw profile add|list',
        '  credentials      mcpgw secret set|list|delete|test',
        '  state            mcpgw audit · mcpgw taint · mcpgw condition · mcpgw limits · mcpgw budgets',
        '  status & logs    mcpgw status · mcpgw logs --follow',
      ];
      return Promise.reject(new CliError(lines.join('\n'), EXIT.failed, 'see `mcpgw --help` for every command'));
    }),
  );
}
