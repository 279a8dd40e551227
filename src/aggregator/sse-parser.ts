/**
 * An incremental parser for a `text/event-stream` body (the WHATWG "server-sent events" format),
 * fed the raw bytes a socket delivers. It works on Buffers rather than decoded text so that a line
 * split across chunks costs no re-decoding, multi-byte characters are never cut (lines end at an
 * ASCII byte), and the size limit counts bytes exactly.
 */

/** One dispatched event. `id` is set when the event carried an `id` field. */
export interface SseEvent {
  type: string;
  data: string;
  id: string | undefined;
}

export class SseTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`an event of the stream exceeds the limit of ${limit} bytes`);
    this.name = 'SseTooLargeError';
  }
}

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;

export class SseParser {
  /** The reconnection time the server asked for with a `retry` field, if it did. */
  retryMs: number | undefined;

  /** Bytes of an unterminated line, kept until its end arrives. */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** The previous chunk ended with CR: a LF opening the next one belongs to the same line break. */
  #skipLf = false;
  #firstLine = true;
  #data = '';
  #dataBytes = 0;
  #hasData = false;
  #type = '';
  #id: string | undefined;
  readonly #limit: number;

  /** `limit`: the most bytes one event (its data plus any single line) may take. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Parses `chunk`, calling `onEvent` for each event it completes; throws SseTooLargeError past the limit. */
  push(chunk: Buffer, onEvent: (e: SseEvent) => void): void {
    let pos = 0;
    const len = chunk.length;
    if (this.#skipLf && len > 0) {
      this.#skipLf = false;
      if (chunk[0] === LF) pos = 1;
    }
    // Most servers end lines with LF alone: the CR search runs once per chunk when there is none.
    let cr = chunk.indexOf(CR, pos);
    while (pos < len) {
      const lf = chunk.indexOf(LF, pos);
      if (cr !== -1 && cr < pos) cr = chunk.indexOf(CR, pos);
      let end: number;
      let next: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 < len) {
          next = chunk[cr + 1] === LF ? cr + 2 : cr + 1;
        } else {
          next = len;
          this.#skipLf = true;
        }
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else {
        this.#keep(chunk.subarray(pos));
        return;
      }
      if (this.#partialBytes > 0) {
        this.#keep(chunk.subarray(pos, end));
        const line = Buffer.concat(this.#partial, this.#partialBytes);
        this.#partial = [];
        this.#partialBytes = 0;
        this.#line(line, 0, line.length, onEvent);
      } else {
        this.#line(chunk, pos, end, onEvent);
      }
      pos = next;
    }
  }

  #keep(part: Buffer): void {
    if (part.length === 0) return;
    this.#partial.push(part);
    this.#partialBytes += part.length;
    if (this.#partialBytes + this.#dataBytes > this.#limit) throw new SseTooLargeError(this.#limit);
  }

  #line(buf: Buffer, start: number, end: number, onEvent: (e: SseEvent) => void): void {
    if (this.#firstLine) {
      this.#firstLine = false;
      if (end - start >= 3 && buf[start] === 0xef && buf[start + 1] === 0xbb && buf[start + 2] === 0xbf) start += 3;
    }
    if (start === end) {
      this.#dispatch(onEvent);
      return;
    }
    if (buf[start] === COLON) return;
    let colon = buf.indexOf(COLON, start);
    if (colon === -1 || colon >= end) colon = end;
    const field = buf.toString('latin1', start, colon);
    let vstart = colon < end ? colon + 1 : end;
    if (vstart < end && buf[vstart] === SPACE) vstart++;
    switch (field) {
      case 'data': {
        const value = buf.toString('utf8', vstart, end);
        this.#dataBytes += end - vstart + 1;
        if (this.#dataBytes > this.#limit) throw new SseTooLargeError(this.#limit);
        this.#data = this.#hasData ? `${this.#data}\n${value}` : value;
        this.#hasData = true;
        return;
      }
      case 'event':
        this.#type = buf.toString('utf8', vstart, end);
        return;
      case 'id': {
        const value = buf.toString('utf8', vstart, end);
        if (!value.includes('\0')) this.#id = value;
        return;
      }
      case 'retry': {
        const value = buf.toString('latin1', vstart, end);
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        return;
      }
      default:
        return;
    }
  }

  #dispatch(onEvent: (e: SseEvent) => void): void {
    const hasData = this.#hasData;
    const id = this.#id;
    const e: SseEvent = { type: this.#type === '' ? 'message' : this.#type, data: this.#data, id };
    this.#data = '';
    this.#dataBytes = 0;
    this.#hasData = false;
    this.#type = '';
    this.#id = undefined;
    // An event without data is not dispatched, but its id still moves the resumption point.
    if (hasData || id !== undefined) onEvent(e);
  }
}
