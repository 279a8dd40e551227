/** Runs test/state/fixtures/worker.ts in its own OS process and reads its lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./fixtures/worker.ts', import.meta.url));

export class WorkerProcess {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  #wake: (() => void)[] = [];
  #buf = '';

  constructor(mode: string, args: object) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', WORKER, mode, JSON.stringify(args)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.proc.stdout?.setEncoding('utf8');
    this.proc.stdout?.on('data', (chunk: string) => {
      this.#buf += chunk;
      const parts = this.#buf.split('\n');
      this.#buf = parts.pop() ?? '';
      this.lines.push(...parts);
      for (const w of this.#wake.splice(0)) w();
    });
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stderr?.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code) => {
        for (const w of this.#wake.splice(0)) w();
        resolve(code);
      });
    });
  }

  /** Resolves with the first line (from the start) that matches. */
  async waitFor(pred: (line: string) => boolean, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(
          `worker exited (${this.proc.exitCode ?? this.proc.signalCode}) without the expected line; stderr: ${this.stderr}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`worker did not print the expected line in time; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  send(line: string): void {
    this.proc.stdin?.write(`${line}\n`);
  }

  kill9(): Promise<number | null> {
    this.proc.kill('SIGKILL');
    return this.exited;
  }
}
