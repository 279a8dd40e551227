/** CheckResult → Envoy CheckResponse (ts-proto messages, always built with fromPartial). */
import { HeaderValueOption_HeaderAppendAction } from '../gen/envoy/config/core/v3/base.js';
import { CheckResponse } from '../gen/envoy/service/auth/v3/external_auth.js';
import type { CheckResult } from './check.js';

const OVERWRITE = HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD;

function headerOptions(headers: Record<string, string>) {
  return Object.entries(headers).map(([key, value]) => ({ header: { key, value }, appendAction: OVERWRITE }));
}

export function toCheckResponse(result: CheckResult, policyRevision: string | null): CheckResponse {
  // Later filters and access logs read the decision id from dynamic metadata
  // (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%).
  const dynamicMetadata: Record<string, string> = { decision_id: result.decisionId, decision: result.kind };
  if (policyRevision) dynamicMetadata['policy_revision'] = policyRevision;
  // The access log names who called (Envoy's %DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)%).
  if (result.facts.userId) dynamicMetadata['user'] = result.facts.userId;
  if (result.kind === 'allow') {
    return CheckResponse.fromPartial({
      status: { code: 0, message: '' },
      okResponse: {
        headers: headerOptions(result.upstreamHeaders),
        headersToRemove: result.removeHeaders,
        responseHeadersToAdd: headerOptions({ 'x-mcpgw-decision-id': result.decisionId }),
      },
      dynamicMetadata,
    });
  }
  return CheckResponse.fromPartial({
    status: { code: result.grpcCode, message: result.facts.code },
    deniedResponse: {
      status: { code: result.answer.httpStatus },
      headers: headerOptions({ ...result.answer.headers, 'x-mcpgw-decision-id': result.decisionId }),
      body: result.answer.body,
    },
    dynamicMetadata,
  });
}
