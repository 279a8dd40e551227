/**
 * One pino logger for the process. Callers log facts (ids, names, codes), never headers, bodies,
 * keys or tokens; the redaction list is a second line of defence for the obvious top-level names.
 */
import { fstatSync } from 'node:fs';
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(
  opts: { level?: string; name?: string; destination?: pino.DestinationStream } = {},
): Logger {
  return pino(
    {
      name: opts.name ?? 'mcpgw',
      level: opts.level ?? process.env['MCPGW_LOG_LEVEL'] ?? 'info',
      // Top-level names only: wildcard paths made every log call walk the object (≈40 µs per
      // decision line). Callers log chosen fields, never whole requests.
      redact: {
        paths: ['authorization', 'headers', 'body', 'rawBody', 'token', 'apiKey', 'secret', 'arguments'],
        censor: '[REDACTED]',
      },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? pino.destination({ dest: 1, sync: stdoutIsFile() }),
  );
}

/**
 * Writing to a regular file (native mode redirects stdout to MCPGW_HOME/logs/mcpgw.log) costs a
 * couple of µs inline, while an asynchronous write hands every line to the libuv pool: ≈30 µs more
 * CPU per line on one core, paid on each decision. Pipes and terminals stay asynchronous, so a
 * reader that stops reading cannot stall the event loop.
 */
function stdoutIsFile(): boolean {
  try {
    return fstatSync(1).isFile();
  } catch {
    return false;
  }
}
