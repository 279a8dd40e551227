/**
 * Copies a child's output to a writer in whole lines. A child that shares our stdout writes its
 * own chunks, and Envoy flushes its access log in pieces that can end mid-line: between two such
 * pieces another process's line (pino's, on the same file) landed inside Envoy's, and neither
 * parsed any more. Relayed here, each write carries only complete lines, so O_APPEND keeps every
 * line whole. A last line without its newline is written when the stream ends.
 */
import type { Readable } from 'node:stream';

export function relayLines(from: Readable, write: (text: string) => void, maxLine = 1024 * 1024): void {
  let pending = '';
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const end = chunk.lastIndexOf('\n');
    if (end === -1) {
      pending += chunk;
      // A runaway line must not hold memory without bound: pass it on as it is.
      if (pending.length > maxLine) {
        write(pending);
        pending = '';
      }
      return;
    }
    write(pending + chunk.slice(0, end + 1));
    pending = chunk.slice(end + 1);
  });
  from.on('end', () => {
    if (pending !== '') write(`${pending}\n`);
    pending = '';
  });
}
