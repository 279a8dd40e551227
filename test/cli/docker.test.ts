/**
 * `mcpgw up` / `down` / `status` in Docker mode. No Docker engine runs on the test machines, so a
 * FAKE `docker` executable (fixtures/fake-docker.mjs, first on PATH) records the commands the CLI
 * builds and answers like the real CLI; a FAKE container front (a plain HTTP server on the
 * configured port) answers /healthz as the container's Envoy would. What is checked: the exact
 * docker commands, the summary, the fallbacks and their messages. The container itself is not run.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { dockerEngineAnswers, runArgs } from '../../src/cli/docker.js';
import { configFor, PRESET_ANSWERS } from '../../src/cli/init-answers.js';
import { renderConfig } from '../../src/config/config-file.js';
import { freePort } from '../helpers/net.js';

const BIN = fileURLToPath(new URL('../../bin/mcpgw.js', import.meta.url));
const FAKE = fileURLToPath(new URL('./fixtures/fake-docker.mjs', import.meta.url));
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
const IMAGE = `noumena/mcpgw:${VERSION}`;

interface Run {
  code: number | null;
  out: string;
  err: string;
}

describe('mcpgw up/down/status with a (fake) Docker engine', () => {
  const root = mkdtempSync(join(tmpdir(), 'mcpgw-docker-'));
  const bin = join(root, 'bin');
  const state = join(root, 'docker-state');
  const home = join(root, 'home');
  let port = 0;
  let front: Server;
  let mode = 'ok';

  function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
    return new Promise((resolve) => {
      const base: NodeJS.ProcessEnv = {};
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MCPGW_')) base[k] = v;
      const child = spawn(process.execPath, [BIN, ...args], {
        env: {
          ...base,
          PATH: `${bin}:${process.env['PATH'] ?? ''}`,
          MCPGW_HOME: home,
          FAKE_DOCKER_DIR: state,
          FAKE_DOCKER_MODE: mode,
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', (code) => resolve({ code, out, err }));
    });
  }

  const calls = (): string[][] =>
    existsSync(join(state, 'calls.jsonl'))
      ? readFileSync(join(state, 'calls.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as string[])
      : [];

  beforeAll(async () => {
    mkdirSync(bin);
    // Named `docker` so the CLI finds it first on PATH; it is the fake, not the Docker CLI.
    writeFileSync(
      join(bin, 'docker'),
      `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(FAKE)} "$@"\n`,
    );
    chmodSync(join(bin, 'docker'), 0o755);
    mkdirSync(home, { mode: 0o700 });
    port = await freePort();
    writeFileSync(
      join(home, 'config.yaml'),
      renderConfig(configFor(PRESET_ANSWERS.openclaw, join(home, 'mcp-security.yaml'), port)),
      { mode: 0o600 },
    );
    // The fake container front: what the image's Envoy answers on /healthz once mcpgw is up.
    front = createHttpServer((req, res) => {
      res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'application/json' });
      res.end(req.url === '/healthz' ? '{"status":"ok"}' : '{}');
    });
    await new Promise<void>((r) => front.listen(port, '127.0.0.1', r));
  });

  beforeEach(() => {
    rmSync(state, { recursive: true, force: true });
    mkdirSync(state);
    mode = 'ok';
  });

  afterAll(async () => {
    await new Promise((r) => front.close(r));
    rmSync(root, { recursive: true, force: true });
  });

  it('builds the docker run line: one volume at the image path, the configured port, the home database', () => {
    expect(runArgs({ image: 'img:1', home: '/h', host: '127.0.0.1', port: 8100 })).toEqual([
      'run',
      '--detach',
      '--name',
      'mcpgw',
      '--volume',
      '/h:/var/lib/mcpgw',
      '--publish',
      '127.0.0.1:8100:8000',
      '--env',
      'MCPGW_DATABASE_URL=',
      '--label',
      'dev.mcpgw.home=/h',
      'img:1',
    ]);
  });

  it('knows whether an engine answers: no docker on PATH, a CLI without daemon, an engine', () => {
    const saved = {
      path: process.env['PATH'],
      dir: process.env['FAKE_DOCKER_DIR'],
      mode: process.env['FAKE_DOCKER_MODE'],
    };
    try {
      process.env['PATH'] = join(root, 'nowhere');
      expect(dockerEngineAnswers()).toBe(false);
      process.env['PATH'] = `${bin}:${saved.path ?? ''}`;
      process.env['FAKE_DOCKER_DIR'] = state;
      process.env['FAKE_DOCKER_MODE'] = 'no-engine';
      expect(dockerEngineAnswers()).toBe(false);
      process.env['FAKE_DOCKER_MODE'] = 'ok';
      expect(dockerEngineAnswers()).toBe(true);
    } finally {
      process.env['PATH'] = saved.path;
      if (saved.dir === undefined) delete process.env['FAKE_DOCKER_DIR'];
      else process.env['FAKE_DOCKER_DIR'] = saved.dir;
      if (saved.mode === undefined) delete process.env['FAKE_DOCKER_MODE'];
      else process.env['FAKE_DOCKER_MODE'] = saved.mode;
    }
  });

  it('with no published image: says so, names --native, runs nothing', async () => {
    mode = 'unpublished';
    const r = await cli(['up']);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`mcpgw up: no mcpgw image is published yet (docker pull ${IMAGE}:`);
    expect(r.err).toContain('manifest unknown');
    expect(r.err).toContain('run `mcpgw up --native`');
    expect(calls()).toEqual([
      ['info', '--format', '{{.ServerVersion}}'],
      ['inspect', '--format', '{{.State.Running}}', 'mcpgw'],
      ['image', 'inspect', '--format', '{{.Id}}', IMAGE],
      ['pull', IMAGE],
    ]);
    expect(existsSync(join(home, 'run', 'docker.json'))).toBe(false);
  }, 60_000);

  it('pulls with progress, runs the container, waits for health, prints the native summary; status and down follow', async () => {
    const up = await cli(['up']);
    expect(up.code, up.err).toBe(0);
    expect(up.err).toContain(`Pulling ${IMAGE}`);
    expect(up.err).toContain('4f4fb700ef54: Pull complete');
    const url = `http://127.0.0.1:${port}/mcp`;
    expect(up.out).toContain(`mcpgw is up at ${url} (container mcpgw, front: envoy)`);
    expect(up.out).toContain('Logs: docker logs mcpgw');
    expect(up.out).toContain(`claude mcp add --transport http mcpgw ${url}`);
    expect(calls()).toEqual([
      ['info', '--format', '{{.ServerVersion}}'],
      ['inspect', '--format', '{{.State.Running}}', 'mcpgw'],
      ['image', 'inspect', '--format', '{{.Id}}', IMAGE],
      ['pull', IMAGE],
      runArgs({ image: IMAGE, home, host: '127.0.0.1', port }),
    ]);

    const again = await cli(['up', '--json']);
    expect(again.code, again.err).toBe(0);
    expect(JSON.parse(again.out)).toMatchObject({ url, mode: 'docker', container: 'mcpgw', alreadyRunning: true });
    expect(calls().filter((c) => c[0] === 'run')).toHaveLength(1);

    const st = await cli(['status', '--json']);
    expect(st.code, st.err).toBe(0);
    expect(JSON.parse(st.out)).toMatchObject({ running: true, healthy: true, mode: 'docker', url, pid: null });

    const down = await cli(['down', '--json']);
    expect(down.code, down.err).toBe(0);
    expect(JSON.parse(down.out)).toMatchObject({ stopped: true, mode: 'docker', container: 'mcpgw' });
    expect(calls().slice(-2)).toEqual([
      ['stop', '--time', '30', 'mcpgw'],
      ['rm', 'mcpgw'],
    ]);
    expect(existsSync(join(home, 'run', 'docker.json'))).toBe(false);
    expect((await cli(['down'])).code).toBe(3);
  }, 90_000);

  it('uses a local image (MCPGW_IMAGE) without pulling', async () => {
    writeFileSync(join(state, 'images.json'), JSON.stringify(['mcpgw']));
    const up = await cli(['up', '--json'], { MCPGW_IMAGE: 'mcpgw' });
    expect(up.code, up.err).toBe(0);
    expect(calls().map((c) => c[0])).toEqual(['info', 'inspect', 'image', 'run']);
    expect(calls()[3]?.at(-1)).toBe('mcpgw');
    expect((await cli(['down'])).code).toBe(0);
  }, 60_000);

  it('a container that dies during start-up is reported with its last log lines', async () => {
    mode = 'dies';
    // Nothing answers on this port: the container never becomes healthy.
    writeFileSync(join(state, 'images.json'), JSON.stringify([IMAGE]));
    const other = join(root, 'home-dies');
    mkdirSync(other, { mode: 0o700 });
    writeFileSync(
      join(other, 'config.yaml'),
      renderConfig(configFor(PRESET_ANSWERS.openclaw, join(other, 'p.yaml'), await freePort())),
      { mode: 0o600 },
    );
    const up = await cli(['up'], { MCPGW_HOME: other });
    expect(up.code).toBe(1);
    expect(up.err).toContain('the container mcpgw exited during start-up');
    expect(up.err).toContain('belongs to uid 1000, not to mcpgw');
    expect(calls().some((c) => c[0] === 'logs')).toBe(true);
  }, 60_000);
});
