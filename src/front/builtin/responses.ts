/**
 * Response heads as Envoy 1.40 writes them: its reason phrases, `local_reply_config`, and the
 * header order the real binary produces (authz or upstream headers first, then what Envoy adds:
 * content-length, content-type, date if absent, server, connection, framing).
 */
import type { ResponseHeaderOps } from './authz-response.js';
import { applyResponseOps } from './authz-response.js';
import type { LocalReplyMapper } from './config.js';
import { headerHas, headerRemove, headerSetInPlace, type HeaderList } from './headers.js';

/** Envoy's reason phrases; every other status is "Unknown" (418 included). */
const REASONS = new Map<number, string>([
  [100, 'Continue'],
  [101, 'Switching Protocols'],
  [200, 'OK'],
  [201, 'Created'],
  [202, 'Accepted'],
  [203, 'Non-Authoritative Information'],
  [204, 'No Content'],
  [205, 'Reset Content'],
  [206, 'Partial Content'],
  [207, 'Multi-Status'],
  [208, 'Already Reported'],
  [226, 'IM Used'],
  [300, 'Multiple Choices'],
  [301, 'Moved Permanently'],
  [302, 'Found'],
  [303, 'See Other'],
  [304, 'Not Modified'],
  [305, 'Use Proxy'],
  [307, 'Temporary Redirect'],
  [308, 'Permanent Redirect'],
  [400, 'Bad Request'],
  [401, 'Unauthorized'],
  [402, 'Payment Required'],
  [403, 'Forbidden'],
  [404, 'Not Found'],
  [405, 'Method Not Allowed'],
  [406, 'Not Acceptable'],
  [407, 'Proxy Authentication Required'],
  [408, 'Request Timeout'],
  [409, 'Conflict'],
  [410, 'Gone'],
  [411, 'Length Required'],
  [412, 'Precondition Failed'],
  [413, 'Payload Too Large'],
  [414, 'URI Too Long'],
  [415, 'Unsupported Media Type'],
  [416, 'Range Not Satisfiable'],
  [417, 'Expectation Failed'],
  [421, 'Misdirected Request'],
  [422, 'Unprocessable Entity'],
  [423, 'Locked'],
  [424, 'Failed Dependency'],
  [425, 'Too Early'],
  [426, 'Upgrade Required'],
  [428, 'Precondition Required'],
  [429, 'Too Many Requests'],
  [431, 'Request Header Fields Too Large'],
  [500, 'Internal Server Error'],
  [501, 'Not Implemented'],
  [502, 'Bad Gateway'],
  [503, 'Service Unavailable'],
  [504, 'Gateway Timeout'],
  [505, 'HTTP Version Not Supported'],
  [506, 'Variant Also Negotiates'],
  [507, 'Insufficient Storage'],
  [508, 'Loop Detected'],
  [510, 'Not Extended'],
  [511, 'Network Authentication Required'],
  [599, 'Last Unassigned Server Error Code'],
]);

export function reasonPhrase(status: number): string {
  return REASONS.get(status) ?? 'Unknown';
}

/**
 * What the front puts in `server` where Envoy puts "envoy". Deliberately not "envoy": an operator
 * reading a response must be able to tell which front answered.
 */
export const SERVER_NAME = 'mcpgw';

/** Response headers an HTTP/1 proxy never forwards (Envoy drops them from authz and upstream heads). */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

export function dropHopByHop(list: HeaderList): void {
  for (const h of HOP_BY_HOP) if (headerHas(list, h)) headerRemove(list, h);
}

let dateSecond = -1;
let dateValue = '';

/** The HTTP date, formatted once per second. */
export function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(second * 1000).toUTCString();
  }
  return dateValue;
}

/** What Envoy's connection manager adds to every response head, in its order. */
export function finishHead(list: HeaderList, close: boolean): void {
  if (!headerHas(list, 'date')) list.push('date', httpDate());
  headerSetInPlace(list, 'server', SERVER_NAME);
  if (close) list.push('connection', 'close');
}

/** The first mapper of `local_reply_config` whose filter matches (Envoy stops at the first). */
function matchMapper(
  mappers: readonly LocalReplyMapper[],
  details: string,
  status: number,
  headers: HeaderList,
): LocalReplyMapper | undefined {
  for (const m of mappers) {
    const f = m.filter;
    if (f.kind === 'denied-with-content-type') {
      if (details === 'ext_authz_denied' && headerHas(headers, 'content-type')) return m;
    } else if (f.kind === 'details') {
      if (details === f.details) return m;
    } else if (f.op === 'EQ' ? status === f.status : status >= f.status) {
      return m;
    }
  }
  return undefined;
}

export interface LocalReply {
  status: number;
  /** Complete head, in wire order. */
  headers: HeaderList;
  /** UTF-8 body bytes. */
  body: Buffer;
}

/**
 * A reply Envoy produces itself (sendLocalReply): `headers` are those of the reply's source (authz
 * denial headers, a route's response headers), `body` its body. The matching mapper may replace
 * the body; a non-empty body gets content-length and (when it has none, or the mapper chose one) a
 * content type, an empty one loses both and ends as `content-length: 0`.
 */
export function buildLocalReply(
  mappers: readonly LocalReplyMapper[],
  details: string,
  status: number,
  headers: HeaderList,
  body: string,
  close: boolean,
  authzResponseHeaders: ResponseHeaderOps | null = null,
): LocalReply {
  const mapper = matchMapper(mappers, details, status, headers);
  let contentType = 'text/plain';
  let rewritten = false;
  if (mapper?.body) {
    body = mapper.body.text;
    contentType = mapper.body.contentType;
    rewritten = true;
  }
  dropHopByHop(headers);
  const bytes = Buffer.from(body, 'utf8');
  if (bytes.length > 0) {
    headerSetInPlace(headers, 'content-length', String(bytes.length));
    if (rewritten || !headerHas(headers, 'content-type')) headerSetInPlace(headers, 'content-type', contentType);
  } else {
    headerRemove(headers, 'content-length');
    headerRemove(headers, 'content-type');
  }
  // A reply Envoy makes after authz allowed the request (gateway down, timeouts) still passes the
  // ext_authz filter on its way out.
  if (authzResponseHeaders) applyResponseOps(headers, authzResponseHeaders);
  finishHead(headers, close);
  if (bytes.length === 0) headers.push('content-length', '0');
  return { status, headers, body: bytes };
}

/** Whether node:http can write this head and body as given (else the front writes raw bytes). */
export function nodeCanWrite(status: number, bodyLength: number): boolean {
  if (status < 200 || status > 999) return false;
  return !((status === 204 || status === 304) && bodyLength > 0);
}

/** The bytes of a whole response, for heads node:http refuses to write (odd statuses, codec errors). */
export function rawResponse(reply: LocalReply, headRequest: boolean): Buffer {
  let head = `HTTP/1.1 ${reply.status & 0xffff} ${reasonPhrase(reply.status & 0xffff)}\r\n`;
  for (let i = 0; i < reply.headers.length; i += 2) head += `${reply.headers[i]}: ${reply.headers[i + 1]}\r\n`;
  head += '\r\n';
  const h = Buffer.from(head, 'latin1');
  return headRequest || reply.body.length === 0 ? h : Buffer.concat([h, reply.body]);
}
