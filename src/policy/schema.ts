/**
 * The schema of `mcp-security.yaml` v1.0 and of the community profiles it references. This file
 * is the only description of the format: the TypeScript types are inferred from it and the
 * published JSON Schema (`schema/mcp-security.schema.json`) is generated from it.
 *
 * Compatible with the upstream v1.0 keys; stricter where upstream failed open (DESIGN §6).
 */
import { z } from 'zod';
import { DURATION_PATTERN, parseDuration } from './duration.js';
import { HINT_NAMES, VERBS } from './layer1-types.js';
import { re2Error } from './regex.js';

/** Tool names on the wire are `<service><TOOL_SEPARATOR><tool>`, so no service name may contain it. */
export const TOOL_SEPARATOR = '__';

// ---------------------------------------------------------------------------------------------
// Grammars. Exported so tests, the CLI and error messages quote the same expressions.
// ---------------------------------------------------------------------------------------------

export const SERVICE_NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;
/**
 * MCP's tool-name alphabet. The first character may not be `_` so that no name can be
 * `__proto__`, which would not survive being used as an object key.
 */
export const TOOL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/**
 * `ns:value` with optional further `:segments`. The namespace is lowercase (as upstream), the
 * segments also allow uppercase, digits and `._@+-` so that value-extractor labels such as
 * `arg:amount:500`, `arg:amount:12.5`, `arg:currency:USD` or `arg:to:bob@acme.com` can be named
 * in rules. An extracted value with other characters (a space, a slash) still becomes a label at
 * decision time; it simply cannot be named by a rule.
 */
export const LABEL_PATTERN = /^[a-z][a-z0-9-]*(:[A-Za-z0-9._@+-]+)+$/;
/** What `label_prefix` may be: a label, or a bare namespace; the extracted value is appended. */
export const LABEL_PREFIX_PATTERN = /^[a-z][a-z0-9-]*(:[A-Za-z0-9._@+-]+)*$/;
/** Selector globs: the same alphabets plus `*`. */
export const SERVICE_GLOB_PATTERN = /^[a-z0-9*-]{1,31}$/;
export const TOOL_GLOB_PATTERN = /^[A-Za-z0-9_.*-]{1,128}$/;
export const LABEL_GLOB_PATTERN = /^[a-z*][a-z0-9*-]*(:[A-Za-z0-9._@+*-]+)+$/;
/** `@<org>/security-<service>`; the org is informative, profiles are looked up by service. */
export const PROFILE_REF_PATTERN = /^@[a-z0-9-]+\/security-([a-z][a-z0-9-]{0,30})$/;
/** Rule names travel in response headers and audit rows: printable ASCII, no edge spaces. */
export const RULE_NAME_PATTERN = /^[!-~](?:[ -~]{0,126}[!-~])?$/;
export const TENANT_KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
export const ENV_NAME_PATTERN = /^[A-Z_][A-Z0-9_]{0,127}$/;
export const FLAG_NAME_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;
export const HEADER_NAME_PATTERN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/;
/** `${VAR}` in header values names a secret of the same service. */
const SECRET_REFERENCE = /\$\{([^}]*)\}/g;

/** The JSON Schema is generated from these registrations; nothing else reads them. */
const definitions = z.registry<{ id?: string; title?: string; description?: string }>();

// ---------------------------------------------------------------------------------------------
// Leaves
// ---------------------------------------------------------------------------------------------

export const serviceNameSchema = z
  .string()
  .regex(SERVICE_NAME_PATTERN, {
    message: 'a service name is 1-31 characters of a-z, 0-9 and "-", starting with a letter',
    abort: true,
  })
  .refine((name) => !name.includes(TOOL_SEPARATOR), `a service name may not contain "${TOOL_SEPARATOR}"`)
  .register(definitions, { id: 'ServiceName' });

const toolNameSchema = z
  .string()
  .regex(TOOL_NAME_PATTERN, 'a tool name is 1-128 characters of A-Z, a-z, 0-9, "_", "-" and ".", not starting with "_"')
  .register(definitions, { id: 'ToolName' });

export const labelSchema = z
  .string()
  .regex(LABEL_PATTERN, 'a label is ns:value (lowercase namespace, then ":"-separated segments, e.g. scope:external)')
  .register(definitions, { id: 'Label' });

const labelGlobSchema = z
  .string()
  .regex(LABEL_GLOB_PATTERN, 'a label pattern is a label in which "*" matches any characters (e.g. data:*)');

const durationSchema = z
  .string()
  .regex(DURATION_PATTERN, {
    message: 'a duration is a whole number and one unit s, m, h or d (e.g. 30m)',
    abort: true,
  })
  .refine((text) => parseDuration(text) !== null, 'duration too long')
  .register(definitions, { id: 'Duration' });

const positiveDurationSchema = durationSchema.refine((text) => parseDuration(text) !== 0, 'must be longer than 0');

const ruleNameSchema = z
  .string()
  .regex(RULE_NAME_PATTERN, 'a name is 1-128 printable ASCII characters without leading or trailing spaces');

const userIdSchema = z.string().min(1).max(256);
const verbSchema = z.enum(VERBS);

const hintShape = {
  readOnlyHint: z.boolean().optional(),
  destructiveHint: z.boolean().optional(),
  idempotentHint: z.boolean().optional(),
  openWorldHint: z.boolean().optional(),
} satisfies Record<(typeof HINT_NAMES)[number], z.ZodType>;

const re2PatternSchema = z.string().superRefine((pattern, ctx) => {
  const error = re2Error(pattern);
  if (error !== null) ctx.addIssue({ code: 'custom', message: `not an RE2 regular expression: ${error}` });
});

// ---------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------

export const CLASSIFIER_CONDITIONS = [
  'contains',
  'not_contains',
  'present',
  'greater_than',
  'less_than',
  'equals_value',
  'matches',
] as const;
export type ClassifierCondition = (typeof CLASSIFIER_CONDITIONS)[number];

export const classifierRuleSchema = z
  .strictObject({
    field: z.string().min(1).max(128),
    set_labels: z.array(labelSchema).min(1, 'set_labels needs at least one label'),
    contains: z.string().min(1).optional(),
    not_contains: z.string().min(1).optional(),
    present: z.boolean().optional(),
    greater_than: z.number().optional(),
    less_than: z.number().optional(),
    equals_value: z.union([z.string(), z.number()]).optional(),
    /** RE2 syntax; always matched against the whole value. */
    matches: re2PatternSchema.optional(),
  })
  .superRefine((rule, ctx) => {
    const given = CLASSIFIER_CONDITIONS.filter((c) => rule[c] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message:
          given.length === 0
            ? `a classifier needs one condition: ${CLASSIFIER_CONDITIONS.join(', ')}`
            : `a classifier has exactly one condition, found ${given.join(' and ')} (write one entry per condition)`,
      });
    }
  })
  .register(definitions, { id: 'ClassifierRule' });

export const valueExtractorSchema = z
  .strictObject({
    field: z.string().min(1).max(128),
    label_prefix: z
      .string()
      .regex(LABEL_PREFIX_PATTERN, 'label_prefix is a namespace or a label (e.g. arg:amount); the value is appended'),
  })
  .register(definitions, { id: 'ValueExtractor' });

export const toolOverrideSchema = z
  .strictObject({ ...hintShape, verb: verbSchema.optional(), labels: z.array(labelSchema).optional() })
  .register(definitions, { id: 'ToolOverride' });

/** `service → tool → T`, the shape of `tool_overrides`, `classifiers` and `value_extractors`. */
function perTool<T extends z.ZodType>(value: T) {
  return z.record(serviceNameSchema, z.record(toolNameSchema, value));
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

export const POLICY_ACTIONS = ['allow', 'deny', 'require_approval', 'npl_evaluate'] as const;

export const whenSchema = z
  .strictObject({
    ...hintShape,
    verb: verbSchema.optional(),
    /** Every listed label must be on the call. */
    labels: z.array(labelSchema).min(1, 'list at least one label, or leave labels out').optional(),
  })
  .register(definitions, { id: 'When' });

export const policyRuleSchema = z
  .strictObject({
    name: ruleNameSchema,
    description: z.string().optional(),
    /** `{}` with `match: all` matches every call: the catch-all. */
    when: whenSchema,
    match: z.enum(['all', 'any']).default('all'),
    /** `npl_evaluate` is the upstream name of `require_approval`. */
    action: z.enum(POLICY_ACTIONS),
    /** User ids allowed to decide; empty or absent = admins only. */
    approvers: z.array(userIdSchema).optional(),
    timeout: positiveDurationSchema.optional(),
    /** Lower is stronger; ties break by position in the file. */
    priority: z.number().int().min(0).max(999),
  })
  .register(definitions, { id: 'PolicyRule' });

export const selectorSchema = z
  .strictObject({
    service: z
      .string()
      .regex(SERVICE_GLOB_PATTERN, 'a service pattern is a service name in which "*" matches any characters')
      .optional(),
    tool: z
      .string()
      .regex(TOOL_GLOB_PATTERN, 'a tool pattern is a tool name in which "*" matches any characters')
      .optional(),
    verb: verbSchema.optional(),
    /** Every pattern must match at least one of the call's labels. */
    labels: z.array(labelGlobSchema).min(1, 'list at least one label, or leave labels out').optional(),
    hints: z.strictObject(hintShape).optional(),
  })
  .register(definitions, { id: 'Selector' });

const nameSchema = { name: ruleNameSchema, description: z.string().optional() };

export const limitSchema = z.strictObject({
  ...nameSchema,
  select: selectorSchema,
  max: z.number().int().min(1),
  per: positiveDurationSchema,
  scope: z.enum(['user', 'session', 'global']).default('user'),
  action: z.enum(['deny', 'require_approval']).default('deny'),
});

export const flowSchema = z.strictObject({
  ...nameSchema,
  /** A call matching `after` taints the scope… */
  after: selectorSchema,
  /** …and a later call matching `then` in the same scope gets `action`. */
  then: selectorSchema,
  scope: z.enum(['user', 'session']).default('user'),
  /** Absent: the taint stays until an admin clears it. */
  ttl: positiveDurationSchema.optional(),
  action: z.enum(['deny', 'require_approval']).default('deny'),
});

export const budgetSchema = z.strictObject({
  ...nameSchema,
  select: selectorSchema,
  /** 0 blocks the selected calls outright. */
  max: z.number().int().min(0),
  scope: z.enum(['user', 'session', 'global']).default('user'),
});

export const preconditionSchema = z.strictObject({
  ...nameSchema,
  select: selectorSchema,
  /** Flag values are set at run time (CLI / admin API); a missing flag denies. */
  require: z
    .record(
      z.string().regex(FLAG_NAME_PATTERN, 'a flag name is lowercase letters, digits, "_", "." and "-"'),
      z.union([z.string(), z.number(), z.boolean()]),
    )
    .refine((flags) => Object.keys(flags).length > 0, 'require at least one flag'),
});

export const DUTY_KINDS = ['separation_of_duties', 'four_eyes', 'exclusive_actor'] as const;

export const dutySchema = z.strictObject({
  ...nameSchema,
  kind: z.enum(DUTY_KINDS),
  first: selectorSchema,
  then: selectorSchema,
  /** Argument fields whose values name the entity (e.g. payout_id). */
  entity: z.array(z.string().min(1).max(128)).min(1),
});

export const approvalSettingsSchema = z.strictObject({
  /** How long an approved call may wait for its retry. Default 15m. */
  consume_within: positiveDurationSchema.optional(),
  max_pending_per_user: z.number().int().min(1).max(10_000).optional(),
  /** How long the gateway holds a call for a quick decision before answering "pending". Default 0s. */
  wait: durationSchema.optional(),
  /** `timeout` of require_approval rules that set none. Default 24h. */
  timeout: positiveDurationSchema.optional(),
});

// ---------------------------------------------------------------------------------------------
// Services (the catalog)
// ---------------------------------------------------------------------------------------------

const envNameSchema = z.string().regex(ENV_NAME_PATTERN, 'an environment variable name is A-Z, 0-9 and "_"');

const serviceCommon = {
  description: z.string().optional(),
  /** Default true. A disabled service stays in the catalog and every call to it is denied. */
  enabled: z.boolean().default(true),
  /** Secret names injected into this service only; authoritative when present. */
  secrets: z.array(envNameSchema).optional(),
  /** Allow-list of tool names; absent = every tool the backend offers. */
  tools: z.array(toolNameSchema).optional(),
};

const stdioServiceSchema = z.strictObject({
  transport: z.literal('stdio'),
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  /** Non-secret environment; secrets are injected by name, never written here. */
  env: z
    .record(
      envNameSchema,
      z.string().refine((v) => !v.includes('${'), 'secrets go in `secrets`, not in env values'),
    )
    .optional(),
  /** `shared` (default): one child for all users. `per-user`: one child per user. */
  isolation: z.enum(['shared', 'per-user']).default('shared'),
  ...serviceCommon,
});

const remoteServiceShape = {
  url: z.url({ protocol: /^https?$/, error: 'url must be an http:// or https:// URL' }),
  /** `${VAR}` in a value is replaced by this service's secret VAR. */
  headers: z.record(z.string().regex(HEADER_NAME_PATTERN, 'not an HTTP header name'), z.string()).optional(),
  ...serviceCommon,
};

export const serviceSchema = z
  .discriminatedUnion('transport', [
    stdioServiceSchema,
    z.strictObject({ transport: z.literal('http'), ...remoteServiceShape }),
    z.strictObject({ transport: z.literal('sse'), ...remoteServiceShape }),
  ])
  .superRefine((service, ctx) => {
    if (service.transport === 'stdio' || service.headers === undefined) return;
    for (const [header, value] of Object.entries(service.headers)) {
      for (const [, name = ''] of value.matchAll(SECRET_REFERENCE)) {
        if (!ENV_NAME_PATTERN.test(name)) {
          ctx.addIssue({ code: 'custom', path: ['headers', header], message: `\${${name}} is not a secret name` });
        } else if (service.secrets !== undefined && !service.secrets.includes(name)) {
          ctx.addIssue({
            code: 'custom',
            path: ['headers', header],
            message: `\${${name}} is not in this service's secrets list`,
          });
        }
      }
    }
  })
  .register(definitions, { id: 'Service' });

// ---------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------

/** Names identify rules in Layer 1 decisions, Layer 2 lookups, headers and audit rows. */
function uniquelyNamed<T extends z.ZodType<{ name: string }>>(item: T, list: string) {
  return z
    .array(item)
    .superRefine((items, ctx) => {
      const seen = new Map<string, number>();
      items.forEach((entry, i) => {
        // Refinements also run over entries that failed their own checks.
        const name: unknown = (entry as { name?: unknown } | null)?.name;
        if (typeof name !== 'string') return;
        const first = seen.get(name);
        if (first === undefined) seen.set(name, i);
        else
          ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `"${name}" is already ${list}[${first}].name` });
      });
    })
    .default([]);
}

export const policyFileSchema = z
  .strictObject({
    version: z.literal('1.0', { error: 'version must be the string "1.0" (quote it in YAML)' }),
    /** `{key}` in classifier values is replaced by the tenant's value. */
    tenant: z
      .record(
        z.string().regex(TENANT_KEY_PATTERN, 'a tenant key is a letter, then letters, digits and "_"'),
        z.string(),
      )
      .default({}),
    profiles: z
      .array(z.string().regex(PROFILE_REF_PATTERN, 'a profile is named @<org>/security-<service>'))
      .default([]),
    services: z.record(serviceNameSchema, serviceSchema).default({}),
    tool_overrides: perTool(toolOverrideSchema).default({}),
    classifiers: perTool(z.array(classifierRuleSchema)).default({}),
    value_extractors: perTool(z.array(valueExtractorSchema)).default({}),
    policies: uniquelyNamed(policyRuleSchema, 'policies'),
    limits: uniquelyNamed(limitSchema, 'limits'),
    flows: uniquelyNamed(flowSchema, 'flows'),
    budgets: uniquelyNamed(budgetSchema, 'budgets'),
    preconditions: uniquelyNamed(preconditionSchema, 'preconditions'),
    duties: uniquelyNamed(dutySchema, 'duties'),
    approval: approvalSettingsSchema.optional(),
  })
  .superRefine((policy, ctx) => {
    // Wire names longer than 64 characters break the function-name limits of LLM APIs (DESIGN §5).
    for (const [service, config] of Object.entries(policy.services ?? {})) {
      config?.tools?.forEach((tool, i) => {
        const wire = `${service}${TOOL_SEPARATOR}${tool}`;
        if (typeof tool === 'string' && wire.length > 64) {
          ctx.addIssue({
            code: 'custom',
            path: ['services', service, 'tools', i],
            message: `the wire name ${wire} is longer than 64 characters`,
          });
        }
      });
    }
    // A service without its own `secrets:` list may still not name a secret another service
    // declares: `${VAR}` only ever resolves the service's own secrets (DESIGN §6, §8), so such a
    // template is a mistake or an attempt to reach a credential across services.
    const declaredBy = new Map<string, string[]>();
    for (const [service, config] of Object.entries(policy.services ?? {})) {
      for (const name of config?.secrets ?? []) declaredBy.set(name, [...(declaredBy.get(name) ?? []), service]);
    }
    for (const [service, config] of Object.entries(policy.services ?? {})) {
      if (!config || config.transport === 'stdio' || config.secrets !== undefined || !config.headers) continue;
      for (const [header, value] of Object.entries(config.headers)) {
        for (const [, name = ''] of value.matchAll(SECRET_REFERENCE)) {
          const owners = declaredBy.get(name);
          if (owners && !owners.includes(service)) {
            ctx.addIssue({
              code: 'custom',
              path: ['services', service, 'headers', header],
              message: `\${${name}} is a secret of ${owners.join(', ')}, not of ${service}`,
            });
          }
        }
      }
    }
  })
  .register(definitions, { title: 'mcp-security.yaml', description: 'mcpgw security policy, format version 1.0' });

// ---------------------------------------------------------------------------------------------
// Profiles (`profiles/<service>.yaml`)
// ---------------------------------------------------------------------------------------------

export const profileToolSchema = z.strictObject({
  description: z.string().optional(),
  ...hintShape,
  verb: verbSchema.optional(),
  labels: z.array(labelSchema).optional(),
  classify: z.array(classifierRuleSchema).optional(),
});

export const profileFileSchema = z.strictObject({
  service: serviceNameSchema,
  description: z.string().optional(),
  tools: z.record(toolNameSchema, profileToolSchema),
});

// ---------------------------------------------------------------------------------------------
// Types: inferred, never written twice
// ---------------------------------------------------------------------------------------------

/** A validated policy file, defaults applied. */
export type PolicyFile = z.output<typeof policyFileSchema>;
/** What an author may write (defaults optional). */
export type PolicyFileInput = z.input<typeof policyFileSchema>;
export type PolicyRule = z.output<typeof policyRuleSchema>;
export type When = z.output<typeof whenSchema>;
export type ClassifierRule = z.output<typeof classifierRuleSchema>;
export type ValueExtractor = z.output<typeof valueExtractorSchema>;
export type ToolOverride = z.output<typeof toolOverrideSchema>;
export type Selector = z.output<typeof selectorSchema>;
export type ServiceConfig = z.output<typeof serviceSchema>;
export type LimitConfig = z.output<typeof limitSchema>;
export type FlowConfig = z.output<typeof flowSchema>;
export type BudgetConfig = z.output<typeof budgetSchema>;
export type PreconditionConfig = z.output<typeof preconditionSchema>;
export type DutyConfig = z.output<typeof dutySchema>;
export type ApprovalSettingsConfig = z.output<typeof approvalSettingsSchema>;
export type ProfileFile = z.output<typeof profileFileSchema>;
export type ProfileTool = z.output<typeof profileToolSchema>;

/**
 * The JSON Schema of `mcp-security.yaml` (draft 2020-12), for editors and CI. Checks zod runs in
 * code (exactly one classifier condition aside, which is expressed as `oneOf`) are not in it:
 * RE2 compilation, unique names, secret references.
 */
export function policyJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(policyFileSchema, {
    target: 'draft-2020-12',
    io: 'input',
    metadata: definitions,
    unrepresentable: 'throw',
    override: ({ zodSchema, jsonSchema }) => {
      if (zodSchema === classifierRuleSchema) {
        jsonSchema.oneOf = CLASSIFIER_CONDITIONS.map((c) => ({ required: [c] }));
      }
    },
  });
}
