/** Registers the commands that talk to the running gateway's admin API. */
import type { Command } from 'commander';

export function registerAdminCommands(program: Command): void {
  void program;
}
