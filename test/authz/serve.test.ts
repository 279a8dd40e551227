/**
 * `mcpgw serve --role authz` as a process: readiness, gRPC health, decision logs that carry the
 * decision id but never a key, token or body, SIGHUP reload that keeps the old policy when the new
 * file is broken, and SIGTERM draining (NOT_SERVING first, then exit 0).
 */
import { credentials } from '@grpc/grpc-js';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuthorizationClient,
  CheckRequest,
  type CheckResponse,
} from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
  type HealthCheckResponse,
} from '../../src/gen/grpc/health/v1/health.js';
import { generateApiKey, hashApiKey } from '../../src/identity/api-keys.js';

const repo = new URL('../..', import.meta.url).pathname;
let dir: string;
let proc: ChildProcessWithoutNullStreams;
let port = 0;
let logs = '';
const lines: string[] = [];
const key = generateApiKey('sk');
const policyFile = () => join(dir, 'policy.yaml');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcpgw-serve-'));
  copyFileSync(join(repo, 'test/fixtures/check/policy.yaml'), policyFile());
  writeFileSync(
    join(dir, 'users.yaml'),
    `users:\n  - {id: alice, role: agent, grants: {gmail: ["*"]}, apiKeySha256: ["${hashApiKey(key).toString('hex')}"]}\n`,
  );
  proc = spawn(
    process.execPath,
    [
      join(repo, 'bin/mcpgw.js'),
      'serve',
      '--role',
      'authz',
      '--port',
      '0',
      '--policy',
      policyFile(),
      '--identities',
      join(dir, 'users.yaml'),
      '--drain-seconds',
      '1',
    ],
    { env: { ...process.env, MCPGW_HOME: join(dir, 'home') } },
  );
  proc.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  const rl = createInterface({ input: proc.stdout });
  rl.on('line', (l) => {
    lines.push(l);
    logs += `${l}\n`;
  });
  port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`not ready:\n${logs}`)), 20_000);
    rl.on('line', (l) => {
      if (l.startsWith('{"ready"')) {
        clearTimeout(t);
        resolve((JSON.parse(l) as { port: number }).port);
      }
    });
  });
}, 30_000);

afterAll(() => {
  if (proc.exitCode === null) proc.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function check(body: object): Promise<CheckResponse> {
  const client = new AuthorizationClient(`127.0.0.1:${port}`, credentials.createInsecure());
  const raw = Buffer.from(JSON.stringify(body));
  const req = CheckRequest.fromPartial({
    attributes: {
      request: {
        http: {
          method: 'POST',
          path: '/mcp',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          rawBody: raw,
        },
      },
    },
  });
  return new Promise((resolve, reject) =>
    client.check(req, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    }),
  );
}

function health(): Promise<HealthCheckResponse> {
  const client = new HealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
  return new Promise((resolve, reject) =>
    client.check({ service: 'envoy.service.auth.v3.Authorization' }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    }),
  );
}

const waitFor = async (pred: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out; logs:\n${logs}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('mcpgw serve --role authz', () => {
  it('answers health SERVING and decisions, logging the decision id but no secret or body', async () => {
    expect((await health()).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const secretArg = 's3cr3t-argument-value';
    const res = await check({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { note: secretArg } });
    expect(res.status?.code).toBe(0);
    const id = res.dynamicMetadata?.['decision_id'] as string;
    await waitFor(() => logs.includes(id));
    const line = lines.find((l) => l.includes(id)) ?? '';
    expect(JSON.parse(line)).toMatchObject({
      decision_id: id,
      decision: 'allow',
      user: 'alice',
      rpc_method: 'initialize',
    });
    expect(logs).not.toContain(key);
    expect(logs).not.toContain(secretArg);
    expect(logs).not.toContain('Bearer');
  });

  it('SIGHUP with a broken file keeps the old policy and says where the file is wrong; a good file swaps in', async () => {
    const before = lines.find((l) => l.includes('"policy loaded"')) ?? '';
    const oldRevision = (JSON.parse(before) as { revision: string }).revision;
    writeFileSync(policyFile(), 'version: "1.0"\npolicies:\n  - {name: x, when: {}, action: maybe, priority: 1}\n');
    proc.kill('SIGHUP');
    await waitFor(() => logs.includes('policy reload rejected'));
    const rejected = JSON.parse(lines.find((l) => l.includes('policy reload rejected')) ?? '{}') as {
      errors: { file: string; line: number; path: string }[];
    };
    expect(rejected.errors[0]).toMatchObject({ file: policyFile(), line: 3, path: 'policies[0].action' });

    writeFileSync(policyFile(), 'version: "1.0"\npolicies:\n  - {name: all, when: {}, action: deny, priority: 1}\n');
    proc.kill('SIGHUP');
    await waitFor(() => logs.includes('"policy reloaded"'));
    const reloaded = JSON.parse(lines.find((l) => l.includes('"policy reloaded"')) ?? '{}') as { revision: string };
    expect(reloaded.revision).not.toBe(oldRevision);
  });

  it('SIGTERM: NOT_SERVING while draining, then a clean exit', async () => {
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    proc.kill('SIGTERM');
    await waitFor(() => logs.includes('"draining"'));
    expect((await health()).status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
    expect(await exited).toBe(0);
    expect(logs).toContain('authz stopped');
  });
});
