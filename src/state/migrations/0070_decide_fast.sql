-- mcpgw_decide with the same semantics as 0002 (DESIGN §7), at a lower cost per decision.
-- 0002 stays as it was applied (migrations are checksummed); this file replaces the function.
--
-- What changed, and why it is still exact:
--
-- * Velocity windows. Every writer of `velocity.stamps` (0002's mcpgw_keep_last and
--   mcpgw_window_push below) leaves the array sorted ascending, so the window of a key is a suffix
--   of its array. "At least max calls since now - per" is then "the max-th newest stamp is newer
--   than now - per": one subscript instead of unnesting, filtering and re-aggregating every stamp;
--   and the retry time 0002 read from the window (its (cnt - max + 1)-th element) is that same
--   stamp. On an allow, the new stamp is appended to the last max - 1 (an array slice), unless the
--   database clock went backwards past the newest stamp, where the general sort of 0002 runs.
-- * Arrays of the input are walked by index (`p->'limits'->i`): plain expressions, where 0002 ran
--   a query per `FOR … IN SELECT jsonb_array_elements(…)` loop even for an empty array. Empty
--   sections (no duties, no preconditions) cost nothing now.
-- * The advisory locks are taken by one statement, in the same ascending lock-id order.
-- * A new pending approval records the call's classification labels (`p->'l1'->'labels'`), so
--   `mcpgw pending` can show what kind of call waits (PACKAGING_STRATEGY §10.3) without keeping
--   the arguments. Rows created before this file read `[]`.
--
-- Unchanged: locks before reading the clock, the order of deny reasons, precedence, approvals,
-- state written only on a final allow, and the audit row in the same transaction.

-- Ahead of the function that inserts into it. Part of this file rather than a migration of its own
-- because no release shipped 0070 without it.
ALTER TABLE approvals ADD COLUMN IF NOT EXISTS labels jsonb NOT NULL DEFAULT '[]';

-- The window after a call at p_t: the last p_n of p_stamps || p_t, oldest first (what 0002 did with
-- mcpgw_keep_last). Inlined by the planner (one SELECT without FROM).
CREATE OR REPLACE FUNCTION mcpgw_window_push(p_stamps timestamptz[], p_t timestamptz, p_n integer)
RETURNS timestamptz[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN p_n < 1 OR p_stamps IS NULL THEN mcpgw_keep_last(coalesce(p_stamps, '{}') || p_t, p_n)
    WHEN cardinality(p_stamps) = 0 THEN ARRAY[p_t]
    WHEN p_stamps[array_upper(p_stamps, 1)] <= p_t
      THEN p_stamps[greatest(array_upper(p_stamps, 1) - p_n + 2, array_lower(p_stamps, 1)):array_upper(p_stamps, 1)] || p_t
    ELSE mcpgw_keep_last(p_stamps || p_t, p_n)
  END
$$;

CREATE OR REPLACE FUNCTION mcpgw_decide(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  v_now      timestamptz;
  v_user     text := p->>'user';
  v_service  text := p->>'service';
  v_tool     text := p->>'tool';
  v_digest   text := p->>'digest';
  v_l1       text := p->'l1'->>'outcome';
  v_cfg      jsonb := p->'approval';
  v_limits   jsonb := coalesce(p->'limits', '[]');
  v_budgets  jsonb := coalesce(p->'budgets', '[]');
  v_sources  jsonb := coalesce(p->'sources', '[]');
  v_arr      jsonb;
  v_n        integer;
  v_denies   jsonb := '[]';
  v_needs    jsonb := '[]';
  v_outcome  text;
  v_rule     text;
  v_reasons  jsonb;
  v_retry    double precision;
  v_approval text;
  v_consume  text;
  r          jsonb;
  f          record;
  v_text     text;
  v_num      bigint;
  v_win      timestamptz[];
  v_cnt      integer;
  v_max      integer;
  v_per      interval;
  v_exp      timestamptz;
  v_ap       approvals%ROWTYPE;
BEGIN
  PERFORM pg_advisory_xact_lock(l.id)
     FROM (SELECT DISTINCT hashtextextended(k, 0) AS id
             FROM jsonb_array_elements_text(coalesce(p->'locks', '[]')) AS k
            ORDER BY 1) AS l;
  -- Taken after the locks, so call times are in lock order and windows stay exact.
  v_now := clock_timestamp();

  -- Problems the caller found while expanding rules (unknown rule, missing session or entity).
  v_denies := coalesce(p->'errors', '[]');

  IF v_l1 IS DISTINCT FROM 'deny' THEN
    v_arr := coalesce(p->'preconditions', '[]');
    FOR i IN 0 .. jsonb_array_length(v_arr) - 1 LOOP
      r := v_arr->i;
      FOR f IN SELECT key, value FROM jsonb_each_text(r->'require') LOOP
        SELECT fl.value INTO v_text FROM flags fl WHERE fl.name = f.key;
        IF NOT FOUND THEN
          v_denies := v_denies || jsonb_build_object('rule', r->>'name',
            'reason', format('precondition "%s": flag "%s" is not set', r->>'name', f.key));
        ELSIF v_text IS DISTINCT FROM f.value THEN
          v_denies := v_denies || jsonb_build_object('rule', r->>'name',
            'reason', format('precondition "%s": flag "%s" is "%s", needs "%s"', r->>'name', f.key, v_text, f.value));
        END IF;
      END LOOP;
    END LOOP;

    FOR i IN 0 .. jsonb_array_length(v_budgets) - 1 LOOP
      r := v_budgets->i;
      SELECT b.used INTO v_num FROM budgets b WHERE b.rule = r->>'name' AND b.scope_key = r->>'key';
      IF NOT FOUND THEN
        v_num := 0;
      END IF;
      IF v_num >= (r->>'max')::bigint THEN
        v_denies := v_denies || jsonb_build_object('rule', r->>'name',
          'reason', format('budget "%s" is used up (%s of %s)', r->>'name', v_num, r->>'max'));
      END IF;
    END LOOP;

    FOR i IN 0 .. jsonb_array_length(v_limits) - 1 LOOP
      r := v_limits->i;
      v_max := (r->>'max')::integer;
      v_per := make_interval(secs => (r->>'per_s')::double precision);
      SELECT v.stamps INTO v_win FROM velocity v WHERE v.rule = r->>'name' AND v.scope_key = r->>'key';
      IF NOT FOUND THEN
        v_win := '{}';
      END IF;
      v_n := coalesce(array_upper(v_win, 1), 0);
      -- Sorted ascending (see the top of this file): the window is full when the max-th newest
      -- stamp is inside it, and it is free again when that stamp leaves.
      IF v_max = 0 OR (cardinality(v_win) >= v_max AND v_win[v_n - v_max + 1] > v_now - v_per) THEN
        v_retry := CASE WHEN v_max = 0 THEN NULL
                        ELSE greatest(0, extract(epoch FROM (v_win[v_n - v_max + 1] + v_per - v_now)))::double precision END;
        IF r->>'action' = 'require_approval' THEN
          v_needs := v_needs || jsonb_build_object('rule', r->>'name',
            'reason', format('limit "%s": %s calls per %s s reached', r->>'name', v_max, r->>'per_s'));
        ELSE
          v_denies := v_denies || jsonb_build_object('rule', r->>'name', 'retry', v_retry,
            'reason', format('limit "%s": %s calls per %s s reached', r->>'name', v_max, r->>'per_s'));
        END IF;
      END IF;
    END LOOP;

    v_arr := coalesce(p->'sinks', '[]');
    FOR i IN 0 .. jsonb_array_length(v_arr) - 1 LOOP
      r := v_arr->i;
      SELECT tm.expires_at INTO v_exp FROM taint tm
       WHERE tm.flow = r->>'name' AND tm.scope_key = r->>'key' AND (tm.expires_at IS NULL OR tm.expires_at > v_now);
      IF FOUND THEN
        IF r->>'action' = 'require_approval' THEN
          v_needs := v_needs || jsonb_build_object('rule', r->>'name',
            'reason', format('flow "%s": an earlier call in this %s read data that must not flow here', r->>'name', r->>'scope'));
        ELSE
          v_denies := v_denies || jsonb_build_object('rule', r->>'name',
            'retry', CASE WHEN v_exp IS NULL THEN NULL ELSE extract(epoch FROM (v_exp - v_now))::double precision END,
            'reason', format('flow "%s": an earlier call in this %s read data that must not flow here', r->>'name', r->>'scope'));
        END IF;
      END IF;
    END LOOP;

    v_arr := coalesce(p->'duties_then', '[]');
    FOR i IN 0 .. jsonb_array_length(v_arr) - 1 LOOP
      r := v_arr->i;
      IF r->>'kind' = 'separation_of_duties' THEN
        IF EXISTS (SELECT 1 FROM duty_history d WHERE d.duty = r->>'name' AND d.entity = r->>'entity'
                      AND d.phase = 'first' AND d.actor = v_user) THEN
          v_denies := v_denies || jsonb_build_object('rule', r->>'name',
            'reason', format('separation of duties "%s": the same user did the first step on this entity', r->>'name'));
        END IF;
      ELSIF r->>'kind' = 'four_eyes' THEN
        IF NOT EXISTS (SELECT 1 FROM duty_history d WHERE d.duty = r->>'name' AND d.entity = r->>'entity'
                          AND d.phase = 'first' AND d.actor <> v_user) THEN
          v_denies := v_denies || jsonb_build_object('rule', r->>'name',
            'reason', format('four eyes "%s": another user must do the first step on this entity first', r->>'name'));
        END IF;
      ELSIF r->>'kind' = 'exclusive_actor' THEN
        IF EXISTS (SELECT 1 FROM duty_history d WHERE d.duty = r->>'name' AND d.entity = r->>'entity'
                      AND d.phase = 'first' AND d.actor <> v_user) THEN
          v_denies := v_denies || jsonb_build_object('rule', r->>'name',
            'reason', format('exclusive actor "%s": another user already acts on this entity', r->>'name'));
        END IF;
      ELSE
        v_denies := v_denies || jsonb_build_object('rule', r->>'name', 'reason', format('duty "%s": unknown kind', r->>'name'));
      END IF;
    END LOOP;
  END IF;

  -- Precedence: deny > require_approval > allow.
  IF v_l1 = 'deny' THEN
    v_outcome := 'deny';
    v_rule := p->'l1'->>'rule';
    v_reasons := coalesce(p->'l1'->'reasons', '[]');
  ELSIF v_l1 IS NULL OR v_l1 NOT IN ('allow', 'require_approval') THEN
    v_outcome := 'deny';
    v_reasons := jsonb_build_array('layer 1 outcome is missing or unknown');
  ELSIF jsonb_array_length(v_denies) > 0 THEN
    v_outcome := 'deny';
    v_rule := v_denies->0->>'rule';
    SELECT jsonb_agg(e->'reason'),
           CASE WHEN bool_and(jsonb_typeof(e->'retry') = 'number') THEN max((e->>'retry')::double precision) END
      INTO v_reasons, v_retry
      FROM jsonb_array_elements(v_denies) AS e;
  ELSIF v_l1 = 'require_approval' OR jsonb_array_length(v_needs) > 0 THEN
    v_rule := CASE WHEN v_l1 = 'require_approval' THEN p->'l1'->>'rule' ELSE v_needs->0->>'rule' END;
    SELECT coalesce(jsonb_agg(e->'reason'), '[]') INTO v_reasons FROM jsonb_array_elements(v_needs) AS e;
    IF v_l1 = 'require_approval' THEN
      v_reasons := coalesce(p->'l1'->'reasons', '[]') || v_reasons;
    END IF;
    v_retry := NULL;

    -- 1. An approved, unused approval within its consume window lets exactly one call through.
    SELECT * INTO v_ap FROM approvals a
     WHERE a.user_id = v_user AND a.service = v_service AND a.tool = v_tool AND a.digest = v_digest
       AND a.status = 'approved' AND a.consumed_at IS NULL
       AND a.decided_at + make_interval(secs => a.consume_within_s) > v_now
     ORDER BY a.decided_at DESC LIMIT 1;
    IF FOUND THEN
      v_outcome := 'allow';
      v_consume := v_ap.id;
      v_approval := v_ap.id;
      v_reasons := jsonb_build_array(format('approved by %s (%s)', v_ap.decided_by, v_ap.id));
    ELSE
      UPDATE approvals a SET status = 'expired'
       WHERE a.user_id = v_user AND a.service = v_service AND a.tool = v_tool AND a.digest = v_digest
         AND ((a.status = 'approved' AND a.consumed_at IS NULL
               AND a.decided_at + make_interval(secs => a.consume_within_s) <= v_now)
           OR (a.status = 'pending' AND a.expires_at <= v_now));

      -- 2. A recent human deny blocks identical calls until its timeout.
      SELECT * INTO v_ap FROM approvals a
       WHERE a.user_id = v_user AND a.service = v_service AND a.tool = v_tool AND a.digest = v_digest
         AND a.status = 'denied' AND a.decided_at + make_interval(secs => a.timeout_s) > v_now
       ORDER BY a.decided_at DESC LIMIT 1;
      IF FOUND THEN
        v_outcome := 'deny';
        v_approval := v_ap.id;
        v_retry := extract(epoch FROM (v_ap.decided_at + make_interval(secs => v_ap.timeout_s) - v_now))::double precision;
        v_reasons := jsonb_build_array(format('denied by %s (%s)%s', v_ap.decided_by, v_ap.id,
          CASE WHEN coalesce(v_ap.decision_reason, '') = '' THEN '' ELSE ': ' || v_ap.decision_reason END));
      ELSE
        -- 3. Retries while pending share the id.
        SELECT * INTO v_ap FROM approvals a
         WHERE a.user_id = v_user AND a.service = v_service AND a.tool = v_tool AND a.digest = v_digest
           AND a.status = 'pending';
        IF FOUND THEN
          v_outcome := 'pending';
          v_approval := v_ap.id;
        ELSE
          SELECT count(*) INTO v_cnt FROM approvals a WHERE a.user_id = v_user AND a.status = 'pending' AND a.expires_at > v_now;
          IF v_cnt >= (v_cfg->>'max_pending')::integer THEN
            v_outcome := 'deny';
            v_reasons := jsonb_build_array(format('%s approvals of this user are already waiting for a human; no new ones until they are decided', v_cnt));
          ELSE
            v_outcome := 'pending';
            v_approval := v_cfg->>'new_id';
            INSERT INTO approvals (id, user_id, session_id, method, service, tool, digest, rule, reasons, labels, approvers,
                                   status, timeout_s, consume_within_s, created_at, expires_at, request_decision_id, policy_revision)
            VALUES (v_approval, v_user, p->>'session', p->>'method', v_service, v_tool, v_digest, v_rule, v_reasons,
                    coalesce(p->'l1'->'labels', '[]'),
                    coalesce(v_cfg->'approvers', '[]'), 'pending', (v_cfg->>'timeout_s')::double precision,
                    (v_cfg->>'consume_within_s')::double precision, v_now,
                    v_now + make_interval(secs => (v_cfg->>'timeout_s')::double precision),
                    p->>'decision_id', p->>'revision');
            PERFORM pg_notify('mcpgw_approval', v_approval);
          END IF;
        END IF;
      END IF;
    END IF;
  ELSE
    v_outcome := 'allow';
    v_rule := p->'l1'->>'rule';
    v_reasons := coalesce(p->'l1'->'reasons', '[]');
  END IF;

  -- State changes only on a final allow.
  IF v_outcome = 'allow' THEN
    FOR i IN 0 .. jsonb_array_length(v_limits) - 1 LOOP
      r := v_limits->i;
      v_max := greatest((r->>'max')::integer, 1);
      INSERT INTO velocity AS v (rule, scope_key, stamps) VALUES (r->>'name', r->>'key', ARRAY[v_now])
      ON CONFLICT (rule, scope_key) DO UPDATE SET stamps = mcpgw_window_push(v.stamps, v_now, v_max);
    END LOOP;
    FOR i IN 0 .. jsonb_array_length(v_budgets) - 1 LOOP
      r := v_budgets->i;
      INSERT INTO budgets AS b (rule, scope_key, used, updated_at) VALUES (r->>'name', r->>'key', 1, v_now)
      ON CONFLICT (rule, scope_key) DO UPDATE SET used = b.used + 1, updated_at = v_now;
    END LOOP;
    FOR i IN 0 .. jsonb_array_length(v_sources) - 1 LOOP
      r := v_sources->i;
      INSERT INTO taint AS tm (flow, scope_key, user_id, session_id, set_at, expires_at, source_decision)
      VALUES (r->>'name', r->>'key', v_user, p->>'session', v_now,
              CASE WHEN r->'ttl_s' IS NULL OR jsonb_typeof(r->'ttl_s') = 'null' THEN NULL
                   ELSE v_now + make_interval(secs => (r->>'ttl_s')::double precision) END,
              p->>'decision_id')
      ON CONFLICT (flow, scope_key) DO UPDATE
        SET set_at = excluded.set_at, source_decision = excluded.source_decision, user_id = excluded.user_id,
            session_id = excluded.session_id,
            -- A live permanent mark stays permanent; otherwise the later expiry wins.
            expires_at = CASE WHEN excluded.expires_at IS NULL OR tm.expires_at IS NULL THEN NULL
                              ELSE greatest(tm.expires_at, excluded.expires_at) END;
    END LOOP;
    IF jsonb_array_length(coalesce(p->'duties_first', '[]')) + jsonb_array_length(coalesce(p->'duties_then', '[]')) > 0 THEN
      INSERT INTO duty_history (duty, entity, actor, phase, decision_id, at)
      SELECT e->>'name', e->>'entity', v_user, 'first', p->>'decision_id', v_now
        FROM jsonb_array_elements(coalesce(p->'duties_first', '[]')) AS e WHERE e->>'entity' IS NOT NULL
      UNION ALL
      SELECT e->>'name', e->>'entity', v_user, 'then', p->>'decision_id', v_now
        FROM jsonb_array_elements(coalesce(p->'duties_then', '[]')) AS e WHERE e->>'entity' IS NOT NULL;
    END IF;
    IF v_consume IS NOT NULL THEN
      UPDATE approvals SET consumed_at = v_now, consumed_by = p->>'decision_id' WHERE id = v_consume;
    END IF;
  END IF;

  -- In the same transaction, so the row is durable before the answer leaves.
  INSERT INTO audit_log (decision_id, at, user_id, session_id, method, service, tool, outcome, rule, reasons,
                         policy_revision, digest, approval_id)
  VALUES (p->>'decision_id', v_now, v_user, p->>'session', p->>'method', v_service, v_tool, v_outcome, v_rule,
          v_reasons, p->>'revision', v_digest, v_approval);

  RETURN jsonb_build_object('outcome', v_outcome, 'rule', v_rule, 'reasons', v_reasons,
                            'approval_id', v_approval, 'retry_after', v_retry);
END
$fn$;
