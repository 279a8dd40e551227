/** grpc.health.v1 for Envoy's grpc_health_check and Kubernetes probes; NOT_SERVING while draining. */
import type { ServerWritableStream, sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import {
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Serving,
  type HealthCheckRequest,
  type HealthServer,
} from '../gen/grpc/health/v1/health.js';

export const AUTHZ_SERVICE_NAME = 'envoy.service.auth.v3.Authorization';

export class HealthState {
  private serving = true;
  private readonly watchers = new Set<ServerWritableStream<HealthCheckRequest, HealthCheckResponse>>();

  setServing(serving: boolean): void {
    this.serving = serving;
    for (const w of this.watchers) w.write(this.response(''));
  }

  private known(service: string): boolean {
    return service === '' || service === AUTHZ_SERVICE_NAME;
  }

  private response(_service: string): HealthCheckResponse {
    return HealthCheckResponse.fromPartial({ status: this.serving ? Serving.SERVING : Serving.NOT_SERVING });
  }

  endWatches(): void {
    for (const w of this.watchers) w.end();
    this.watchers.clear();
  }

  implementation(): HealthServer {
    return {
      check: (
        call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
        cb: sendUnaryData<HealthCheckResponse>,
      ) => {
        if (!this.known(call.request.service)) {
          cb({ code: GrpcStatus.NOT_FOUND, details: 'unknown service' });
          return;
        }
        cb(null, this.response(call.request.service));
      },
      watch: (call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
        if (!this.known(call.request.service)) {
          call.write(HealthCheckResponse.fromPartial({ status: Serving.SERVICE_UNKNOWN }));
        } else {
          call.write(this.response(call.request.service));
        }
        this.watchers.add(call);
        call.on('cancelled', () => this.watchers.delete(call));
      },
    };
  }
}
