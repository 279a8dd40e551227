/**
 * The admin API over node:http: authenticate the caller from the internal JWT, read a bounded JSON
 * body, call `AdminApi.handle`, write JSON.
 *
 * Authz never sees admin bodies (Envoy does not buffer them: they carry keys and policies), so the
 * size limit and the strict JSON parse happen here. The caller comes from the verified token only;
 * `x-mcpgw-user` is at most checked against it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseStrictJson } from '../authz/strict-json.js';
import { verifyInternalJwt, type PublicKeySource, type VerifyInternalJwtOptions } from '../identity/internal-jwt.js';
import type { AdminApi } from './api.js';
import { ADMIN_BASE_PATH, type ErrorCode } from './contract.js';
import { errorBody } from './errors.js';
import type { AdminCaller } from './handler.js';

/** Resolves the verified caller, or null (answered 401). Must not read the body. */
export type CallerVerifier = (req: IncomingMessage) => Promise<AdminCaller | null>;

export interface AdminHttpOptions {
  /** Default 4 MiB: a 1 MiB policy, JSON-escaped, with room to spare. */
  maxBodyBytes?: number;
  /** Default `/admin/v1`. Requests outside it get 404. */
  basePath?: string;
}

export const DEFAULT_ADMIN_MAX_BODY_BYTES = 4 * 1024 * 1024;

const BEARER = /^Bearer ([\x21-\x7e]+)$/;

function single(h: string | string[] | undefined): string | undefined {
  if (Array.isArray(h)) return h.length === 1 ? h[0] : undefined;
  return h;
}

export interface CallerVerifierOptions extends VerifyInternalJwtOptions {
  /**
   * Re-reads the key ring, true when it did (the gateway's `keyRefresher`): a token naming an
   * unknown key may come from a ring that authz rotated in another process.
   */
  refreshKeys?: () => Promise<boolean>;
}

/** A `CallerVerifier` over the internal JWT that authz minted for this request. */
export function internalJwtCallerVerifier(keys: PublicKeySource, opts: CallerVerifierOptions = {}): CallerVerifier {
  const { refreshKeys, ...verifyOpts } = opts;
  return async (req) => {
    const m = BEARER.exec(single(req.headers['authorization']) ?? '');
    const token = m?.[1];
    if (token === undefined) return null;
    let v = await verifyInternalJwt(keys, token, verifyOpts);
    if (!v.ok && v.code === 'unknown_key' && refreshKeys && (await refreshKeys())) {
      v = await verifyInternalJwt(keys, token, verifyOpts);
    }
    if (!v.ok) return null;
    const claimed = req.headers['x-mcpgw-user'];
    if (claimed !== undefined && single(claimed) !== v.sub) return null;
    return { id: v.sub, role: v.role };
  };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    // Some answers carry a freshly made API key: no cache may keep any answer.
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

function sendError(
  res: ServerResponse,
  status: number,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {},
): void {
  send(res, status, errorBody(code, message), headers);
}

class TooLarge extends Error {}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > max) {
        req.off('data', onData);
        reject(new TooLarge());
        return;
      }
      chunks.push(chunk);
    };
    let ended = false;
    req.on('data', onData);
    req.once('end', () => {
      ended = true;
      resolve(Buffer.concat(chunks));
    });
    req.once('error', reject);
    // A client that goes away mid-body would otherwise leave this promise pending forever.
    req.once('close', () => {
      if (!ended) reject(new Error('request closed before its body ended'));
    });
  });
}

/** `?a=1&b=2` → `{a: '1', b: '2'}`; a repeated key is refused rather than guessed at. */
function queryOf(params: URLSearchParams): Record<string, string> | null {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, v] of params) {
    if (Object.hasOwn(out, k)) return null;
    out[k] = v;
  }
  return out;
}

export function adminHttpHandler(
  api: AdminApi,
  verifyCaller: CallerVerifier,
  opts: AdminHttpOptions = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const max = opts.maxBodyBytes ?? DEFAULT_ADMIN_MAX_BODY_BYTES;
  const base = opts.basePath ?? ADMIN_BASE_PATH;

  return async (req, res) => {
    // Nothing of the body is read before the caller is known.
    const caller = await verifyCaller(req);
    if (!caller) {
      return sendError(res, 401, 'unauthorized', 'missing or invalid internal token', {
        'www-authenticate': 'Bearer realm="mcpgw-admin"',
      });
    }

    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin.invalid');
    } catch {
      return sendError(res, 400, 'bad_request', 'malformed request target');
    }
    const pathname = url.pathname;
    if (pathname !== base && !pathname.startsWith(`${base}/`)) {
      return sendError(res, 404, 'not_found', 'no such admin route');
    }
    const query = queryOf(url.searchParams);
    if (!query) return sendError(res, 400, 'bad_request', 'a query parameter is repeated');

    const declared = Number(single(req.headers['content-length']) ?? '0');
    if (Number.isFinite(declared) && declared > max) {
      res.once('finish', () => req.destroy());
      return sendError(res, 413, 'payload_too_large', `request bodies are limited to ${max} bytes`, {
        connection: 'close',
      });
    }
    let raw: Buffer;
    try {
      raw = await readBody(req, max);
    } catch (err) {
      if (err instanceof TooLarge) {
        res.once('finish', () => req.destroy());
        return sendError(res, 413, 'payload_too_large', `request bodies are limited to ${max} bytes`, {
          connection: 'close',
        });
      }
      return sendError(res, 400, 'bad_request', 'could not read the request body');
    }

    let body: unknown;
    if (raw.length > 0) {
      const type = (single(req.headers['content-type']) ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/json') {
        return sendError(res, 415, 'unsupported_media_type', 'send bodies as application/json');
      }
      const parsed = parseStrictJson(raw);
      if (!parsed.ok) return sendError(res, 400, 'bad_request', `invalid JSON body: ${parsed.message}`);
      body = parsed.value;
    }

    const answer = await api.handle({
      method: req.method ?? 'GET',
      path: pathname.slice(base.length) || '/',
      query,
      body,
      caller,
    });
    send(res, answer.status, answer.body, answer.headers);
  };
}
