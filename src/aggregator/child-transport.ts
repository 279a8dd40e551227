/**
 * An MCP stdio transport over a child process we spawn ourselves. The SDK's StdioClientTransport
 * merges its own inherited variables (USER, SHELL, TERM, LOGNAME…) into whatever environment it is
 * given; a backend must get exactly the environment we computed, so the spawn is done here.
 * Framing (newline-delimited JSON) is the SDK's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

export interface ChildTransportOptions {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Each stderr line, for the log (bounded in length). */
  onStderr?: (line: string) => void;
  /** How long a child gets after SIGTERM before SIGKILL. */
  killAfterMs?: number;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const MAX_STDERR_LINE = 2000;

export class ChildProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;

  #child: ChildProcess | null = null;
  #exited: Promise<ChildExit> | null = null;
  #closed = false;
  #exit: ChildExit | null = null;
  /** Messages are handed on one microtask apart; see #dispatch. */
  #delivery: Promise<void> = Promise.resolve();
  readonly #buffer = new ReadBuffer();
  readonly #opts: ChildTransportOptions;

  constructor(opts: ChildTransportOptions) {
    this.#opts = opts;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** How the child ended, once it has. */
  get exit(): ChildExit | null {
    return this.#exit;
  }

  start(): Promise<void> {
    if (this.#child) throw new Error('ChildProcessTransport already started');
    return new Promise((resolveStart, rejectStart) => {
      const child = spawn(this.#opts.file, this.#opts.args, {
        env: this.#opts.env,
        cwd: this.#opts.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        windowsHide: true,
      });
      this.#child = child;
      this.#exited = new Promise((resolveExit) => {
        child.once('close', (code, signal) => {
          this.#exit = { code, signal };
          resolveExit(this.#exit);
          // After the messages already read, so a last response is not reported as a lost connection.
          void this.#delivery.then(() => this.#finish());
        });
      });
      child.once('error', (err) => {
        rejectStart(err);
        this.onerror?.(err);
        // 'close' may never come for a child that failed to spawn.
        if (child.pid === undefined) {
          this.#exit = { code: null, signal: null };
          this.#finish();
        }
      });
      child.once('spawn', () => resolveStart());
      child.stdout?.on('data', (chunk: Buffer) => {
        try {
          this.#buffer.append(chunk);
        } catch (err) {
          // An unbounded line: the stream cannot be resynchronised, so the child goes.
          this.onerror?.(err instanceof Error ? err : new Error(String(err)));
          void this.close();
          return;
        }
        this.#drain();
      });
      child.stdout?.on('error', (err) => this.onerror?.(err));
      child.stdin?.on('error', (err) => this.onerror?.(err));
      let partial = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (text: string) => {
        partial += text;
        let nl: number;
        while ((nl = partial.indexOf('\n')) >= 0) {
          const line = partial.slice(0, nl).replace(/\r$/, '');
          partial = partial.slice(nl + 1);
          if (line !== '') this.#opts.onStderr?.(line.slice(0, MAX_STDERR_LINE));
        }
        if (partial.length > MAX_STDERR_LINE) {
          this.#opts.onStderr?.(partial.slice(0, MAX_STDERR_LINE));
          partial = '';
        }
      });
    });
  }

  #drain(): void {
    for (;;) {
      let msg: JSONRPCMessage | null;
      try {
        msg = this.#buffer.readMessage();
      } catch (err) {
        // A line that is not a JSON-RPC message: report it, keep reading the next ones.
        this.onerror?.(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (msg === null) return;
      this.#dispatch(msg);
    }
  }

  /**
   * The SDK's Protocol runs notification handlers (progress among them) a microtask late but
   * settles responses at once, so a progress notification and the response read from the same
   * chunk would lose the progress: its handler is gone by the time it runs. Handing each message on
   * in its own microtask, in order, lets the handler scheduled for one run before the next arrives.
   */
  #dispatch(msg: JSONRPCMessage): void {
    this.#delivery = this.#delivery.then(() => {
      try {
        this.onmessage?.(msg);
      } catch (err) {
        this.onerror?.(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#buffer.clear();
    this.onclose?.();
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolveSend, rejectSend) => {
      const stdin = this.#child?.stdin;
      if (!stdin || this.#closed || stdin.destroyed) {
        rejectSend(new Error('backend process is not running'));
        return;
      }
      const ok = stdin.write(serializeMessage(message), (err) => (err ? rejectSend(err) : undefined));
      if (ok) resolveSend();
      else stdin.once('drain', () => resolveSend());
    });
  }

  async close(): Promise<void> {
    const child = this.#child;
    if (!child || this.#exit) {
      this.#finish();
      return;
    }
    child.stdin?.end();
    child.kill('SIGTERM');
    const killAfter = this.#opts.killAfterMs ?? 2000;
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfter);
    timer.unref();
    await this.#exited;
    clearTimeout(timer);
  }
}
