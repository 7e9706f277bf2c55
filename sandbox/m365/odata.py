"""OData query options as Graph checks them: a malformed value is a 400, never a dropped line.

Each function reads one option from a request's query (keys as sent, `$` included) and raises
GraphError for a value Graph would refuse. `$filter` is parsed into a predicate: comparisons
(eq, ne, gt, ge, lt, le) of a property path with a literal, `startswith(path, 'text')`,
`and`, `or`, `not` and parentheses; a property the resource does not filter on is a 400 in the
words Graph uses ("This filter query is not supported.").
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import GraphError

PARSE = "RequestBroker--ParseUri"  # Exchange-backed resources answer query errors with this code


def canonical(query: dict) -> dict:
    """System query options are case-insensitive (`$Top` is `$top`)."""
    return {(k.lower() if k.startswith("$") else k): v for k, v in query.items()}


def refuse_unknown(query: dict, allowed: set[str]):
    for key in query:
        if key.startswith("$") and key not in allowed:
            raise GraphError(400, "BadRequest", f"The query parameter '{key}' is not supported.")


def non_negative(query: dict, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\s*\d{1,9}\s*", raw):
        raise GraphError(
            400,
            "BadRequest",
            f"Invalid value '{raw}' for {name} query option found. "
            f"The {name} query option requires a non-negative integer value.",
        )
    return int(raw)


def page_size_preference(prefer: dict) -> int | None:
    raw = prefer.get("odata.maxpagesize")
    if raw is None:
        return None
    if not re.fullmatch(r"\d{1,9}", raw) or int(raw) < 1:
        raise GraphError(
            400,
            "BadRequest",
            f"Invalid value '{raw}' for the odata.maxpagesize preference. "
            "A positive integer is expected.",
        )
    return int(raw)


def count(query: dict) -> bool:
    raw = query.get("$count")
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise GraphError(
            400,
            "BadRequest",
            f"Invalid value '{raw}' for $count query option found. "
            "Valid values are 'true' and 'false'.",
        )
    return raw.lower() == "true"


def select(query: dict, known: set[str], default: set[str], type_name: str, code=PARSE) -> set:
    if "$select" not in query:
        return set(default)
    raw = query["$select"]
    fields = [f.strip() for f in raw.split(",")]
    if not raw.strip() or any(not f for f in fields):
        raise GraphError(400, code, f"Syntax error: '{raw}' is not a valid $select value.")
    by_lower = {name.lower(): name for name in known}
    chosen = set()
    for name in fields:
        if name == "*":
            chosen |= set(default)
        elif name.lower() in by_lower:
            chosen.add(by_lower[name.lower()])
        else:
            raise GraphError(
                400, code, f"Could not find a property named '{name}' on type '{type_name}'."
            )
    return chosen


def expand_extended_property(query: dict) -> str | None:
    """The one `$expand` the product uses: a single-value extended property by id."""
    expand = query.get("$expand")
    if expand is None:
        return None
    match = re.fullmatch(
        r"\s*singleValueExtendedProperties\(\s*\$filter\s*=\s*id\s+eq\s+'((?:[^']|'')+)'\s*\)\s*",
        expand,
        flags=re.IGNORECASE,
    )
    if not match:
        raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand failed: '{expand}'.")
    return match.group(1).replace("''", "'")


# ----- $orderby


def orderby(query: dict, known: set[str]) -> list[tuple[str, bool]]:
    """[(property path, descending)]; an unknown path is a 400."""
    raw = query.get("$orderby")
    if raw is None:
        return []
    order = []
    for part in raw.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise GraphError(400, "BadRequest", f"Syntax error in $orderby: '{raw}'.")
        if words[0] not in known:
            raise GraphError(
                400, "BadRequest", f"The $orderby expression '{words[0]}' is not supported."
            )
        order.append((words[0], len(words) == 2 and words[1] == "desc"))
    return order


# ----- $filter

TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?(?![\w:-]))"
    r"|(?P<datetime>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?)"
    r"|(?P<punct>[(),])|(?P<word>[A-Za-z_][\w/.]*))"
)
COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
KIND = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual"}
KIND |= {"lt": "LessThan", "le": "LessThanOrEqual"}


@dataclass(frozen=True)
class Filterable:
    """What a resource lets `$filter` compare: property paths and their Edm types."""

    type_name: str
    properties: dict[str, str]  # path → "Edm.String" | "Edm.Boolean" | "Edm.Int32"
    unsupported: frozenset[str] = frozenset()  # real properties Graph will not filter on here


def compile_filter(text: str, filterable: Filterable) -> Callable[[dict], bool]:
    tokens = _tokens(text)
    parser = _Parser(tokens, text, filterable)
    predicate = parser.expression()
    if parser.position != len(tokens):
        raise _syntax(text)
    return predicate


def _syntax(text):
    return GraphError(400, "BadRequest", f"Invalid filter clause: syntax error in '{text}'.")


def _tokens(text: str) -> list[tuple[str, object]]:
    tokens, position = [], 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise _syntax(text)
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "string":
            tokens.append(("literal", ("Edm.String", value[1:-1].replace("''", "'"))))
        elif kind == "number":
            tokens.append(("literal", ("Edm.Int32", float(value))))
        elif kind == "datetime":
            tokens.append(("literal", ("Edm.DateTimeOffset", value)))
        elif kind == "punct":
            tokens.append((value, value))
        elif value in ("true", "false"):
            tokens.append(("literal", ("Edm.Boolean", value == "true")))
        elif value == "null":
            tokens.append(("literal", ("null", None)))
        else:
            tokens.append(("word", value))
    return tokens


def _lookup(item: dict, path: str):
    value = item
    for step in path.split("/"):
        value = value.get(step) if isinstance(value, dict) else None
    return value


def _compare(op: str, left, right) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()  # Exchange and the directory ignore case
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if left is None or right is None:
        return False
    try:
        return {"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[
            op
        ]
    except TypeError:
        return False


class _Parser:
    def __init__(self, tokens, text, filterable: Filterable):
        self.tokens, self.text, self.filterable = tokens, text, filterable
        self.position = 0

    def peek(self, offset=0):
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else (None, None)

    def take(self, kind=None):
        token = self.peek()
        if token[0] is None or (kind and token[0] != kind):
            raise _syntax(self.text)
        self.position += 1
        return token

    def expression(self):
        left = self.conjunction()
        while self.peek() == ("word", "or"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda item: a(item) or b(item))(left, right)
        return left

    def conjunction(self):
        left = self.factor()
        while self.peek() == ("word", "and"):
            self.take()
            right = self.factor()
            left = (lambda a, b: lambda item: a(item) and b(item))(left, right)
        return left

    def factor(self):
        kind, value = self.peek()
        if (kind, value) == ("word", "not"):
            self.take()
            inner = self.factor()
            return lambda item: not inner(item)
        if kind == "(":
            self.take("(")
            inner = self.expression()
            self.take(")")
            return inner
        if kind == "word" and self.peek(1)[0] == "(":
            return self.function()
        return self.comparison()

    def path(self) -> tuple[str, str]:
        _kind, path = self.take("word")
        if path in self.filterable.unsupported or path.split("/")[0] in self.filterable.unsupported:
            raise self.unsupported()
        edm = self.filterable.properties.get(path)
        if edm is None:
            raise GraphError(
                400,
                PARSE,
                f"Could not find a property named '{path}' on type '{self.filterable.type_name}'.",
            )
        return path, edm

    def unsupported(self):
        return GraphError(400, "BadRequest", "This filter query is not supported.")

    def function(self):
        _kind, name = self.take("word")
        if name.endswith(("/any", "/all")):
            raise self.unsupported()  # lambdas over collections (attendees, categories)
        if name != "startswith":
            raise GraphError(
                400, "BadRequest", f"An unknown function with name '{name}' was found."
            )
        self.take("(")
        path, _edm = self.path()
        self.take(",")
        _kind, (edm, prefix) = self.take("literal")
        self.take(")")
        if edm != "Edm.String":
            raise _syntax(self.text)
        return lambda item: str(_lookup(item, path) or "").lower().startswith(prefix.lower())

    def comparison(self):
        path, edm = self.path()
        _kind, op = self.take("word")
        if op not in COMPARISONS:
            raise _syntax(self.text)
        _kind, (literal_type, literal) = self.take("literal")
        if literal_type != "null" and literal_type != edm:
            raise GraphError(
                400,
                "BadRequest",
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{edm}' and '{literal_type}' for operator kind '{KIND[op]}'.",
            )
        return lambda item: _compare(op, _lookup(item, path), literal)
