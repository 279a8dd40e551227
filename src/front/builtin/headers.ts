/**
 * Request and response headers as Envoy 1.40 handles them on an HTTP/1.1 edge listener
 * (`use_remote_address: true`, no trusted hops, no internal addresses), as observed with the real
 * binary (test/front/differential.test.ts sends the same headers through both fronts).
 *
 * A header list is flat, `[name, value, name, value…]`, names lower-case and values "binary"
 * strings (one char per wire byte, as node:http decodes them), so the bytes reach the gateway
 * unchanged.
 */

export type HeaderList = string[];

export function headerGet(list: readonly string[], name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

/** Index of the first header called `name` (an even index), or -1. */
export function headerIndex(list: readonly string[], name: string): number {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return i;
  return -1;
}

export function headerHas(list: readonly string[], name: string): boolean {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return true;
  return false;
}

export function headerRemove(list: HeaderList, name: string): void {
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (list[r] === name) continue;
    if (w !== r) {
      list[w] = list[r] as string;
      list[w + 1] = list[r + 1] as string;
    }
    w += 2;
  }
  list.length = w;
}

/** Envoy's `setCopy`: every existing value goes and the new one is added at the end. */
export function headerSet(list: HeaderList, name: string, value: string): void {
  headerRemove(list, name);
  list.push(name, value);
}

/** Sets the value of the first `name` where it stands, or adds it at the end (Envoy's inline setters). */
export function headerSetInPlace(list: HeaderList, name: string, value: string): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === name) {
      list[i + 1] = value;
      return;
    }
  }
  list.push(name, value);
}

/** Appends `value` to the first `name` with a comma; nothing when the header is absent. */
export function headerAppendToExisting(list: HeaderList, name: string, value: string): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === name) {
      list[i + 1] = list[i + 1] === '' ? value : `${list[i + 1] as string},${value}`;
      return;
    }
  }
}

const PSEUDO_OR_TOKEN = /^:?[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const INVALID_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;

/** What Envoy's `validate_mutations` accepts as a header name from authz (pseudo-headers included). */
export function isValidMutationName(name: string): boolean {
  return PSEUDO_OR_TOKEN.test(name);
}

export function isValidMutationValue(value: string): boolean {
  return !INVALID_VALUE.test(value);
}

/** A JS string as the bytes Envoy writes for it (UTF-8), in the binary form node:http sends. */
export function utf8AsBinary(s: string): string {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return Buffer.from(s, 'utf8').toString('latin1');
  }
  return s;
}

const NON_ASCII = /[\x80-\xff]/;

/**
 * A header value for the CheckRequest: Envoy decodes the bytes as UTF-8 and writes `!` for every
 * byte that is not part of a well-formed sequence (no overlongs, no surrogates, nothing above
 * U+10FFFF), e.g. `a\xff\xc3\xa9\x80b` → `a!é!b`.
 */
export function sanitizeUtf8(binary: string): string {
  if (!NON_ASCII.test(binary)) return binary;
  const bytes = Buffer.from(binary, 'latin1');
  const out = Buffer.allocUnsafe(bytes.length);
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i] as number;
    const len = utf8SequenceLength(bytes, i, n);
    if (len === 0) {
      out[i] = 0x21;
      i++;
      continue;
    }
    if (len === 1) out[i] = b;
    else bytes.copy(out, i, i, i + len);
    i += len;
  }
  return out.toString('utf8');
}

/** Length of the well-formed UTF-8 sequence at `i`, or 0. */
function utf8SequenceLength(b: Buffer, i: number, n: number): number {
  const c = b[i] as number;
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => {
    const x = i + k < n ? (b[i + k] as number) : -1;
    return x >= lo && x <= hi;
  };
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/**
 * Request headers an edge Envoy drops before any filter runs: hop-by-hop headers, and the
 * x-envoy-* control headers (plus XFCC, under the default SANITIZE) it never takes from an
 * untrusted client. Other x-envoy-* headers pass, to authz and to the gateway.
 */
const DROPPED_REQUEST_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'transfer-encoding',
  'x-envoy-decorator-operation',
  'x-envoy-downstream-service-cluster',
  'x-envoy-downstream-service-node',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-force-trace',
  'x-envoy-hedge-on-per-try-timeout',
  'x-envoy-internal',
  'x-envoy-ip-tags',
  'x-envoy-max-retries',
  'x-envoy-original-host',
  'x-envoy-original-path',
  'x-envoy-original-url',
  'x-envoy-retriable-header-names',
  'x-envoy-retriable-status-codes',
  'x-envoy-retry-grpc-on',
  'x-envoy-retry-on',
  'x-envoy-upstream-alt-stat-name',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-upstream-rq-timeout-alt-response',
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-stream-duration-ms',
  'x-forwarded-client-cert',
]);

/**
 * Request headers Envoy keeps in "inline" slots (observed on 1.40: a second line is appended to the
 * first with `,`, so the gateway gets one line); any other repeated header stays repeated.
 */
const INLINE_REQUEST_HEADERS = new Set([
  'accept',
  'accept-encoding',
  'access-control-request-headers',
  'access-control-request-method',
  'authorization',
  'cache-control',
  'content-encoding',
  'content-type',
  'expect',
  'grpc-accept-encoding',
  'grpc-timeout',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'origin',
  'pragma',
  'proxy-status',
  'referer',
  'te',
  'user-agent',
  'via',
  'x-client-trace-id',
  'x-envoy-attempt-count',
  'x-envoy-is-timeout-retry',
  'x-forwarded-host',
  'x-forwarded-port',
]);

/** Envoy's append: an empty value adds nothing, and a value replaces an empty one without a comma. */
export function appendValue(prev: string, value: string): string {
  if (prev === '') return value;
  return value === '' ? prev : `${prev},${value}`;
}

/** Headers a `Connection` header may not nominate for removal: Envoy answers 400. */
const UNREMOVABLE_NOMINATIONS = new Set(['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);
/** Envoy refuses a `Connection` header with this many tokens or more. */
const MAX_CONNECTION_TOKENS = 10;

export type UnderscoreAction = 'reject' | 'drop' | 'allow';

export interface ClientHeaders {
  /** 0 when acceptable, else the status Envoy's codec answers with (the connection then closes). */
  reject: 0 | 400 | 431;
  /** `Host`, duplicates joined with `,` as Envoy does; null when absent. */
  authority: string | null;
  /** The client's headers Envoy keeps, in order. */
  headers: HeaderList;
  /** The client sent `Transfer-Encoding: chunked`. */
  chunked: boolean;
  /** `Content-Length` as a number, or -1. */
  contentLength: number;
  /** The client asked to close the connection (`Connection: close`). */
  close: boolean;
  /** A protocol upgrade Envoy refuses (403): `Connection: upgrade` with an `Upgrade` other than h2c. */
  upgrade: boolean;
}

/** The client's headers after Envoy's HTTP/1 codec and connection manager checks. */
export function readClientHeaders(
  raw: readonly string[],
  underscores: UnderscoreAction,
  maxHeaders: number,
): ClientHeaders {
  const result: ClientHeaders = {
    reject: 0,
    authority: null,
    headers: [],
    chunked: false,
    contentLength: -1,
    close: false,
    upgrade: false,
  };
  if (raw.length / 2 > maxHeaders) {
    result.reject = 431;
    return result;
  }
  let connection: string | null = null;
  let upgrade: string | null = null;
  const list = result.headers;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (name.includes('_')) {
      if (underscores === 'reject') {
        result.reject = 400;
        return result;
      }
      if (underscores === 'drop') continue;
    }
    switch (name) {
      case 'host':
        result.authority = result.authority === null ? value : appendValue(result.authority, value);
        continue;
      case 'connection':
        connection = connection === null ? value : appendValue(connection, value);
        continue;
      case 'upgrade':
        upgrade = value;
        continue;
      case 'transfer-encoding':
        // node:http refuses any coding but a final `chunked`.
        result.chunked = true;
        continue;
      case 'content-length':
        result.contentLength = Number(value);
        break;
      default:
        if (DROPPED_REQUEST_HEADERS.has(name)) continue;
    }
    if (INLINE_REQUEST_HEADERS.has(name)) {
      const at = headerIndex(list, name);
      if (at !== -1) {
        list[at + 1] = appendValue(list[at + 1] as string, value);
        continue;
      }
    }
    list.push(name, value);
  }
  const te = headerIndex(list, 'te');
  if (te !== -1) {
    // Only `trailers` survives, spelled exactly so; an empty TE stays as it is.
    const value = list[te + 1] as string;
    if (value !== '') {
      if (value.split(',').some((t) => t.trim() === 'trailers')) list[te + 1] = 'trailers';
      else list.splice(te, 2);
    }
  }
  const expect = headerIndex(list, 'expect');
  // Envoy answers 100-continue itself.
  if (expect !== -1 && (list[expect + 1] as string).toLowerCase() === '100-continue') {
    list.splice(expect, 2);
  }
  if (connection !== null) {
    const tokens = connection
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== '');
    if (upgrade !== null && upgrade.trim().toLowerCase() !== 'h2c' && tokens.includes('upgrade')) {
      // Envoy keeps an upgrade's Connection header as it is (and then refuses the upgrade).
      result.upgrade = true;
      return result;
    }
    if (tokens.length >= MAX_CONNECTION_TOKENS) {
      result.reject = 400;
      return result;
    }
    for (const t of tokens) {
      if (t === 'close') result.close = true;
      else if (UNREMOVABLE_NOMINATIONS.has(t)) {
        result.reject = 400;
        return result;
      } else if (t === 'te') {
        // A nominated TE survives only as `trailers`.
        if (headerGet(list, 'te') !== 'trailers') headerRemove(list, 'te');
      } else if (t !== 'keep-alive' && t !== 'upgrade') headerRemove(list, t);
    }
  }
  return result;
}

export interface EdgeFacts {
  /** The peer's IP address. */
  remoteAddress: string;
  /** What Envoy appends to x-forwarded-for for a loopback peer (its own node address). */
  localInfoAddress: string;
  requestId: string;
}

/** Envoy's edge mutations: x-forwarded-for, x-forwarded-proto, x-envoy-external-address, x-request-id. */
export function addEdgeHeaders(list: HeaderList, facts: EdgeFacts): void {
  const peer = isLoopback(facts.remoteAddress) ? facts.localInfoAddress : facts.remoteAddress;
  let xff: string | null = null;
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === 'x-forwarded-for')
      xff = xff === null ? (list[i + 1] as string) : appendValue(xff, list[i + 1] as string);
  }
  if (xff === null) list.push('x-forwarded-for', peer);
  else headerSetInPlace(list, 'x-forwarded-for', xff === '' ? peer : `${xff},${peer}`);
  if (xff !== null) dedupeAfterFirst(list, 'x-forwarded-for');
  headerSetInPlace(list, 'x-forwarded-proto', 'http');
  dedupeAfterFirst(list, 'x-forwarded-proto');
  headerSetInPlace(list, 'x-envoy-external-address', facts.remoteAddress);
  dedupeAfterFirst(list, 'x-envoy-external-address');
  headerSetInPlace(list, 'x-request-id', facts.requestId);
  dedupeAfterFirst(list, 'x-request-id');
}

function dedupeAfterFirst(list: HeaderList, name: string): void {
  let seen = false;
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (list[r] === name) {
      if (seen) continue;
      seen = true;
    }
    if (w !== r) {
      list[w] = list[r] as string;
      list[w + 1] = list[r + 1] as string;
    }
    w += 2;
  }
  list.length = w;
}

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}
