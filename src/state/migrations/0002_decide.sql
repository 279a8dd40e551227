-- The Layer 2 decision as one function, so a decision is one statement, one round trip and one
-- transaction on PostgreSQL and PGlite alike. See src/state/decide.ts for the input it receives.
--
-- Exactness: before reading any state, the function takes transaction-scoped advisory locks on
-- every key it may read or write (limit, budget, flow and duty keys, the approval key and the
-- user's approval quota), in ascending lock-id order so two decisions can never deadlock. Two
-- decisions that share no key never wait for each other; there is no global lock.

-- The last n call times, oldest first.
CREATE OR REPLACE FUNCTION mcpgw_keep_last(p_stamps timestamptz[], p_n integer) RETURNS timestamptz[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(array_agg(t ORDER BY t), '{}')
  FROM (SELECT t FROM unnest(p_stamps) AS t ORDER BY t DESC LIMIT greatest(p_n, 0)) AS last_n
$$;

CREATE OR REPLACE FUNCTION mcpgw_decide(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  v_now      timestamptz;
  v_lock     bigint;
  v_user     text := p->>'user';
  v_service  text := p->>'service';
  v_tool     text := p->>'tool';
  v_digest   text := p->>'digest';
  v_l1       text := p->'l1'->>'outcome';
  v_cfg      jsonb := p->'approval';
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
  FOR v_lock IN
    SELECT DISTINCT hashtextextended(k, 0) FROM jsonb_array_elements_text(coalesce(p->'locks', '[]')) AS k ORDER BY 1
  LOOP
    PERFORM pg_advisory_xact_lock(v_lock);
  END LOOP;
  -- Taken after the locks, so call times are in lock order and windows stay exact.
  v_now := clock_timestamp();

  -- Problems the caller found while expanding rules (unknown rule, missing session or entity).
  v_denies := coalesce(p->'errors', '[]');

  IF v_l1 IS DISTINCT FROM 'deny' THEN
    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p->'preconditions', '[]')) LOOP
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

    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p->'budgets', '[]')) LOOP
      SELECT b.used INTO v_num FROM budgets b WHERE b.rule = r->>'name' AND b.scope_key = r->>'key';
      v_num := coalesce(v_num, 0);
      IF v_num >= (r->>'max')::bigint THEN
        v_denies := v_denies || jsonb_build_object('rule', r->>'name',
          'reason', format('budget "%s" is used up (%s of %s)', r->>'name', v_num, r->>'max'));
      END IF;
    END LOOP;

    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p->'limits', '[]')) LOOP
      v_max := (r->>'max')::integer;
      v_per := make_interval(secs => (r->>'per_s')::double precision);
      SELECT array_agg(t ORDER BY t) INTO v_win
        FROM velocity v, unnest(v.stamps) AS t
       WHERE v.rule = r->>'name' AND v.scope_key = r->>'key' AND t > v_now - v_per;
      v_cnt := coalesce(cardinality(v_win), 0);
      IF v_cnt >= v_max THEN
        -- Free again when the oldest call that keeps the window full leaves it.
        v_retry := CASE WHEN v_max = 0 THEN NULL
                        ELSE greatest(0, extract(epoch FROM (v_win[v_cnt - v_max + 1] + v_per - v_now)))::double precision END;
        IF r->>'action' = 'require_approval' THEN
          v_needs := v_needs || jsonb_build_object('rule', r->>'name',
            'reason', format('limit "%s": %s calls per %s s reached', r->>'name', v_max, r->>'per_s'));
        ELSE
          v_denies := v_denies || jsonb_build_object('rule', r->>'name', 'retry', v_retry,
            'reason', format('limit "%s": %s calls per %s s reached', r->>'name', v_max, r->>'per_s'));
        END IF;
      END IF;
    END LOOP;

    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p->'sinks', '[]')) LOOP
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

    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p->'duties_then', '[]')) LOOP
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
            INSERT INTO approvals (id, user_id, session_id, method, service, tool, digest, rule, reasons, approvers,
                                   status, timeout_s, consume_within_s, created_at, expires_at, request_decision_id, policy_revision)
            VALUES (v_approval, v_user, p->>'session', p->>'method', v_service, v_tool, v_digest, v_rule, v_reasons,
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
    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p->'limits', '[]')) LOOP
      INSERT INTO velocity AS v (rule, scope_key, stamps) VALUES (r->>'name', r->>'key', ARRAY[v_now])
      ON CONFLICT (rule, scope_key) DO UPDATE
        SET stamps = mcpgw_keep_last(v.stamps || v_now, greatest((r->>'max')::integer, 1));
    END LOOP;
    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p->'budgets', '[]')) LOOP
      INSERT INTO budgets AS b (rule, scope_key, used, updated_at) VALUES (r->>'name', r->>'key', 1, v_now)
      ON CONFLICT (rule, scope_key) DO UPDATE SET used = b.used + 1, updated_at = v_now;
    END LOOP;
    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p->'sources', '[]')) LOOP
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
    INSERT INTO duty_history (duty, entity, actor, phase, decision_id, at)
    SELECT e->>'name', e->>'entity', v_user, 'first', p->>'decision_id', v_now
      FROM jsonb_array_elements(coalesce(p->'duties_first', '[]')) AS e WHERE e->>'entity' IS NOT NULL
    UNION ALL
    SELECT e->>'name', e->>'entity', v_user, 'then', p->>'decision_id', v_now
      FROM jsonb_array_elements(coalesce(p->'duties_then', '[]')) AS e WHERE e->>'entity' IS NOT NULL;
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

-- approve / deny by a human, audited in the same transaction. Never raises for a refused decision:
-- the refusal is returned (and audited) instead.
CREATE OR REPLACE FUNCTION mcpgw_approval_decide(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
  v_ap       approvals%ROWTYPE;
  v_now      timestamptz;
  v_err      text;
  v_msg      text;
  v_decider  text := p->>'decider';
  v_role     text := p->>'role';
  v_approve  boolean := (p->>'decision') = 'approve';
  v_override boolean := false;
  v_listed   boolean;
  v_found    boolean;
BEGIN
  SELECT * INTO v_ap FROM approvals WHERE id = p->>'id' FOR UPDATE;
  v_found := FOUND;
  v_now := clock_timestamp();
  IF NOT v_found THEN
    v_err := 'not_found';
    v_msg := format('approval %s does not exist', p->>'id');
  ELSE
    v_listed := v_ap.approvers ? v_decider;
    IF v_role NOT IN ('admin', 'approver') THEN
      v_err := 'forbidden';
      v_msg := 'only admins and listed approvers decide approvals';
    ELSIF v_listed THEN
      NULL;
    ELSIF v_role = 'admin' AND jsonb_array_length(v_ap.approvers) = 0 THEN
      NULL;
    ELSIF v_role = 'admin' AND coalesce((p->>'override')::boolean, false) THEN
      v_override := true;
    ELSIF v_role = 'admin' THEN
      v_err := 'forbidden';
      v_msg := format('%s is not among the approvers of %s; an admin may decide anyway with override', v_decider, v_ap.id);
    ELSE
      v_err := 'forbidden';
      v_msg := format('%s is not among the approvers of %s', v_decider, v_ap.id);
    END IF;
    IF v_err IS NULL AND v_ap.status = 'pending' AND v_ap.expires_at <= v_now THEN
      UPDATE approvals SET status = 'expired' WHERE id = v_ap.id RETURNING * INTO v_ap;
      v_err := 'expired';
      v_msg := format('approval %s expired at %s', v_ap.id, v_ap.expires_at);
    ELSIF v_err IS NULL AND v_ap.status <> 'pending' THEN
      v_err := 'not_pending';
      v_msg := format('approval %s is already %s', v_ap.id, v_ap.status);
    END IF;
    IF v_err IS NULL THEN
      UPDATE approvals
         SET status = CASE WHEN v_approve THEN 'approved' ELSE 'denied' END,
             decided_by = v_decider, decided_at = v_now, decision_reason = p->>'reason', override = v_override
       WHERE id = v_ap.id
      RETURNING * INTO v_ap;
      PERFORM pg_notify('mcpgw_approval', v_ap.id);
    END IF;
  END IF;

  INSERT INTO audit_log (decision_id, at, user_id, method, service, tool, outcome, rule, reasons, digest, approval_id, detail)
  VALUES (p->>'decision_id', v_now, v_decider,
          CASE WHEN v_approve THEN 'approval/approve' ELSE 'approval/deny' END,
          v_ap.service, v_ap.tool, CASE WHEN v_err IS NULL THEN 'allow' ELSE 'deny' END, v_ap.rule,
          CASE WHEN v_err IS NULL THEN jsonb_build_array(coalesce(p->>'reason', '')) ELSE jsonb_build_array(v_msg) END,
          v_ap.digest, coalesce(v_ap.id, p->>'id'),
          jsonb_build_object('override', v_override, 'override_requested', coalesce((p->>'override')::boolean, false),
                             'role', v_role, 'requester', v_ap.user_id, 'error', v_err));

  RETURN jsonb_build_object('error', v_err, 'message', v_msg,
                            'approval', CASE WHEN v_ap.id IS NULL THEN NULL ELSE to_jsonb(v_ap) END);
END
$fn$;

-- Seals a batch computed by the sealer: gap-free sequence numbers after the head it saw. Raises
-- (and changes nothing) if another sealer moved the head meanwhile.
CREATE OR REPLACE FUNCTION mcpgw_seal(p_head bigint, p_rows jsonb) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
  v_max bigint;
  v_n   integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('mcpgw:audit-seal', 0));
  SELECT coalesce(max(seq), 0) INTO v_max FROM audit_log;
  IF v_max <> p_head THEN
    RAISE EXCEPTION 'audit head moved from % to %', p_head, v_max USING ERRCODE = '40001';
  END IF;
  UPDATE audit_log a SET seq = p_head + x.ord, hash = decode(x.h, 'hex')
    FROM (SELECT (e->>0)::bigint AS id, e->>1 AS h, ord
            FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS t (e, ord)) AS x
   WHERE a.id = x.id AND a.seq IS NULL;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  IF v_n <> jsonb_array_length(p_rows) THEN
    RAISE EXCEPTION 'audit rows changed while sealing' USING ERRCODE = '40001';
  END IF;
  RETURN v_n;
END
$fn$;
