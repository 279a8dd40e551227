/**
 * A zod schema for `Layer1Data`, checked by the Layer 1 engine before a data document replaces the
 * current one. The Rego policy is written to fail closed on malformed data, but "closed" there
 * means rules and selectors that silently never match: a limit that never applies, a deny rule
 * skipped. Refusing the document at load keeps the previous revision in force instead.
 */
import { z } from 'zod';
import { ACTIONS, HINT_NAMES, VERBS, type HintName, type Layer1Data } from './layer1-types.js';

const hintsSchema = z
  .object(
    Object.fromEntries(HINT_NAMES.map((h) => [h, z.boolean().optional()])) as Record<
      HintName,
      z.ZodOptional<z.ZodBoolean>
    >,
  )
  .strict();

/** The compiler anchors every pattern (`^…$`); an unanchored one would match substrings. */
const anchored = z
  .string()
  .refine((p) => p.length >= 2 && p.startsWith('^') && p.endsWith('$'), 'must be an anchored pattern (^…$)');

const selectorSchema = z
  .object({
    service: anchored.optional(),
    tool: anchored.optional(),
    verb: anchored.optional(),
    labels: z.array(anchored).optional(),
    hints: hintsSchema.optional(),
  })
  .strict();

const classifierSchema = z.discriminatedUnion('op', [
  z
    .object({
      field: z.string(),
      op: z.enum(['contains', 'not_contains']),
      value: z.string(),
      labels: z.array(z.string()),
    })
    .strict(),
  z.object({ field: z.string(), op: z.literal('matches'), value: anchored, labels: z.array(z.string()) }).strict(),
  z
    .object({
      field: z.string(),
      op: z.enum(['present', 'absent']),
      value: z.undefined().optional(),
      labels: z.array(z.string()),
    })
    .strict(),
  z
    .object({
      field: z.string(),
      op: z.enum(['greater_than', 'less_than']),
      value: z.number(),
      labels: z.array(z.string()),
    })
    .strict(),
  z
    .object({
      field: z.string(),
      op: z.literal('equals'),
      value: z.union([z.string(), z.number()]),
      labels: z.array(z.string()),
    })
    .strict(),
]);

const ruleSchema = z
  .object({
    name: z.string(),
    index: z.number().int().nonnegative(),
    priority: z.number().int(),
    match: z.enum(['all', 'any']),
    when: hintsSchema.extend({ verb: z.enum(VERBS).optional(), labels: z.array(z.string()).optional() }).strict(),
    action: z.enum(ACTIONS),
    approvers: z.array(z.string()),
    timeout: z.string().nullable(),
  })
  .strict();

const named = <T extends z.ZodRawShape>(shape: T) => z.object({ name: z.string(), ...shape }).strict();

export const layer1DataSchema = z
  .object({
    revision: z.string().min(1),
    catalog: z.record(
      z.string(),
      z.object({ enabled: z.boolean(), suspended: z.boolean(), tools: z.array(z.string()).nullable() }).strict(),
    ),
    tools: z.record(
      z.string(),
      z.record(
        z.string(),
        z.object({ verb: z.enum(VERBS).nullable(), hints: hintsSchema, labels: z.array(z.string()) }).strict(),
      ),
    ),
    classifiers: z.record(z.string(), z.record(z.string(), z.array(classifierSchema))),
    extractors: z.record(
      z.string(),
      z.record(z.string(), z.array(z.object({ field: z.string(), prefix: z.string() }).strict())),
    ),
    rules: z.array(ruleSchema).superRefine((rules, ctx) => {
      for (let i = 1; i < rules.length; i++) {
        const a = rules[i - 1];
        const b = rules[i];
        if (a && b && (a.priority > b.priority || (a.priority === b.priority && a.index >= b.index))) {
          ctx.addIssue({
            code: 'custom',
            path: [i],
            message: 'rules must be sorted by (priority, index), indexes unique',
          });
        }
      }
    }),
    layer2: z
      .object({
        limits: z.array(named({ select: selectorSchema })),
        budgets: z.array(named({ select: selectorSchema })),
        preconditions: z.array(named({ select: selectorSchema })),
        flows: z.array(named({ after: selectorSchema, then: selectorSchema })),
        duties: z.array(named({ first: selectorSchema, then: selectorSchema })),
      })
      .strict(),
  })
  .strict();

// Compile-time: whatever the schema accepts is a `Layer1Data` (it is stricter: each classifier
// op has its value type).
type Parsed = z.infer<typeof layer1DataSchema>;
const _acceptsOnlyLayer1Data: Parsed extends Layer1Data ? true : false = true;
void _acceptsOnlyLayer1Data;

/** Problems with a candidate data document, as `path: message` lines; empty when it is usable. */
export function layer1DataProblems(data: unknown): string[] {
  const r = layer1DataSchema.safeParse(data);
  if (r.success) return [];
  return r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}
