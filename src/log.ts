/**
 * One pino logger for the process. Callers log facts (ids, names, codes), never headers, bodies,
 * keys or tokens; the redaction list is a second line of defence for the obvious field names.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(
  opts: { level?: string; name?: string; destination?: pino.DestinationStream } = {},
): Logger {
  return pino(
    {
      name: opts.name ?? 'mcpgw',
      level: opts.level ?? process.env['MCPGW_LOG_LEVEL'] ?? 'info',
      redact: {
        paths: [
          'authorization',
          '*.authorization',
          'headers',
          '*.headers',
          'body',
          '*.body',
          'rawBody',
          '*.rawBody',
          'token',
          '*.token',
          'apiKey',
          '*.apiKey',
          'secret',
          '*.secret',
          'arguments',
          '*.arguments',
        ],
        censor: '[REDACTED]',
      },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
