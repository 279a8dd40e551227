# Layer 1 of mcpgw: the stateless decision for one tools/call, resources/read|subscribe or prompts/get.
#
# input = Layer1Input, data = Layer1Data (src/policy/layer1-types.ts); the entrypoint is
# mcpgw/authz/decision, compiled to Wasm and evaluated in-process by src/policy/layer1.ts.
#
# Two properties matter more than style here:
#  - `decision` is exactly one object for every input: each part of it is total (a comprehension,
#    or a complete rule ending in an unconditional `else`), so it is never undefined or in conflict;
#  - no builtin that runs in the host is used (no sprintf, no yaml.*): the capabilities file forbids
#    them, so `opa test` (Go builtins) and the npm SDK (Wasm builtins) compute the same thing.
#
# A builtin error (a type mismatch in the data or the arguments) makes its expression undefined, so
# every helper below is written so that "undefined" means "does not match" for classifiers and
# selectors and "deny" for the gate.
package mcpgw.authz

hint_names := ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"]

actions := {"allow", "deny", "require_approval"}

verbs := {"get", "list", "create", "update", "delete"}

# ---------------------------------------------------------------------------------------------
# Gate: catalog and grants. Anything short of a well-formed "yes" denies.
# ---------------------------------------------------------------------------------------------

catalog_entry := data.catalog[input.service]

service_known if is_object(catalog_entry)

service_enabled if catalog_entry.enabled == true

# Only an explicit `false` means "not suspended".
service_not_suspended if catalog_entry.suspended == false

# A name that is not a string names no tool, whatever the list says.
tool_enabled if {
	is_string(input.name)
	catalog_entry.tools == null
}

tool_enabled if {
	is_string(input.name)
	is_array(catalog_entry.tools)
	some t in catalog_entry.tools
	t == input.name
}

granted if {
	names := input.grants[input.service]
	is_array(names)
	some g in names
	g in {"*", input.name}
}

gate := "unknown_service" if {
	not service_known
} else := "service_disabled" if {
	not service_enabled
} else := "service_suspended" if {
	not service_not_suspended
} else := "tool_disabled" if {
	not tool_enabled
} else := "no_grant" if {
	not granted
} else := "ok"

# ---------------------------------------------------------------------------------------------
# Patterns. RE2 in the Wasm runtime compiles a pattern again on every evaluation, which costs more
# than the rest of the decision together. Most patterns are globs without operators (`^gmail$`,
# `^send_.*$`), so src/policy/layer1.ts adds `data.pattern_index`: pattern → {exact|prefix|suffix:
# literal}, for exactly those, and they are decided by string comparison. `.` does not match a
# newline, hence the extra test. Without the index (as in most of the opa tests) every pattern goes
# through regex.match, with the same result.
# ---------------------------------------------------------------------------------------------

# Always an object: a ref used in a call under `not` is evaluated before the negation, so an
# absent data.pattern_index would make `not has_key(...)` fail instead of hold.
pattern_index := data.pattern_index if {
	is_object(data.pattern_index)
} else := {}

pattern_match(p, v) if {
	shortcut := pattern_index[p]
	shortcut_match(shortcut, v)
}

pattern_match(p, v) if {
	not has_key(pattern_index, p)
	regex.match(p, v)
}

shortcut_match(s, v) if s.exact == v

shortcut_match(s, v) if {
	startswith(v, s.prefix)
	not contains(v, "\n")
}

shortcut_match(s, v) if {
	endswith(v, s.suffix)
	not contains(v, "\n")
}

# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------

tool_entry := data.tools[input.service][input.name]

has_entry if is_object(tool_entry)

resource_or_prompt if input.method in {"resources/read", "resources/subscribe", "prompts/get"}

# The upstream prefix table; the underscore is part of the prefix ("search" alone has no verb).
prefix_verb := "get" if {
	some p in ["read_", "get_", "search_", "fetch_"]
	startswith(input.name, p)
} else := "list" if {
	startswith(input.name, "list_")
} else := "create" if {
	some p in ["create_", "send_", "add_"]
	startswith(input.name, p)
} else := "update" if {
	some p in ["update_", "edit_", "modify_"]
	startswith(input.name, p)
} else := "delete" if {
	some p in ["delete_", "remove_", "revoke_"]
	startswith(input.name, p)
} else := null

# Verb when data.tools has no entry for the name: resources and prompts read.
fallback_verb := "get" if {
	resource_or_prompt
} else := prefix_verb

# An entry's verb outside the enum (or null) means "no verb", which no verb condition matches.
verb := tool_entry.verb if {
	has_entry
	tool_entry.verb in verbs
} else := null if {
	has_entry
} else := fallback_verb

flag(obj, key) if obj[key] == true

entry_hint(h) if {
	flag(tool_entry.hints, h)
} else := false

fallback_hint("readOnlyHint") := fallback_verb in {"get", "list"}

fallback_hint("idempotentHint") := fallback_verb in {"get", "list"}

fallback_hint("destructiveHint") := fallback_verb == "delete"

fallback_hint("openWorldHint") := false

hint_value(h) := entry_hint(h) if {
	has_entry
} else := fallback_hint(h)

hints := {h: v |
	some h in hint_names
	v := hint_value(h)
}

# --- Arguments -------------------------------------------------------------------------------

argument(field) := input.arguments[field] if is_object(input.arguments)

# A list argument is classified element by element: it matches if any element matches.
elements(x) := x if {
	is_array(x)
} else := [x]

# The text a classifier compares: a string itself, other scalars as sprintf's %v prints them.
# Objects and nested lists have none: their JSON text differs between Go (`opa test`: sorted keys,
# HTML escapes) and the Wasm runtime (insertion order), so they are compared with nothing. For
# not_contains that means a match (the value does not contain the text), which is the cautious
# reading of the classifier that flags what lacks a marker (e.g. an external recipient).
scalar_text(x) := x if {
	is_string(x)
} else := json.marshal(x) if {
	not is_array(x)
	not is_object(x)
}

texts(x) := [t | some e in elements(x); t := scalar_text(e)]

element_contains(e, needle) if contains(scalar_text(e), needle)

present(field) if {
	v := argument(field)
	not v in {null, false, ""}
}

# Numbers, or strings written as JSON numbers (to_number alone would also accept booleans, null and
# Go-only spellings such as "0x1p4", which the Wasm builtin may read differently).
number_value(x) := x if is_number(x)

number_value(x) := to_number(x) if {
	is_string(x)
	regex.match(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`, x)
}

numeric_values(x) := [n | some e in elements(x); n := number_value(e)]

classifier_matches(c) if {
	c.op == "contains"
	is_string(c.value)
	some t in texts(argument(c.field))
	contains(t, c.value)
}

classifier_matches(c) if {
	c.op == "not_contains"
	is_string(c.value)
	some e in elements(argument(c.field))
	not element_contains(e, c.value)
}

classifier_matches(c) if {
	c.op == "present"
	present(c.field)
}

classifier_matches(c) if {
	c.op == "absent"
	not present(c.field)
}

classifier_matches(c) if {
	c.op == "greater_than"
	is_number(c.value)
	some n in numeric_values(argument(c.field))
	n > c.value
}

classifier_matches(c) if {
	c.op == "less_than"
	is_number(c.value)
	some n in numeric_values(argument(c.field))
	n < c.value
}

classifier_matches(c) if {
	c.op == "equals"
	is_string(c.value)
	some t in texts(argument(c.field))
	t == c.value
}

classifier_matches(c) if {
	c.op == "equals"
	is_number(c.value)
	some t in texts(argument(c.field))
	t == json.marshal(c.value)
}

classifier_matches(c) if {
	c.op == "matches"
	is_string(c.value)
	some t in texts(argument(c.field))
	pattern_match(c.value, t)
}

# Extractor values: one label per scalar (per scalar element of a list); null gives none, like an
# absent field.
extracted(x) := [t | some e in elements(x); not is_null(e); t := scalar_text(e)]

label_set contains l if {
	has_entry
	some l in tool_entry.labels
	is_string(l)
}

label_set contains l if {
	some c in data.classifiers[input.service][input.name]
	classifier_matches(c)
	some l in c.labels
	is_string(l)
}

label_set contains l if {
	some x in data.extractors[input.service][input.name]
	is_string(x.prefix)
	some v in extracted(argument(x.field))
	l := concat(":", [x.prefix, v])
}

labels := sort(label_set)

classification := {"verb": verb, "hints": hints, "labels": labels}

# ---------------------------------------------------------------------------------------------
# Rules: the first (data.rules is sorted by priority, then file order) whose `when` holds wins.
# ---------------------------------------------------------------------------------------------

condition_holds(key, want) if {
	key in hint_names
	hints[key] == want
}

condition_holds("verb", want) if {
	is_string(verb)
	verb == want
}

rule_matches(r) if {
	r.match == "all"
	is_object(r.when)
	every key, want in r.when {
		all_condition(key, want)
	}
}

all_condition("labels", want) if {
	is_array(want)
	every l in want {
		l in label_set
	}
}

all_condition(key, want) if {
	key != "labels"
	condition_holds(key, want)
}

# Under `any` each listed label is a condition of its own; an empty `when` never matches.
rule_matches(r) if {
	r.match == "any"
	some key, want in r.when
	key != "labels"
	condition_holds(key, want)
}

rule_matches(r) if {
	r.match == "any"
	some l in r.when.labels
	l in label_set
}

has_rules if {
	is_array(data.rules)
	count(data.rules) > 0
}

matching := [i | some i, r in data.rules; rule_matches(r)]

winner := data.rules[min(matching)] if count(matching) > 0

has_winner if is_object(winner)

# ---------------------------------------------------------------------------------------------
# Layer 2: which stateful rules apply to this call, whatever rule won.
# ---------------------------------------------------------------------------------------------

has_key(obj, key) if _ = obj[key]

pattern_ok(sel, key, _) if not has_key(sel, key)

pattern_ok(sel, key, value) if {
	is_string(value)
	pattern_match(sel[key], value)
}

selector_matches(sel) if {
	is_object(sel)
	pattern_ok(sel, "service", input.service)
	pattern_ok(sel, "tool", input.name)
	pattern_ok(sel, "verb", verb)
	selector_labels_ok(sel)
	selector_hints_ok(sel)
}

selector_labels_ok(sel) if not has_key(sel, "labels")

selector_labels_ok(sel) if {
	is_array(sel.labels)
	every p in sel.labels {
		some l in labels
		pattern_match(p, l)
	}
}

selector_hints_ok(sel) if not has_key(sel, "hints")

selector_hints_ok(sel) if {
	is_object(sel.hints)
	every key, want in sel.hints {
		key in hint_names
		hints[key] == want
	}
}

selected(list, key) := [name |
	some x in list
	selector_matches(x[key])
	name := x.name
	is_string(name)
]

# One missing or malformed list must not empty the others (a call with an undefined argument is
# undefined, and would take the whole object with it).
layer2_list(kind) := data.layer2[kind] if {
	is_array(data.layer2[kind])
} else := []

layer2_all := {
	"limits": selected(layer2_list("limits"), "select"),
	"budgets": selected(layer2_list("budgets"), "select"),
	"preconditions": selected(layer2_list("preconditions"), "select"),
	"flows": {
		"sources": selected(layer2_list("flows"), "after"),
		"sinks": selected(layer2_list("flows"), "then"),
	},
	"duties": {
		"first": selected(layer2_list("duties"), "first"),
		"then": selected(layer2_list("duties"), "then"),
	},
}

layer2_none := {
	"limits": [],
	"budgets": [],
	"preconditions": [],
	"flows": {"sources": [], "sinks": []},
	"duties": {"first": [], "then": []},
}

layer2 := layer2_all if {
	gate == "ok"
} else := layer2_none

# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------

code := gate if {
	gate != "ok"
} else := "no_policies" if {
	not has_rules
} else := "rule" if {
	has_winner
} else := "no_matching_rule"

outcome := winner.action if {
	code == "rule"
	winner.action in actions
} else := "deny"

rule_name := winner.name if {
	code == "rule"
	is_string(winner.name)
} else := null

approvers := [a | some a in winner.approvers; is_string(a)]

approval_timeout := winner.timeout if {
	is_string(winner.timeout)
} else := null

approval := {"approvers": approvers, "timeout": approval_timeout} if {
	outcome == "require_approval"
} else := null

# Names quoted in reasons; a non-string would make concat undefined and lose the reason.
quoted(x) := concat("", ["'", x, "'"]) if {
	is_string(x)
} else := scalar_text(x) if {
	scalar_text(x)
} else := concat(" ", ["a value of type", type_name(x)])

reason := concat(" ", ["service", quoted(object.get(input, "service", null)), "is not in the catalog"]) if {
	code == "unknown_service"
} else := concat(" ", ["service", quoted(object.get(input, "service", null)), "is disabled"]) if {
	code == "service_disabled"
} else := concat(" ", ["service", quoted(object.get(input, "service", null)), "is suspended"]) if {
	code == "service_suspended"
} else := concat(" ", ["tool", quoted(object.get(input, "name", null)), "is not enabled for service", quoted(object.get(input, "service", null))]) if {
	code == "tool_disabled"
} else := concat(" ", ["user", quoted(object.get(input, ["user", "id"], null)), "has no grant for", quoted(object.get(input, "name", null)), "of service", quoted(object.get(input, "service", null))]) if {
	code == "no_grant"
} else := "no policy rules are loaded, so every call is denied" if {
	code == "no_policies"
} else := "no policy rule matched, so the call is denied" if {
	code == "no_matching_rule"
} else := concat(" ", ["allowed by policy rule", quoted(rule_name)]) if {
	outcome == "allow"
} else := concat(" ", ["policy rule", quoted(rule_name), "requires a human's approval"]) if {
	outcome == "require_approval"
} else := concat(" ", ["denied by policy rule", quoted(rule_name)]) if {
	rule_name != null
} else := "denied"

decision := {
	"outcome": outcome,
	"code": code,
	"rule": rule_name,
	"reasons": [reason],
	"classification": classification,
	"approval": approval,
	"layer2": layer2,
}

# ---------------------------------------------------------------------------------------------
# Load-time check (entrypoint mcpgw/authz/data_problems). An RE2 pattern the Wasm cannot compile
# would make its classifier or selector silently never match, so the engine refuses such data.
# It runs against the same RE2 as `decision`, whatever the compiler validated with.
# ---------------------------------------------------------------------------------------------

selector_patterns(sel) := [p |
	some key in ["service", "tool", "verb"]
	p := sel[key]
] if {
	is_object(sel)
} else := []

selector_label_patterns(sel) := sel.labels if {
	is_array(sel.labels)
} else := []

layer2_selectors contains sel if {
	some kind in ["limits", "budgets", "preconditions"]
	some x in data.layer2[kind]
	sel := x.select
}

layer2_selectors contains sel if {
	some x in data.layer2.flows
	some sel in [x.after, x.then]
}

layer2_selectors contains sel if {
	some x in data.layer2.duties
	some sel in [x.first, x.then]
}

patterns contains p if {
	some sel in layer2_selectors
	some p in array.concat(selector_patterns(sel), selector_label_patterns(sel))
}

patterns contains p if {
	some tools in data.classifiers
	some list in tools
	some c in list
	c.op == "matches"
	p := c.value
}

data_problems contains msg if {
	some p in patterns
	not regex.is_valid(p)
	msg := concat("", ["invalid RE2 pattern: ", quoted(p)])
}
