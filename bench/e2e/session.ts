/**
 * Pre-initialized MCP sessions for `npm run bench:e2e`: the official SDK client does `initialize`
 * (and `notifications/initialized`) once; h2load then replays a pre-built `tools/call` with the
 * session's headers. `callOnce` sends the same bytes with fetch and returns the tool's text, so the
 * bench checks that the replayed request gets a real tool result before it measures anything.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export interface Session {
  /** Headers h2load sends with every replayed request. */
  headers: Record<string, string>;
  close(): Promise<void>;
}

export async function openSession(url: string, bearer: string | null): Promise<Session> {
  const auth: Record<string, string> = bearer === null ? {} : { authorization: `Bearer ${bearer}` };
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: auth } });
  const client = new Client({ name: 'bench-e2e', version: '1' });
  await client.connect(transport);
  const sessionId = transport.sessionId;
  const version = transport.protocolVersion;
  if (sessionId === undefined || version === undefined) throw new Error(`${url}: no session id after initialize`);
  return {
    headers: {
      ...auth,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': version,
    },
    close: () => client.close(),
  };
}

/** The JSON-RPC messages of an answer, whether it came as JSON or as an SSE stream. */
function messages(contentType: string, text: string): unknown[] {
  if (contentType.startsWith('application/json')) return [JSON.parse(text) as unknown];
  if (!contentType.startsWith('text/event-stream')) throw new Error(`unexpected content-type ${contentType}`);
  return text
    .split('\n')
    .filter((l) => l.startsWith('data:'))
    .map((l) => JSON.parse(l.slice(5)) as unknown);
}

function toolText(msg: unknown): string | null {
  if (typeof msg !== 'object' || msg === null || !('result' in msg)) return null;
  const result: unknown = msg.result;
  if (typeof result !== 'object' || result === null || !('content' in result) || !Array.isArray(result.content))
    return null;
  const first: unknown = result.content[0];
  if (typeof first !== 'object' || first === null || !('text' in first) || typeof first.text !== 'string') return null;
  if ('isError' in result && result.isError === true) return null;
  return first.text;
}

/** Sends `body` once with `headers`; returns the tool result's text, or throws with what came back. */
export async function callOnce(url: string, headers: Record<string, string>, body: string): Promise<string> {
  const res = await fetch(url, { method: 'POST', headers, body });
  const text = await res.text();
  const msgs = res.ok ? messages(res.headers.get('content-type') ?? '', text) : [];
  for (const m of msgs) {
    const t = toolText(m);
    if (t !== null) return t;
  }
  throw new Error(`${url}: no tool result (HTTP ${res.status}): ${text.slice(0, 300)}`);
}
