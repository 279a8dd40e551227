import { UriTemplate } from '@modelcontextprotocol/sdk/shared/uriTemplate.js';
import { describe, expect, it } from 'vitest';
import {
  backendUri,
  DEFAULT_NAMING,
  forwardParams,
  gatewayUri,
  gatewayUriTemplate,
  NameTable,
  namingProblems,
  publishedUri,
  publishedUriTemplate,
  resolveUri,
  rewritePromptResult,
  rewriteReadResult,
  rewriteToolResult,
  splitWireName,
  wireName,
  type JsonObject,
} from '../../src/aggregator/index.js';
import { parseResourceUri, splitToolName } from '../../src/authz/jsonrpc.js';

describe('tool and prompt names', () => {
  it('publishes <service>__<tool>, which authz splits back into the same pair', () => {
    const r = wireName('gmail', 'send_email', 'tool', DEFAULT_NAMING);
    expect(r).toEqual({ ok: true, wire: 'gmail__send_email' });
    expect(splitToolName('gmail__send_email')).toEqual({ service: 'gmail', tool: 'send_email' });
    expect(splitWireName('gmail__send_email', DEFAULT_NAMING, undefined)).toEqual({
      service: 'gmail',
      name: 'send_email',
    });
  });

  it('keeps a separator inside the tool name unambiguous (split at the first)', () => {
    expect(wireName('a', 'b__c', 'tool', DEFAULT_NAMING)).toEqual({ ok: true, wire: 'a__b__c' });
    expect(splitWireName('a__b__c', DEFAULT_NAMING, undefined)).toEqual({ service: 'a', name: 'b__c' });
  });

  it('refuses names over 64 characters, invalid names, and names that would not split back', () => {
    const long = wireName('svc', 'x'.repeat(60), 'tool', DEFAULT_NAMING);
    expect(long).toMatchObject({ ok: false, reason: 'too_long' });
    expect(wireName('svc', 'x'.repeat(59), 'tool', DEFAULT_NAMING)).toMatchObject({ ok: true });
    expect(wireName('svc', 'has space', 'tool', DEFAULT_NAMING)).toMatchObject({ ok: false, reason: 'invalid_name' });
    expect(wireName('svc', '_hidden', 'tool', DEFAULT_NAMING)).toMatchObject({ ok: false, reason: 'invalid_name' });
    expect(wireName('svc', 'a:b', 'tool', DEFAULT_NAMING)).toMatchObject({ ok: false, reason: 'invalid_name' });
    // With "-" as separator, service "my-svc" would split as "my" + "svc-tool".
    const dash = { separator: '-', prefix: true };
    expect(wireName('my-svc', 'tool', 'tool', dash)).toMatchObject({ ok: false, reason: 'ambiguous' });
    expect(wireName('mysvc', 'to-ol', 'tool', dash)).toEqual({ ok: true, wire: 'mysvc-to-ol' });
  });

  it('prompts are named like tools but need not fit the function-name alphabet', () => {
    expect(wireName('docs', 'Summarize page!', 'prompt', DEFAULT_NAMING)).toMatchObject({ ok: false });
    expect(wireName('docs', 'summarize:page', 'prompt', DEFAULT_NAMING)).toEqual({
      ok: true,
      wire: 'docs__summarize:page',
    });
  });

  it('refuses every holder of a colliding wire name, and keeps the rest', () => {
    const t = new NameTable<string>('tool', DEFAULT_NAMING);
    t.add('a', 'dup', 'first');
    t.add('a', 'dup', 'second');
    t.add('a', 'ok', 'third');
    t.add('b', 'dup', 'fourth');
    const r = t.result();
    expect(r.accepted.map((e) => e.wire)).toEqual(['a__ok', 'b__dup']);
    expect(r.refused.filter((x) => x.reason === 'collision')).toHaveLength(2);
  });

  it('the no-prefix mode publishes the backend names and needs exactly one service', () => {
    const solo = { separator: '__', prefix: false };
    expect(wireName('fx', 'echo', 'tool', solo)).toEqual({ ok: true, wire: 'echo' });
    expect(splitWireName('echo', solo, 'fx')).toEqual({ service: 'fx', name: 'echo' });
    expect(splitWireName('echo', solo, undefined)).toBeNull();
    expect(namingProblems(['fx'], solo)).toEqual([]);
    expect(namingProblems(['fx', 'gy'], solo)[0]).toMatch(/exactly one service/);
  });

  it('checks the separator and the service names against it', () => {
    expect(namingProblems(['a', 'b'], DEFAULT_NAMING)).toEqual([]);
    expect(namingProblems(['a'], { separator: '.', prefix: true })[0]).toMatch(/separator/);
    expect(namingProblems(['a'], { separator: '', prefix: true })[0]).toMatch(/separator/);
    expect(namingProblems(['my-svc'], { separator: '-', prefix: true })[0]).toMatch(/contains the separator/);
  });
});

describe('resource URIs', () => {
  it('round-trips through authz parseResourceUri', () => {
    for (const uri of ['file:///etc/hosts', 'fixture://items/7?x=1#y', 'https://a.b/c d/é', 'mcpgw://other/x']) {
      const g = gatewayUri('svc', uri);
      expect(g).not.toBeNull();
      expect(parseResourceUri(g ?? '')).toEqual({ service: 'svc', original: uri });
      expect(backendUri(g ?? '')).toEqual({ service: 'svc', uri });
    }
    expect(gatewayUri('svc', '')).toBeNull();
    expect(gatewayUri('svc', 'x\ud800')).toBeNull();
    expect(backendUri('file:///etc/hosts')).toBeNull();
  });

  it('templates keep their expressions, and what an agent expands is the canonical URI authz accepts', () => {
    const g = gatewayUriTemplate('fx', 'fixture://items/{id}');
    expect(g).toBe('mcpgw://fx/fixture%3A%2F%2Fitems%2F{id}');
    for (const id of ['42', 'a b', 'x/y', 'é', "it's"]) {
      const expanded = new UriTemplate(g ?? '').expand({ id });
      const parsed = parseResourceUri(expanded);
      // Unreserved values come out exactly as the backend's own expansion would produce them.
      if (/^[A-Za-z0-9._~-]+$/.test(id)) {
        expect(parsed?.original).toBe(new UriTemplate('fixture://items/{id}').expand({ id }));
      }
      if (parsed === null) expect(encodeURIComponent(id)).not.toBe(id);
    }
  });

  it('maps reserved and fragment expansion to forms that decode to what they would have produced', () => {
    expect(gatewayUriTemplate('fs', 'file:///{+path}')).toBe('mcpgw://fs/file%3A%2F%2F%2F{path}');
    const expanded = new UriTemplate('mcpgw://fs/file%3A%2F%2F%2F{path}').expand({ path: 'etc/hosts' });
    expect(parseResourceUri(expanded)).toEqual({ service: 'fs', original: 'file:///etc/hosts' });
    expect(gatewayUriTemplate('x', 'a{#frag}')).toBe('mcpgw://x/a%23{frag}');
    expect(gatewayUriTemplate('x', 'a{.ext}')).toBe('mcpgw://x/a{.ext}');
  });

  it('refuses templates whose expansion would put raw delimiters in the URI', () => {
    for (const t of ['a{/p}', 'a{?q}', 'a{&q}', 'a{;p}', 'a{x,y}', 'a{list*}', 'a{x', 'a}b', '']) {
      expect(gatewayUriTemplate('x', t)).toBeNull();
    }
  });
});

describe('URIs inside results', () => {
  it('rewrites resource_link and embedded resource blocks of a tool result', () => {
    const result: JsonObject = {
      content: [
        { type: 'resource_link', uri: 'fixture://static/hello', name: 'hello' },
        { type: 'resource', resource: { uri: 'fixture://items/7', text: 'item 7' } },
        { type: 'text', text: 'plain' },
        { type: 'resource_link', uri: '', name: 'broken' },
      ],
      isError: false,
    };
    expect(rewriteToolResult('fx', result)).toEqual({
      content: [
        { type: 'resource_link', uri: 'mcpgw://fx/fixture%3A%2F%2Fstatic%2Fhello', name: 'hello' },
        { type: 'resource', resource: { uri: 'mcpgw://fx/fixture%3A%2F%2Fitems%2F7', text: 'item 7' } },
        { type: 'text', text: 'plain' },
      ],
      isError: false,
    });
  });

  it('rewrites read results and prompt messages', () => {
    expect(rewriteReadResult('fx', { contents: [{ uri: 'a://b', text: 't' }] })).toEqual({
      contents: [{ uri: 'mcpgw://fx/a%3A%2F%2Fb', text: 't' }],
    });
    expect(
      rewritePromptResult('fx', {
        messages: [{ role: 'user', content: { type: 'resource_link', uri: 'a://b', name: 'n' } }],
      }),
    ).toEqual({
      messages: [{ role: 'user', content: { type: 'resource_link', uri: 'mcpgw://fx/a%3A%2F%2Fb', name: 'n' } }],
    });
  });

  it('leaves every URI alone in no-prefix mode, even one the prefixed mode would drop', () => {
    const noPrefix = { ...DEFAULT_NAMING, prefix: false };
    const tool: JsonObject = {
      content: [
        { type: 'resource_link', uri: 'fixture://static/hello', name: 'hello' },
        { type: 'resource', resource: { uri: 'fixture://items/7', text: 'item 7' } },
        { type: 'resource_link', uri: '', name: 'empty' },
      ],
    };
    expect(rewriteToolResult('fx', tool, noPrefix)).toEqual(tool);
    const read: JsonObject = { contents: [{ uri: 'a://b', text: 't' }] };
    expect(rewriteReadResult('fx', read, noPrefix)).toEqual(read);
    const prompt: JsonObject = {
      messages: [{ role: 'user', content: { type: 'resource_link', uri: 'a://b', name: 'n' } }],
    };
    expect(rewritePromptResult('fx', prompt, noPrefix)).toEqual(prompt);
    expect(publishedUri('fx', 'a://b', noPrefix)).toBe('a://b');
    expect(publishedUriTemplate('fx', 'a://{x*}', noPrefix)).toBe('a://{x*}');
    expect(resolveUri('mcpgw://fx/a%3A%2F%2Fb', noPrefix, 'fx')).toEqual({
      service: 'fx',
      uri: 'mcpgw://fx/a%3A%2F%2Fb',
    });
    // Without exactly one service the mode names nothing.
    expect(resolveUri('a://b', noPrefix, undefined)).toBeNull();
    expect(resolveUri('mcpgw://fx/a%3A%2F%2Fb', DEFAULT_NAMING, undefined)).toEqual({ service: 'fx', uri: 'a://b' });
  });

  it('forwards params with the backend name and without the agent progress token', () => {
    expect(
      forwardParams(
        { name: 'fx__echo', arguments: { a: 1 }, _meta: { progressToken: 7, other: 'x' } },
        { name: 'echo' },
      ),
    ).toEqual({
      name: 'echo',
      arguments: { a: 1 },
      _meta: { other: 'x' },
    });
    expect(forwardParams({ name: 'x', _meta: { progressToken: 'p' } }, { name: 'y' })).toEqual({ name: 'y' });
  });
});
