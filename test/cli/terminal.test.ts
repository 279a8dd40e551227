/**
 * `mcpgw init` and the approval passphrase driven through a real terminal (tmux): the answers are
 * typed, the screen is read back. Then the files each preset writes are compared byte for byte with
 * the files of the equivalent interactive answers, and the passphrase prompt of an admin command is
 * driven against a real gateway started with `mcpgw up`. Without a terminal (a new session, stdin
 * a pipe) the same commands fail with errors that name MCPGW_ADMIN_KEY / --yes.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { renderConfig } from '../../src/config/config-file.js';
import { openAdminCredential, readAdminCredential } from '../../src/cli/credential.js';
import { configFor, PRESET_ANSWERS } from '../../src/cli/init-answers.js';
import { describeWith } from '../helpers/components.js';
import { killTmuxServer, TmuxTerminal } from './tmux.js';
import { freePort } from '../helpers/net.js';

const BIN = fileURLToPath(new URL('../../bin/mcpgw.js', import.meta.url));
const PASS = 'tr0mbone-Glacier';

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/**
 * One CLI command in a session of its own (setsid): no controlling terminal, stdin a pipe that is
 * closed at once. So nothing here can read the developer's terminal either.
 */
function cli(home: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const base: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!/^(MCPGW_|NO_COLOR)/.test(k)) base[k] = v;
    const child = spawn(process.execPath, [BIN, ...args], {
      env: {
        ...base,
        MCPGW_HOME: home,
        MCPGW_FRONT: 'builtin',
        MCPGW_AUTHZ_PORT: '0',
        MCPGW_GATEWAY_PORT: '0',
        ...env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdin.end();
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

const read = (home: string, file: string): Buffer => readFileSync(join(home, file));

describeWith(['tmux'], 'mcpgw init and the approval passphrase on a real terminal', () => {
  const root = mkdtempSync(join(tmpdir(), 'mcpgw-tty-'));
  const socket = join(root, 'tmux.sock');
  const fakeBin = join(root, 'bin');
  let sessions = 0;
  let gatewayHome: string | null = null;
  let port = 0;

  const home = (name: string): string => join(root, name);
  const terminal = (h: string, args: string[], extraEnv: Record<string, string> = {}): TmuxTerminal =>
    new TmuxTerminal(socket, `s${++sessions}`, [process.execPath, BIN, ...args], {
      MCPGW_HOME: h,
      MCPGW_FRONT: 'builtin',
      MCPGW_AUTHZ_PORT: '0',
      MCPGW_GATEWAY_PORT: '0',
      ...extraEnv,
    });

  /** Answers the four questions by typed digits (1-based choice numbers), then the passphrase. */
  async function answer(t: TmuxTerminal, choices: [number, number, number, number]): Promise<void> {
    const questions = [
      'Authentication mode:',
      'Enable the credential vault?',
      'Enable the TUI management console?',
      'Who will use this gateway?',
    ];
    for (const [i, q] of questions.entries()) {
      await t.waitFor(`? ${q}`);
      t.type(String(choices[i]));
      t.press('Enter');
      await t.waitFor(`✓ ${q}`);
    }
    await t.waitFor('Approval passphrase (8+ characters):');
    t.type(PASS);
    t.press('Enter');
    await t.waitFor('Repeat the passphrase:');
    t.type(PASS);
    t.press('Enter');
  }

  beforeAll(async () => {
    port = await freePort();
    // A `docker` whose engine never answers, first on PATH: `mcpgw up` must fall back to native.
    mkdirSync(fakeBin);
    writeFileSync(
      join(fakeBin, 'docker'),
      '#!/bin/sh\n# fake-docker: the CLI is installed, the engine is not running\necho "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2\nexit 1\n',
    );
    chmodSync(join(fakeBin, 'docker'), 0o755);
  });

  afterAll(async () => {
    if (gatewayHome !== null) await cli(gatewayHome, ['down']);
    killTmuxServer(socket);
    rmSync(root, { recursive: true, force: true });
  });

  const savedA: { config?: Buffer; policy?: Buffer; credential?: Buffer } = {};

  it('asks the toggles and the passphrase on the terminal, never echoes it, and says what to do next', async () => {
    const h = home('a');
    const t = terminal(h, ['init', '--port', String(port)]);
    // Arrow keys move the highlight; the digit and Enter answers below must still win.
    await t.waitFor('? Authentication mode:');
    t.press('Down');
    await t.waitFor(/> 2\. Keycloak/);
    t.press('Up');
    await t.waitFor(/> 1\. API key/);
    t.press('Enter');
    await t.waitFor('✓ Authentication mode: API key');
    for (const q of [
      'Enable the credential vault?',
      'Enable the TUI management console?',
      'Who will use this gateway?',
    ]) {
      await t.waitFor(`? ${q}`);
      t.press('Enter');
      await t.waitFor(`✓ ${q}`);
    }
    // Too short, then two that differ, then the real one twice.
    await t.waitFor('Approval passphrase (8+ characters):');
    t.type('short');
    t.press('Enter');
    await t.waitFor('at least 8 characters; try again.');
    t.type(PASS);
    t.press('Enter');
    await t.waitFor('Repeat the passphrase:');
    t.type(`${PASS}x`);
    t.press('Enter');
    await t.waitFor('The two passphrases differ; try again.');
    t.type(PASS);
    t.press('Enter');
    await t.waitFor('Repeat the passphrase:', 2);
    t.type(PASS);
    t.press('Enter');
    const { code, screen } = await t.exit();
    expect(code, screen).toBe(0);
    expect(screen).not.toContain(PASS.slice(0, 6));
    expect(screen).not.toContain('short');
    expect(screen).toContain('✓ Enable the credential vault? Yes');
    expect(screen).toContain(`stored encrypted under your passphrase in ${join(h, 'admin-credential.json')}`);
    expect(screen).not.toMatch(/mcpgw_ak_/);
    // Next steps: the up line and the client snippets.
    expect(screen).toMatch(/Next: start the gateway\n\s+mcpgw up\n/);
    const apiKey = /Agent API key \(shown once\): (mcpgw_sk_\w+)/.exec(screen)?.[1] ?? '';
    expect(apiKey).toMatch(/^mcpgw_sk_/);
    expect(screen).toContain(`openclaw mcp set mcpgw '{"url":"http://127.0.0.1:${port}/mcp"`);
    expect(screen).toContain(
      `claude mcp add --transport http mcpgw http://127.0.0.1:${port}/mcp --header "Authorization: Bearer ${apiKey}"`,
    );
    expect(screen).toContain('"mcpServers"');

    // The admin key is on disk only encrypted, in a private file, and opens with the passphrase.
    const credFile = join(h, 'admin-credential.json');
    expect(statSync(credFile).mode & 0o777).toBe(0o600);
    const stored = await readAdminCredential(h);
    expect(stored?.user).toBe('owner');
    const opened = await openAdminCredential(stored!, PASS);
    expect(opened.key).toMatch(/^mcpgw_ak_/);
    for (const f of ['admin-credential.json', 'config.yaml', 'mcp-security.yaml']) {
      expect(read(h, f).toString()).not.toContain(opened.key);
      expect(read(h, f).toString()).not.toContain(PASS);
    }
    await expect(openAdminCredential(stored!, `${PASS}!`)).rejects.toMatchObject({ exitCode: 4 });
    savedA.config = read(h, 'config.yaml');
    savedA.policy = read(h, 'mcp-security.yaml');
    savedA.credential = read(h, 'admin-credential.json');
    t.kill();
  }, 180_000);

  it('asks before overwriting an existing installation; "no" (the default) changes nothing', async () => {
    const h = home('a');
    const t = terminal(h, ['init', '--port', String(port)]);
    await t.waitFor(/config\.yaml exists\. Start over .*\(y\/N\)/);
    t.press('Enter');
    const { code, screen } = await t.exit();
    expect(code, screen).toBe(1);
    expect(screen).toContain('nothing changed');
    expect(screen).not.toContain('Authentication mode');
    expect(read(h, 'config.yaml').equals(savedA.config!)).toBe(true);
    expect(read(h, 'mcp-security.yaml').equals(savedA.policy!)).toBe(true);
    expect(read(h, 'admin-credential.json').equals(savedA.credential!)).toBe(true);
    t.kill();
  }, 60_000);

  it('without a terminal: init wants --yes, an admin command names MCPGW_ADMIN_KEY', async () => {
    const h = home('a');
    const init = await cli(h, ['init']);
    expect(init.code).toBe(2);
    expect(init.err).toMatch(/no terminal to ask on/);
    expect(init.err).toContain('--yes');
    // Checked before any key: the gateway is not running yet.
    const pending = await cli(h, ['pending', '--json'], { MCPGW_URL: 'http://127.0.0.1:9' });
    expect(pending.code).toBe(4);
    expect(pending.err).toContain('locked with your approval passphrase');
    expect(pending.err).toContain('MCPGW_ADMIN_KEY');
    expect(read(h, 'config.yaml').equals(savedA.config!)).toBe(true);
  }, 60_000);

  it('up falls back to native when the Docker engine does not answer; status asks /healthz without a pid file', async () => {
    const h = home('a');
    gatewayHome = h;
    const up = await cli(h, ['up'], { PATH: `${fakeBin}:${process.env['PATH'] ?? ''}` });
    expect(up.code, up.err).toBe(0);
    expect(up.err).toContain('No Docker engine answers: running natively');
    expect(up.out).toContain(`mcpgw is up at http://127.0.0.1:${port}/mcp`);

    // Another home with the same port and no pid file: what `status` sees in the container.
    const other = home('status-only');
    mkdirSync(other);
    writeFileSync(
      join(other, 'config.yaml'),
      renderConfig(configFor(PRESET_ANSWERS.openclaw, join(other, 'p.yaml'), port)),
    );
    const st = await cli(other, ['status', '--json']);
    expect(st.code, st.err).toBe(0);
    expect(JSON.parse(st.out)).toMatchObject({
      running: true,
      healthy: true,
      pid: null,
      mode: 'external',
      source: 'health',
    });
    const viaEnv = await cli(home('empty'), ['status'], { MCPGW_URL: `http://127.0.0.1:${port}` });
    expect(viaEnv.code).toBe(0);
    expect(viaEnv.out).toMatch(/running at http:\/\/127\.0\.0\.1:\d+\/mcp \(no pid file .*healthy\)/);
    const nothing = await cli(home('empty'), ['status', '--json'], { MCPGW_URL: 'http://127.0.0.1:9' });
    expect(nothing.code).toBe(3);
    expect(JSON.parse(nothing.out)).toMatchObject({ running: false });
  }, 120_000);

  it('an admin command asks the passphrase on the terminal: wrong three times → exit 4, right → works', async () => {
    const h = home('a');
    const wrong = terminal(h, ['pending', '--json']);
    for (let i = 1; i <= 3; i++) {
      await wrong.waitFor('Approval passphrase (to list pending approvals):', i);
      wrong.type(`not-${PASS}`);
      wrong.press('Enter');
    }
    const w = await wrong.exit();
    expect(w.code, w.screen).toBe(4);
    expect(w.screen).toContain('wrong passphrase (3 attempts)');
    expect(w.screen).not.toContain(PASS.slice(0, 6));
    wrong.kill();

    const right = terminal(h, ['pending', '--json']);
    await right.waitFor('Approval passphrase (to list pending approvals):');
    right.type(PASS);
    right.press('Enter');
    const r = await right.exit();
    expect(r.code, r.screen).toBe(0);
    expect(r.screen).toContain('{"items":[]}');
    expect(r.screen).not.toContain(PASS.slice(0, 6));
    right.kill();

    // MCPGW_ADMIN_KEY wins over the credential file and needs no terminal; a wrong one is refused.
    const key = (await openAdminCredential((await readAdminCredential(h))!, PASS)).key;
    const auto = await cli(h, ['pending', '--json'], { MCPGW_ADMIN_KEY: key });
    expect(auto.code, auto.err).toBe(0);
    expect(JSON.parse(auto.out)).toEqual({ items: [] });
    const bad = await cli(h, ['pending', '--json'], { MCPGW_ADMIN_KEY: `${key.slice(0, -1)}x` });
    expect(bad.code).toBe(4);

    const down = await cli(h, ['down']);
    expect(down.code).toBe(0);
    gatewayHome = null;
  }, 120_000);

  it('--preset openclaw writes byte-identical files to the interactive answers', async () => {
    const h = home('a');
    const r = await cli(h, ['init', '--preset', 'openclaw', '--yes', '--force', '--port', String(port)]);
    expect(r.code, r.err).toBe(0);
    expect(read(h, 'config.yaml').equals(savedA.config!)).toBe(true);
    expect(read(h, 'mcp-security.yaml').equals(savedA.policy!)).toBe(true);
    // --yes stores no credential; the old one held a key that was just replaced.
    expect(() => statSync(join(h, 'admin-credential.json'))).toThrow();
    expect(r.out).toMatch(/export MCPGW_ADMIN_KEY=mcpgw_ak_/);
    // Not a terminal: no colour, no spinner frames, no cursor movement.
    expect(`${r.out}${r.err}`).not.toContain('\u001b');
  }, 120_000);

  for (const [preset, choices] of [
    ['team', [1, 1, 1, 2]],
    ['enterprise', [2, 1, 1, 2]],
  ] as const) {
    it(`--preset ${preset} writes byte-identical files to the interactive answers ${choices.join(',')}`, async () => {
      const h = home(preset);
      const t = terminal(h, ['init', '--port', String(port)]);
      await answer(t, [...choices]);
      const { code, screen } = await t.exit();
      expect(code, screen).toBe(0);
      if (preset === 'enterprise') expect(screen).toContain('does not start Keycloak yet');
      t.kill();
      const config = read(h, 'config.yaml');
      const policy = read(h, 'mcp-security.yaml');
      expect(config.toString()).toContain(`preset: ${preset}`);
      const r = await cli(h, ['init', '--preset', preset, '--yes', '--force', '--port', String(port)]);
      expect(r.code, r.err).toBe(0);
      expect(read(h, 'config.yaml').equals(config)).toBe(true);
      expect(read(h, 'mcp-security.yaml').equals(policy)).toBe(true);
    }, 180_000);
  }

  it('--preset without --yes asks only the passphrase', async () => {
    const h = home('preset-tty');
    const t = terminal(h, ['init', '--preset', 'team', '--port', String(port)]);
    await t.waitFor('Approval passphrase (8+ characters):');
    expect(t.screen()).not.toContain('Authentication mode');
    t.type(PASS);
    t.press('Enter');
    await t.waitFor('Repeat the passphrase:');
    t.type(PASS);
    t.press('Enter');
    const { code, screen } = await t.exit();
    expect(code, screen).toBe(0);
    expect(read(h, 'config.yaml').toString()).toContain('preset: team');
    expect((await openAdminCredential((await readAdminCredential(h))!, PASS)).user).toBe('owner');
    t.kill();
  }, 180_000);
});
