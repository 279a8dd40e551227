/**
 * The ext_authz gRPC server: a thin shell that turns a CheckRequest into an HttpRequestView, calls
 * the Check handler, logs the decision and answers. Draining flips health to NOT_SERVING first so
 * Envoy stops sending, then waits for in-flight checks before closing.
 *
 * The same answering is offered to callers in this process (`AuthzServer.check`: the built-in
 * front under `--role all`), without the wire; those calls count as in flight for the drain too.
 */
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  AuthorizationService,
  type CheckRequest,
  type CheckResponse,
} from '../gen/envoy/service/auth/v3/external_auth.js';
import { HealthService } from '../gen/grpc/health/v1/health.js';
import type { Logger } from '../log.js';
import { toCheckResponse } from './check-response.js';
import type { CheckResult } from './check.js';
import { HealthState } from './health.js';
import { httpViewFromCheckRequest, type HttpRequestView } from './http-view.js';
import { jsonRpcErrorAnswer, JSONRPC_INVALID_REQUEST } from './answers.js';
import { GRPC_PERMISSION_DENIED } from './check.js';

export interface AuthzServerOptions {
  /** `host:port` or `unix:///path`. */
  address: string;
  check(view: HttpRequestView): Promise<CheckResult>;
  logger: Logger;
  /** Seconds to stay NOT_SERVING before refusing new checks, so Envoy's health checker notices. */
  drainSeconds?: number;
  /** gRPC max receive size: above Envoy's max_request_bytes plus headers. */
  maxReceiveBytes?: number;
}

export interface AuthzServer {
  /** The bound port (0 for unix sockets). */
  readonly port: number;
  readonly health: HealthState;
  /**
   * What the gRPC service answers for `req`, for a caller in this process: the same view, handler,
   * decision log line and CheckResponse. Like the service it does not fail while it serves (a
   * failing handler is a deny); once the drain has shut the service, it rejects, as a call to the
   * closed server fails. It reads nothing from the gRPC call but the request (no deadline, no
   * peer), so a caller supplies nothing else.
   */
  check(req: CheckRequest): Promise<CheckResponse>;
  /** NOT_SERVING, wait `drainSeconds`, finish in-flight checks, close. */
  drain(): Promise<void>;
}

export async function startAuthzServer(opts: AuthzServerOptions): Promise<AuthzServer> {
  const health = new HealthState();
  const server = new Server({
    'grpc.max_receive_message_length': opts.maxReceiveBytes ?? 4 * 1024 * 1024,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_permit_without_calls': 1,
    // Channelz bookkeeping costs per call and nothing here reads it.
    'grpc.enable_channelz': 0,
  });
  const log = opts.logger;
  /** Answers (through `respond`, once), then logs the decision; never rejects. */
  const answer = (req: CheckRequest, respond: (res: CheckResponse) => void): void => {
    const started = process.hrtime.bigint();
    const view = httpViewFromCheckRequest(req);
    const decided: Promise<CheckResult> = view ? opts.check(view) : Promise.resolve(noHttpAttributes());
    decided.then(
      (result) => {
        respond(toCheckResponse(result, result.facts.policyRevision));
        const f = result.facts;
        log.info(
          {
            decision_id: result.decisionId,
            decision: result.kind,
            code: f.code,
            route: f.route,
            http_method: f.httpMethod,
            rpc_method: f.rpcMethod,
            user: f.userId,
            service: f.service,
            name: f.name,
            rule: f.rule,
            approval_id: f.approvalId,
            policy_revision: f.policyRevision,
            reasons: f.reasons,
            latency_us: Number((process.hrtime.bigint() - started) / 1000n),
          },
          'decision',
        );
      },
      (err: unknown) => {
        // check() never rejects by contract; if it does, answer a deny rather than an RPC error.
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'check failed');
        respond(toCheckResponse(noHttpAttributes('internal'), null));
      },
    );
  };
  server.addService(AuthorizationService, {
    check: (call: ServerUnaryCall<CheckRequest, CheckResponse>, cb: sendUnaryData<CheckResponse>) =>
      answer(call.request, (res) => cb(null, res)),
  });
  server.addService(HealthService, health.implementation());

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(opts.address, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  log.info({ address: opts.address, port }, 'authz listening');

  // In-process calls, counted so that the drain waits for them as tryShutdown waits for RPCs.
  let shut = false;
  let inFlight = 0;
  let onIdle: (() => void) | null = null;
  const check = (req: CheckRequest): Promise<CheckResponse> => {
    if (shut) return Promise.reject(new Error('authz has shut down'));
    inFlight++;
    return new Promise((resolve) =>
      answer(req, (res) => {
        resolve(res);
        if (--inFlight === 0) onIdle?.();
      }),
    );
  };

  let draining: Promise<void> | null = null;
  return {
    port,
    health,
    check,
    drain() {
      draining ??= (async () => {
        health.setServing(false);
        log.info({ drain_seconds: opts.drainSeconds ?? 0 }, 'draining');
        await new Promise((r) => setTimeout(r, (opts.drainSeconds ?? 0) * 1000));
        health.endWatches();
        shut = true;
        await new Promise<void>((resolve) => {
          // Both wait for in-flight calls; force after 10 s so a stuck call cannot block exit.
          let rpcs = false;
          let forced = false;
          const finish = (): void => {
            if (!forced && (!rpcs || inFlight > 0)) return;
            clearTimeout(force);
            onIdle = null;
            resolve();
          };
          const force = setTimeout(() => {
            server.forceShutdown();
            forced = true;
            finish();
          }, 10_000);
          onIdle = finish;
          server.tryShutdown(() => {
            rpcs = true;
            finish();
          });
        });
        log.info('authz stopped');
      })();
      return draining;
    },
  };
}

function noHttpAttributes(code = 'no_http_attributes'): CheckResult {
  return {
    kind: 'deny',
    decisionId: 'none',
    grpcCode: GRPC_PERMISSION_DENIED,
    answer: jsonRpcErrorAnswer(400, JSONRPC_INVALID_REQUEST, 'CheckRequest has no HTTP attributes'),
    facts: {
      route: 'unknown',
      httpMethod: '',
      userId: null,
      rpcMethod: null,
      service: null,
      name: null,
      code,
      rule: null,
      reasons: [],
      approvalId: null,
      policyRevision: null,
      audited: false,
    },
  };
}
