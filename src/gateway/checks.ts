/**
 * Header checks the MCP transport spec asks of a server, as plain functions: `Origin` (DNS
 * rebinding: a web page must not drive a local gateway through the victim's browser),
 * `MCP-Protocol-Version`, and what the client accepts.
 */
import { isSupportedProtocolVersion } from '../aggregator/index.js';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * A request without `Origin` does not come from a browser and passes. One with it passes only when
 * it is listed, or (when `allowLoopback`) a loopback origin; `null` (sandboxed frames, file://)
 * never does.
 */
export function originAllowed(origin: string | undefined, allowed: readonly string[], allowLoopback: boolean): boolean {
  if (origin === undefined) return true;
  if (allowed.includes(origin)) return true;
  if (!allowLoopback) return false;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  // An origin is scheme://host[:port] and nothing else.
  if (url.origin !== origin) return false;
  return LOOPBACK_HOSTS.has(url.hostname);
}

export type VersionCheck = { ok: true; version: string | null } | { ok: false; message: string };

/** `MCP-Protocol-Version` on a request after initialize: absent means the spec's fallback; unknown is refused. */
export function checkProtocolVersionHeader(value: string | undefined): VersionCheck {
  if (value === undefined) return { ok: true, version: null };
  if (!isSupportedProtocolVersion(value)) {
    return { ok: false, message: `Unsupported MCP-Protocol-Version: ${value.slice(0, 40)}` };
  }
  return { ok: true, version: value };
}

/** Whether an Accept header admits `type` (exact, `type/*` or `*\/*`). */
export function accepts(accept: string | undefined, type: string): boolean {
  if (accept === undefined) return false;
  const [major] = type.split('/');
  return accept
    .split(',')
    .map((part) => (part.split(';')[0] ?? '').trim().toLowerCase())
    .some((t) => t === type || t === `${major}/*` || t === '*/*');
}
