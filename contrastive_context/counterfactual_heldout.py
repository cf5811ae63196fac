"""The HELD-OUT family of counterfactual near-duplicates: edits of other kinds than counterfactual.py's,
never used in training (train.py --counterfactual draws counterfactual.make), so a relevance verdict
can be checked on edits the model was never trained to resolve. METHOD.md "Counterfactual
near-duplicates". The instances have counterfactual.py's shape and are judged by counterfactual.judge
(which hands a "family": "heldout" edit to `judge` here); the copier works unchanged.

    make(task, ex, rng)            -> {"id", "x", "y", "edit"} or None (no valid edit for this input)
    judge(task, prediction, ex, cf) -> {"cf_copy": 0|1, "edit_ok": 0|1}

Generators (each refuses an edit whose span is absent or repeated, or whose new form is already
present, and never returns y~ == y):
  mt         (table prompts/counterfactual_mt_heldout.json, no word or German form shared with the
             training family's table) one English form of a verb of motion/posture (3rd person singular /
             plural present, -ing participle), a two-way preposition of place, or a singular noun
             (person, animal, clothing, place, object; one gender per class) is swapped for the same form
             of another word of its class; its German form -- every form is listed, in the slot that
             agrees with the English one -- found exactly once in y as a whole word, is swapped for the
             other word's form in that slot. A German preposition must also stand before a determiner
             (never a separable verb particle; a second "auf" anywhere in y refuses the edit). Kind
             first (verb / preposition / noun, uniform among those with an edit), then the edit.
  semparse   (rules prompts/counterfactual_semparse_heldout.json) one of four kinds (uniform among those with
             an edit), never a value swap within a slot type:
             intent      a trigger outside every slot ("set an alarm" -> "set a reminder") changes with the top
                         intent (IN:CREATE_ALARM -> IN:CREATE_REMINDER), only where every slot type directly
                         under the intent is one the pool (or the rule's `to_slots`) shows under the new one;
             contact     a person slot's name becomes "my <relation>" ([SL:CONTACT Nick ] -> [SL:CONTACT
                         [IN:GET_CONTACT [SL:CONTACT_RELATED my ] [SL:TYPE_RELATION son ] ] ]) or back
                         (relations and names from the pool);
             time_place  in IN:GET_WEATHER / IN:GET_EVENT a time becomes "in <place>" ([SL:DATE_TIME this week ]
                         -> "in" [SL:LOCATION Paris ]) or "in <place>" a time, where y has no slot of the new type;
             append      a slot type the intent lacks here is appended with its preposition ("... on WhatsApp",
                         [SL:NAME_APP WhatsApp ] last), as some pool utterance of the intent ends.

Scores (as counterfactual.py): cf_copy = the answer equals y~ or holds its swapped-in span (MT: the
new German form; MTOP: the new top intent, or the new slot / nested structure); edit_ok = the span
right for x (MT: x's German form present and the new one absent; MTOP: exact match with y).
"""
import functools
import json
import os
import re

from .common import UserError
from .counterfactual import _en_pattern, _match_case, as_row, swap_span
from .tasks import LEAF_SLOT

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILY = "heldout"
MT_HELDOUT_TABLE = os.path.join(HERE, "prompts", "counterfactual_mt_heldout.json")
SEMPARSE_HELDOUT_RULES = os.path.join(HERE, "prompts", "counterfactual_semparse_heldout.json")
MT_KINDS = ("verb", "preposition", "noun")
SEMPARSE_KINDS = ("intent", "contact", "time_place", "append")


# ============================================================================ MT (En -> De)
@functools.lru_cache(maxsize=None)
def mt_heldout_table(path=MT_HELDOUT_TABLE):
    """{class: {"kind", "slots": {en slot: [de slots]}, "de_next": [words] or None, "en_next_forbid": [words],
    "words": {word: {"en": {slot: [forms]}, "de": {slot: [forms]}}}}}; a bare "word": "Form" entry is the
    one-slot {"en": {"sg": [word]}, "de": {"sg": [Form]}}."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    classes = {}
    for name, c in data["classes"].items():
        words = {}
        for w, e in c["words"].items():
            words[w] = ({"en": {"sg": [w]}, "de": {"sg": [e]}} if isinstance(e, str) else e)
        slots = c.get("slots", {"sg": ["sg"]})
        for w, e in words.items():
            if set(e["en"]) != set(slots) or not set(e["de"]) <= {s for v in slots.values() for s in v}:
                raise ValueError(f"{path}: {name}/{w}: its slots do not match the class's {sorted(slots)}")
        classes[name] = {"kind": c["kind"], "slots": slots, "de_next": c.get("de_next"),
                         "en_next_forbid": tuple(c.get("en_next_forbid", ())), "words": words}
    return classes


def de_word_pattern(form, de_next=None):
    """A whole-word match of a German form (case of the first letter free; hyphens are word characters, so
    compounds never match), followed by one of the words `de_next` when given."""
    head = f"[{re.escape(form[0].lower())}{re.escape(form[0].upper())}]" if form[0].isalpha() else re.escape(form[0])
    after = r"(?=\s+(?:" + "|".join(re.escape(w) for w in de_next) + r")(?![\w-]))" if de_next else ""
    return re.compile(rf"(?<![\w-]){head}{re.escape(form[1:])}(?![\w-]){after}")


def _finds(text, forms, pattern_of):
    """[(form, match)] of every form (a form listed twice counts once)."""
    return [(f, m) for f in dict.fromkeys(forms) for m in pattern_of(f).finditer(text)]


def _all_forms(entry, side):
    return [f for forms in entry[side].values() for f in forms]


def _with_article(before, word):
    """The text before a swapped-in English word, its indefinite article ("a" / "an") made to fit the word."""
    m = re.search(r"(?<![\w-])(an?)(\s+)$", before, re.IGNORECASE)
    if not m:
        return before
    vowel = word[:1].lower() in "aeiou" and not re.match(r"(?i)(uni|use|eu|one)", word)
    art = "an" if vowel else "a"
    return before[:m.start()] + _match_case(art, m.group(1)) + m.group(2)


def mt_heldout_edit(x, y, cls, orig, new):
    """(x~, y~, edit) swapping word `orig` -> `new` of class `cls` (keys of the held-out table) in x and in y;
    ValueError when the edit is not exactly known: a span absent or repeated, a German form in a slot that
    does not agree with the English one, the new word already present, or the same German form."""
    c = mt_heldout_table()[cls]
    a, b = c["words"][orig], c["words"][new]
    en = [(s, f, m) for s, forms in a["en"].items() for f, m in _finds(x, forms, _en_pattern)]
    if len(en) != 1:
        raise ValueError(f"{orig}: its English forms occur {len(en)} times in {x!r} (need exactly once)")
    slot, _, m_en = en[0]
    nxt = x[m_en.end():].split()[:1]
    if nxt and re.sub(r"\W", "", nxt[0]).lower() in c["en_next_forbid"]:
        raise ValueError(f"{m_en.group(0)!r} before {nxt[0]!r} is not a {cls} use")
    if _finds(x, _all_forms(b, "en"), _en_pattern):
        raise ValueError(f"{new} already occurs in x")
    de = [(t, f, m) for t, forms in a["de"].items() for f, m in _finds(y, forms, de_word_pattern)]
    if len({(m.start(), m.end()) for _, _, m in de}) != 1:
        raise ValueError(f"{orig}: its German forms occur {len(de)} times in {y!r} (need exactly once)")
    if c["de_next"] and not de_word_pattern(de[0][1], c["de_next"]).match(y, de[0][2].start()):
        raise ValueError(f"{de[0][1]!r} is not followed by a determiner in {y!r} (a verb particle?)")
    agree = [(t, f, m) for t, f, m in de if t in c["slots"][slot]]
    if not agree:
        raise ValueError(f"{orig}: the German form {de[0][1]!r} ({de[0][0]}) does not agree with English {slot}")
    t, de_orig, m_de = agree[0]
    b_de = _all_forms(b, "de")
    if de_orig in b_de or _finds(y, b_de, de_word_pattern):
        raise ValueError(f"{new}'s German forms are {de_orig!r} or already occur in y")
    en_new, de_new = b["en"][slot][0], b["de"][t][0]
    x2 = _with_article(x[:m_en.start()], en_new) + _match_case(en_new, m_en.group(0)) + x[m_en.end():]
    y2 = y[:m_de.start()] + _match_case(de_new, m_de.group(0)) + y[m_de.end():]
    if y2 == y or x2 == x:
        raise ValueError("the edit leaves x or y unchanged")
    return x2, y2, {"task": "mt", "family": FAMILY, "kind": c["kind"], "class": cls, "slot": slot, "de_slot": t,
                    "orig": m_en.group(0).lower(), "new": en_new.lower(), "orig_de": de_orig, "new_de": de_new}


def mt_heldout_make(ex, rng, kinds=MT_KINDS):
    table = mt_heldout_table()
    low = ex["x"].lower()
    options = {}
    for cls in sorted(table):
        c = table[cls]
        if c["kind"] not in kinds:
            continue
        for w in sorted(c["words"]):
            if not any(f in low for f in _all_forms(c["words"][w], "en")):  # cheap pre-filter
                continue
            for w2 in sorted(c["words"]):
                if w2 == w:
                    continue
                try:
                    edit = mt_heldout_edit(ex["x"], ex["y"], cls, w, w2)
                except ValueError:
                    continue
                options.setdefault(c["kind"], []).append(edit)
    if not options:
        return None
    kind = rng.choice([k for k in MT_KINDS if k in options])
    x2, y2, edit = rng.choice(options[kind])
    return {"x": x2, "y": y2, "edit": edit}


# ============================================================================ semparse (MTOP)
def parse_lf(lf):
    """An MTOP logical form as a tree: {"label": "IN:X" | "SL:Y", "children": [node | word]}."""
    toks = lf.split()
    stack, root = [], None
    for tok in toks:
        if tok.startswith("["):
            node = {"label": tok[1:], "children": []}
            (stack[-1]["children"] if stack else []).append(node)
            stack.append(node)
        elif tok == "]":
            if not stack:
                raise ValueError(f"unbalanced logical form {lf!r}")
            root = stack.pop()
        elif stack:
            stack[-1]["children"].append(tok)
        else:
            raise ValueError(f"a word outside the intent in {lf!r}")
    if stack or root is None:
        raise ValueError(f"unbalanced logical form {lf!r}")
    return root


def top_slots(lf):
    """The slot types directly under the top intent of a logical form."""
    return [c["label"][3:] for c in parse_lf(lf)["children"] if isinstance(c, dict)]


@functools.lru_cache(maxsize=None)
def semparse_rules(path=SEMPARSE_HELDOUT_RULES):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


NESTED_RELATION = re.compile(r"\[SL:(\S+) \[IN:GET_CONTACT \[SL:CONTACT_RELATED my \] \[SL:TYPE_RELATION "
                             r"([^\[\]]+?) \] \] \]")


def nested_relation(slot, rel):
    return f"[SL:{slot} [IN:GET_CONTACT [SL:CONTACT_RELATED my ] [SL:TYPE_RELATION {rel} ] ] ]"


def pool_facts(task):
    """What the held-out MTOP edits draw from the pool, computed once per task: the slot types seen directly
    under each top intent; the relations and names of person slots; GET_WEATHER's places (after "in")
    and times."""
    facts = getattr(task, "_cf_heldout_facts", None)
    if facts is not None:
        return facts
    rules = semparse_rules()
    under, relations, names, nested, places, times, appends = {}, set(), set(), set(), {}, {}, {}
    tp = rules["time_place_intents"]
    for ex in task.pool:
        x, y = ex["x"], ex["y"]
        intent = y.split()[0][4:]
        under.setdefault(intent, set()).update(top_slots(y))
        last = [c for c in parse_lf(y)["children"] if isinstance(c, dict)][-1:]
        if last and all(isinstance(w, str) for w in last[0]["children"]):
            v = " ".join(last[0]["children"])
            m = re.search(rf"(?:(?<!\S)(\S+) )?{re.escape(v)}\s*[?.!]*$", x)
            typ, prep = last[0]["label"][3:], (m.group(1) or "").lower() if m else None
            preps = rules["append_slots"].get(typ, ())
            if m and (prep in preps or "" in preps and not any(p in preps for p in (prep,))):
                appends.setdefault(intent, set()).add((typ, prep if prep in preps else "", v))
        for slot, rel in NESTED_RELATION.findall(y):
            nested.add(slot)
            rel = " ".join(rel.split())
            if re.fullmatch(r"[a-z]+", rel) and (not rel.endswith("s") or rel.endswith("ss")) and \
                    rel not in rules["not_relations"]:  # one person
                relations.add(rel)
        for typ, val in LEAF_SLOT.findall(y):
            val = " ".join(val.split())
            if typ == "CONTACT":
                names.add(val)
            if intent in tp and typ == "LOCATION" and re.search(rf"(?<!\w)in {re.escape(val)}(?!\w)", x):
                places.setdefault(intent, set()).add(val)
            if intent in tp and typ == "DATE_TIME":
                times.setdefault(intent, set()).add(val)
    facts = {"relations": sorted(relations)}
    facts = task._cf_heldout_facts = {
        "under": {k: sorted(v) for k, v in under.items()}, "relations": facts["relations"],
        "names": sorted(n for n in names if _is_name(n, facts)),
        "person_slots": sorted(nested & set(rules["person_slots"])), "appends": {k: sorted(v) for k, v in appends.items()},
        "places": {k: sorted(v) for k, v in places.items()}, "times": {k: sorted(v) for k, v in times.items()}}
    return facts


def _word(value):
    return re.compile(rf"(?<![\w']){re.escape(value)}(?![\w'])", re.IGNORECASE)


def _outside_slots(x, y, m):
    """True when the match m of x overlaps no occurrence of a leaf slot value of y."""
    for _, val in LEAF_SLOT.findall(y):
        for v in _word(" ".join(val.split())).finditer(x):
            if v.start() < m.end() and m.start() < v.end():
                return False
    return True


def _initial(x, m, prefixes):
    """The match m opens the utterance, or follows only one of the polite prefixes."""
    head = re.sub(r"[^\w' ]", " ", x[:m.start()]).lower().split()
    return not head or " ".join(head) in prefixes


def _case_like(new, x, m):
    """new in the case of the utterance's first letter when m opens x; else as written."""
    return _match_case(new, m.group(0)) if m.start() == 0 else new


def intent_edit(x, y, rule, trigger, new_word, facts):
    """(x~, y~, edit): the trigger word of rule["from"] -> new_word, top intent -> rule["to"]; ValueError
    unless the trigger occurs once, outside every slot (and opening the request, for an `initial` rule; not
    as part of a longer trigger of the rule), and the slots fit the new intent."""
    old, new = rule["from"], rule["to"]
    if not y.startswith(f"[IN:{old} ") and y != f"[IN:{old} ]":
        raise ValueError(f"the top intent is not {old}")
    found = list(_word(trigger).finditer(x))
    if len(found) != 1:
        raise ValueError(f"{trigger!r} occurs {len(found)} times in {x!r} (need exactly once)")
    m = found[0]
    for longer, _ in rule["words"]:
        if longer != trigger and trigger in longer and any(
                o.start() <= m.start() and m.end() <= o.end() for o in _word(longer).finditer(x)):
            raise ValueError(f"{trigger!r} is part of the trigger {longer!r} here")
    if rule.get("initial") and not _initial(x, m, semparse_rules()["prefixes"]):
        raise ValueError(f"{trigger!r} does not open the request")
    if not _outside_slots(x, y, m):
        raise ValueError(f"{trigger!r} lies inside a slot value")
    if _word(new_word).search(x):
        raise ValueError(f"{new_word!r} already occurs in x")
    forbid = [w for w in rule.get("forbid", ()) if _word(w).search(x)]
    if forbid:
        raise ValueError(f"x holds {forbid[0]!r}, which the rule refuses")
    allowed = set(facts["under"].get(new, ())) | set(rule.get("to_slots", ()))
    if new not in facts["under"] and "to_slots" not in rule:
        raise ValueError(f"the pool never shows IN:{new}")
    missing = set(top_slots(y)) - allowed
    if missing:
        raise ValueError(f"the pool never shows {sorted(missing)} under IN:{new}")
    x2 = x[:m.start()] + _case_like(new_word, x, m) + x[m.end():]
    y2 = f"[IN:{new}" + y[len(f"[IN:{old}"):]
    return x2, y2, {"task": "semparse", "family": FAMILY, "kind": "intent", "slot": None, "orig": old, "new": new,
                    "orig_words": m.group(0), "new_words": new_word, "new_span": f"[IN:{new}"}


def _is_name(value, facts):
    low = value.lower()
    return value[:1].isupper() and low not in semparse_rules()["not_names"] and \
        low not in {r.lower() for r in facts["relations"]}


def _top_leaves(y):
    """(slot type, value) of the leaf slots directly under the top intent, and (slot type, relation) of its
    person slots holding exactly MTOP's "my <relation>" structure."""
    leaves, related = [], []
    for c in parse_lf(y)["children"]:
        if not isinstance(c, dict):
            continue
        kids = c["children"]
        if all(isinstance(k, str) for k in kids):
            leaves.append((c["label"][3:], " ".join(kids)))
        elif len(kids) == 1 and isinstance(kids[0], dict) and kids[0]["label"] == "IN:GET_CONTACT":
            g = kids[0]["children"]
            if [k["label"] if isinstance(k, dict) else k for k in g] == ["SL:CONTACT_RELATED", "SL:TYPE_RELATION"] \
                    and g[0]["children"] == ["my"] and all(isinstance(w, str) for w in g[1]["children"]):
                related.append((c["label"][3:], " ".join(g[1]["children"])))
    return leaves, related


def contact_edits(x, y, facts):
    """Every (x~, y~, edit) turning a person slot (directly under the top intent) from a name into "my
    <relation>" or back."""
    out = []
    leaves, related = _top_leaves(y)
    for slot, name in leaves:
        if slot in facts["person_slots"] and _is_name(name, facts):
            out += [(slot, name, f"my {rel}", f"[SL:{slot} {name} ]", nested_relation(slot, rel))
                    for rel in facts["relations"]]
    for slot, rel in related:
        if slot in facts["person_slots"]:
            out += [(slot, f"my {rel}", name, nested_relation(slot, rel), f"[SL:{slot} {name} ]")
                    for name in facts["names"]]
    return [e for e in (_slot_swap(x, y, *o, kind="contact") for o in out) if e]


def time_place_edits(x, y, facts):
    """Every (x~, y~, edit) of a time_place intent (IN:GET_WEATHER, IN:GET_EVENT): a time becomes "in <place>",
    or "in <place>" a time."""
    intent = y.split()[0][4:]
    if intent not in semparse_rules()["time_place_intents"]:
        return []
    types = set(top_slots(y))
    places, times = facts["places"].get(intent, []), facts["times"].get(intent, [])
    out = []
    for typ, val in LEAF_SLOT.findall(y):
        v = " ".join(val.split())
        if typ == "DATE_TIME" and "LOCATION" not in types and not re.search(rf"{re.escape(v)}\s+'s", x):
            out += [("LOCATION", v, f"in {p}", f"[SL:DATE_TIME {val} ]", f"[SL:LOCATION {p} ]") for p in places]
        if typ == "LOCATION" and "DATE_TIME" not in types:
            out += [("DATE_TIME", f"in {v}", t, f"[SL:LOCATION {val} ]", f"[SL:DATE_TIME {t} ]") for t in times]
    return [e for e in (_slot_swap(x, y, *o, kind="time_place") for o in out) if e]


def append_edits(x, y, facts):
    """Every (x~, y~, edit) appending a phrase "[prep] value" to x (before its final punctuation) and its slot
    as the last under the top intent, for a slot type the intent lacks here and that the pool shows appended
    so (the same intent, slot type, preposition and value, ending a pool utterance)."""
    intent = y.split()[0][4:]
    types = set(top_slots(y))
    fillers = "|".join(re.escape(f) for f in semparse_rules()["trailing_fillers"])
    body, end = re.match(rf"(?is)(.*?)((?:\s*,?\s+(?:{fillers}))?\s*[?.!]*)$", x).groups()
    out = []
    for typ, prep, v in facts["appends"].get(intent, []):
        words = [w for w in v.lower().split() if w not in semparse_rules()["function_words"]]
        if typ in types or not body or any(_word(w).search(x) for w in words) or _word(v).search(x):
            continue
        phrase = f"{prep} {v}" if prep else v
        out.append((f"{body} {phrase}{end}", y[:-1] + f"[SL:{typ} {v} ] ]",
                    {"task": "semparse", "family": FAMILY, "kind": "append", "slot": typ, "orig": "", "new": phrase,
                     "orig_span": "", "new_span": f"[SL:{typ} {v} ]"}))
    return out


def _slot_swap(x, y, slot, orig_words, new_words, orig_span, new_span, kind):
    """(x~, y~, edit) replacing orig_words -> new_words in x and orig_span -> new_span in y, or None when
    either occurs other than once, or the new words overlap x."""
    low_o, low_n = orig_words.lower(), new_words.lower()
    if low_o == low_n or low_n in x.lower() or any(w in x.lower().split() for w in low_n.split()
                                                 if w not in ("in", "my", "the", "for", "on", "at")):
        return None
    try:
        x2 = swap_span(x, _word(orig_words), lambda m: _case_like(new_words, x, m))
        y2 = swap_span(y, re.compile(re.escape(orig_span)), lambda m: new_span)
    except ValueError:
        return None
    if y2 == y:
        return None
    return x2, y2, {"task": "semparse", "family": FAMILY, "kind": kind, "slot": slot, "orig": orig_words,
                    "new": new_words, "orig_span": orig_span, "new_span": new_span}


def semparse_heldout_make(ex, rng, task):
    facts, rules = pool_facts(task), semparse_rules()
    x, y = ex["x"], ex["y"]
    options = {}
    for rule in rules["intent_rules"]:
        for trigger, new_word in rule["words"]:
            try:
                edit = intent_edit(x, y, rule, trigger, new_word, facts)
            except ValueError:
                continue
            options.setdefault("intent", []).append(edit)
    for kind, edits in (("contact", contact_edits(x, y, facts)), ("time_place", time_place_edits(x, y, facts)),
                        ("append", append_edits(x, y, facts))):
        if edits:
            options[kind] = edits
    if not options:
        return None
    kind = rng.choice([k for k in SEMPARSE_KINDS if k in options])
    x2, y2, edit = rng.choice(options[kind])
    return {"x": x2, "y": y2, "edit": edit}


# ============================================================================ the interface
def make(task, ex, rng, kinds=None):
    """One held-out counterfactual {"id", "x", "y", "edit"} of example ex (seeded rng), or None when the
    task has no held-out generator (alignment, sql) or no valid edit exists for this input. kinds: MT only,
    the edit kinds to draw from (default all of MT_KINDS; train.py --cf-train-family uses ("noun",))."""
    if kinds is not None and (task.name != "mt" or not set(kinds) <= set(MT_KINDS)):
        raise UserError(f"held-out counterfactual kinds {list(kinds)}: MT kinds only ({', '.join(MT_KINDS)}), "
                        f"not for task {task.name}")
    if task.name == "mt":
        if getattr(task, "src", "en") != "en" or getattr(task, "tgt", "de") != "de":
            return None
        cf = mt_heldout_make(ex, rng, kinds or MT_KINDS)
    elif task.name == "semparse":
        cf = semparse_heldout_make(ex, rng, task)
    else:
        return None
    return as_row(ex, cf, "held-out counterfactual")


def _nospace(s):
    return "".join(s.split())


def _holds_span(prediction, span):
    """The logical form `prediction` holds `span` (spaces ignored); an intent span "[IN:X" only as a whole
    label (not the start of "[IN:X_Y")."""
    p, s = _nospace(prediction), _nospace(span)
    return bool(re.search(re.escape(s) + (r"(?![\w])" if s[-1:].isalnum() or s[-1:] == "_" else ""), p))


def judge(task, prediction, ex, cf):
    """{"cf_copy": 0|1, "edit_ok": 0|1} of a prediction for x (= ex) with the held-out counterfactual cf in
    context (counterfactual.judge hands held-out edits here)."""
    e = cf["edit"]
    if e["task"] == "mt":
        new_there = bool(de_word_pattern(e["new_de"]).search(prediction))
        orig_there = bool(de_word_pattern(e["orig_de"]).search(prediction))
        cf_copy = new_there or prediction.strip() == cf["y"].strip()
        edit_ok = orig_there and not new_there
    elif e["task"] == "semparse":
        p = _nospace(prediction)
        if e["kind"] == "intent":
            cf_copy = p == _nospace(cf["y"]) or p.startswith(_nospace(e["new_span"])) and \
                p[len(_nospace(e["new_span"])):][:1] in ("[", "]")
        else:
            cf_copy = p == _nospace(cf["y"]) or _holds_span(prediction, e["new_span"])
        edit_ok = p == _nospace(ex["y"])
    else:
        raise UserError(f"unknown held-out counterfactual edit kind {e.get('task')!r}")
    return {"cf_copy": int(bool(cf_copy)), "edit_ok": int(bool(edit_ok))}
