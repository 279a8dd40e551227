/**
 * ext_authz without the wire, for a front that runs in the same process as authz (`--role all`):
 * the Check handler is called as a function instead of over gRPC, which cost a grpc-js client and
 * server, HTTP/2 framing and protobuf coding on every request. Everything else is the gRPC path's:
 * - the handler gets what the gRPC server would have decoded (`asReceived`);
 * - the ext_authz timeout still applies, and a Check that does not answer in time, throws, rejects
 *   or answers with no message is reported as an error, as a failed RPC is (the front then answers
 *   `status_on_error`);
 * - the answer goes to the same callback, read by the same code (authz-response.ts).
 */
import { CheckRequest, type CheckResponse } from '../../gen/envoy/service/auth/v3/external_auth.js';

/**
 * The Check handler of an authz in this process. `deadline` (ms since the epoch) is the one the
 * gRPC call would carry; the front enforces it whatever the handler does with it.
 */
export type InProcessCheck = (req: CheckRequest, deadline: number) => Promise<CheckResponse>;

/** A Check in flight: cancelling drops its answer, as cancelling a gRPC call does. */
export interface PendingCheck {
  cancel(): void;
}

export type CheckCallback = (err: Error | null, res: CheckResponse | undefined) => void;

/**
 * The CheckRequest as the gRPC server would decode it from what the front built: maps in plain
 * objects (a header named `__proto__` does not survive decoding), every message and default filled
 * in, and `raw_body` in a buffer of its own, so the handler cannot touch the bytes the front goes
 * on to forward (test/front/in-process-check.test.ts compares both over the front's corpus).
 */
export function asReceived(req: CheckRequest): CheckRequest {
  const copy = CheckRequest.fromPartial(req);
  const http = copy.attributes?.request?.http;
  if (http && http.rawBody.length > 0) http.rawBody = Buffer.from(http.rawBody);
  return copy;
}

class CheckError extends Error {
  override readonly name = 'CheckError';
}

/** Calls `check` with the request as received; `done` runs once, in a later turn of the event loop. */
export function callInProcess(
  check: InProcessCheck,
  req: CheckRequest,
  timeoutMs: number,
  done: CheckCallback,
): PendingCheck {
  let settled = false;
  let timer: NodeJS.Timeout | null = null;
  const settle = (err: Error | null, res: CheckResponse | undefined): void => {
    if (settled) return;
    settled = true;
    if (timer) clearTimeout(timer);
    done(err, res);
  };
  const pending: PendingCheck = {
    cancel: () => {
      settled = true;
      if (timer) clearTimeout(timer);
    },
  };
  const deadline = Date.now() + timeoutMs;
  // A gRPC call whose deadline has already passed fails without reaching the server.
  if (timeoutMs <= 0) {
    setImmediate(() => settle(new CheckError('deadline exceeded'), undefined));
    return pending;
  }
  timer = setTimeout(() => settle(new CheckError('deadline exceeded'), undefined), timeoutMs);
  let answer: Promise<CheckResponse>;
  try {
    answer = Promise.resolve(check(asReceived(req), deadline));
  } catch (err) {
    answer = Promise.reject(err instanceof Error ? err : new CheckError(String(err)));
  }
  // An answer over gRPC arrives in a later turn of the event loop, after node:http has processed
  // everything the client's socket already delivered (a small body sent with the head has ended by
  // then, as it has for Envoy); an answer from a microtask would not be, and a local reply would
  // close the connection for a request it thinks is unfinished. So answers wait for that turn.
  answer.then(
    (res: CheckResponse | null | undefined) => {
      // gRPC cannot carry a missing message: the call fails instead.
      if (typeof res !== 'object' || res === null) setImmediate(settle, new CheckError('no CheckResponse'), undefined);
      else setImmediate(settle, null, res);
    },
    (err: unknown) => setImmediate(settle, err instanceof Error ? err : new CheckError(String(err)), undefined),
  );
  return pending;
}
