/**
 * Registers the commands that manage a running gateway (mostly through `/admin/v1`). Each module
 * imports only commander, zod, the admin contract, the admin client and the output helpers; the
 * heavier pieces (profiles, config file, YAML editing) are loaded by the one command that needs them.
 */
import type { Command } from 'commander';
import { registerApprovalCommands } from './approvals.js';
import { registerLocalCommands } from './local.js';
import { registerPolicyCommands } from './policy.js';
import { registerStateCommands } from './state.js';
import { registerUserCommands } from './users.js';

export function registerAdminCommands(program: Command): void {
  registerPolicyCommands(program);
  registerUserCommands(program);
  registerApprovalCommands(program);
  registerStateCommands(program);
  registerLocalCommands(program);
}
