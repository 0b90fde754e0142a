"""emqx-config/acl.conf (EMQX >= 6.1) and acl-6.0.conf: they parse as EMQX's file source
reads them, and evaluated the way EMQX evaluates them (tests/emqx_acl.py) they give each
username exactly the rights README.md's table promises, inside its own namespace only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exhook.emqx_settings import ACL_RULES_60, ACL_RULES_61, acl_rules
from tenants.credentials import Rights, new_credential_id, new_instance_id, scoped_username
from tests.emqx_acl import (
    AclSyntaxError,
    Action,
    Client,
    Rule,
    authorize,
    compile_rule,
    consult,
    load_rules,
    match,
    topic_matches,
    words,
)
from tests.test_emqx_config import ACL_FILE_60, ACL_FILE_61

ROOT = Path(__file__).resolve().parent.parent
RULES_61 = load_rules(ACL_FILE_61)
RULES_60 = load_rules(ACL_FILE_60)
ID = "emqx-0123456789abcdef"
OTHER = "emqx-fedcba9876543210"
ACTIONS: tuple[Action, ...] = ("publish", "subscribe")


def client(username: str, *, mounted: bool = True, tns: bool = True) -> Client:
    """A client after authentication as our emqx-config makes it: tns = the first 21
    characters of the username, client id `<username>-dev`, mountpoint `<tns>/`."""
    attrs = {"tns": username[:21]} if tns else {}
    return Client(username, f"{username}-dev", attrs, f"{username[:21]}/" if mounted else None)


def allowed_61(c: Client, action: Action, topic: str) -> bool:
    return authorize(RULES_61, c, action, topic, include_mountpoint=True) == "allow"


def allowed_60(c: Client, action: Action, topic: str) -> bool:
    """6.0 has no include_mountpoint: the rules see the client's own topic."""
    return authorize(RULES_60, c, action, topic, include_mountpoint=False) == "allow"


ALLOWED = [allowed_61, allowed_60]


# -- the evaluator follows EMQX's source --------------------------------------------------


def test_consult_reads_erlang_terms() -> None:
    terms = consult('%% a comment\n{allow, {username, {re, "^a\\\\.b$"}}, all, ["x/#"]}.\n')
    (rule,) = terms
    assert isinstance(rule, tuple) and rule[1][1][1] == "^a\\.b$"
    for bad in ("{allow, all}", "{allow, all}. {deny", "{allow, all]."):
        with pytest.raises((AclSyntaxError, IndexError)):
            consult(bad)


@pytest.mark.parametrize(
    "term",
    [
        "{permit, all}.",  # invalid_authorization_permission
        '{allow, {username, "a"}, read, all}.',  # invalid_authorization_action
        '{allow, {peer, "a"}, all, all}.',  # invalid_client_match_condition
        '{allow, all, all, ["${password}/#"]}.',  # not in ALLOWED_VARS
        '{allow, {username, {re, "("}}, all, all}.',  # invalid_re_pattern
    ],
)
def test_rules_emqx_refuses_are_refused(term: str) -> None:
    with pytest.raises(AclSyntaxError):
        compile_rule(consult(term)[0])


@pytest.mark.parametrize(
    ("name", "topic_filter", "matched"),
    [
        ("a/b", "a/#", True),
        ("a", "a/#", True),  # '#' also matches the parent level
        ("a/b/c", "a/+", False),
        ("a/b", "a/+", True),
        ("$SYS/x", "#", False),  # a '$' topic never matches a leading wildcard
        ("$SYS/x", "+/x", False),
        ("t/$SYS/x", "t/#", True),  # only at the first level
        ("a/#", "a/#", True),  # a SUBSCRIBE's filter, word by word
        ("a/#", "a/+", True),
        ("#", "a/#", False),
        ("", "#", True),
    ],
)
def test_topic_matching_is_emqx_topics(name: str, topic_filter: str, matched: bool) -> None:
    """emqx_topic:match_words/2 and match_tokens/2 (tag 6.2.2)."""
    assert topic_matches(words(name), words(topic_filter)) is matched


def test_first_match_wins_unanchored_regex_eq_and_placeholders() -> None:
    rules = tuple(
        compile_rule(t)
        for t in consult(
            '{deny, {username, {re, "b"}}, publish, [{eq, "t/#"}]}.\n'
            '{allow, {username, "abc"}, all, ["${client_attrs.tns}/#", "${username}/x"]}.\n'
            "{deny, all}.\n"
        )
    )
    abc = Client("abc", "c", {"tns": "n"})
    assert match(rules, abc, "publish", "t/#") == "deny"  # "b" is found inside "abc"
    assert match(rules, abc, "publish", "t/1") == "deny"  # eq: only "t/#" itself; then all
    assert match(rules, abc, "publish", "n/1") == "allow"
    assert match(rules, abc, "subscribe", "abc/x") == "allow"
    assert match(rules, Client("abc", "c"), "publish", "n/1") == "deny"  # no tns: no match
    assert match((), abc, "publish", "n/1") == "nomatch"


# -- the shipped files --------------------------------------------------------------------


def test_the_hook_knows_the_files_rules() -> None:
    """exhook/emqx_settings.py checks EMQX's file source holds exactly these rules."""
    assert acl_rules(ACL_FILE_61.read_text()) == ACL_RULES_61
    assert acl_rules(ACL_FILE_60.read_text()) == ACL_RULES_60
    assert ACL_RULES_61 != ACL_RULES_60


@pytest.mark.parametrize("rules", [RULES_61, RULES_60], ids=["6.1+", "6.0"])
def test_the_files_parse_and_end_by_claiming_our_namespaces(rules: tuple[Rule, ...]) -> None:
    assert len(rules) == 4
    last = rules[-1]
    assert (last.permission, last.action) == ("deny", "all")
    assert last.topics[0].every
    # Usernames that are not ours match no rule: later sources, then no_match, decide.
    for action in ACTIONS:
        assert match(rules, client("alice"), action, "alice/t") == "nomatch"


def readme_rights() -> dict[str, tuple[bool, bool]]:
    """README.md's table of what each username form may do: form -> (publish, subscribe)."""
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^ *\| `(<instance id>[^`]*)`[^|]*\| (yes|no) \| (yes|no) \|$", text, re.M)
    assert rows, "README.md lost its table of rights"
    return {form: (pub == "yes", sub == "yes") for form, pub, sub in rows}


def username_for(form: str) -> str:
    return (
        form.replace("<instance id>", ID)
        .replace("<7 hex>", "1234567")
        .replace("<8 hex>", "0a1b2c3d")
    )


def test_readme_lists_every_rights_letter() -> None:
    forms = readme_rights()
    assert {f"<instance id>.{r.value}<7 hex>" for r in Rights} <= set(forms)
    assert "<instance id>" in forms and "<instance id>.<8 hex>" in forms
    for rights in Rights:
        assert forms[f"<instance id>.{rights.value}<7 hex>"] == (rights.publish, rights.subscribe)


@pytest.mark.parametrize("allowed", ALLOWED, ids=["6.1+", "6.0"])
@pytest.mark.parametrize("form", list(readme_rights()))
def test_each_username_gets_exactly_the_rights_the_readme_says(allowed: object, form: str) -> None:
    assert callable(allowed)
    publish, subscribe = readme_rights()[form]
    c = client(username_for(form))
    for topic in ("sensors/1", "a/b/c", "$SYS/brokers"):
        assert allowed(c, "publish", topic) is publish, (form, topic)
    for topic_filter in ("sensors/#", "#", "+/x", "a/b"):
        assert allowed(c, "subscribe", topic_filter) is subscribe, (form, topic_filter)


@pytest.mark.parametrize("rights", list(Rights))
def test_minted_credentials_get_their_rights(rights: Rights) -> None:
    """What the manager mints (tenants.credentials) is what the ACL reads."""
    username = scoped_username(new_instance_id(), new_credential_id(rights))
    for allowed in ALLOWED:
        assert allowed(client(username), "publish", "t") is rights.publish
        assert allowed(client(username), "subscribe", "t/#") is rights.subscribe


@pytest.mark.parametrize(
    "username",
    [
        f"{ID}zzz",
        f"{ID}.g1234567",
        f"{ID}.P1234567",
        f"{ID}.p123456",
        f"{ID}.p12345678",
        f"{ID}.x1234567.p1234567",
        f"{ID}-dev",
        f"{ID}.0a1b2c3d",  # a legacy id: refused at CONNECT, and here too
    ],
)
def test_any_other_username_in_our_namespaces_gets_nothing(username: str) -> None:
    for allowed in ALLOWED:
        for action in ACTIONS:
            assert not allowed(client(username), action, "t"), (username, action)
    for action in ACTIONS:
        assert match(RULES_61, client(username), action, f"{ID}/t") == "deny"


def test_61_fails_closed_in_process_without_the_namespace_mountpoint() -> None:
    """With namespace_as_mountpoint off (or a listener mountpoint of its own), or without
    the tns attribute, the rule `${client_attrs.tns}/#` matches nothing: every topic is
    denied inside EMQX, for every username of ours (verified on a real 6.2.2 broker)."""
    may = {ID: ACTIONS, f"{ID}.x1234567": ACTIONS}
    may |= {f"{ID}.p1234567": ("publish",), f"{ID}.s1234567": ("subscribe",)}
    for username, actions in may.items():
        for action in actions:
            assert allowed_61(client(username), action, "t")
            assert not allowed_61(client(username, mounted=False), action, "t")
            assert not allowed_61(client(username, tns=False), action, "t")
            # The mountpoint of another namespace (a broken tns) is no way in either.
            foreign = Client(username, f"{username}-dev", {"tns": ID}, f"{OTHER}/")
            assert not allowed_61(foreign, action, "t")


def test_61_topics_stay_inside_the_namespace() -> None:
    """The rules see `<mountpoint><topic>`; a tenant's own `$SYS/...` lives under it."""
    owner = client(ID)
    assert match(RULES_61, owner, "publish", f"{ID}/$SYS/brokers") == "allow"
    assert match(RULES_61, owner, "subscribe", f"{ID}/#") == "allow"
    assert match(RULES_61, owner, "publish", f"{OTHER}/t") == "deny"
    assert match(RULES_61, owner, "subscribe", "#") == "deny"


def test_regex_ends_as_in_pcre() -> None:
    """Erlang's re (PCRE): `$` also matches before a final newline, `\\z` only at the end;
    the files use `\\z`, so a username with a trailing newline is not one of ours."""
    rules = tuple(
        compile_rule(t)
        for t in consult(
            '{allow, {username, {re, "^a$"}}, all, all}.\n'
            '{deny, {username, {re, "^b\\\\z"}}, all, all}.\n'
        )
    )
    assert match(rules, Client("a\n", "c"), "publish", "t") == "allow"
    assert match(rules, Client("b", "c"), "publish", "t") == "deny"
    assert match(rules, Client("b\n", "c"), "publish", "t") == "nomatch"
    for allowed in ALLOWED:
        assert not allowed(client(f"{ID}\n"), "publish", "t")
