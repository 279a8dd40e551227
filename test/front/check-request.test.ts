/**
 * The CheckRequest builder and the header pipeline in front of it, as plain functions: the shapes
 * asserted here are the ones recorded from Envoy 1.40 (see the differential suite).
 */
import { describe, expect, it } from 'vitest';
import { buildCheckRequest, type CheckInput } from '../../src/front/builtin/check-request.js';
import { addEdgeHeaders, readClientHeaders, sanitizeUtf8 } from '../../src/front/builtin/headers.js';
import { CheckRequest } from '../../src/gen/envoy/service/auth/v3/external_auth.js';

const base: CheckInput = {
  id: '3062987819391281274',
  time: new Date('2026-01-02T03:04:05.678Z'),
  method: 'POST',
  path: '/mcp?a=1',
  authority: 'example.com:8000',
  headers: ['content-type', 'application/json', 'x-dup', 'a', 'x-dup', 'b', 'x-request-id', 'rid'],
  body: { bytes: Buffer.from('{}'), size: 2, partial: false },
  source: { address: '127.0.0.1', port: 44912 },
  destination: { address: '127.0.0.1', port: 8000 },
};

describe('buildCheckRequest', () => {
  it('fills the attributes as Envoy does', () => {
    const req = buildCheckRequest(base);
    expect(CheckRequest.toJSON(req)).toEqual({
      attributes: {
        source: { address: { socketAddress: { address: '127.0.0.1', portValue: 44912 } } },
        destination: { address: { socketAddress: { address: '127.0.0.1', portValue: 8000 } } },
        request: {
          time: '2026-01-02T03:04:05.678Z',
          http: {
            id: '3062987819391281274',
            method: 'POST',
            headers: {
              ':authority': 'example.com:8000',
              ':path': '/mcp?a=1',
              ':method': 'POST',
              ':scheme': 'http',
              'content-type': 'application/json',
              'x-dup': 'a,b',
              'x-request-id': 'rid',
              'x-envoy-auth-partial-body': 'false',
            },
            path: '/mcp?a=1',
            host: 'example.com:8000',
            scheme: 'http',
            size: 2,
            protocol: 'HTTP/1.1',
            rawBody: Buffer.from('{}').toString('base64'),
          },
        },
        metadataContext: {},
        routeMetadataContext: {},
      },
    });
  });

  it('survives the wire unchanged', () => {
    const req = buildCheckRequest(base);
    expect(CheckRequest.decode(CheckRequest.encode(req).finish())).toEqual(CheckRequest.fromPartial(req));
  });

  it('marks a cut body "true", and sizes it by what was buffered', () => {
    const http = buildCheckRequest({
      ...base,
      body: { bytes: Buffer.alloc(10), size: 14, partial: true },
    }).attributes?.request?.http;
    expect(http?.headers['x-envoy-auth-partial-body']).toBe('true');
    expect(http?.size).toBe(14);
    expect(http?.rawBody.length).toBe(10);
  });

  it('without buffering: no marker (a client-sent one is dropped), size 0, no raw body', () => {
    const http = buildCheckRequest({
      ...base,
      headers: ['x-envoy-auth-partial-body', 'false'],
      body: null,
    }).attributes?.request?.http;
    expect(http?.headers).not.toHaveProperty('x-envoy-auth-partial-body');
    expect(http?.size).toBe(0);
    expect(http?.rawBody.length).toBe(0);
  });

  it('a header named __proto__ is an ordinary entry', () => {
    const http = buildCheckRequest({ ...base, headers: ['__proto__', 'x'] }).attributes?.request?.http;
    expect(Object.keys(http?.headers ?? {})).toContain('__proto__');
    expect(http?.headers['__proto__']).toBe('x');
  });

  it('decodes header bytes as UTF-8 with "!" per invalid byte', () => {
    const binary = Buffer.from([0x61, 0xff, 0xc3, 0xa9, 0x80, 0x62]).toString('latin1');
    const http = buildCheckRequest({ ...base, headers: ['x-bin', binary] }).attributes?.request?.http;
    expect(http?.headers['x-bin']).toBe('a!é!b');
  });
});

describe('sanitizeUtf8 (bytes observed on Envoy 1.40)', () => {
  const hex = (h: string) => Buffer.from(h, 'hex').toString('latin1');
  it.each([
    ['e282', '!!'],
    ['e28262', '!!b'],
    ['eda080', '!!!'],
    ['c0af', '!!'],
    ['f4908080', '!!!!'],
    ['f09f9880', '😀'],
    ['efbfbd', '\ufffd'],
    ['c3', '!'],
    ['e0a080', '\u0800'],
    ['e080af', '!!!'],
    ['f0808080', '!!!!'],
    ['ff', '!'],
    ['f5', '!'],
    ['f8888080', '!!!!'],
  ])('%s → %s', (input, expected) => {
    expect(sanitizeUtf8(hex(input))).toBe(expected);
  });
});

describe('readClientHeaders and addEdgeHeaders', () => {
  it('drops hop-by-hop and Envoy control headers, keeps the rest in order', () => {
    const c = readClientHeaders(
      [
        'Host',
        'a',
        'Host',
        'b',
        'X-Envoy-Retry-On',
        '5xx',
        'x-envoy-foo',
        '1',
        'Connection',
        'keep-alive, x-nominated',
        'x-nominated',
        '1',
        'TE',
        'gzip, trailers',
        'Expect',
        '100-continue',
        'Transfer-Encoding',
        'chunked',
        'X-Forwarded-Client-Cert',
        'c',
      ],
      'reject',
      100,
    );
    expect(c).toMatchObject({ reject: 0, authority: 'a,b', chunked: true, close: false, upgrade: false });
    expect(c.headers).toEqual(['x-envoy-foo', '1', 'te', 'trailers']);
  });

  it('refuses underscores, too many headers, and Connection tokens Envoy refuses', () => {
    expect(readClientHeaders(['x_a', '1'], 'reject', 100).reject).toBe(400);
    expect(readClientHeaders(['x_a', '1'], 'drop', 100).headers).toEqual([]);
    expect(readClientHeaders(new Array(202).fill('x'), 'reject', 100).reject).toBe(431);
    expect(readClientHeaders(['connection', 'x-forwarded-for'], 'reject', 100).reject).toBe(400);
    expect(readClientHeaders(['connection', 'a,b,c,d,e,f,g,h,i,j'], 'reject', 100).reject).toBe(400);
    expect(readClientHeaders(['connection', 'a,b,c,d,e,f,g,h,i'], 'reject', 100).reject).toBe(0);
  });

  it('sees upgrades Envoy refuses, but not h2c', () => {
    expect(readClientHeaders(['upgrade', 'websocket', 'connection', 'Upgrade'], 'reject', 100).upgrade).toBe(true);
    expect(readClientHeaders(['upgrade', 'h2c', 'connection', 'Upgrade'], 'reject', 100).upgrade).toBe(false);
    expect(readClientHeaders(['upgrade', 'websocket'], 'reject', 100).upgrade).toBe(false);
  });

  it('edge mutations: XFF gets the node address for a loopback peer, the rest are overwritten', () => {
    const list = [
      'x-forwarded-for',
      '1.2.3.4',
      'x-forwarded-for',
      '5.6.7.8',
      'x-request-id',
      'mine',
      'x-forwarded-proto',
      'https',
    ];
    addEdgeHeaders(list, { remoteAddress: '127.0.0.1', localInfoAddress: '192.0.2.2', requestId: 'rid' });
    expect(list).toEqual([
      'x-forwarded-for',
      '1.2.3.4,5.6.7.8,192.0.2.2',
      'x-request-id',
      'rid',
      'x-forwarded-proto',
      'http',
      'x-envoy-external-address',
      '127.0.0.1',
    ]);
    const remote: string[] = [];
    addEdgeHeaders(remote, { remoteAddress: '10.1.2.3', localInfoAddress: '192.0.2.2', requestId: 'rid' });
    expect(remote.slice(0, 2)).toEqual(['x-forwarded-for', '10.1.2.3']);
  });
});
