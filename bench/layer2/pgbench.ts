/**
 * pgbench running the statement a decision runs, `SELECT mcpgw_decide($1::jsonb)`, with the inputs
 * our own `buildDecideInput` produced for the bench frames: one script per frame, chosen uniformly
 * at random per transaction (the same mix h2load sends), each input passed as a parameter of a
 * prepared statement, as `Layer2Store.decide` does (a named statement per pooled connection). Only
 * the decision id is new per transaction
 * (`jsonb_set` with `gen_random_uuid()`), because audit_log.decision_id is unique.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DecideInput } from '../../src/state/decide.js';
import { PG_BIN } from './postgres.js';

export interface PgbenchResult {
  tps: number;
  transactions: number;
  failed: number;
  latencyMs: number;
  output: string;
}

export function writeScripts(dir: string, inputs: readonly DecideInput[]): { files: string[]; defines: string[] } {
  const files: string[] = [];
  const defines: string[] = [];
  inputs.forEach((input, i) => {
    const file = join(dir, `decide-${i}.sql`);
    writeFileSync(
      file,
      `SELECT mcpgw_decide(jsonb_set(:in${i}::jsonb, '{decision_id}', to_jsonb(gen_random_uuid()::text)));\n`,
    );
    files.push(file);
    defines.push('-D', `in${i}=${JSON.stringify(input)}`);
  });
  return { files, defines };
}

export function runPgbench(opts: {
  core: string;
  port: number;
  database: string;
  clients: number;
  seconds: number;
  scripts: { files: string[]; defines: string[] };
  /**
   * `prepared` (default) is what `Layer2Store.decide` does: Parse once per connection, then
   * Bind/Execute; `extended` parses an unnamed statement per call (what plain `pg` queries do).
   */
  mode?: 'extended' | 'prepared';
}): Promise<PgbenchResult> {
  const args = [
    '-c',
    opts.core,
    join(PG_BIN, 'pgbench'),
    '-n', // no vacuum of pgbench's own tables (we have none)
    '-M',
    opts.mode ?? 'prepared',
    '-c',
    String(opts.clients),
    '-j',
    '1',
    '-T',
    String(opts.seconds),
    '-h',
    '127.0.0.1',
    '-p',
    String(opts.port),
    '-U',
    'postgres',
    ...opts.scripts.defines,
    ...opts.scripts.files.flatMap((f) => ['-f', f]),
    opts.database,
  ];
  return new Promise((resolve, reject) => {
    const p = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.on('data', (d: Buffer) => (text += d.toString()));
    p.stderr.on('data', (d: Buffer) => (text += d.toString()));
    p.on('close', (code) => {
      const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(text);
      const n = /number of transactions actually processed: (\d+)/.exec(text);
      const failed = /number of failed transactions: (\d+)/.exec(text);
      const lat = /latency average = ([\d.]+) ms/.exec(text);
      if (code !== 0 || !tps || !n) return reject(new Error(`pgbench failed (${code}):\n${text.slice(-4000)}`));
      resolve({
        tps: Number(tps[1]),
        transactions: Number(n[1]),
        failed: failed ? Number(failed[1]) : 0,
        latencyMs: lat ? Number(lat[1]) : NaN,
        output: text,
      });
    });
  });
}
