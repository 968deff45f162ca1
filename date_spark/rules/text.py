"""The one-line text form of a rule, read back: ``age >= 40 and (region in ('n', 'e') or x is
null)``. The grammar is what `Predicate.to_text` writes and what the LLM is asked to write;
nested parentheses are expanded to DNF."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from date_spark.errors import RuleError
from date_spark.rules.algebra import OPS, Predicate, Rule
from date_spark.rules.values import Scalar
from date_spark.schema import Kind, parse_timestamp

__all__ = ["parse_rule", "parse_rules"]

# ----------------------------------------------------------------------------------------------
# Text parser
# ----------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<bq>`(?:[^`]|``)+`)
  | (?P<op><=|>=|!=|<>|==|<|>|=)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise RuleError(f"cannot read rule at position {pos}: {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return toks


class _Parser:
    def __init__(self, text: str, kinds: Mapping[str, Kind] | None) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.kinds = kinds

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def word(self, k: int = 0) -> str | None:
        t = self.peek(k)
        return t.text.lower() if t is not None and t.kind == "word" else None

    def fail(self, what: str) -> RuleError:
        t = self.peek()
        where = f"at position {t.pos} ({t.text!r})" if t else "at the end"
        return RuleError(f"cannot parse rule {self.text!r}: expected {what} {where}")

    def expect_punct(self, ch: str) -> None:
        t = self.peek()
        if t is None or t.text != ch:
            raise self.fail(repr(ch))
        self.i += 1

    def parse(self) -> Rule:
        if not self.toks:
            raise RuleError("empty rule; write a condition such as: age >= 40")
        r = self.disj()
        if self.peek() is not None:
            raise self.fail("'and', 'or' or the end of the rule")
        return r

    def disj(self) -> Rule:
        r = self.conj()
        while self.word() == "or":
            self.i += 1
            r = r.or_(self.conj())
        return r

    def conj(self) -> Rule:
        r = self.atom()
        while self.word() == "and":
            self.i += 1
            r = r.and_(self.atom())
        return r

    def atom(self) -> Rule:
        t = self.peek()
        if t is None:
            raise self.fail("a condition")
        if t.text == "(":
            self.i += 1
            r = self.disj()
            self.expect_punct(")")
            return r
        w = self.word()
        nxt = self.peek(1)
        if w == "true" and (nxt is None or nxt.kind != "op"):
            self.i += 1
            return Rule.true()
        if w == "false" and (nxt is None or nxt.kind != "op"):
            self.i += 1
            return Rule.false()
        return Rule.of(self.predicate())

    def column(self) -> str:
        t = self.peek()
        if t is None or t.kind not in ("word", "bq", "str"):
            raise self.fail("a column name")
        self.i += 1
        if t.kind == "bq":
            return t.text[1:-1].replace("``", "`")
        if t.kind == "str" and t.text.startswith('"'):
            return t.text[1:-1].replace('""', '"')
        if t.kind == "str":
            raise self.fail("a column name (quote names with backticks)")
        return t.text

    def literal(self) -> Scalar:
        t = self.peek()
        if t is None:
            raise self.fail("a value")
        self.i += 1
        if t.kind == "num":
            s = t.text
            if re.fullmatch(r"[-+]?\d+", s):
                return int(s)
            return float(s)
        if t.kind == "str":
            q = t.text[0]
            return t.text[1:-1].replace(q + q, q)
        if t.kind == "word":
            w = t.text.lower()
            if w == "true":
                return True
            if w == "false":
                return False
            if w in ("date", "timestamp"):
                quoted = self.peek()
                if quoted is None or quoted.kind != "str":
                    raise self.fail(f"a quoted {w}, e.g. {w} '2024-01-31'")
                self.i += 1
                raw = quoted.text[1:-1]
                try:
                    if w == "date":
                        return dt.date.fromisoformat(raw)
                    return parse_timestamp(raw)
                except ValueError:
                    raise RuleError(f"invalid {w} literal {raw!r} in rule {self.text!r}") from None
            if w == "null":
                raise RuleError(f"comparison with null in {self.text!r}; write 'x is null'")
        self.i -= 1
        raise self.fail("a number, a quoted string, true/false or date '...'")

    def predicate(self) -> Predicate:
        col = self.column()
        t = self.peek()
        if t is None:
            raise self.fail("an operator")
        if t.kind == "op":
            self.i += 1
            p = Predicate(col, t.text, self.literal())
        elif self.word() == "is":
            self.i += 1
            neg = self.word() == "not"
            if neg:
                self.i += 1
            if self.word() != "null":
                raise self.fail("null")
            self.i += 1
            p = Predicate(col, "is not null" if neg else "is null")
        elif self.word() in ("in", "not"):
            neg = self.word() == "not"
            self.i += 1
            if neg:
                if self.word() != "in":
                    raise self.fail("'in'")
                self.i += 1
            self.expect_punct("(")
            vals = [self.literal()]
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.i += 1
                vals.append(self.literal())
            self.expect_punct(")")
            p = Predicate(col, "not in" if neg else "in", tuple(vals))
        else:
            raise self.fail(f"an operator ({', '.join(OPS)})")
        return p.bind(self.kinds)


def parse_rule(text: str, kinds: Mapping[str, Kind] | None = None) -> Rule:
    """Parse the one-line text form. With `kinds`, unknown columns and wrong value types raise
    `RuleError`; nested parentheses are expanded to DNF."""
    if not isinstance(text, str):
        raise RuleError(f"a rule must be text, got {type(text).__name__}")
    return _Parser(text, kinds).parse()


def parse_rules(texts: Iterable[str], kinds: Mapping[str, Kind] | None = None) -> list[Rule]:
    return [parse_rule(t, kinds) for t in texts]
