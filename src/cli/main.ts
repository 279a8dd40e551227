/**
 * `mcpgw` command line (the tree is src/cli/program.ts). Exit codes (stable): 0 ok, 1 failed,
 * 2 usage, 3 gateway not running, 4 not authorized. Errors that carry one of these codes are
 * printed as one line, `mcpgw <command>: <what happened and what to run next>`.
 */
import { CommanderError } from 'commander';
import { EXIT, exitCodeOf } from './exit.js';
import { buildProgram, scopeFor } from './program.js';

const args = process.argv.slice(2);
const program = await buildProgram(scopeFor(args));

function commandName(): string {
  const first = args.find((a) => !a.startsWith('-'));
  return first === undefined ? 'mcpgw' : `mcpgw ${first}`;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
      process.exit(EXIT.ok);
    process.exit(EXIT.usage);
  }
  const code = exitCodeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${commandName()}: ${message}\n`);
  process.exit(code ?? EXIT.failed);
}
