/**
 * A `tools/call` wrapped as Envoy would send it to authz, written as one gRPC length-prefixed
 * message that h2load can replay with `-d` (bench:authz and bench:layer2 share it).
 */
import { writeFileSync } from 'node:fs';
import { CheckRequest } from '../../src/gen/envoy/service/auth/v3/external_auth.js';
import { mintSessionId } from '../../src/identity/session.js';

export interface FrameCall {
  /** Request id, also the JSON-RPC id. */
  id: number;
  user: { id: string; key: string };
  sessionKey: Buffer;
  /** Wire tool name, `<service>__<tool>`. */
  name: string;
  args: Record<string, unknown>;
}

export function writeCheckFrame(file: string, c: FrameCall): string {
  const body = Buffer.from(
    JSON.stringify({ jsonrpc: '2.0', id: c.id, method: 'tools/call', params: { name: c.name, arguments: c.args } }),
  );
  const msg = CheckRequest.encode(
    CheckRequest.fromPartial({
      attributes: {
        request: {
          http: {
            id: String(c.id),
            method: 'POST',
            path: '/mcp',
            host: 'localhost:8000',
            scheme: 'http',
            protocol: 'HTTP/1.1',
            headers: {
              authorization: `Bearer ${c.user.key}`,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
              'mcp-session-id': mintSessionId(c.sessionKey, c.user.id),
              'mcp-protocol-version': '2025-11-25',
              'user-agent': 'bench',
            },
            rawBody: body,
            size: body.length,
          },
        },
      },
    }),
  ).finish();
  // gRPC length-prefixed message: 1 byte flags (uncompressed) + 4 bytes big-endian length.
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(msg.length, 1);
  writeFileSync(file, Buffer.concat([prefix, Buffer.from(msg)]));
  return file;
}
