/**
 * The contract between the TypeScript side and the Layer 1 Rego policy compiled to Wasm.
 *
 * Three documents cross the boundary:
 *  - `Layer1Data`: the compiled policy (from `mcp-security.yaml` + profiles), given to the Wasm
 *    instance with `setData` once per revision;
 *  - `Layer1Input`: one request, already authenticated and parsed by the Check handler;
 *  - `Layer1Decision`: what the policy answers. It is parsed with the zod schema below because a
 *    Wasm result is untyped data; a result that does not match is treated as a deny by the caller.
 *
 * Layer 1 is pure: no side effects, no clock, no I/O.
 */
import { z } from 'zod';

export const ROLES = ['agent', 'approver', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export const VERBS = ['get', 'list', 'create', 'update', 'delete'] as const;
export type Verb = (typeof VERBS)[number];

export const HINT_NAMES = ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint'] as const;
export type HintName = (typeof HINT_NAMES)[number];

export const ACTIONS = ['allow', 'deny', 'require_approval'] as const;
export type Action = (typeof ACTIONS)[number];

/** The MCP methods that Layer 1 decides on; everything else is decided in the Check handler. */
export const LAYER1_METHODS = ['tools/call', 'resources/read', 'resources/subscribe', 'prompts/get'] as const;
export type Layer1Method = (typeof LAYER1_METHODS)[number];

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

export interface Layer1Input {
  user: { id: string; role: Role };
  /** service → granted tool (or prompt / resource) names; `"*"` grants everything of that service. */
  grants: Record<string, string[]>;
  method: Layer1Method;
  service: string;
  /** Tool name, prompt name or original resource URI, without the service prefix. */
  name: string;
  /** `params.arguments` of a tools/call or prompts/get; `{}` otherwise. */
  arguments: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Data (the compiled policy). Produced only by src/policy/compile.ts.
// ---------------------------------------------------------------------------------------------

export type Hints = Partial<Record<HintName, boolean>>;

/**
 * A Layer 2 selector after compilation: every string is an anchored RE2 pattern made from the
 * file's `*` glob, so Rego needs one builtin (`regex.match`) to test it.
 * `labels`: every pattern must match at least one of the call's labels.
 */
export interface CompiledSelector {
  service?: string;
  tool?: string;
  verb?: string;
  labels?: string[];
  hints?: Hints;
}

export type ClassifierOp =
  'contains' | 'not_contains' | 'present' | 'absent' | 'greater_than' | 'less_than' | 'equals' | 'matches';

export interface CompiledClassifier {
  field: string;
  op: ClassifierOp;
  /** string for contains/not_contains/matches (anchored RE2), number for comparisons, string|number for equals. */
  value?: string | number;
  labels: string[];
}

export interface CompiledRule {
  name: string;
  /** Position in the file; ties in priority break by it. */
  index: number;
  priority: number;
  match: 'all' | 'any';
  when: Hints & { verb?: Verb; labels?: string[] };
  action: Action;
  approvers: string[];
  timeout: string | null;
}

export interface Layer1Data {
  revision: string;
  /** Services known to the gateway. A service absent here is denied. `tools: null` = every tool. */
  catalog: Record<string, { enabled: boolean; suspended: boolean; tools: string[] | null }>;
  tools: Record<string, Record<string, { verb: Verb | null; hints: Hints; labels: string[] }>>;
  classifiers: Record<string, Record<string, CompiledClassifier[]>>;
  extractors: Record<string, Record<string, { field: string; prefix: string }[]>>;
  /** Sorted by (priority, index): the first matching rule wins. */
  rules: CompiledRule[];
  layer2: {
    limits: { name: string; select: CompiledSelector }[];
    budgets: { name: string; select: CompiledSelector }[];
    preconditions: { name: string; select: CompiledSelector }[];
    flows: { name: string; after: CompiledSelector; then: CompiledSelector }[];
    duties: { name: string; first: CompiledSelector; then: CompiledSelector }[];
  };
}

// ---------------------------------------------------------------------------------------------
// Decision
// ---------------------------------------------------------------------------------------------

/** Machine-readable reason codes; stable, used in logs, audit rows and metrics. */
export const DECISION_CODES = [
  'rule', // a policy rule decided (see `rule`)
  'no_matching_rule', // policies exist, none matched: deny
  'no_policies', // the file has no rules: every tools/call is denied
  'unknown_service',
  'service_disabled',
  'service_suspended',
  'tool_disabled',
  'no_grant',
  'evaluation_error', // the policy could not produce a well-formed decision: deny (fail closed)
] as const;

export const layer1DecisionSchema = z
  .object({
    outcome: z.enum(ACTIONS),
    code: z.enum(DECISION_CODES),
    rule: z.string().nullable(),
    reasons: z.array(z.string()),
    classification: z
      .object({
        verb: z.enum(VERBS).nullable(),
        hints: z
          .object({
            readOnlyHint: z.boolean(),
            destructiveHint: z.boolean(),
            idempotentHint: z.boolean(),
            openWorldHint: z.boolean(),
          })
          .strict(),
        labels: z.array(z.string()),
      })
      .strict(),
    approval: z
      .object({ approvers: z.array(z.string()), timeout: z.string().nullable() })
      .strict()
      .nullable(),
    layer2: z
      .object({
        limits: z.array(z.string()),
        budgets: z.array(z.string()),
        preconditions: z.array(z.string()),
        flows: z.object({ sources: z.array(z.string()), sinks: z.array(z.string()) }).strict(),
        duties: z.object({ first: z.array(z.string()), then: z.array(z.string()) }).strict(),
      })
      .strict(),
  })
  .strict();

export type Layer1Decision = z.infer<typeof layer1DecisionSchema>;
