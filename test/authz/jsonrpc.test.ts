import { describe, expect, it } from 'vitest';
import {
  JSONRPC_INVALID_PARAMS,
  JSONRPC_INVALID_REQUEST,
  JSONRPC_PARSE_ERROR,
  classifyJsonRpc,
  formatResourceUri,
  getPromptGet,
  getResourceTarget,
  getToolCall,
  parseJsonRpc,
  parseResourceUri,
  splitToolName,
  type JsonRpcClassification,
  type JsonRpcInvalidCode,
  type JsonRpcMessage,
} from '../../src/authz/jsonrpc.js';

/** Classifies what our parser makes of `text`, the path every real body takes. */
function classify(text: string): JsonRpcClassification {
  return parseJsonRpc(new TextEncoder().encode(text));
}

function message(text: string): JsonRpcMessage {
  const c = classify(text);
  if (c.kind === 'invalid') throw new Error(`expected a valid message, got ${c.code}: ${c.message}`);
  return c;
}

describe('classifyJsonRpc: valid messages', () => {
  it('initialize request', () => {
    const m = message(
      '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}',
    );
    expect(m).toMatchObject({ kind: 'request', id: 0, method: 'initialize', target: undefined });
    expect(m.kind === 'request' && m.params?.['protocolVersion']).toBe('2025-06-18');
  });

  it('request without params, string id, negative id', () => {
    expect(message('{"jsonrpc":"2.0","id":"a-1","method":"tools/list"}')).toStrictEqual({
      kind: 'request',
      id: 'a-1',
      method: 'tools/list',
      params: undefined,
      target: undefined,
    });
    expect(message('{"id":"","method":"ping","jsonrpc":"2.0"}')).toMatchObject({ kind: 'request', id: '' });
    expect(message('{"jsonrpc":"2.0","id":-5,"method":"ping"}')).toMatchObject({ id: -5 });
    // 1.0 is the integer 1 once parsed; JSON has no separate integer type.
    expect(message('{"jsonrpc":"2.0","id":1.0,"method":"ping"}')).toMatchObject({ id: 1 });
  });

  it('tools/call with nested arguments and _meta', () => {
    const m = message(
      '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"gmail__send_email","arguments":{"to":["a@b.c"],"opts":{"html":false,"n":[1,2.5]},"subject":"Grüße 😀"},"_meta":{"progressToken":"p"}}}',
    );
    expect(getToolCall(m)).toStrictEqual({
      method: 'tools/call',
      name: 'gmail__send_email',
      arguments: { to: ['a@b.c'], opts: { html: false, n: [1, 2.5] }, subject: 'Grüße 😀' },
    });
    expect(getResourceTarget(m)).toBeUndefined();
    expect(getPromptGet(m)).toBeUndefined();
  });

  it('tools/call arguments default to {}', () => {
    const m = message('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s__t"}}');
    expect(getToolCall(m)?.arguments).toStrictEqual({});
  });

  it.each(['resources/read', 'resources/subscribe', 'resources/unsubscribe'])('%s', (method) => {
    const m = message(`{"jsonrpc":"2.0","id":2,"method":"${method}","params":{"uri":"mcpgw://files/x"}}`);
    expect(getResourceTarget(m)).toStrictEqual({ method, uri: 'mcpgw://files/x' });
    expect(getToolCall(m)).toBeUndefined();
  });

  it('prompts/get with and without arguments', () => {
    const m = message(
      '{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"git__commit","arguments":{"style":"short"}}}',
    );
    expect(getPromptGet(m)).toStrictEqual({
      method: 'prompts/get',
      name: 'git__commit',
      arguments: { style: 'short' },
    });
    const bare = message('{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"git__commit"}}');
    expect(getPromptGet(bare)?.arguments).toStrictEqual({});
  });

  it('notifications', () => {
    expect(message('{"jsonrpc":"2.0","method":"notifications/initialized"}')).toStrictEqual({
      kind: 'notification',
      method: 'notifications/initialized',
      params: undefined,
    });
    expect(
      message('{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4,"reason":"user"}}'),
    ).toMatchObject({ kind: 'notification', params: { requestId: 4, reason: 'user' } });
  });

  it('client responses: result and error', () => {
    expect(message('{"jsonrpc":"2.0","id":"s-1","result":{"roots":[]}}')).toStrictEqual({
      kind: 'response',
      id: 's-1',
      result: { roots: [] },
    });
    expect(message('{"jsonrpc":"2.0","id":9,"result":null}')).toStrictEqual({ kind: 'response', id: 9, result: null });
    expect(message('{"jsonrpc":"2.0","id":9,"error":{"code":-1,"message":"user declined"}}')).toStrictEqual({
      kind: 'response',
      id: 9,
      error: { code: -1, message: 'user declined' },
    });
    expect(message('{"jsonrpc":"2.0","id":9,"error":{"code":-32603,"message":"x","data":{"why":[1]}}}')).toMatchObject({
      error: { data: { why: [1] } },
    });
  });

  it('works on values from elsewhere too', () => {
    expect(classifyJsonRpc({ jsonrpc: '2.0', id: 1, method: 'ping' })).toMatchObject({ kind: 'request' });
  });
});

describe('classifyJsonRpc: invalid messages', () => {
  it.each<[string, string, JsonRpcInvalidCode, number, string | number | null]>([
    ['batch', '[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 'batch_not_supported', JSONRPC_INVALID_REQUEST, null],
    ['empty batch', '[]', 'batch_not_supported', JSONRPC_INVALID_REQUEST, null],
    ['string body', '"ping"', 'not_an_object', JSONRPC_INVALID_REQUEST, null],
    ['null body', 'null', 'not_an_object', JSONRPC_INVALID_REQUEST, null],
    ['no version', '{"id":1,"method":"ping"}', 'invalid_version', JSONRPC_INVALID_REQUEST, 1],
    ['version 1.0', '{"jsonrpc":"1.0","id":1,"method":"ping"}', 'invalid_version', JSONRPC_INVALID_REQUEST, 1],
    ['numeric version', '{"jsonrpc":2.0,"id":1,"method":"ping"}', 'invalid_version', JSONRPC_INVALID_REQUEST, 1],
    ['null id', '{"jsonrpc":"2.0","id":null,"method":"ping"}', 'invalid_id', JSONRPC_INVALID_REQUEST, null],
    ['float id', '{"jsonrpc":"2.0","id":1.5,"method":"ping"}', 'invalid_id', JSONRPC_INVALID_REQUEST, null],
    ['boolean id', '{"jsonrpc":"2.0","id":true,"method":"ping"}', 'invalid_id', JSONRPC_INVALID_REQUEST, null],
    ['object id', '{"jsonrpc":"2.0","id":{},"method":"ping"}', 'invalid_id', JSONRPC_INVALID_REQUEST, null],
    ['array id', '{"jsonrpc":"2.0","id":[1],"method":"ping"}', 'invalid_id', JSONRPC_INVALID_REQUEST, null],
    ['numeric method', '{"jsonrpc":"2.0","id":1,"method":5}', 'invalid_method', JSONRPC_INVALID_REQUEST, 1],
    ['empty method', '{"jsonrpc":"2.0","id":1,"method":""}', 'invalid_method', JSONRPC_INVALID_REQUEST, 1],
    ['neither method nor id', '{"jsonrpc":"2.0"}', 'invalid_method', JSONRPC_INVALID_REQUEST, null],
    [
      'extra member',
      '{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}',
      'unexpected_member',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    [
      'case variant of method at top level',
      '{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}',
      'unexpected_member',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    [
      'array params',
      '{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}',
      'params_not_object',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    [
      'null params',
      '{"jsonrpc":"2.0","id":1,"method":"ping","params":null}',
      'params_not_object',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    [
      'tools/call as a notification',
      '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a__b"}}',
      'notification_method',
      JSONRPC_INVALID_REQUEST,
      null,
    ],
    [
      'ping as a notification',
      '{"jsonrpc":"2.0","method":"ping"}',
      'notification_method',
      JSONRPC_INVALID_REQUEST,
      null,
    ],
    [
      'response with both',
      '{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}',
      'invalid_response',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    ['response with neither', '{"jsonrpc":"2.0","id":1}', 'invalid_response', JSONRPC_INVALID_REQUEST, 1],
    ['response without id', '{"jsonrpc":"2.0","result":{}}', 'invalid_method', JSONRPC_INVALID_REQUEST, null],
    ['response with null id', '{"jsonrpc":"2.0","id":null,"result":{}}', 'invalid_id', JSONRPC_INVALID_REQUEST, null],
    ['error not an object', '{"jsonrpc":"2.0","id":1,"error":"bad"}', 'invalid_response', JSONRPC_INVALID_REQUEST, 1],
    [
      'error code not integer',
      '{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}',
      'invalid_response',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    [
      'error without message',
      '{"jsonrpc":"2.0","id":1,"error":{"code":1}}',
      'invalid_response',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    [
      'error extra member',
      '{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","x":1}}',
      'invalid_response',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    [
      'response extra member',
      '{"jsonrpc":"2.0","id":1,"result":1,"method2":1}',
      'unexpected_member',
      JSONRPC_INVALID_REQUEST,
      1,
    ],
    [
      'tools/call without params',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call"}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      1,
    ],
    [
      'tools/call empty name',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      1,
    ],
    [
      'tools/call numeric name',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      1,
    ],
    [
      'tools/call array arguments',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":[]}}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      1,
    ],
    [
      'tools/call null arguments',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":null}}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      1,
    ],
    [
      'resources/read without uri',
      '{"jsonrpc":"2.0","id":"r","method":"resources/read","params":{}}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      'r',
    ],
    [
      'resources/subscribe numeric uri',
      '{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":1}}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      1,
    ],
    [
      'prompts/get without name',
      '{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      1,
    ],
    [
      'prompts/get non-string argument',
      '{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"a__b","arguments":{"n":1}}}',
      'invalid_params',
      JSONRPC_INVALID_PARAMS,
      1,
    ],
    ['parse error', '{"jsonrpc":"2.0",', 'syntax', JSONRPC_PARSE_ERROR, null],
    ['duplicate id', '{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}', 'duplicate_key', JSONRPC_PARSE_ERROR, null],
    [
      'case variant argument',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{"to":"x","TO":"y"}}}',
      'case_variant_key',
      JSONRPC_PARSE_ERROR,
      null,
    ],
  ])('%s', (_name, text, code, jsonRpcCode, id) => {
    const c = classify(text);
    expect(c).toMatchObject({ kind: 'invalid', code, jsonRpcCode, id });
    expect(c.kind === 'invalid' && c.message.length).toBeGreaterThan(0);
  });

  it('treats a __proto__ member as the unexpected member it is', () => {
    expect(classify('{"jsonrpc":"2.0","id":1,"method":"ping","__proto__":{"method":"tools/call"}}')).toMatchObject({
      code: 'unexpected_member',
      message: 'unexpected member "__proto__"',
    });
    expect(
      classify('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"__proto__":{"name":"a__b"}}}'),
    ).toMatchObject({ code: 'invalid_params' });
  });
});

describe('splitToolName', () => {
  it.each<[string, string | undefined, { service: string; tool: string } | null]>([
    ['github__create_issue', undefined, { service: 'github', tool: 'create_issue' }],
    ['a__b__c', undefined, { service: 'a', tool: 'b__c' }],
    ['my-svc2__x', undefined, { service: 'my-svc2', tool: 'x' }],
    [`${'a'.repeat(31)}__t`, undefined, { service: 'a'.repeat(31), tool: 't' }],
    ['svc.tool', '.', { service: 'svc', tool: 'tool' }],
    [`${'a'.repeat(32)}__t`, undefined, null],
    ['Github__x', undefined, null],
    ['1svc__x', undefined, null],
    ['-svc__x', undefined, null],
    ['svc__', undefined, null],
    ['__tool', undefined, null],
    ['svc_tool', undefined, null],
    ['svc tool', undefined, null],
    ['sv c__tool', undefined, null],
    ['svc__tool', '', null],
  ])('%s (separator %s)', (name, separator, expected) => {
    expect(splitToolName(name, separator)).toStrictEqual(expected);
  });
});

describe('resource URIs', () => {
  it.each(['file:///tmp/a b.txt', 'https://x.example/p?q=1&r=é#frag', 'notes://😀/%41', "x-(a)!*'~._"])(
    'round-trips %s',
    (original) => {
      const uri = formatResourceUri('files', original);
      expect(uri.startsWith('mcpgw://files/')).toBe(true);
      expect(parseResourceUri(uri)).toStrictEqual({ service: 'files', original });
    },
  );

  it.each(['mcpgw://files/file%3A%2F%2F%2Fx', 'mcpgw://my-svc/a', 'mcpgw://files/%F0%9F%98%80'])(
    'accepts %s',
    (uri) => {
      expect(parseResourceUri(uri)).not.toBeNull();
    },
  );

  it.each([
    ['other scheme', 'file:///x'],
    ['upper-case scheme', 'MCPGW://files/x'],
    ['no service', 'mcpgw:///x'],
    ['bad service', 'mcpgw://Files/x'],
    ['no slash after service', 'mcpgw://files'],
    ['empty original', 'mcpgw://files/'],
    ['truncated escape', 'mcpgw://files/a%4'],
    ['bare percent', 'mcpgw://files/a%'],
    ['non-hex escape', 'mcpgw://files/%G1'],
    ['lower-case hex', 'mcpgw://files/file%3a'],
    ['needless escape', 'mcpgw://files/%41'],
    ['raw slash', 'mcpgw://files/a/b'],
    ['raw space', 'mcpgw://files/a b'],
    ['raw colon', 'mcpgw://files/file:x'],
    ['invalid UTF-8', 'mcpgw://files/%C3%28'],
    ['encoded surrogate', 'mcpgw://files/%ED%A0%80'],
    ['overlong', 'mcpgw://files/%C0%AF'],
  ])('rejects %s', (_name, uri) => {
    expect(parseResourceUri(uri)).toBeNull();
  });

  it('formatResourceUri refuses gateway-side mistakes', () => {
    expect(() => formatResourceUri('Bad', 'x')).toThrow(TypeError);
    expect(() => formatResourceUri('ok', '')).toThrow(TypeError);
  });
});
