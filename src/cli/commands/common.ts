/** What the admin commands share: connecting with a stated purpose, paths, and paging. */
import type { z } from 'zod';
import { MAX_PAGE_SIZE, type Page } from '../../admin/contract.js';
import { mcpgwHome } from '../../config/keys.js';
import { connectAdmin, type AdminClient } from '../admin-client.js';
import { progress } from '../output.js';

export interface ConnOptions {
  url?: string;
  adminKey?: string;
}

export interface JsonOption {
  json?: boolean;
}

/**
 * The admin client for one command. `purpose` is what the person is asked to confirm when the
 * admin credential has to be unlocked (e.g. `approve ap-3F2A`); every request shows a spinner
 * under that name while it takes long.
 */
export async function connect(o: ConnOptions, purpose: string): Promise<AdminClient> {
  const c = await connectAdmin({ home: mcpgwHome(), url: o.url, adminKey: o.adminKey, purpose });
  return {
    base: c.base,
    request<S extends z.ZodType>(method: string, path: string, schema: S, body?: unknown): Promise<z.output<S>> {
      return progress(purpose, c.request(method, path, schema, body));
    },
  };
}

/** One path segment, percent-encoded. */
export const seg = (s: string): string => encodeURIComponent(s);

export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

/** Every item of a paged list, following `nextCursor` (at most `max` items). */
export async function fetchAll<T>(
  c: AdminClient,
  path: string,
  schema: z.ZodType<Page<T>>,
  params: Record<string, string | number | undefined> = {},
  max = Number.POSITIVE_INFINITY,
): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const limit = Math.min(MAX_PAGE_SIZE, max - items.length);
    const page = await c.request('GET', `${path}${query({ ...params, limit, cursor })}`, schema);
    items.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined && items.length < max);
  return items;
}
