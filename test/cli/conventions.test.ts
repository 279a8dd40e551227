/**
 * Conventions every `mcpgw` command keeps: help with examples, exit codes in every help, the
 * MCPGW_ADMIN_KEY warning, completion scripts that real shells accept and that know every command,
 * no colour or spinner frames without a terminal, and the lazy loading that keeps `--help` fast.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { commandTree, leafCommands } from '../../src/cli/completion.js';
import { buildProgram, CORE_COMMANDS, scopeFor, VAULT_DESCRIPTION } from '../../src/cli/program.js';
import { colorEnabled, progress } from '../../src/cli/tty.js';
import { describeWith, findExecutable } from '../helpers/components.js';

const BIN = fileURLToPath(new URL('../../bin/mcpgw.js', import.meta.url));

/** The full help of `cmd`, as `--help` prints it (text added with addHelpText included). */
function helpOf(cmd: Command): string {
  let text = '';
  // Each command keeps the output settings it was created with, so the capture goes on cmd itself.
  cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
  cmd.outputHelp();
  return text;
}

function mcpgw(args: string[], env: Record<string, string> = {}) {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MCPGW_')) base[k] = v;
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...base, ...env }, timeout: 60_000 });
}

describe('help', () => {
  it('every leaf command has examples in its --help', async () => {
    const program = await buildProgram('full');
    const leaves = leafCommands(program);
    expect(leaves.length).toBeGreaterThan(20);
    const missing = leaves.filter((l) => !helpOf(l.command).includes('\nExamples:\n')).map((l) => `mcpgw ${l.path}`);
    expect(missing, `commands whose --help has no "Examples:" section:\n  ${missing.join('\n  ')}`).toEqual([]);
  });

  it('every command lists the exit codes; the program explains MCPGW_ADMIN_KEY', async () => {
    const program = await buildProgram('full');
    const nodes = commandTree(program);
    const byPath = (path: string): Command => {
      let c: Command = program;
      for (const name of path === '' ? [] : path.split(' ')) {
        const next = c.commands.find((s) => s.name() === name);
        if (!next) throw new Error(`no command ${path}`);
        c = next;
      }
      return c;
    };
    for (const n of nodes) {
      expect(helpOf(byPath(n.path)), `mcpgw ${n.path} --help`).toContain(
        'Exit codes: 0 ok, 1 failed, 2 usage, 3 gateway not running, 4 not authorized',
      );
    }
    const withKey = nodes.filter((n) => n.options.some((o) => o.flags.includes('--admin-key')));
    expect(withKey.length).toBeGreaterThan(10);
    for (const n of withKey) {
      const help = helpOf(byPath(n.path));
      expect(help, `mcpgw ${n.path} --help`).toContain('MCPGW_ADMIN_KEY      for automation');
      expect(help.split('Admin credential, first found wins').length, `mcpgw ${n.path} --help`).toBe(2);
    }
    const main = helpOf(program);
    expect(main).toContain('MCPGW_ADMIN_KEY');
    expect(main).toMatch(/Whoever can read it \(your agent too, if it\s+runs as your OS user\) can approve/);
    expect(main).toContain('never\n                       read from argv or stdin');
  });

  it('the commands defined by the CLI core print JSON on request', async () => {
    const program = await buildProgram('core');
    for (const name of CORE_COMMANDS.filter((c) => c !== 'serve')) {
      const cmd = program.commands.find((c) => c.name() === name);
      expect(
        cmd?.options.some((o) => o.long === '--json'),
        name,
      ).toBe(true);
    }
  });

  it('top-level help without the heavy modules shows the same commands as the full tree', async () => {
    const list = (p: Command): string[] => p.commands.map((c) => `${c.name()}: ${c.description()}`);
    const full = await buildProgram('full');
    const help = await buildProgram('help');
    expect(list(help)).toEqual(list(full));
    expect(full.commands.find((c) => c.name() === 'vault')?.description()).toBe(VAULT_DESCRIPTION);
  });

  it('picks the smallest tree a command line needs', () => {
    expect(scopeFor([])).toBe('help');
    expect(scopeFor(['--help'])).toBe('help');
    expect(scopeFor(['help'])).toBe('help');
    expect(scopeFor(['help', 'vault'])).toBe('full');
    expect(scopeFor(['status', '--json'])).toBe('core');
    expect(scopeFor(['version'])).toBe('core');
    expect(scopeFor(['init', '--preset', 'team'])).toBe('core');
    expect(scopeFor(['vault', 'enable'])).toBe('full');
    expect(scopeFor(['completion', 'bash'])).toBe('full');
    expect(scopeFor(['pending'])).toBe('full');
  });

  it('usage errors exit 2 and name the problem', () => {
    const bad = mcpgw(['init', '--preset', 'nope']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('Allowed choices are openclaw, team, enterprise');
    const unknown = mcpgw(['statuz']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('(Did you mean status?)');
  });
});

describe('output without a terminal', () => {
  it('colour only on a terminal, and never with NO_COLOR or TERM=dumb', () => {
    expect(colorEnabled({ isTTY: true }, {})).toBe(true);
    expect(colorEnabled({ isTTY: false }, {})).toBe(false);
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: '' })).toBe(true);
    expect(colorEnabled({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
  });

  it('progress is plain lines without a terminal or with NO_COLOR, nothing with quiet', () => {
    for (const [isTTY, env] of [
      [false, {}],
      [true, { NO_COLOR: '1' }],
    ] as const) {
      let written = '';
      const stream = { isTTY, write: (s: string) => ((written += s), true) } as unknown as NodeJS.WriteStream;
      const p = progress('Starting the gateway', { stream, env });
      p.done('Gateway healthy');
      expect(written).toBe('Starting the gateway…\n✓ Gateway healthy\n');
    }
    let written = '';
    const stream = { isTTY: true, write: (s: string) => ((written += s), true) } as unknown as NodeJS.WriteStream;
    progress('x', { stream, env: {}, quiet: true }).done('y');
    expect(written).toBe('');
  });
});

describe('shell completion', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-completion-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const script = (shell: string): string => {
    const r = mcpgw(['completion', shell]);
    expect(r.status, r.stderr).toBe(0);
    const file = join(dir, `mcpgw.${shell}`);
    writeFileSync(file, r.stdout);
    return file;
  };

  it('bash: real bash completes commands from every module, subcommands, options and choices', () => {
    const file = script('bash');
    const complete = (...words: string[]): string[] => {
      const r = spawnSync(
        'bash',
        [
          '-c',
          `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _mcpgw; printf '%s\\n' "\${COMPREPLY[@]}"`,
          'complete',
          file,
          'mcpgw',
          ...words,
        ],
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.split('\n').filter((l) => l !== '');
    };
    expect(complete('ap')).toEqual(['apply', 'approve']);
    expect(complete('sec')).toEqual(['secret']);
    expect(complete('secret', '')).toEqual(expect.arrayContaining(['set', 'list', 'delete', 'test']));
    expect(complete('vault', 'en')).toEqual(['enable']);
    expect(complete('init', '--preset', '')).toEqual(['openclaw', 'team', 'enterprise']);
    expect(complete('init', '--pr')).toEqual(['--preset']);
    expect(complete('user', 'add', '--r')).toEqual(['--role']);
    expect(complete('completion', '--h')).toEqual(['--help']);
  });

  describeWith(['zsh'], 'zsh completion', () => {
    it('the script parses (zsh -n)', () => {
      const file = script('zsh');
      const r = spawnSync(findExecutable('zsh') ?? 'zsh', ['-n', file], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    });
  });

  it('an unknown shell is a usage error', () => {
    const r = mcpgw(['completion', 'fish']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('choose bash or zsh');
  });
});
