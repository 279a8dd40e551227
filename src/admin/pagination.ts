/**
 * Keyset cursors: the sort key of the last item returned, so a page never skips or repeats an item
 * when rows are added or removed between requests (offsets would).
 */
import { z } from 'zod';
import type { Page } from './contract.js';
import { AdminError } from './errors.js';

const keySchema = z
  .array(z.union([z.string(), z.number()]))
  .min(1)
  .max(4);
export type CursorKey = z.infer<typeof keySchema>;

export function encodeCursor(key: CursorKey): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/** The key inside a cursor; `arity` guards against a cursor taken from another list. */
export function decodeCursor(cursor: string, arity: number): CursorKey {
  try {
    const key = keySchema.parse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    if (key.length === arity) return key;
  } catch {
    // reported below
  }
  throw new AdminError('bad_request', 'invalid cursor: pass back nextCursor exactly as received');
}

function compareKeys(a: CursorKey, b: CursorKey): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i] as string | number;
    const y = b[i] as string | number;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return a.length - b.length;
}

/**
 * One page of a list held in memory (users, flags, services: small sets), ordered by `keyOf`,
 * which must be unique per item and have `arity` parts.
 */
export function pageInMemory<T>(
  items: readonly T[],
  keyOf: (item: T) => CursorKey,
  arity: number,
  query: { cursor?: string | undefined; limit: number },
): Page<T> {
  const after = query.cursor === undefined ? null : decodeCursor(query.cursor, arity);
  const keyed = items.map((item) => ({ item, key: keyOf(item) })).sort((a, b) => compareKeys(a.key, b.key));
  const rest = after === null ? keyed : keyed.filter((k) => compareKeys(k.key, after) > 0);
  const page = rest.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    items: page.map((k) => k.item),
    nextCursor: rest.length > query.limit && last ? encodeCursor(last.key) : null,
  };
}
