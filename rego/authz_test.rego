# Unit tests for rego/authz.rego: `opa test rego/ --ignore '*.json' -v` (test/policy/rego.test.ts).
# These run Go's builtins; test/policy/layer1-eval.test.ts runs the compiled Wasm on fixtures.
package mcpgw.authz_test

import data.mcpgw.authz

# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

no_hints := {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}

no_layer2 := {
	"limits": [],
	"budgets": [],
	"preconditions": [],
	"flows": {"sources": [], "sinks": []},
	"duties": {"first": [], "then": []},
}

empty_layer2_data := {"limits": [], "budgets": [], "preconditions": [], "flows": [], "duties": []}

rule(name, index, priority, match, when, action) := {
	"name": name,
	"index": index,
	"priority": priority,
	"match": match,
	"when": when,
	"action": action,
	"approvers": [],
	"timeout": null,
}

catch_all := rule("Default deny", 99, 999, "all", {}, "deny")

allow_all := [rule("Allow all", 0, 0, "all", {}, "allow")]

base_data := {
	"catalog": {
		"gmail": {"enabled": true, "suspended": false, "tools": null},
		"bank": {"enabled": true, "suspended": false, "tools": ["transfer", "get_balance"]},
	},
	"tools": {"gmail": {
		"send_email": {"verb": "create", "hints": {"openWorldHint": true}, "labels": ["category:communication"]},
		"read_email": {"verb": "get", "hints": {"readOnlyHint": true, "idempotentHint": true}, "labels": ["data:private"]},
		"archive": {"verb": null, "hints": {}, "labels": []},
	}},
	"classifiers": {},
	"extractors": {},
	"rules": allow_all,
	"layer2": empty_layer2_data,
	"pattern_index": {},
}

base_input := {
	"user": {"id": "alice", "role": "agent"},
	"grants": {"gmail": ["*"], "bank": ["transfer"]},
	"method": "tools/call",
	"service": "gmail",
	"name": "send_email",
	"arguments": {},
}

# The decision for `inp` against `d` (every field of the data document replaced).
eval(inp, d) := result if {
	result := authz.decision with input as inp
		with data.catalog as d.catalog
		with data.tools as d.tools
		with data.classifiers as d.classifiers
		with data.extractors as d.extractors
		with data.rules as d.rules
		with data.layer2 as d.layer2
		with data.pattern_index as d.pattern_index
}

# Shallow: a key of `b` replaces that key of `a` whole (object.union would merge nested objects).
merge(a, b) := object.union(object.remove(a, {k | some k, _ in b}), b)

call(name, args) := merge(base_input, {"name": name, "arguments": args})

with_data(patch) := merge(base_data, patch)

# Labels of `gmail:send_email` with these classifiers and arguments.
classified(classifiers, args) := eval(call("send_email", args), with_data({"classifiers": {"gmail": {"send_email": classifiers}}})).classification.labels

one(field, op, value) := [{"field": field, "op": op, "value": value, "labels": ["hit:yes"]}]

hit(field, op, value, args) if "hit:yes" in classified(one(field, op, value), args)

# ---------------------------------------------------------------------------------------------
# Gate: catalog and grants
# ---------------------------------------------------------------------------------------------

test_allowed_call if {
	d := eval(base_input, base_data)
	d.outcome == "allow"
	d.code == "rule"
	d.rule == "Allow all"
	d.reasons == ["allowed by policy rule 'Allow all'"]
	d.approval == null
}

test_unknown_service if {
	d := eval(merge(base_input, {"service": "nope"}), base_data)
	d.outcome == "deny"
	d.code == "unknown_service"
	d.rule == null
	d.approval == null
	d.layer2 == no_layer2
	d.reasons == ["service 'nope' is not in the catalog"]
}

test_malformed_catalog_entry_is_unknown if {
	d := eval(base_input, with_data({"catalog": {"gmail": true}}))
	d.code == "unknown_service"
}

test_service_disabled if {
	d := eval(base_input, with_data({"catalog": {"gmail": {"enabled": false, "suspended": false, "tools": null}}}))
	d.outcome == "deny"
	d.code == "service_disabled"
	d.reasons == ["service 'gmail' is disabled"]
}

test_enabled_must_be_true if {
	eval(base_input, with_data({"catalog": {"gmail": {"enabled": "true", "suspended": false, "tools": null}}})).code == "service_disabled"
	eval(base_input, with_data({"catalog": {"gmail": {"suspended": false, "tools": null}}})).code == "service_disabled"
}

test_disabled_comes_before_suspended if {
	eval(base_input, with_data({"catalog": {"gmail": {"enabled": false, "suspended": true, "tools": null}}})).code == "service_disabled"
}

test_service_suspended if {
	d := eval(base_input, with_data({"catalog": {"gmail": {"enabled": true, "suspended": true, "tools": null}}}))
	d.outcome == "deny"
	d.code == "service_suspended"
}

test_only_false_means_not_suspended if {
	eval(base_input, with_data({"catalog": {"gmail": {"enabled": true, "tools": null}}})).code == "service_suspended"
	eval(base_input, with_data({"catalog": {"gmail": {"enabled": true, "suspended": null, "tools": null}}})).code == "service_suspended"
}

test_tool_list if {
	inp := merge(base_input, {"service": "bank", "name": "transfer"})
	eval(inp, base_data).code == "rule"
	d := eval(merge(inp, {"name": "close_account"}), base_data)
	d.code == "tool_disabled"
	d.reasons == ["tool 'close_account' is not enabled for service 'bank'"]
}

test_malformed_tool_list_disables if {
	eval(base_input, with_data({"catalog": {"gmail": {"enabled": true, "suspended": false}}})).code == "tool_disabled"
	eval(base_input, with_data({"catalog": {"gmail": {"enabled": true, "suspended": false, "tools": "send_email"}}})).code == "tool_disabled"
}

test_tool_list_applies_to_resources_and_prompts if {
	inp := merge(base_input, {"service": "bank", "method": "resources/read", "name": "bank://statements/1"})
	eval(inp, base_data).code == "tool_disabled"
}

test_no_grant_for_service if {
	d := eval(merge(base_input, {"grants": {"bank": ["*"]}}), base_data)
	d.outcome == "deny"
	d.code == "no_grant"
	d.layer2 == no_layer2
	d.reasons == ["user 'alice' has no grant for 'send_email' of service 'gmail'"]
}

test_grant_of_another_tool if {
	eval(merge(base_input, {"grants": {"gmail": ["read_email"]}}), base_data).code == "no_grant"
}

test_grant_of_the_exact_tool if {
	eval(merge(base_input, {"grants": {"gmail": ["read_email", "send_email"]}}), base_data).code == "rule"
}

test_grant_must_be_a_list if {
	eval(merge(base_input, {"grants": {"gmail": "*"}}), base_data).code == "no_grant"
	eval(merge(base_input, {"grants": {"gmail": {"a": "*"}}}), base_data).code == "no_grant"
	eval(merge(base_input, {"grants": null}), base_data).code == "no_grant"
}

test_gate_failure_still_classifies if {
	d := eval(merge(base_input, {"grants": {}}), base_data)
	d.code == "no_grant"
	d.classification.verb == "create"
	d.classification.labels == ["category:communication"]
}

# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------

test_no_policies if {
	d := eval(base_input, with_data({"rules": []}))
	d.outcome == "deny"
	d.code == "no_policies"
	d.rule == null
	d.reasons == ["no policy rules are loaded, so every call is denied"]
}

test_rules_not_a_list_is_no_policies if {
	eval(base_input, with_data({"rules": {"a": catch_all}})).code == "no_policies"
}

test_no_matching_rule if {
	d := eval(base_input, with_data({"rules": [rule("Reads", 0, 0, "all", {"readOnlyHint": true}, "allow")]}))
	d.outcome == "deny"
	d.code == "no_matching_rule"
	d.rule == null
	d.reasons == ["no policy rule matched, so the call is denied"]
}

test_first_matching_rule_wins if {
	rules := [
		rule("Reads", 0, 10, "all", {"readOnlyHint": true}, "allow"),
		rule("Writes", 1, 20, "all", {"verb": "create"}, "require_approval"),
		rule("Open world", 2, 30, "all", {"openWorldHint": true}, "deny"),
		catch_all,
	]
	eval(base_input, with_data({"rules": rules})).rule == "Writes"
	eval(call("read_email", {}), with_data({"rules": rules})).rule == "Reads"
	eval(call("archive", {}), with_data({"rules": rules})).rule == "Default deny"
}

test_ties_break_by_list_order if {
	a := rule("A", 0, 50, "all", {}, "allow")
	b := rule("B", 1, 50, "all", {}, "deny")
	eval(base_input, with_data({"rules": [a, b]})).rule == "A"
	eval(base_input, with_data({"rules": [b, a]})).rule == "B"
}

test_all_with_empty_when_matches_everything if {
	eval(base_input, with_data({"rules": [rule("Any", 0, 0, "all", {}, "deny")]})).rule == "Any"
}

test_any_with_empty_when_never_matches if {
	eval(base_input, with_data({"rules": [rule("Never", 0, 0, "any", {}, "deny")]})).code == "no_matching_rule"
	eval(base_input, with_data({"rules": [rule("Never", 0, 0, "any", {"labels": []}, "deny")]})).code == "no_matching_rule"
}

test_all_needs_every_condition if {
	when := {"verb": "create", "openWorldHint": true, "labels": ["category:communication"]}
	eval(base_input, with_data({"rules": [rule("R", 0, 0, "all", when, "deny")]})).rule == "R"
	when2 := merge(when, {"readOnlyHint": true})
	eval(base_input, with_data({"rules": [rule("R", 0, 0, "all", when2, "deny")]})).code == "no_matching_rule"
}

test_all_needs_every_label if {
	rules := [rule("R", 0, 0, "all", {"labels": ["category:communication", "scope:external"]}, "deny")]
	eval(base_input, with_data({"rules": rules})).code == "no_matching_rule"
}

test_all_with_empty_label_list_holds if {
	eval(base_input, with_data({"rules": [rule("R", 0, 0, "all", {"labels": []}, "deny")]})).rule == "R"
}

test_any_needs_one_condition if {
	rules := [rule("R", 0, 0, "any", {"readOnlyHint": true, "verb": "create"}, "deny")]
	eval(base_input, with_data({"rules": rules})).rule == "R"
	rules2 := [rule("R", 0, 0, "any", {"readOnlyHint": true, "destructiveHint": true}, "deny")]
	eval(base_input, with_data({"rules": rules2})).code == "no_matching_rule"
}

test_any_hint_false_condition if {
	rules := [rule("R", 0, 0, "any", {"readOnlyHint": false}, "deny")]
	eval(base_input, with_data({"rules": rules})).rule == "R"
}

# The upstream Rego required every label even under `any`; each label is its own condition here.
test_any_counts_each_label if {
	rules := [rule("R", 0, 0, "any", {"labels": ["scope:external", "category:communication"]}, "deny")]
	eval(base_input, with_data({"rules": rules})).rule == "R"
	rules2 := [rule("R", 0, 0, "any", {"labels": ["scope:external", "data:pii"]}, "deny")]
	eval(base_input, with_data({"rules": rules2})).code == "no_matching_rule"
}

test_null_verb_never_matches_a_verb_condition if {
	eval(call("archive", {}), with_data({"rules": [rule("R", 0, 0, "all", {"verb": "get"}, "deny")]})).code == "no_matching_rule"
	eval(call("archive", {}), with_data({"rules": [rule("R", 0, 0, "any", {"verb": "get"}, "deny")]})).code == "no_matching_rule"
	eval(call("frobnicate", {}), with_data({"rules": [rule("R", 0, 0, "all", {"verb": null}, "deny")]})).code == "no_matching_rule"
}

test_unknown_when_key_fails_all_and_is_ignored_by_any if {
	eval(base_input, with_data({"rules": [rule("R", 0, 0, "all", {"service": "gmail"}, "allow")]})).code == "no_matching_rule"
	eval(base_input, with_data({"rules": [rule("R", 0, 0, "any", {"service": "gmail"}, "allow")]})).code == "no_matching_rule"
	rules := [rule("R", 0, 0, "any", {"service": "gmail", "verb": "create"}, "allow")]
	eval(base_input, with_data({"rules": rules})).rule == "R"
}

test_unknown_match_mode_never_matches if {
	eval(base_input, with_data({"rules": [rule("R", 0, 0, "some", {}, "allow")]})).code == "no_matching_rule"
}

test_require_approval if {
	r := merge(rule("Ask", 0, 0, "all", {}, "require_approval"), {"approvers": ["alice", "bob"], "timeout": "30m"})
	d := eval(base_input, with_data({"rules": [r]}))
	d.outcome == "require_approval"
	d.code == "rule"
	d.rule == "Ask"
	d.approval == {"approvers": ["alice", "bob"], "timeout": "30m"}
	d.reasons == ["policy rule 'Ask' requires a human's approval"]
}

test_require_approval_without_approvers if {
	d := eval(base_input, with_data({"rules": [rule("Ask", 0, 0, "all", {}, "require_approval")]}))
	d.approval == {"approvers": [], "timeout": null}
}

test_deny_rule if {
	r := merge(rule("Block", 0, 0, "all", {}, "deny"), {"approvers": ["x"], "timeout": "1h"})
	d := eval(base_input, with_data({"rules": [r]}))
	d.outcome == "deny"
	d.code == "rule"
	d.approval == null
	d.reasons == ["denied by policy rule 'Block'"]
}

test_unknown_action_denies if {
	d := eval(base_input, with_data({"rules": [rule("Odd", 0, 0, "all", {}, "npl_evaluate")]}))
	d.outcome == "deny"
	d.code == "rule"
	d.approval == null
}

test_non_string_rule_name if {
	r := merge(rule("x", 0, 0, "all", {}, "deny"), {"name": 7})
	d := eval(base_input, with_data({"rules": [r]}))
	d.outcome == "deny"
	d.rule == null
	d.reasons == ["denied"]
}

# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------

test_entry_classification if {
	c := eval(base_input, base_data).classification
	c.verb == "create"
	c.hints == merge(no_hints, {"openWorldHint": true})
	c.labels == ["category:communication"]
}

test_entry_missing_hints_are_false if {
	eval(call("archive", {}), base_data).classification == {"verb": null, "hints": no_hints, "labels": []}
}

test_entry_only_true_is_true if {
	d := with_data({"tools": {"gmail": {"x": {"verb": "get", "hints": {"readOnlyHint": "yes", "destructiveHint": 1}, "labels": []}}}})
	eval(call("x", {}), d).classification.hints == no_hints
}

test_entry_with_invalid_verb_has_none if {
	d := with_data({"tools": {"gmail": {"x": {"verb": "patch", "hints": {}, "labels": []}}}})
	eval(call("x", {}), d).classification.verb == null
}

test_entry_wins_over_prefix if {
	d := with_data({"tools": {"gmail": {"delete_draft": {"verb": "update", "hints": {}, "labels": []}}}})
	c := eval(call("delete_draft", {}), d).classification
	c.verb == "update"
	c.hints == no_hints
}

fallback(name) := eval(call(name, {}), base_data).classification

test_prefix_get if {
	every n in ["read_x", "get_x", "search_x", "fetch_x"] {
		fallback(n) == {"verb": "get", "hints": merge(no_hints, {"readOnlyHint": true, "idempotentHint": true}), "labels": []}
	}
}

test_prefix_list if {
	fallback("list_x") == {"verb": "list", "hints": merge(no_hints, {"readOnlyHint": true, "idempotentHint": true}), "labels": []}
}

test_prefix_create_and_update if {
	every n in ["create_x", "send_x", "add_x"] {
		fallback(n) == {"verb": "create", "hints": no_hints, "labels": []}
	}
	every n in ["update_x", "edit_x", "modify_x"] {
		fallback(n) == {"verb": "update", "hints": no_hints, "labels": []}
	}
}

test_prefix_delete if {
	every n in ["delete_x", "remove_x", "revoke_x"] {
		fallback(n) == {"verb": "delete", "hints": merge(no_hints, {"destructiveHint": true}), "labels": []}
	}
}

test_prefix_needs_the_underscore if {
	every n in ["search", "listing", "readme", "download_x", "Get_x", ""] {
		fallback(n) == {"verb": null, "hints": no_hints, "labels": []}
	}
}

test_resources_and_prompts_read if {
	every m in ["resources/read", "resources/subscribe", "prompts/get"] {
		inp := merge(base_input, {"method": m, "name": "delete_everything"})
		c := eval(inp, base_data).classification
		c.verb == "get"
		c.hints == merge(no_hints, {"readOnlyHint": true, "idempotentHint": true})
	}
}

test_prompt_with_an_entry_uses_it if {
	inp := merge(base_input, {"method": "prompts/get", "name": "archive"})
	eval(inp, base_data).classification.verb == null
}

test_labels_sorted_and_unique if {
	cls := [
		{"field": "to", "op": "present", "labels": ["z:last", "category:communication"]},
		{"field": "to", "op": "present", "labels": ["a:first", "z:last"]},
	]
	classified(cls, {"to": "x"}) == ["a:first", "category:communication", "z:last"]
}

test_classifiers_of_other_tools_do_not_apply if {
	d := with_data({"classifiers": {"gmail": {"read_email": one("to", "present", null)}}})
	eval(call("send_email", {"to": "x"}), d).classification.labels == ["category:communication"]
}

test_classifiers_apply_without_an_entry if {
	d := with_data({"classifiers": {"gmail": {"new_tool": one("to", "present", null)}}})
	eval(call("new_tool", {"to": "x"}), d).classification.labels == ["hit:yes"]
}

test_non_string_labels_are_dropped if {
	cls := [{"field": "to", "op": "present", "labels": ["ok:yes", 7, null]}]
	classified(cls, {"to": "x"}) == ["category:communication", "ok:yes"]
}

# --- contains / not_contains ------------------------------------------------------------------

test_contains_string if {
	hit("to", "contains", "@acme.com", {"to": "bob@acme.com"})
	not hit("to", "contains", "@acme.com", {"to": "bob@evil.com"})
}

test_contains_list_any_element if {
	hit("to", "contains", "@acme.com", {"to": ["eve@evil.com", "bob@acme.com"]})
	not hit("to", "contains", "@acme.com", {"to": ["eve@evil.com"]})
	not hit("to", "contains", "@acme.com", {"to": []})
}

test_contains_scalars_by_string_form if {
	hit("n", "contains", "42", {"n": 1425})
	hit("b", "contains", "ru", {"b": true})
	hit("x", "contains", "ul", {"x": null})
}

# Objects and nested lists have no text (their JSON differs between Go and Wasm): never contained.
test_contains_never_matches_objects if {
	not hit("to", "contains", "@acme.com", {"to": {"address": "bob@acme.com"}})
	not hit("to", "contains", "@acme.com", {"to": [{"address": "bob@acme.com"}]})
	not hit("to", "contains", "@acme.com", {"to": [["bob@acme.com"]]})
}

test_contains_absent_is_false if {
	not hit("to", "contains", "@acme.com", {})
	not hit("to", "contains", "@acme.com", {"cc": "bob@acme.com"})
}

test_contains_needs_a_string_value if {
	not hit("n", "contains", 42, {"n": 42})
	not hit("n", "contains", null, {"n": "null"})
}

test_not_contains_string if {
	hit("to", "not_contains", "@acme.com", {"to": "eve@evil.com"})
	not hit("to", "not_contains", "@acme.com", {"to": "bob@acme.com"})
}

# The upstream policy matched not_contains on every list (a type error read as "does not contain").
test_not_contains_list_any_element_lacks if {
	hit("to", "not_contains", "@acme.com", {"to": ["bob@acme.com", "eve@evil.com"]})
	not hit("to", "not_contains", "@acme.com", {"to": ["bob@acme.com", "carol@acme.com"]})
	not hit("to", "not_contains", "@acme.com", {"to": []})
}

test_not_contains_absent_is_false if {
	not hit("to", "not_contains", "@acme.com", {})
}

test_not_contains_scalars if {
	hit("to", "not_contains", "@acme.com", {"to": null})
	hit("to", "not_contains", "@acme.com", {"to": 12})
	not hit("n", "not_contains", "42", {"n": 1425})
}

# A type mismatch must not hide what not_contains is there to flag.
test_not_contains_matches_objects if {
	hit("to", "not_contains", "@acme.com", {"to": {"address": "bob@acme.com"}})
	hit("to", "not_contains", "@acme.com", {"to": ["bob@acme.com", {"address": "bob@acme.com"}]})
	hit("to", "not_contains", "@acme.com", {"to": [["bob@acme.com"]]})
}

test_not_contains_needs_a_string_value if {
	not hit("to", "not_contains", 1, {"to": "x"})
}

# --- present / absent ------------------------------------------------------------------------

test_present if {
	every v in ["x", 0, true, [], {}, " "] {
		hit("bcc", "present", null, {"bcc": v})
	}
	every v in [null, false, ""] {
		not hit("bcc", "present", null, {"bcc": v})
	}
	not hit("bcc", "present", null, {})
}

test_absent if {
	every v in [null, false, ""] {
		hit("bcc", "absent", null, {"bcc": v})
	}
	hit("bcc", "absent", null, {})
	not hit("bcc", "absent", null, {"bcc": "x"})
	not hit("bcc", "absent", null, {"bcc": []})
}

test_arguments_not_an_object if {
	d := eval(merge(base_input, {"arguments": ["bcc"]}), with_data({"classifiers": {"gmail": {"send_email": one("bcc", "absent", null)}}}))
	"hit:yes" in d.classification.labels
}

# --- greater_than / less_than ----------------------------------------------------------------

test_greater_than_numbers if {
	hit("amount", "greater_than", 1000, {"amount": 1500})
	hit("amount", "greater_than", 1000, {"amount": 1000.5})
	not hit("amount", "greater_than", 1000, {"amount": 1000})
	not hit("amount", "greater_than", 1000, {"amount": -5})
}

test_less_than_numbers if {
	hit("amount", "less_than", 0, {"amount": -1})
	not hit("amount", "less_than", 0, {"amount": 0})
}

test_comparisons_read_numeric_strings if {
	hit("amount", "greater_than", 1000, {"amount": "1500"})
	hit("amount", "greater_than", 1000, {"amount": "1e4"})
	hit("amount", "less_than", 0, {"amount": "-0.5"})
	not hit("amount", "greater_than", 1000, {"amount": "999"})
}

test_comparisons_ignore_other_strings if {
	every s in ["lots", "0x1p20", " 5000", "5000 ", "Inf", "NaN", "1_000_000", "+5000", ""] {
		not hit("amount", "greater_than", 1000, {"amount": s})
		not hit("amount", "less_than", 1000000, {"amount": s})
	}
}

test_comparisons_ignore_booleans_null_and_objects if {
	every v in [true, false, null, {"v": 5000}] {
		not hit("amount", "greater_than", 0, {"amount": v})
		not hit("amount", "less_than", 1000000, {"amount": v})
	}
}

test_comparisons_list_any_element if {
	hit("amount", "greater_than", 1000, {"amount": [5, "2000", "x"]})
	not hit("amount", "greater_than", 1000, {"amount": [5, "20", true]})
	not hit("amount", "greater_than", 1000, {"amount": []})
}

test_comparisons_need_a_number_value if {
	not hit("amount", "greater_than", "1000", {"amount": 5000})
	not hit("amount", "less_than", null, {"amount": -5})
}

test_comparisons_absent_is_false if {
	not hit("amount", "greater_than", 0, {})
	not hit("amount", "less_than", 0, {})
}

# --- equals ------------------------------------------------------------------------------------

test_equals_strings if {
	hit("currency", "equals", "EUR", {"currency": "EUR"})
	not hit("currency", "equals", "EUR", {"currency": "eur"})
	not hit("currency", "equals", "EUR", {"currency": "EURO"})
}

test_equals_by_string_form if {
	hit("amount", "equals", 500, {"amount": 500})
	hit("amount", "equals", 500, {"amount": "500"})
	hit("amount", "equals", "500", {"amount": 500})
	hit("flag", "equals", "true", {"flag": true})
	not hit("amount", "equals", 500, {"amount": 501})
}

test_equals_list_any_element if {
	hit("currency", "equals", "EUR", {"currency": ["USD", "EUR"]})
	not hit("currency", "equals", "EUR", {"currency": ["USD"]})
}

test_equals_needs_a_scalar_value if {
	not hit("x", "equals", null, {"x": null})
	not hit("x", "equals", ["a"], {"x": ["a"]})
}

test_equals_absent_is_false if {
	not hit("currency", "equals", "EUR", {})
}

# --- matches -------------------------------------------------------------------------------------

test_matches if {
	hit("subject", "matches", `^(?:(?i).*urgent.*)$`, {"subject": "Re: URGENT payment"})
	not hit("subject", "matches", `^(?:(?i).*urgent.*)$`, {"subject": "weekly"})
}

test_matches_is_whole_value_when_anchored if {
	not hit("country", "matches", `^(?:KP|IR)$`, {"country": "KPX"})
	hit("country", "matches", `^(?:KP|IR)$`, {"country": "IR"})
}

test_matches_list_any_element if {
	hit("country", "matches", `^(?:KP|IR)$`, {"country": ["DE", "KP"]})
	not hit("country", "matches", `^(?:KP|IR)$`, {"country": ["DE", "FR"]})
}

test_matches_scalars_by_string_form if {
	hit("n", "matches", `^[0-9]+$`, {"n": 1234})
}

test_invalid_pattern_never_matches if {
	not hit("s", "matches", `^(unclosed$`, {"s": "(unclosed"})
	not hit("s", "matches", 5, {"s": "5"})
}

test_matches_absent_is_false if {
	not hit("s", "matches", `^.*$`, {})
}

test_unknown_op_never_matches if {
	not hit("s", "startswith", "a", {"s": "abc"})
}

test_classifier_without_field_never_matches if {
	cls := [{"op": "present", "labels": ["hit:yes"]}]
	not "hit:yes" in classified(cls, {"to": "x"})
}

# --- extractors -------------------------------------------------------------------------------

extract(extractors, args) := eval(merge(base_input, {"service": "bank", "name": "transfer", "arguments": args}), with_data({"extractors": {"bank": {"transfer": extractors}}})).classification.labels

test_extractor_scalars if {
	ex := [{"field": "amount", "prefix": "arg:amount"}, {"field": "country", "prefix": "arg:country"}]
	extract(ex, {"amount": 500, "country": "NK"}) == ["arg:amount:500", "arg:country:NK"]
	extract(ex, {"amount": 12.5, "country": true}) == ["arg:amount:12.5", "arg:country:true"]
	extract(ex, {"amount": "500"}) == ["arg:amount:500"]
}

test_extractor_skips_absent_null_and_objects if {
	ex := [{"field": "amount", "prefix": "arg:amount"}]
	extract(ex, {}) == []
	extract(ex, {"amount": null}) == []
	extract(ex, {"amount": {"v": 1}}) == []
}

test_extractor_list_gives_one_label_per_scalar if {
	ex := [{"field": "to", "prefix": "arg:to"}]
	extract(ex, {"to": ["b", "a", "b", null, {"x": 1}, ["c"], 3]}) == ["arg:to:3", "arg:to:a", "arg:to:b"]
}

test_extractor_needs_a_string_prefix if {
	extract([{"field": "amount", "prefix": 7}], {"amount": 5}) == []
}

# ---------------------------------------------------------------------------------------------
# Layer 2 selection
# ---------------------------------------------------------------------------------------------

layer2_data := {
	"limits": [
		{"name": "gmail sends", "select": {"service": "^gmail$", "tool": "^send_email$"}},
		{"name": "every call", "select": {}},
		{"name": "bank only", "select": {"service": "^bank$"}},
		{"name": "writes", "select": {"verb": "^(create|update|delete)$"}},
		{"name": "send prefix", "select": {"tool": "^send_.*$"}},
	],
	"budgets": [
		{"name": "open world", "select": {"hints": {"openWorldHint": true}}},
		{"name": "open world and read-only", "select": {"hints": {"openWorldHint": true, "readOnlyHint": true}}},
	],
	"preconditions": [
		{"name": "communication", "select": {"labels": ["^category:.*$"]}},
		{"name": "both labels", "select": {"labels": ["^category:.*$", "^data:pii$"]}},
	],
	"flows": [
		{"name": "private then external", "after": {"labels": ["^data:private$"]}, "then": {"service": "^gmail$", "tool": "^send_.*$"}},
		{"name": "any then any", "after": {}, "then": {}},
	],
	"duties": [{"name": "review then send", "first": {"tool": "^read_email$"}, "then": {"tool": "^send_email$"}}],
}

l2(inp, patch) := eval(inp, with_data(merge({"layer2": layer2_data}, patch))).layer2

test_layer2_selection if {
	l2(base_input, {}) == {
		"limits": ["gmail sends", "every call", "writes", "send prefix"],
		"budgets": ["open world"],
		"preconditions": ["communication"],
		"flows": {"sources": ["any then any"], "sinks": ["private then external", "any then any"]},
		"duties": {"first": [], "then": ["review then send"]},
	}
}

test_layer2_sources_and_duty_first if {
	l := l2(call("read_email", {}), {})
	l.flows.sources == ["private then external", "any then any"]
	l.flows.sinks == ["any then any"]
	l.duties == {"first": ["review then send"], "then": []}
	l.limits == ["every call"]
}

test_layer2_is_computed_whatever_rule_wins if {
	deny_all := [rule("Block", 0, 0, "all", {}, "deny")]
	d := eval(base_input, with_data({"layer2": layer2_data, "rules": deny_all}))
	d.outcome == "deny"
	"gmail sends" in d.layer2.limits
	eval(base_input, with_data({"layer2": layer2_data, "rules": []})).layer2.limits == l2(base_input, {}).limits
}

test_layer2_empty_when_the_gate_denies if {
	l2(merge(base_input, {"service": "nope"}), {}) == no_layer2
	l2(merge(base_input, {"grants": {}}), {}) == no_layer2
}

test_null_verb_never_matches_a_verb_selector if {
	not "writes" in l2(call("archive", {}), {}).limits
	"every call" in l2(call("archive", {}), {}).limits
}

test_selector_labels_need_every_pattern if {
	inp := call("send_email", {"pii": true})
	patch := {"classifiers": {"gmail": {"send_email": [{"field": "pii", "op": "present", "labels": ["data:pii"]}]}}}
	l2(inp, patch).preconditions == ["communication", "both labels"]
}

test_a_missing_layer2_list_leaves_the_others if {
	d := eval(base_input, with_data({"layer2": {"limits": [{"name": "all", "select": {}}], "budgets": "nope"}}))
	d.layer2 == merge(no_layer2, {"limits": ["all"]})
}

test_malformed_selectors_never_match if {
	bad := {"layer2": merge(empty_layer2_data, {"limits": [
		{"name": "not an object", "select": "gmail"},
		{"name": "null service", "select": {"service": null}},
		{"name": "labels not a list", "select": {"labels": "^category:.*$"}},
		{"name": "hints not an object", "select": {"hints": true}},
		{"name": "unknown hint", "select": {"hints": {"fastHint": true}}},
		{"name": "invalid pattern", "select": {"tool": "^(send$"}},
		{"name": 42, "select": {}},
	]})}
	eval(base_input, with_data(bad)).layer2.limits == []
}

# ---------------------------------------------------------------------------------------------
# pattern_index: the engine's shortcuts must agree with regex.match
# ---------------------------------------------------------------------------------------------

match_with(index, p, v) if {
	authz.pattern_match(p, v) with data.pattern_index as index
} else := false

test_shortcuts_agree_with_regex if {
	cases := [
		["^gmail$", {"exact": "gmail"}, "gmail", true],
		["^gmail$", {"exact": "gmail"}, "gmail2", false],
		["^gmail$", {"exact": "gmail"}, "gmail\n", false],
		["^a\\.b$", {"exact": "a.b"}, "a.b", true],
		["^a\\.b$", {"exact": "a.b"}, "axb", false],
		["^send_.*$", {"prefix": "send_"}, "send_email", true],
		["^send_.*$", {"prefix": "send_"}, "send_", true],
		["^send_.*$", {"prefix": "send_"}, "send_a\nb", false],
		["^send_.*$", {"prefix": "send_"}, "resend_x", false],
		["^.*_email$", {"suffix": "_email"}, "send_email", true],
		["^.*_email$", {"suffix": "_email"}, "x\n_email", false],
		["^.*_email$", {"suffix": "_email"}, "send_emails", false],
		["^.*$", {"prefix": ""}, "", true],
		["^.*$", {"prefix": ""}, "a\nb", false],
	]
	every c in cases {
		[p, shortcut, v, want] := c
		regex.match(p, v) == want
		match_with({}, p, v) == want
		match_with({p: shortcut}, p, v) == want
	}
}

test_without_an_index_every_pattern_is_a_regex if {
	authz.pattern_match("^gmail$", "gmail")
	not authz.pattern_match("^gmail$", "gmail2")
	d := authz.decision with input as base_input
		with data.catalog as base_data.catalog
		with data.tools as base_data.tools
		with data.classifiers as {}
		with data.extractors as {}
		with data.rules as allow_all
		with data.layer2 as {"limits": [{"name": "gmail", "select": {"service": "^gmail$"}}]}
	d.layer2.limits == ["gmail"]
}

test_shortcut_results if {
	match_with({"^x$": {"exact": "gmail"}}, "^x$", "gmail")
	not match_with({"^x$": {"exact": "gmail"}}, "^x$", "x")
	not match_with({"^x$": {"nonsense": 1}}, "^x$", "x")
	not match_with({"^x$": null}, "^x$", "x")
}

# ---------------------------------------------------------------------------------------------
# Totality: one decision for anything, denying
# ---------------------------------------------------------------------------------------------

test_empty_input_and_data if {
	d := authz.decision with input as {}
		with data.catalog as {}
		with data.tools as {}
		with data.classifiers as {}
		with data.extractors as {}
		with data.rules as []
		with data.layer2 as {}
	d.outcome == "deny"
	d.code == "unknown_service"
	d.classification == {"verb": null, "hints": no_hints, "labels": []}
	d.reasons == ["service null is not in the catalog"]
}

test_non_string_names if {
	inp := merge(base_input, {"service": 7, "name": ["x"], "user": "alice"})
	d := eval(inp, base_data)
	d.code == "unknown_service"
	d.reasons == ["service 7 is not in the catalog"]
}

test_non_string_tool_name_is_disabled if {
	d := eval(merge(base_input, {"name": ["send_email"]}), base_data)
	d.code == "tool_disabled"
	d.reasons == ["tool a value of type array is not enabled for service 'gmail'"]
}

test_no_grant_reason_without_a_user if {
	d := eval(merge(base_input, {"grants": {}, "user": null}), base_data)
	d.code == "no_grant"
	d.reasons == ["user null has no grant for 'send_email' of service 'gmail'"]
}

test_decision_has_exactly_the_contract_keys if {
	d := eval(base_input, base_data)
	{k | some k, _ in d} == {"outcome", "code", "rule", "reasons", "classification", "approval", "layer2"}
}

# ---------------------------------------------------------------------------------------------
# data_problems (checked by the engine before a document replaces the current one)
# ---------------------------------------------------------------------------------------------

problems(d) := result if {
	result := authz.data_problems with data.classifiers as d.classifiers with data.layer2 as d.layer2
}

test_no_problems if {
	count(problems({"classifiers": {"gmail": {"send_email": one("s", "matches", "^a.*$")}}, "layer2": layer2_data})) == 0
}

test_invalid_patterns_are_problems if {
	d := {
		"classifiers": {"gmail": {"send_email": one("s", "matches", "^(a$")}},
		"layer2": merge(empty_layer2_data, {
			"limits": [{"name": "l", "select": {"tool": "^[z-a]$"}}],
			"flows": [{"name": "f", "after": {"labels": ["^(?P<x$"]}, "then": {}}],
			"duties": [{"name": "d", "first": {}, "then": {"verb": "^x{2,1}$"}}],
		}),
	}
	problems(d) == {
		"invalid RE2 pattern: '^(a$'",
		"invalid RE2 pattern: '^[z-a]$'",
		"invalid RE2 pattern: '^(?P<x$'",
		"invalid RE2 pattern: '^x{2,1}$'",
	}
}

test_non_matches_classifier_values_are_not_patterns if {
	count(problems({"classifiers": {"gmail": {"send_email": one("s", "contains", "(")}}, "layer2": empty_layer2_data})) == 0
}
