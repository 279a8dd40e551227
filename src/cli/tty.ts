/**
 * Talking to the person at the keyboard: questions on the controlling terminal, colour, spinners.
 *
 * Questions are read from `/dev/tty`, never from stdin or argv (DESIGN §4): an agent that runs the
 * CLI with a pipe on stdin cannot answer them, and a passphrase never lands in shell history or
 * `ps`. Without a controlling terminal (cron, CI, `setsid`, an agent's tool call) every question
 * fails with an error that names the non-interactive way (MCPGW_ADMIN_KEY, --yes).
 *
 * The terminal stays in raw mode for a whole session (several questions), so keys typed ahead of a
 * prompt are neither echoed nor lost.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { isatty, ReadStream } from 'node:tty';
import { EXIT, type ExitCode } from './exit.js';

export class TerminalError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.usage,
  ) {
    super(message);
    this.name = 'TerminalError';
  }
}

export const NO_TERMINAL =
  'there is no terminal to ask on (no controlling terminal: a pipe, cron, CI or an agent runs this)';

type Key =
  { kind: 'char'; ch: string } | { kind: 'enter' | 'up' | 'down' | 'backspace' | 'clear' | 'cancel' | 'eof' | 'other' };

export interface Choice<T> {
  value: T;
  label: string;
  /** Shown dimmed after the label. */
  hint?: string;
}

/** Whether `stream` may get colour: a terminal, NO_COLOR unset or empty, TERM not dumb. */
export function colorEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  const noColor = env['NO_COLOR'];
  if (noColor !== undefined && noColor !== '') return false;
  if (env['TERM'] === 'dumb') return false;
  return stream.isTTY === true;
}

export interface Paint {
  bold(s: string): string;
  dim(s: string): string;
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

export function paint(enabled: boolean): Paint {
  const sgr =
    (open: number, close: number) =>
    (s: string): string =>
      enabled ? `\u001b[${open}m${s}\u001b[${close}m` : s;
  return {
    bold: sgr(1, 22),
    dim: sgr(2, 22),
    green: sgr(32, 39),
    red: sgr(31, 39),
    yellow: sgr(33, 39),
    cyan: sgr(36, 39),
  };
}

/** Splits raw terminal input into keys; escape sequences other than up/down are swallowed whole. */
function parseKeys(text: string): Key[] {
  const keys: Key[] = [];
  const chars = [...text];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] ?? '';
    if (ch === '\u001b') {
      const next = chars[i + 1];
      if (next === '[' || next === 'O') {
        let j = i + 2;
        // CSI parameters, then one final byte in @–~.
        while (j < chars.length && !/[@-~]/.test(chars[j] ?? '')) j++;
        const final = chars[j];
        keys.push(final === 'A' ? { kind: 'up' } : final === 'B' ? { kind: 'down' } : { kind: 'other' });
        i = j;
      } else {
        keys.push({ kind: 'other' });
        if (next !== undefined) i++;
      }
      continue;
    }
    if (ch === '\r' || ch === '\n') keys.push({ kind: 'enter' });
    else if (ch === '\u0003') keys.push({ kind: 'cancel' });
    else if (ch === '\u0004') keys.push({ kind: 'eof' });
    else if (ch === '\u007f' || ch === '\b') keys.push({ kind: 'backspace' });
    else if (ch === '\u0015') keys.push({ kind: 'clear' });
    else if (ch >= ' ') keys.push({ kind: 'char', ch });
    else keys.push({ kind: 'other' });
  }
  return keys;
}

const cancelled = (): TerminalError => new TerminalError('cancelled; nothing changed', EXIT.failed);

/** One question-and-answer session on the controlling terminal. Always `close()` it. */
export class Terminal {
  readonly #input: ReadStream;
  readonly #outFd: number;
  readonly #keys: Key[] = [];
  #waiter: { resolve: (k: Key) => void; reject: (e: Error) => void } | null = null;
  #failure: Error | null = null;
  #closed = false;
  readonly #restore = (): void => this.close();
  readonly paint: Paint;

  /** Opens `/dev/tty`; throws TerminalError (exit 2) when the process has no controlling terminal. */
  static open(): Terminal {
    let inFd: number;
    try {
      inFd = openSync('/dev/tty', 'r');
    } catch {
      throw new TerminalError(NO_TERMINAL);
    }
    if (!isatty(inFd)) {
      closeSync(inFd);
      throw new TerminalError(NO_TERMINAL);
    }
    let outFd: number;
    try {
      outFd = openSync('/dev/tty', 'w');
    } catch {
      closeSync(inFd);
      throw new TerminalError(NO_TERMINAL);
    }
    return new Terminal(inFd, outFd);
  }

  private constructor(inFd: number, outFd: number) {
    this.#outFd = outFd;
    // The stream owns inFd from here on: destroying it closes the descriptor.
    this.#input = new ReadStream(inFd);
    this.#input.setRawMode(true);
    this.#input.on('data', (buf: Buffer) => {
      for (const key of parseKeys(buf.toString('utf8'))) this.#push(key);
    });
    this.#input.on('error', (err: Error) => {
      this.#failure = new TerminalError(`the terminal went away (${err.message})`, EXIT.failed);
      this.#waiter?.reject(this.#failure);
      this.#waiter = null;
    });
    this.paint = paint(colorEnabled({ isTTY: true }));
    // A process.exit() in the middle of a question must not leave the shell in raw mode.
    process.once('exit', this.#restore);
  }

  #push(key: Key): void {
    const w = this.#waiter;
    if (w) {
      this.#waiter = null;
      w.resolve(key);
    } else {
      this.#keys.push(key);
    }
  }

  #nextKey(): Promise<Key> {
    const queued = this.#keys.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new TerminalError('the terminal is closed', EXIT.failed));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  write(text: string): void {
    if (this.#closed) return;
    writeSync(this.#outFd, text);
  }

  /** One line with echo off (passphrases, secret values). Ctrl-U clears it, Ctrl-C cancels. */
  async hidden(question: string): Promise<string> {
    this.write(question);
    let value = '';
    for (;;) {
      const key = await this.#nextKey();
      if (key.kind === 'char') value += key.ch;
      else if (key.kind === 'backspace') value = [...value].slice(0, -1).join('');
      else if (key.kind === 'clear') value = '';
      else if (key.kind === 'enter') {
        this.write('\n');
        return value;
      } else if (key.kind === 'cancel' || (key.kind === 'eof' && value === '')) {
        this.write('\n');
        throw cancelled();
      }
    }
  }

  /** One visible line; an empty answer takes `fallback`. */
  async line(question: string, fallback = ''): Promise<string> {
    this.write(fallback === '' ? question : `${question}${this.paint.dim(`(${fallback}) `)}`);
    let value = '';
    for (;;) {
      const key = await this.#nextKey();
      if (key.kind === 'char') {
        value += key.ch;
        this.write(key.ch);
      } else if (key.kind === 'backspace') {
        if (value !== '') {
          value = [...value].slice(0, -1).join('');
          this.write('\b \b');
        }
      } else if (key.kind === 'enter') {
        this.write('\n');
        return value === '' ? fallback : value;
      } else if (key.kind === 'cancel' || (key.kind === 'eof' && value === '')) {
        this.write('\n');
        throw cancelled();
      }
    }
  }

  /**
   * A yes/no question: y or n answers at once, Enter takes the default. The answer stays on the
   * screen after the question.
   */
  async confirm(question: string, defaultYes: boolean): Promise<boolean> {
    this.write(`${this.paint.cyan('?')} ${question} ${this.paint.dim(defaultYes ? '(Y/n)' : '(y/N)')} `);
    for (;;) {
      const key = await this.#nextKey();
      let answer: boolean | null = null;
      if (key.kind === 'enter') answer = defaultYes;
      else if (key.kind === 'char' && /^[yY]$/.test(key.ch)) answer = true;
      else if (key.kind === 'char' && /^[nN]$/.test(key.ch)) answer = false;
      else if (key.kind === 'cancel' || key.kind === 'eof') {
        this.write('\n');
        throw cancelled();
      }
      if (answer !== null) {
        this.write(`${answer ? 'yes' : 'no'}\n`);
        return answer;
      }
    }
  }

  /**
   * A list to pick one from: ↑/↓ (or k/j) move, a digit jumps to that entry, Enter takes the
   * highlighted one. Digits make it easy to answer from scripts and terminal multiplexers.
   */
  async select<T>(question: string, choices: readonly Choice<T>[], initial = 0): Promise<T> {
    if (choices.length === 0 || choices.length > 9) throw new Error('select takes 1 to 9 choices');
    let at = Math.min(Math.max(initial, 0), choices.length - 1);
    const p = this.paint;
    const render = (): string =>
      choices
        .map((c, i) => {
          const text = `${i + 1}. ${c.label}${c.hint ? ` ${p.dim(`(${c.hint})`)}` : ''}`;
          return `\r\u001b[2K${i === at ? `${p.cyan('>')} ${p.bold(text)}` : `  ${text}`}`;
        })
        .join('\n');
    this.write(`${p.cyan('?')} ${p.bold(question)} ${p.dim('(↑/↓ or 1-' + choices.length + ', Enter)')}\n`);
    this.write('\u001b[?25l');
    this.write(render());
    try {
      for (;;) {
        const key = await this.#nextKey();
        if (key.kind === 'enter') break;
        if (key.kind === 'cancel' || key.kind === 'eof') throw cancelled();
        if (key.kind === 'up' || (key.kind === 'char' && key.ch === 'k'))
          at = (at + choices.length - 1) % choices.length;
        else if (key.kind === 'down' || (key.kind === 'char' && key.ch === 'j')) at = (at + 1) % choices.length;
        else if (key.kind === 'char' && /^[1-9]$/.test(key.ch) && Number(key.ch) <= choices.length)
          at = Number(key.ch) - 1;
        else continue;
        // Back to the first choice line, then redraw every line in place.
        if (choices.length > 1) this.write(`\u001b[${choices.length - 1}A`);
        this.write(render());
      }
    } catch (err) {
      this.write('\n\u001b[?25h');
      throw err;
    }
    const chosen = choices[at] as Choice<T>;
    // Replace the question and its list with one line that keeps the answer. Lines are cleared one
    // by one rather than with "erase below": terminals such as tmux push a screen erased from its
    // top into the scrollback, which would keep the question there.
    const n = choices.length;
    this.write(`\u001b[${n}A\r\u001b[2K${p.green('✓')} ${question} ${p.bold(chosen.label)}`);
    for (let i = 0; i < n; i++) this.write('\u001b[1B\r\u001b[2K');
    this.write(`${n > 1 ? `\u001b[${n - 1}A` : ''}\r\u001b[?25h`);
    return chosen.value;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    process.removeListener('exit', this.#restore);
    this.#waiter?.reject(new TerminalError('the terminal is closed', EXIT.failed));
    this.#waiter = null;
    try {
      this.#input.setRawMode(false);
    } catch {
      // the terminal is already gone
    }
    this.#input.destroy();
    try {
      writeSync(this.#outFd, '\u001b[?25h');
    } catch {
      // the terminal is already gone
    }
    closeSync(this.#outFd);
  }
}

/** Runs `f` with the controlling terminal open, and closes it whatever happens. */
export async function withTerminal<T>(f: (t: Terminal) => Promise<T>): Promise<T> {
  const t = Terminal.open();
  try {
    return await f(t);
  } finally {
    t.close();
  }
}

/** Whether a controlling terminal exists to ask on. */
export function hasTerminal(): boolean {
  try {
    const fd = openSync('/dev/tty', 'r');
    const ok = isatty(fd);
    closeSync(fd);
    return ok;
  } catch {
    return false;
  }
}

/** Asks one line on the controlling terminal with echo off. Throws TerminalError without a terminal. */
export function promptHidden(question: string): Promise<string> {
  return withTerminal((t) => t.hidden(question));
}

/** Asks a yes/no question on the controlling terminal. */
export function confirm(question: string, defaultYes = false): Promise<boolean> {
  return withTerminal((t) => t.confirm(question, defaultYes));
}

/** Asks to pick one of `choices` on the controlling terminal. */
export function select<T>(question: string, choices: readonly Choice<T>[], initial = 0): Promise<T> {
  return withTerminal((t) => t.select(question, choices, initial));
}

export interface Progress {
  /** Replaces the spinner by `✓ text`. */
  done(text: string): void;
  /** Replaces the spinner by `✗ text`. */
  fail(text: string): void;
  /** Removes the spinner without a line. */
  stop(): void;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * A spinner on `stream` (default stderr) while something slow runs. Without a terminal, or with
 * NO_COLOR, it prints `text…` once and the outcome as a line: logs get no carriage returns.
 * `quiet` (e.g. --json) prints nothing at all.
 */
export function progress(
  text: string,
  opts: { stream?: NodeJS.WriteStream; quiet?: boolean; env?: NodeJS.ProcessEnv } = {},
): Progress {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet) return { done: () => undefined, fail: () => undefined, stop: () => undefined };
  const animated = colorEnabled(stream, opts.env);
  const p = paint(animated);
  if (!animated) {
    stream.write(`${text}…\n`);
    return {
      done: (t) => void stream.write(`✓ ${t}\n`),
      fail: (t) => void stream.write(`✗ ${t}\n`),
      stop: () => undefined,
    };
  }
  let frame = 0;
  const draw = (): void => {
    stream.write(`\r\u001b[2K${p.cyan(FRAMES[frame % FRAMES.length] ?? '')} ${text}`);
    frame++;
  };
  draw();
  const timer = setInterval(draw, 80);
  // The spinner never keeps the process alive on its own.
  timer.unref();
  const end = (line: string | null): void => {
    clearInterval(timer);
    stream.write(`\r\u001b[2K${line === null ? '' : `${line}\n`}`);
  };
  return {
    done: (t) => end(`${p.green('✓')} ${t}`),
    fail: (t) => end(`${p.red('✗')} ${t}`),
    stop: () => end(null),
  };
}
