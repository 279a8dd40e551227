/**
 * The ext_authz gRPC server: a thin shell that turns a CheckRequest into an HttpRequestView, calls
 * the Check handler, logs the decision and answers. Draining flips health to NOT_SERVING first so
 * Envoy stops sending, then waits for in-flight checks before closing.
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
  server.addService(AuthorizationService, {
    check: (call: ServerUnaryCall<CheckRequest, CheckResponse>, cb: sendUnaryData<CheckResponse>) => {
      const started = process.hrtime.bigint();
      const view = httpViewFromCheckRequest(call.request);
      const decided: Promise<CheckResult> = view ? opts.check(view) : Promise.resolve(noHttpAttributes());
      decided.then(
        (result) => {
          cb(null, toCheckResponse(result, result.facts.policyRevision));
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
          cb(null, toCheckResponse(noHttpAttributes('internal'), null));
        },
      );
    },
  });
  server.addService(HealthService, health.implementation());

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(opts.address, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  log.info({ address: opts.address, port }, 'authz listening');

  let draining: Promise<void> | null = null;
  return {
    port,
    health,
    drain() {
      draining ??= (async () => {
        health.setServing(false);
        log.info({ drain_seconds: opts.drainSeconds ?? 0 }, 'draining');
        await new Promise((r) => setTimeout(r, (opts.drainSeconds ?? 0) * 1000));
        health.endWatches();
        await new Promise<void>((resolve) => {
          // tryShutdown waits for in-flight calls; force after 10 s so a stuck call cannot block exit.
          const force = setTimeout(() => server.forceShutdown(), 10_000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
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
