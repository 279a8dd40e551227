/**
 * A real terminal for CLI tests: a detached tmux session on a private server socket runs one
 * command line; the test types into it (`send-keys`) and reads the screen back (`capture-pane`).
 * The command's exit status is printed as `EXIT=<n>` after it, and the shell then waits so the
 * screen can still be read.
 */
import { spawnSync } from 'node:child_process';

const shq = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

export class TmuxTerminal {
  readonly #socket: string;
  readonly #name: string;

  /** Starts `argv` with exactly `env` added to the tmux server's environment, `unset` removed. */
  constructor(
    socket: string,
    name: string,
    argv: string[],
    env: Record<string, string>,
    unset: string[] = ['MCPGW_ADMIN_KEY', 'MCPGW_URL', 'NO_COLOR'],
  ) {
    this.#socket = socket;
    this.#name = name;
    const envArgs = [...unset.flatMap((u) => ['-u', u]), ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    const line = `env ${envArgs.map(shq).join(' ')} ${argv.map(shq).join(' ')}; echo "EXIT=$?"; sleep 3600`;
    const r = spawnSync('tmux', ['-S', socket, 'new-session', '-d', '-x', '150', '-y', '50', '-s', name, line], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`tmux new-session failed: ${r.stderr}`);
  }

  #tmux(...args: string[]): string {
    const r = spawnSync('tmux', ['-S', this.#socket, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args[0] ?? ''} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** Everything the terminal shows, scrollback included, wrapped lines joined. */
  screen(): string {
    return this.#tmux('capture-pane', '-p', '-J', '-S', '-500', '-t', this.#name);
  }

  /** Types text literally (no key names). */
  type(text: string): void {
    this.#tmux('send-keys', '-t', this.#name, '-l', text);
  }

  /** Presses keys by tmux name: Enter, Up, Down, C-c… */
  press(...keys: string[]): void {
    this.#tmux('send-keys', '-t', this.#name, ...keys);
  }

  /** Waits until the screen matches `pattern` (count: its n-th occurrence); returns the screen. */
  async waitFor(pattern: RegExp | string, count = 1, timeoutMs = 90_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const screen = this.screen();
      const hits =
        typeof pattern === 'string'
          ? screen.split(pattern).length - 1
          : [...screen.matchAll(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))].length;
      if (hits >= count) return screen;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${String(pattern)}; the screen:\n${screen}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Waits for the command to end; its exit status and the final screen. */
  async exit(timeoutMs = 120_000): Promise<{ code: number; screen: string }> {
    const screen = await this.waitFor(/EXIT=\d+/, 1, timeoutMs);
    const code = Number(/EXIT=(\d+)/.exec(screen)?.[1]);
    return { code, screen };
  }

  kill(): void {
    spawnSync('tmux', ['-S', this.#socket, 'kill-session', '-t', this.#name]);
  }
}

/** Stops the private tmux server (every session on the socket). */
export function killTmuxServer(socket: string): void {
  spawnSync('tmux', ['-S', socket, 'kill-server']);
}
