/**
 * What `mcpgw init` writes, as pure functions of the answers to its questions. The presets are
 * names for sets of answers, nothing more: `init --preset team` and the interactive answers that
 * `team` stands for produce byte-identical `config.yaml` and `mcp-security.yaml` (a test holds us
 * to it). Kept free of heavy imports so `--help` and completion stay fast.
 */
import type { McpgwConfig } from '../config/config-file.js';

/** The admin user `mcpgw init` creates (DESIGN §4), and its first agent. */
export const OWNER = 'owner';
export const FIRST_AGENT = 'agent';

export const PRESETS = ['openclaw', 'team', 'enterprise'] as const;
export type Preset = (typeof PRESETS)[number];

export type AuthMode = 'api-key' | 'keycloak';
export type Users = 'single' | 'team';

/** The questions of `mcpgw init`: the three toggles, and who will use the gateway. */
export interface InitAnswers {
  auth: AuthMode;
  /** The credential vault: secrets.backend builtin (yes) or none (no). */
  vault: boolean;
  tui: boolean;
  users: Users;
}

export const PRESET_ANSWERS: Readonly<Record<Preset, Readonly<InitAnswers>>> = {
  openclaw: { auth: 'api-key', vault: true, tui: true, users: 'single' },
  team: { auth: 'api-key', vault: true, tui: true, users: 'team' },
  enterprise: { auth: 'keycloak', vault: true, tui: true, users: 'team' },
};

/** The preset these answers are, or `custom`. Written into config.yaml for `status`. */
export function presetOf(a: InitAnswers): Preset | 'custom' {
  for (const p of PRESETS) {
    const q = PRESET_ANSWERS[p];
    if (q.auth === a.auth && q.vault === a.vault && q.tui === a.tui && q.users === a.users) return p;
  }
  return 'custom';
}

/** Team defaults (users: team) in the policy file. */
export const TEAM_APPROVAL = { maxPendingPerUser: 5, timeout: '8h' } as const;

export function configFor(a: InitAnswers, policyPath: string, port: number): McpgwConfig {
  return {
    version: 1,
    listen: { host: '127.0.0.1', port },
    policy: policyPath,
    auth: { mode: a.auth },
    secrets: a.vault ? { backend: 'builtin' } : { backend: 'none' },
    tui: a.tui,
    preset: presetOf(a),
  };
}

/**
 * A policy that works out of the box with the two demo backends shipped as package dependencies
 * (bare commands resolve to the package's own node_modules/.bin, so nothing is fetched at run time):
 * reads are allowed, deletes need a human, memory writes are rate-limited, everything else is
 * denied. `users: team` adds a per-user cap on pending approvals and a longer approval window.
 */
export function policyFor(a: InitAnswers, home: string): string {
  const memoryFile = JSON.stringify(`${home}/demo-memory.jsonl`);
  const team =
    a.users === 'team'
      ? `
# Team defaults. Give each person their own key: \`mcpgw user add alice --role agent\` (or
# --role approver), and list approvers by user id in a rule, e.g. approvers: [alice, bob]; a rule
# without approvers is decided by admins. One person's agent can have at most
# ${TEAM_APPROVAL.maxPendingPerUser} calls waiting at a time, so it cannot bury the approvers; rules without their
# own timeout wait ${TEAM_APPROVAL.timeout} for a decision (instead of 24h).
approval: {max_pending_per_user: ${TEAM_APPROVAL.maxPendingPerUser}, timeout: ${TEAM_APPROVAL.timeout}}
`
      : '';
  return `# mcp-security.yaml written by \`mcpgw init\`. Edit it, then \`mcpgw apply\`.
version: "1.0"
services:
  everything: {transport: stdio, command: mcp-server-everything, args: [stdio]}
  memory: {transport: stdio, command: mcp-server-memory, env: {MEMORY_FILE_PATH: ${memoryFile}}}
tool_overrides:
  everything:
    echo: {verb: get, readOnlyHint: true}
    get-sum: {verb: get, readOnlyHint: true}
    get-tiny-image: {verb: get, readOnlyHint: true}
policies:
  - {name: Deletes need a human, when: {verb: delete}, action: require_approval, timeout: 30m, priority: 10}
  - {name: Reads are fine, when: {readOnlyHint: true}, action: allow, priority: 50}
  - {name: Memory writes, when: {verb: create}, action: allow, priority: 60}
  - {name: Default deny, when: {}, action: deny, priority: 999}
limits:
  - {name: memory write burst, select: {service: memory, verb: create}, max: 30, per: 1h, scope: user, action: deny}
${team}`;
}

export function describeAnswers(a: InitAnswers): string[] {
  return [
    `Auth mode: ${a.auth === 'api-key' ? 'API key' : 'Keycloak'}`,
    `Credential vault: ${a.vault ? 'enabled (secrets.backend: builtin)' : 'disabled (secrets.backend: none)'}`,
    `TUI console: ${a.tui ? 'enabled' : 'disabled'}`,
    `Users: ${a.users === 'single' ? 'just you' : `a team (at most ${TEAM_APPROVAL.maxPendingPerUser} pending approvals per user; ${TEAM_APPROVAL.timeout} to decide unless a rule says otherwise)`}`,
  ];
}

/** What each preset writes; shown by `mcpgw init --help` and mirrored in the README. */
export const PRESETS_HELP = `Presets (shortcuts for the answers; they write the same files the questions would):
  openclaw     API key, vault on, TUI on, just you.
  team         openclaw + users: team: mcp-security.yaml gains
               approval: {max_pending_per_user: ${TEAM_APPROVAL.maxPendingPerUser}, timeout: ${TEAM_APPROVAL.timeout}}
               (at most ${TEAM_APPROVAL.maxPendingPerUser} calls per user waiting for a human; rules without their own
               timeout wait ${TEAM_APPROVAL.timeout}, not 24h) and notes on adding people
               (mcpgw user add). No extra users are created.
  enterprise   Keycloak auth, vault on, TUI on, users: team. Keycloak is not started by
               \`mcpgw up\` yet: until it is, the gateway authenticates with API keys.

Every preset writes MCPGW_HOME/config.yaml:
  listen: {host: 127.0.0.1, port: <--port>}   policy: MCPGW_HOME/mcp-security.yaml
  auth.mode: api-key | keycloak   secrets.backend: builtin (vault on) | none (vault off)
  tui: true | false   preset: openclaw | team | enterprise | custom (derived from the answers)
and MCPGW_HOME/mcp-security.yaml (an existing one is kept unless you start over): the demo
backends "everything" and "memory"; reads allowed, deletes need approval, memory writes limited to
30 per hour per user, everything else denied. Keys never go into these files.`;
