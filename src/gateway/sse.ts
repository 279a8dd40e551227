/**
 * Writing MCP messages to HTTP responses: a POST answer that turns into an SSE stream only when
 * something has to be said before the response (progress, a relayed request), and the GET stream.
 */
import type { ServerResponse } from 'node:http';
import type { MessageSink, OutgoingMessage, OutgoingResponse } from '../aggregator/index.js';

/** An agent that lets this much pile up unread is dropped rather than buffered without end. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

function usable(res: ServerResponse): boolean {
  return !res.destroyed && !res.writableEnded;
}

function writeEvent(res: ServerResponse, message: OutgoingMessage): boolean {
  if (!usable(res)) return false;
  if (res.writableLength > MAX_BUFFERED_BYTES) {
    res.destroy();
    return false;
  }
  res.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
  return true;
}

export function writeJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (!usable(res)) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * The answer to one POSTed request. JSON unless a message must go out before the response and the
 * agent accepts SSE; then the same response becomes a stream that ends with the response.
 */
export class PostResponder implements MessageSink {
  #mode: 'pending' | 'sse' | 'done' = 'pending';

  constructor(
    private readonly res: ServerResponse,
    private readonly canStream: boolean,
  ) {}

  send(message: OutgoingMessage): boolean {
    if (!this.canStream || this.#mode === 'done' || !usable(this.res)) return false;
    if (this.#mode === 'pending') {
      this.res.writeHead(200, SSE_HEADERS);
      this.res.flushHeaders();
      this.#mode = 'sse';
    }
    return writeEvent(this.res, message);
  }

  /** Null: the agent cancelled the request and gets no response (202 when nothing was sent yet). */
  finish(response: OutgoingResponse | null): void {
    const mode = this.#mode;
    this.#mode = 'done';
    if (mode === 'sse') {
      if (response) writeEvent(this.res, response);
      if (usable(this.res)) this.res.end();
      return;
    }
    if (response) writeJson(this.res, 200, response);
    else if (usable(this.res)) {
      this.res.writeHead(202);
      this.res.end();
    }
  }
}

/** The GET stream: messages not tied to a request, with comments that keep idle proxies from closing it. */
export class StreamSink implements MessageSink {
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly res: ServerResponse,
    keepaliveMs: number,
  ) {
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    this.#timer = setInterval(() => {
      if (usable(res)) res.write(': keepalive\n\n');
    }, keepaliveMs);
    this.#timer.unref();
  }

  send(message: OutgoingMessage): boolean {
    return writeEvent(this.res, message);
  }

  close(): void {
    clearInterval(this.#timer);
    if (usable(this.res)) this.res.end();
  }
}
