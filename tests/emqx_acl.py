"""EMQX's file authorization source, evaluated in Python the way EMQX evaluates it.

The ACL files in emqx-config/ are Erlang terms read by `file:consult/1`, one rule per
term. This module reads them (the subset of Erlang term syntax the files use), compiles
each rule and matches a client's PUBLISH or SUBSCRIBE against them, following EMQX's
source (tag 6.2.2; the same functions at 6.0.2):

- `apps/emqx_auth/src/emqx_authz/sources/emqx_authz_file.erl`: `validate/1` consults the
  file and compiles every term; `authorize/4` is `emqx_authz_rule:matches/4`.
- `apps/emqx_auth/src/emqx_authz/emqx_authz_rule.erl`: `compile/1` (`{P, all}` is
  `{P, all, all, all}`; topics `all` match every topic), `compile_condition/1`
  (`{username, {re, R}}`, `{username, U}`, `{clientid, ...}`, `{client_attr, N, V}`,
  `'and'`, `'or'`), `compile_topic/1` (`{eq, T}` and `"eq T"` exact; a topic with
  placeholders from `ALLOWED_VARS`: `${username}`, `${clientid}`, `${client_attrs.N}`, is
  a pattern), `matches/4` (the first rule that matches wins, else nomatch),
  `match_action/2`, `match_condition/2` (`is_re_match/2`: `re:run`, unanchored),
  `match_topics/3` (a pattern is rendered with `render_strict`: a missing variable makes
  that filter match nothing).
- `apps/emqx/src/emqx_topic.erl` `match/2`, `match_words/2`, `match_tokens/2`, `words/1`.
- `apps/emqx/src/emqx_access_control.erl` `authorize/3` with `maybe_mount_prefix/3`
  (6.1+: `authorization.include_mountpoint = true` prefixes the client's mountpoint) and
  `emqx_authz.erl` (no source matched: `authorization.no_match`).

Only what the shipped files use is supported; anything else raises `AclSyntaxError`, so
a rule this evaluator cannot judge fails the tests instead of being misread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Action = Literal["publish", "subscribe"]
Result = Literal["allow", "deny", "nomatch"]


class AclSyntaxError(ValueError):
    """The file is not Erlang terms this evaluator reads, or a rule EMQX would refuse."""


@dataclass(frozen=True, slots=True)
class Atom:
    name: str


# -- reading the terms (file:consult/1) --------------------------------------------------

_TOKEN = re.compile(
    r"""\s+|%[^\n]*|(?P<string>"(?:[^"\\]|\\.)*")|(?P<quoted>'(?:[^'\\]|\\.)*')"""
    r"""|(?P<int>\d+)|(?P<atom>[a-z][A-Za-z0-9_@]*)|(?P<punct>[{}\[\],.])"""
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), body)


def _tokens(text: str) -> list[object]:
    tokens: list[object] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise AclSyntaxError(f"unexpected {text[pos : pos + 20]!r}")
        pos = match.end()
        if match["string"] is not None:
            tokens.append(("str", _unescape(match["string"][1:-1])))
        elif match["quoted"] is not None:
            tokens.append(Atom(_unescape(match["quoted"][1:-1])))
        elif match["int"] is not None:
            tokens.append(int(match["int"]))
        elif match["atom"] is not None:
            tokens.append(Atom(match["atom"]))
        elif match["punct"] is not None:
            tokens.append(match["punct"])
    return tokens


def consult(text: str) -> list[object]:
    """The terms of the file, each ending in `.` (strings as Python str: the file source
    turns them into binaries when it compiles them)."""
    tokens = _tokens(text)
    terms: list[object] = []
    pos = 0

    def term() -> object:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token in ("{", "["):
            close = "}" if token == "{" else "]"
            items: list[object] = []
            if tokens[pos] == close:
                pos += 1
            else:
                while True:
                    items.append(term())
                    sep = tokens[pos]
                    pos += 1
                    if sep == close:
                        break
                    if sep != ",":
                        raise AclSyntaxError(f"expected ',' or {close!r}, got {sep!r}")
            return tuple(items) if close == "}" else items
        if isinstance(token, tuple):
            return token[1]
        if isinstance(token, Atom | int):
            return token
        raise AclSyntaxError(f"unexpected {token!r}")

    while pos < len(tokens):
        terms.append(term())
        if pos >= len(tokens) or tokens[pos] != ".":
            raise AclSyntaxError("a term must end with '.'")
        pos += 1
    return terms


# -- compiling rules (emqx_authz_rule:compile/1) ------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_ALLOWED_VARS = re.compile(r"^(username|clientid|cert_common_name|zone|client_attrs\.[^.]+)$")


@dataclass(frozen=True, slots=True)
class Topic:
    """A compiled topic condition: all topics, an exact one (`eq`), or a filter that may
    hold placeholders."""

    text: str
    exact: bool = False
    every: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    permission: Literal["allow", "deny"]
    condition: object
    action: Literal["publish", "subscribe", "all"]
    topics: tuple[Topic, ...]


def _atom(value: object, *names: str) -> str | None:
    return value.name if isinstance(value, Atom) and value.name in names else None


def _condition(cond: object) -> object:
    if _atom(cond, "all"):
        return "all"
    if isinstance(cond, tuple) and len(cond) == 2:
        tag = _atom(cond[0], "username", "user", "clientid", "client", "and", "or")
        if tag in ("and", "or") and isinstance(cond[1], list):
            return (tag, tuple(_condition(c) for c in cond[1]))
        if tag is not None:
            key = {"user": "username", "client": "clientid"}.get(tag, tag)
            return (key, _value_condition(cond[1]))
    if (
        isinstance(cond, tuple)
        and len(cond) == 3
        and _atom(cond[0], "client_attr")
        and isinstance(cond[1], str)
    ):
        return ("client_attr", cond[1], _value_condition(cond[2]))
    raise AclSyntaxError(f"unsupported condition {cond!r}")


def _value_condition(value: object) -> tuple[str, str]:
    if isinstance(value, str):
        return ("eq", value)
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and _atom(value[0], "re")
        and isinstance(value[1], str)
    ):
        try:
            re.compile(pcre(value[1]))  # re_compile/2: a bad pattern is refused at load
        except re.error as exc:
            raise AclSyntaxError(f"invalid_re_pattern {value[1]!r}") from exc
        return ("re", value[1])
    raise AclSyntaxError(f"unsupported value condition {value!r}")


def _topic(topic: object) -> Topic:
    if (
        isinstance(topic, tuple)
        and len(topic) == 2
        and _atom(topic[0], "eq")
        and isinstance(topic[1], str)
    ):
        return Topic(topic[1], exact=True)
    if isinstance(topic, str):
        if topic.startswith("eq "):
            return Topic(topic[3:], exact=True)
        for name in _PLACEHOLDER.findall(topic):
            if _ALLOWED_VARS.fullmatch(name) is None:
                raise AclSyntaxError(f"placeholder ${{{name}}} is not allowed in a topic")
        return Topic(topic)
    raise AclSyntaxError(f"unsupported topic {topic!r}")


def compile_rule(term: object) -> Rule:
    if not isinstance(term, tuple) or not term:
        raise AclSyntaxError(f"invalid_authorization_rule {term!r}")
    permission = _atom(term[0], "allow", "deny")
    if permission is None:
        raise AclSyntaxError(f"invalid_authorization_permission {term[0]!r}")
    if len(term) == 2 and _atom(term[1], "all"):
        term = (term[0], Atom("all"), Atom("all"), Atom("all"))
    if len(term) != 4:
        raise AclSyntaxError(f"invalid_authorization_rule {term!r}")
    action = _atom(term[2], "publish", "subscribe", "all")
    if action is None:
        raise AclSyntaxError(f"unsupported action {term[2]!r}")
    if _atom(term[3], "all"):
        topics: tuple[Topic, ...] = (Topic("", every=True),)
    elif isinstance(term[3], list):
        topics = tuple(_topic(t) for t in term[3])
    else:
        raise AclSyntaxError(f"invalid_authorization_rule {term!r}")
    return Rule(permission, _condition(term[1]), action, topics)  # type: ignore[arg-type]


def load_rules(path: Path) -> tuple[Rule, ...]:
    return tuple(compile_rule(term) for term in consult(path.read_text()))


# -- matching (emqx_authz_rule:matches/4, emqx_topic:match/2) ----------------------------


@dataclass(frozen=True, slots=True)
class Client:
    """What the rules look at in EMQX's clientinfo."""

    username: str
    clientid: str
    client_attrs: dict[str, str] = field(default_factory=dict)
    mountpoint: str | None = None  # after authentication: "<tns>/", or None


def words(topic: str) -> list[str]:
    """emqx_topic:words/1 (the wildcards stay as "+" and "#")."""
    return topic.split("/")


def topic_matches(name: list[str], filter_words: list[str]) -> bool:
    """emqx_topic:match_words/2: a `$`-topic never matches a leading wildcard."""
    if name and name[0].startswith("$") and filter_words and filter_words[0] in ("+", "#"):
        return False
    return _tokens_match(name, filter_words)


def _tokens_match(name: list[str], filter_words: list[str]) -> bool:
    """emqx_topic:match_tokens/2, clause by clause."""
    if not name and not filter_words:
        return True
    if name and filter_words and name[0] == filter_words[0]:
        return _tokens_match(name[1:], filter_words[1:])
    if name and filter_words and filter_words[0] == "+":
        return _tokens_match(name[1:], filter_words[1:])
    return filter_words == ["#"]


def _render(template: str, client: Client) -> str | None:
    """emqx_auth_template:render_strict/2: None when a variable is missing."""
    values = {"username": client.username, "clientid": client.clientid}
    values.update({f"client_attrs.{k}": v for k, v in client.client_attrs.items()})
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found = values.get(match[1])
        if found is None:
            missing = True
            return ""
        return found

    rendered = _PLACEHOLDER.sub(value, template)
    return None if missing else rendered


def pcre(pattern: str) -> str:
    """A PCRE pattern (Erlang's re) as a Python one, for what the files use: PCRE's `\\z`
    (the very end) is Python's `\\Z`; `$` (the end, or before a final newline) and the
    rest mean the same in both."""
    return re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", pattern)


def _condition_matches(cond: object, client: Client) -> bool:
    if cond == "all":
        return True
    assert isinstance(cond, tuple)
    if cond[0] in ("and", "or"):
        results = [_condition_matches(c, client) for c in cond[1]]
        return all(results) if cond[0] == "and" else any(results)
    if cond[0] == "client_attr":
        actual: str | None = client.client_attrs.get(cond[1])
        kind, expected = cond[2]
    else:
        actual = client.username if cond[0] == "username" else client.clientid
        kind, expected = cond[1]
    if actual is None:
        return False
    if kind == "eq":
        return bool(actual == expected)
    return re.search(pcre(expected), actual) is not None  # re:run/2 is not anchored


def _topic_matches(topic: str, cond: Topic, client: Client) -> bool:
    if cond.every:
        return True
    if cond.exact:
        return words(topic) == words(cond.text)
    rendered = _render(cond.text, client)
    return rendered is not None and topic_matches(words(topic), words(rendered))


def match(rules: tuple[Rule, ...], client: Client, action: Action, topic: str) -> Result:
    """emqx_authz_rule:matches/4: the first rule whose action, condition and topics all
    match decides; none: nomatch."""
    for rule in rules:
        if rule.action not in (action, "all"):
            continue
        if not _condition_matches(rule.condition, client):
            continue
        if any(_topic_matches(topic, t, client) for t in rule.topics):
            return rule.permission
    return "nomatch"


def authorize(
    rules: tuple[Rule, ...],
    client: Client,
    action: Action,
    topic: str,
    *,
    include_mountpoint: bool,
    no_match: Literal["allow", "deny"] = "deny",
) -> Literal["allow", "deny"]:
    """emqx_access_control:authorize/3 with the file source as the only source: the
    topic is prefixed with the mountpoint when `include_mountpoint` (6.1+), and a topic
    no rule matched gets `no_match`."""
    if include_mountpoint and client.mountpoint is not None:
        topic = client.mountpoint + topic
    result = match(rules, client, action, topic)
    return no_match if result == "nomatch" else result
