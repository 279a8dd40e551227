import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RedactionError, Redactor, secretForms, type SecretEntry } from '../../src/vault/index.js';

const TOKEN = 'ghp_R3alLooking/Token+With=Specials&é';
const redactor = new Redactor([{ service: 'github', name: 'GITHUB_TOKEN', value: TOKEN }]);
const LABEL = '[REDACTED:GITHUB_TOKEN]';

function formsOf(secret: string): string[] {
  return secretForms(secret).map((f) => f.text);
}

function expectClean(out: string, secret: string): void {
  for (const f of formsOf(secret)) expect(out.includes(f), `output still holds ${JSON.stringify(f)}`).toBe(false);
}

const toUrlSafe = (s: string): string => s.replaceAll('+', '-').replaceAll('/', '_');

describe('secretForms', () => {
  it('lists raw, JSON, URL and base64 forms without duplicates', () => {
    const forms = secretForms(TOKEN);
    const texts = forms.map((f) => f.text);
    expect(new Set(texts).size).toBe(texts.length);
    expect(texts[0]).toBe(TOKEN);
    expect(texts).toContain(encodeURIComponent(TOKEN));
    expect(texts).toContain(encodeURIComponent(TOKEN).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()));
    expect(texts).toContain(JSON.stringify(TOKEN).slice(1, -1).replaceAll('/', '\\/'));
    expect(texts).toContain(TOKEN.replace('é', '\\u00e9'));
    expect(texts).toContain(TOKEN.replace('&', '\\u0026'));
    expect(forms.filter((f) => f.kind === 'base64').length).toBeGreaterThanOrEqual(6);
  });

  it('derives for each offset exactly the base64 characters the secret alone determines', () => {
    const secret = 'abcdefghij'; // 10 bytes
    for (let offset = 0; offset < 3; offset++) {
      const cores = secretForms(secret).filter((f) => f.variant === `base64 std offset ${offset}`);
      expect(cores).toHaveLength(1);
      const core = (cores[0] as { text: string }).text;
      // Whatever bytes surround it, the core is in the encoding.
      for (let trial = 0; trial < 50; trial++) {
        const data = Buffer.concat([
          randomBytes(offset + 3 * (trial % 3)),
          Buffer.from(secret),
          randomBytes(trial % 5),
        ]);
        expect(data.toString('base64')).toContain(core);
      }
      // And it is as long as it can be: bits from 8·offset to 8·(offset+10), whole characters only.
      expect(core.length).toBe(Math.floor((8 * (offset + 10)) / 6) - Math.ceil((8 * offset) / 6));
    }
  });

  it('leaves out URL forms of malformed Unicode instead of throwing', () => {
    expect(() => secretForms('abcdefgh\ud800')).not.toThrow();
    expect(secretForms('abcdefgh\ud800').some((f) => f.kind === 'url')).toBe(false);
  });
});

describe('Redactor strings', () => {
  it('redacts the raw form, every occurrence, and keeps the rest', () => {
    expect(redactor.redactString(`token=${TOKEN}; again ${TOKEN}.`)).toBe(`token=${LABEL}; again ${LABEL}.`);
    const clean = 'nothing secret here, just ghp_ and Token+With';
    expect(redactor.redactString(clean)).toBe(clean);
    expect(redactor.contains(clean)).toBe(false);
    expect(redactor.contains(`x${TOKEN}x`)).toBe(true);
  });

  it('redacts base64 at all three offsets, both alphabets, with and without padding', () => {
    const secret = Buffer.from(TOKEN);
    for (let offset = 0; offset < 3; offset++) {
      for (const suffix of [0, 1, 2, 3, 7]) {
        for (const alphabet of ['std', 'url'] as const) {
          for (const padded of [true, false]) {
            const data = Buffer.concat([randomBytes(offset + 3), secret, randomBytes(suffix)]);
            let b64 = data.toString('base64');
            if (alphabet === 'url') b64 = toUrlSafe(b64);
            if (!padded) b64 = b64.replace(/=+$/, '');
            const out = redactor.redactString(`before ${b64} after`);
            expect(out).toContain(LABEL);
            expect(out.startsWith('before ')).toBe(true);
            expect(out.endsWith(' after')).toBe(true);
            expectClean(out, TOKEN);
            if (suffix === 0) {
              // At the end of the data the padding and the last partial character go too.
              expect(out).toMatch(new RegExp(`\\[REDACTED:GITHUB_TOKEN\\] after$`));
            }
          }
        }
      }
    }
  });

  it('redacts a Basic authorization header, a data URL and a JWT-like segment', () => {
    const basic = `Authorization: Basic ${Buffer.from(`octocat:${TOKEN}`).toString('base64')}`;
    expect(redactor.redactString(basic)).toMatch(/^Authorization: Basic [A-Za-z0-9+/]+\[REDACTED:GITHUB_TOKEN\]$/);
    const dataUrl = `data:text/plain;base64,${Buffer.from(`x${TOKEN}yz`).toString('base64')}`;
    expectClean(redactor.redactString(dataUrl), TOKEN);
    const jwt = [{ alg: 'none' }, { sub: 'bot', tok: TOKEN }].map((p) =>
      Buffer.from(JSON.stringify(p)).toString('base64url'),
    );
    const out = redactor.redactString(jwt.join('.'));
    expect(out).toContain(LABEL);
    expect(Buffer.from(out.split('.')[1] ?? '', 'base64url').toString()).not.toContain(TOKEN);
  });

  it('redacts percent-encoded forms in upper and lower hex', () => {
    const up = encodeURIComponent(TOKEN);
    const low = up.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
    const form = new URLSearchParams({ t: TOKEN }).toString();
    for (const text of [
      `https://api/x?token=${up}&y=1`,
      `https://api/x?token=${low}&y=1`,
      `https://api/x?${form}&y=1`,
    ]) {
      const out = redactor.redactString(text);
      expect(out).toContain(LABEL);
      expect(out.endsWith('&y=1')).toBe(true);
      expectClean(out, TOKEN);
    }
  });

  it('redacts JSON-escaped forms (text that is itself JSON)', () => {
    const nasty = 'pa"ss\\wo/rd\n\t€😀<&>';
    const r = new Redactor([{ service: 'db', name: 'DB_PASSWORD', value: nasty }]);
    const js = JSON.stringify({ password: nasty });
    const py = js.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    const php = py.replaceAll('/', '\\/');
    const go = js.replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
    for (const text of [js, py, php, go, JSON.stringify(js)]) {
      const out = r.redactString(text);
      expect(out, text).toContain('[REDACTED:DB_PASSWORD]');
      expectClean(out, nasty);
    }
    // Each form still parses: the label needs no escaping.
    expect(JSON.parse(r.redactString(js))).toEqual({ password: '[REDACTED:DB_PASSWORD]' });
  });

  it('redacts the union of overlapping matches, from one secret or several', () => {
    const r = new Redactor([
      { service: 's', name: 'A', value: 'abcdefgh12' },
      { service: 's', name: 'B', value: 'gh12345678' },
      { service: 's', name: 'C', value: 'xxxxxxxx' },
    ]);
    expect(r.redactString('<abcdefgh12345678>')).toBe('<[REDACTED:B]>');
    expect(r.redactString('<abcdefgh12|gh12345678>')).toBe('<[REDACTED:A]|[REDACTED:B]>');
    // Self-overlap: nine x hold two overlapping occurrences.
    expect(r.redactString('-xxxxxxxxx-')).toBe('-[REDACTED:C]-');
    // A secret inside a longer one is named after the longer one.
    const nested = new Redactor([
      { service: 's', name: 'SHORT', value: 'inner-secret' },
      { service: 's', name: 'LONG', value: 'outer-inner-secret-outer' },
    ]);
    expect(nested.redactString('[outer-inner-secret-outer] [inner-secret]')).toBe(
      '[[REDACTED:LONG]] [[REDACTED:SHORT]]',
    );
  });

  it('redacts many secrets at once, each under its own name', () => {
    const secrets: SecretEntry[] = [];
    for (let i = 0; i < 60; i++) {
      secrets.push({
        service: `svc${i % 7}`,
        name: `TOKEN_${i}`,
        value: `${randomBytes(12 + (i % 20)).toString('base64url')}-${i}`,
      });
    }
    const r = new Redactor(secrets);
    const encoders = [
      (v: string) => v,
      (v: string) => encodeURIComponent(v),
      (v: string) => Buffer.from(`k:${v}`).toString('base64'),
      (v: string) => JSON.stringify(v),
    ];
    const doc = secrets
      .map((s, i) => `item ${i}: ${(encoders[i % encoders.length] as (v: string) => string)(s.value)} end`)
      .join('\n');
    const out = r.redactString(doc);
    for (const [i, s] of secrets.entries()) {
      expectClean(out, s.value);
      expect(out).toContain(`item ${i}: `);
      expect(out).toContain(`[REDACTED:${s.name}]`);
    }
    expect(r.secretCount).toBe(60);
  });

  it('treats the same value stored twice as one secret', () => {
    const r = new Redactor([
      { service: 'a', name: 'ONE', value: 'shared-value-123' },
      { service: 'b', name: 'TWO', value: 'shared-value-123' },
    ]);
    expect(r.secretCount).toBe(1);
    expect(r.redactString('shared-value-123')).toBe('[REDACTED:ONE]');
  });

  it('flags secrets shorter than the store accepts but still redacts their raw form', () => {
    const r = new Redactor([{ service: 'legacy', name: 'PIN', value: 'a1b2' }]);
    expect(r.weak).toEqual([{ service: 'legacy', name: 'PIN' }]);
    expect(r.redactString('pin a1b2!')).toBe('pin [REDACTED:PIN]!');
  });
});

describe('Redactor JSON', () => {
  const basic = Buffer.from(`u:${TOKEN}`).toString('base64');
  const messages: [string, unknown][] = [
    [
      'result',
      {
        jsonrpc: '2.0',
        id: 7,
        result: {
          content: [
            { type: 'text', text: `your token is ${TOKEN}` },
            { type: 'resource', resource: { uri: `https://x/?t=${encodeURIComponent(TOKEN)}`, text: basic } },
          ],
          structuredContent: { deep: [[[{ v: TOKEN }]]], n: 1, ok: true, none: null },
          isError: false,
        },
      },
    ],
    [
      'error',
      { jsonrpc: '2.0', id: 'a', error: { code: -32000, message: `bad credentials ${TOKEN}`, data: { echo: TOKEN } } },
    ],
    [
      'notification',
      {
        jsonrpc: '2.0',
        method: 'notifications/message',
        params: { level: 'debug', data: { env: { GITHUB_TOKEN: TOKEN } } },
      },
    ],
    [
      'progress',
      {
        jsonrpc: '2.0',
        method: 'notifications/progress',
        params: { progressToken: 1, progress: 5, message: `using ${TOKEN}` },
      },
    ],
    [
      'sampling request',
      {
        jsonrpc: '2.0',
        id: 99,
        method: 'sampling/createMessage',
        params: {
          messages: [
            { role: 'user', content: { type: 'text', text: `summarise ${JSON.stringify({ token: TOKEN })}` } },
          ],
          maxTokens: 10,
        },
      },
    ],
  ];

  for (const [kind, msg] of messages) {
    it(`redacts a backend ${kind} without touching its shape`, () => {
      const input = structuredClone(msg);
      const out = redactor.redact(msg);
      expect(msg).toEqual(input); // not modified
      const text = JSON.stringify(out);
      expectClean(text, TOKEN);
      expect(text).toContain(LABEL);
      // Same keys and types everywhere; only strings changed.
      const shape = (v: unknown): unknown =>
        Array.isArray(v)
          ? v.map(shape)
          : v !== null && typeof v === 'object'
            ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shape(x)]))
            : typeof v;
      expect(shape(out)).toEqual(shape(msg));
    });
  }

  it('redacts object keys, keeping colliding members apart', () => {
    const out = redactor.redact({ [TOKEN]: 1, [`${TOKEN}`.replace(TOKEN, encodeURIComponent(TOKEN))]: 2, plain: 3 });
    expect(out).toEqual({ [LABEL]: 1, [`${LABEL}#2`]: 2, plain: 3 });
  });

  it('returns the very same value when there is nothing to redact', () => {
    const msg = { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'hello' }], list: [1, 2, 3] } };
    expect(redactor.redact(msg)).toBe(msg);
    expect(Redactor.EMPTY.redact(msg)).toBe(msg);
    const partly = { a: { keep: 'x' }, b: { hit: TOKEN } };
    const out = redactor.redact(partly);
    expect(out.a).toBe(partly.a);
    expect(out.b).not.toBe(partly.b);
  });

  it('keeps a "__proto__" key as data', () => {
    const msg = JSON.parse(`{"__proto__": {"polluted": "${TOKEN}"}, "x": "${TOKEN}"}`) as Record<string, unknown>;
    const out = redactor.redact(msg);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.keys(out)).toEqual(['__proto__', 'x']);
    expect(JSON.stringify(out)).toBe(`{"__proto__":{"polluted":"${LABEL}"},"x":"${LABEL}"}`);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('redacts a numeric secret that comes back as a JSON number', () => {
    const r = new Redactor([{ service: 'bank', name: 'ACCOUNT_PIN', value: '4485012345' }]);
    expect(r.redact({ account: 4485012345, other: 12, big: 994485012345 })).toEqual({
      account: '[REDACTED:ACCOUNT_PIN]',
      other: 12,
      big: '99[REDACTED:ACCOUNT_PIN]',
    });
  });

  it('fails closed on values that are not JSON', () => {
    class Box {
      v = TOKEN;
    }
    for (const r of [redactor, Redactor.EMPTY]) {
      expect(() => r.redact({ a: new Box() })).toThrow(RedactionError);
      expect(() => r.redact([1n])).toThrow(RedactionError);
      expect(() => r.redact({ f: () => TOKEN })).toThrow(RedactionError);
      let deep: unknown = TOKEN;
      for (let i = 0; i < 300; i++) deep = [deep];
      expect(() => r.redact(deep)).toThrow(/deeper than 256/);
    }
    const nullProto = Object.assign(Object.create(null) as Record<string, unknown>, { t: TOKEN });
    expect(redactor.redact(nullProto)).toEqual({ t: LABEL });
  });
});

describe('StreamRedactor', () => {
  const feed = (r: Redactor, chunks: string[]): string => {
    const s = r.stream();
    let out = '';
    for (const c of chunks) out += s.push(c);
    return out + s.end();
  };

  it('redacts a secret split across chunks at every possible point', () => {
    const text = `data: {"text":"token ${TOKEN} and ${Buffer.from(TOKEN).toString('base64')}"}\n\n`;
    const whole = redactor.redactString(text);
    for (let cut = 0; cut <= text.length; cut++) {
      expect(feed(redactor, [text.slice(0, cut), text.slice(cut)])).toBe(whole);
    }
    expect(feed(redactor, [...text])).toBe(whole);
  });

  it('holds back no more than it must', () => {
    const s = redactor.stream();
    const head = 'x'.repeat(1000);
    const out = s.push(head);
    expect(out.length).toBe(1000 - (redactor.maxPatternLength - 1));
    expect(out + s.end()).toBe(head);
  });

  it('emits everything at end and refuses pushes afterwards', () => {
    const s = redactor.stream();
    expect(s.push(TOKEN.slice(0, 5))).toBe('');
    expect(s.end()).toBe(TOKEN.slice(0, 5));
    expect(() => s.push('x')).toThrow(RedactionError);
  });

  it('equals redacting the whole text, for any chunking (property)', () => {
    const r = new Redactor([
      { service: 's', name: 'A', value: 'abcabcab' },
      { service: 's', name: 'B', value: 'cabxyzzy' },
    ]);
    const piece = fc.constantFrom('a', 'b', 'c', 'x', 'y', 'z', 'abcabcab', 'cabxyzzy', 'YWJjYWJj', '%61');
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 40 }),
        fc.array(fc.nat({ max: 400 }), { maxLength: 12 }),
        (parts, cuts) => {
          const text = parts.join('');
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
          const chunks: string[] = [];
          let at = 0;
          for (const p of points) {
            chunks.push(text.slice(at, p));
            at = p;
          }
          chunks.push(text.slice(at));
          expect(feed(r, chunks)).toBe(r.redactString(text));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('Redactor property: no encoding of a secret survives', () => {
  const secretArb = fc
    .oneof(
      fc.string({ unit: 'grapheme-ascii', minLength: 8, maxLength: 40 }),
      fc.string({ unit: 'binary', minLength: 8, maxLength: 24 }),
      fc.string({
        unit: fc.constantFrom('a', '/', '+', '=', '&', '%', '"', '\\', 'é', '😀', ' '),
        minLength: 8,
        maxLength: 24,
      }),
    )
    .filter((s) => [...s].length >= 8);
  const textArb = fc.string({ unit: 'grapheme', maxLength: 30 });
  type Encoder = (secret: string, pre: Uint8Array, post: Uint8Array) => string;
  const encoders: Record<string, Encoder> = {
    raw: (s) => s,
    json: (s) => JSON.stringify(s).slice(1, -1),
    jsonQuoted: (s) => JSON.stringify({ k: s }),
    url: (s) => encodeURIComponent(s),
    urlLower: (s) => encodeURIComponent(s).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    form: (s) => new URLSearchParams({ k: s }).toString(),
    base64: (s, pre, post) => Buffer.concat([pre, Buffer.from(s), post]).toString('base64'),
    base64NoPad: (s, pre, post) =>
      Buffer.concat([pre, Buffer.from(s), post])
        .toString('base64')
        .replace(/=+$/, ''),
    base64Url: (s, pre, post) => toUrlSafe(Buffer.concat([pre, Buffer.from(s), post]).toString('base64')),
    base64UrlNoPad: (s, pre, post) => Buffer.concat([pre, Buffer.from(s), post]).toString('base64url'),
  };

  it('holds for random secrets, encodings, alignments and surroundings', () => {
    fc.assert(
      fc.property(
        secretArb,
        textArb,
        textArb,
        fc.constantFrom(...Object.keys(encoders)),
        fc.uint8Array({ maxLength: 5 }),
        fc.uint8Array({ maxLength: 5 }),
        (secret, before, after, enc, pre, post) => {
          const r = new Redactor([{ service: 'svc', name: 'TOKEN', value: secret }]);
          const encoded = (encoders[enc] as Encoder)(secret, pre, post);
          const out = r.redactString(before + encoded + after);
          expect(out).toContain('[REDACTED:TOKEN]');
          expectClean(out, secret);
          // The same through the JSON walk and through a stream cut in the middle.
          expectClean(JSON.stringify(r.redact({ [before]: [encoded + after] })), secret);
          const s = r.stream();
          const text = before + encoded + after;
          const mid = Math.floor(text.length / 2);
          expectClean(s.push(text.slice(0, mid)) + s.push(text.slice(mid)) + s.end(), secret);
        },
      ),
      { numRuns: 1500 },
    );
  });
});
