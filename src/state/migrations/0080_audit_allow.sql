-- The decision of a call that Layer 1 allowed and that no Layer 2 rule concerns (no limit, budget,
-- flow, precondition or duty applies, no lock, no rule error): mcpgw_decide then takes no lock,
-- reads no state, writes no state and returns allow with Layer 1's rule and reasons. Only its
-- audit row remains, and this function writes exactly that row (the same columns and values as
-- mcpgw_decide's INSERT in 0070) and returns the same answer, without the PL/pgSQL body: on PGlite
-- a decision alone cost 284-393 µs of CPU through mcpgw_decide and 117-147 µs as this insert.
-- The caller (src/state/decide.ts `isAuditOnly`) decides which function a decision goes to;
-- test/state/audit-only.test.ts compares both functions' rows and answers.
CREATE OR REPLACE FUNCTION mcpgw_audit_allow(p jsonb) RETURNS jsonb
LANGUAGE sql AS $fn$
  INSERT INTO audit_log (decision_id, at, user_id, session_id, method, service, tool, outcome, rule, reasons,
                         policy_revision, digest, approval_id)
  VALUES (p->>'decision_id', clock_timestamp(), p->>'user', p->>'session', p->>'method', p->>'service',
          p->>'tool', 'allow', p->'l1'->>'rule', coalesce(p->'l1'->'reasons', '[]'), p->>'revision',
          p->>'digest', NULL)
  RETURNING jsonb_build_object('outcome', 'allow', 'rule', rule, 'reasons', reasons,
                               'approval_id', NULL, 'retry_after', NULL)
$fn$;
