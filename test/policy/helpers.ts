/** Shared by the policy-file tests: fixtures, and loaders that fail the test with readable errors. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { type CompiledPolicy, compilePolicyText } from '../../src/policy/compile.js';
import { loadPolicyText, type PolicyDiagnostic } from '../../src/policy/load.js';
import type { PolicyFile, PolicyFileInput } from '../../src/policy/schema.js';

export const FIXTURES_DIR = fileURLToPath(new URL('../fixtures/policies/', import.meta.url));

export function fixturePath(name: string): string {
  return `${FIXTURES_DIR}${name}.yaml`;
}

export function fixtureText(name: string): string {
  return readFileSync(fixturePath(name), 'utf8');
}

/** Lines of YAML, so a test can say which line an error must be on. */
export function yamlLines(...lines: string[]): string {
  return `${lines.join('\n')}\n`;
}

/** A policy object as YAML text; `version` is added unless given. */
export function policyYaml(policy: Partial<PolicyFileInput> | Record<string, unknown>): string {
  return stringify({ version: '1.0', ...policy });
}

function describeErrors(errors: readonly PolicyDiagnostic[]): string {
  return errors.map((e) => `${e.file}:${e.line}:${e.column} ${e.path}: ${e.message}`).join('\n');
}

export function mustLoad(text: string, file = 'mcp-security.yaml'): PolicyFile {
  const result = loadPolicyText(text, file);
  if (!result.ok) throw new Error(`expected the policy to load:\n${describeErrors(result.errors)}`);
  return result.policy;
}

export function loadErrors(text: string, file = 'mcp-security.yaml'): PolicyDiagnostic[] {
  const result = loadPolicyText(text, file);
  if (result.ok) throw new Error('expected the policy to be rejected');
  return result.errors;
}

export function mustCompile(text: string, file = 'mcp-security.yaml'): CompiledPolicy {
  const result = compilePolicyText(text, file);
  if (!result.ok) throw new Error(`expected the policy to compile:\n${describeErrors(result.errors)}`);
  return result.compiled;
}

export function compileFixture(name: string): CompiledPolicy {
  return mustCompile(fixtureText(name), fixturePath(name));
}
