/**
 * Merging and per-user filtering, against the real Layer 1 policy (Wasm) compiled from YAML.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_NAMING,
  mergeCapabilities,
  mergeInstructions,
  mergePrompts,
  mergeResources,
  mergeTemplates,
  mergeTools,
  toolVisible,
  type GatewayPolicy,
  type MergeContext,
  type Viewer,
} from '../../src/aggregator/index.js';
import { testPolicy } from '../gateway/helpers.js';

const POLICY = `version: "1.0"
services:
  fx: {transport: stdio, command: node, tools: [echo, add, wipe, dump, ask, approve_me]}
  web: {transport: http, url: "http://127.0.0.1:1/mcp"}
  off: {transport: http, url: "http://127.0.0.1:1/mcp", enabled: false}
tool_overrides:
  fx:
    wipe: {destructiveHint: true}
    dump: {labels: [data:env]}
    approve_me: {labels: [risk:high]}
classifiers:
  fx:
    add: [{field: a, greater_than: 100, set_labels: [risk:big]}]
    ask: [{field: q, contains: wipe, set_labels: [data:env]}]
policies:
  - {name: no big sums, when: {labels: [risk:big]}, action: deny, priority: 1}
  - {name: no destruction, when: {destructiveHint: true}, action: deny, priority: 2}
  - {name: no env, when: {labels: [data:env]}, action: deny, priority: 3}
  - {name: ask first, when: {labels: [risk:high]}, action: require_approval, priority: 4}
  - {name: allow rest, when: {}, action: allow, priority: 100}
`;

const tool = (name: string) => ({ name, inputSchema: { type: 'object' } });

let policy: GatewayPolicy;
beforeAll(async () => {
  policy = (await testPolicy(POLICY)).get();
});

function ctx(viewer: Viewer): MergeContext {
  return {
    naming: DEFAULT_NAMING,
    engine: policy.engine,
    data: policy.data,
    viewer,
    allowedTools: (s) => policy.services[s]?.tools,
  };
}

const alice: Viewer = { id: 'alice', role: 'agent', grants: { fx: ['*'], web: ['*'], off: ['*'] } };

describe('tools/list per user', () => {
  it('hides only what Layer 1 denies for every argument', () => {
    const lists = [
      { service: 'fx', items: ['echo', 'add', 'wipe', 'dump', 'ask', 'approve_me', 'unlisted'].map(tool) },
      { service: 'web', items: [tool('echo')] },
    ];
    const names = mergeTools(lists, ctx(alice)).items.map((t) => t['name']);
    // add: denied only when a > 100 (a classifier reads it); ask: denied only for some q; approve_me:
    // needs approval, which is not a deny. wipe and dump are denied whatever the arguments; unlisted
    // is outside the service's tools allow-list.
    expect(names).toEqual(['fx__echo', 'fx__add', 'fx__ask', 'fx__approve_me', 'web__echo']);
  });

  it('grants narrow the view per user', () => {
    const lists = [
      { service: 'fx', items: ['echo', 'add'].map(tool) },
      { service: 'web', items: [tool('echo')] },
    ];
    const bob: Viewer = { id: 'bob', role: 'agent', grants: { fx: ['echo'] } };
    expect(mergeTools(lists, ctx(bob)).items.map((t) => t['name'])).toEqual(['fx__echo']);
    const carol: Viewer = { id: 'carol', role: 'agent', grants: {} };
    expect(mergeTools(lists, ctx(carol)).items).toEqual([]);
  });

  it('a disabled service shows nothing', () => {
    expect(toolVisible(policy.engine, policy.data, alice, 'off', 'echo')).toBe(false);
  });

  it('keeps the tool object and renames it; refuses bad names whoever asks', () => {
    const item = {
      name: 'echo',
      description: 'd',
      inputSchema: { type: 'object' },
      annotations: { readOnlyHint: true },
    };
    const long = tool('x'.repeat(62));
    const r = mergeTools([{ service: 'web', items: [item, long, { description: 'nameless' }] }], ctx(alice));
    expect(r.items).toEqual([{ ...item, name: 'web__echo' }]);
    expect(r.refused.map((x) => x.reason).sort()).toEqual(['invalid_name', 'too_long']);
  });
});

describe('prompts, resources and templates', () => {
  it('prompts are prefixed and filtered by grants', () => {
    const bob: Viewer = { id: 'bob', role: 'agent', grants: { web: ['greet'] } };
    const r = mergePrompts([{ service: 'web', items: [{ name: 'greet' }, { name: 'other' }] }], ctx(bob));
    expect(r.items).toEqual([{ name: 'web__greet' }]);
  });

  it('resource URIs are rewritten; a URI the user may not read is hidden', () => {
    const bob: Viewer = { id: 'bob', role: 'agent', grants: { web: ['a://one'] } };
    const r = mergeResources(
      [
        {
          service: 'web',
          items: [
            { uri: 'a://one', name: 'one' },
            { uri: 'a://two', name: 'two' },
            { uri: '', name: 'x' },
          ],
        },
      ],
      ctx(bob),
    );
    expect(r.items).toEqual([{ uri: 'mcpgw://web/a%3A%2F%2Fone', name: 'one' }]);
    expect(r.refused).toHaveLength(1);
  });

  it('templates are rewritten, refused when unpublishable, and hidden without any grant', () => {
    const items = [
      { uriTemplate: 'a://items/{id}', name: 'item' },
      { uriTemplate: 'a://q{?x}', name: 'q' },
    ];
    const r = mergeTemplates([{ service: 'web', items }], ctx(alice));
    expect(r.items).toEqual([{ uriTemplate: 'mcpgw://web/a%3A%2F%2Fitems%2F{id}', name: 'item' }]);
    expect(r.refused).toHaveLength(1);
    const none: Viewer = { id: 'n', role: 'agent', grants: { fx: ['*'] } };
    expect(mergeTemplates([{ service: 'web', items }], ctx(none)).items).toEqual([]);
  });
});

describe('capabilities and instructions', () => {
  it('merges what the backends declare; tools and list_changed always', () => {
    expect(mergeCapabilities([])).toEqual({ tools: { listChanged: true } });
    expect(
      mergeCapabilities([
        { tools: {}, resources: {} },
        { prompts: {}, logging: {}, resources: { subscribe: true }, completions: {} },
        undefined,
      ]),
    ).toEqual({
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    });
  });

  it('labels each backend instructions with its service', () => {
    expect(
      mergeInstructions([
        { service: 'a', text: 'Use me.' },
        { service: 'b', text: undefined },
        { service: 'c', text: ' ' },
      ]),
    ).toBe('## a\nUse me.');
    expect(mergeInstructions([])).toBeUndefined();
  });
});
