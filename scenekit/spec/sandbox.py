"""The Jinja2 sandbox spec strings are rendered in, metered so that no template runs for minutes or fills
memory (the caps are in `scenekit.spec.limits`):

- every value a template computes (results of calls, filters, arithmetic, `~`, and each `{{ ... }}`
  output) is at most `MAX_TEMPLATE_TEXT` characters or items, and a number at most `MAX_TEMPLATE_DIGITS`
  digits;
- what can multiply its input is estimated before it runs: `*` and `**`, format widths, and methods and
  filters called with a large count or a second large argument (`'a'.center(10**9)`, `s.replace('a', long)`);
- all of a spec's templates together have at most `MAX_TEMPLATE_TOKENS` pieces of syntax (counted as they
  are read, so that none takes long to compile), take at most `MAX_TEMPLATE_STEPS` operations (each loop
  iteration and `range` item, call, filter, operator and output is one) and make at most
  `MAX_TEMPLATE_CHARS` characters.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError, safe_range
from jinja2.visitor import NodeTransformer

from scenekit.spec.limits import (
    MAX_TEMPLATE_CHARS,
    MAX_TEMPLATE_DIGITS,
    MAX_TEMPLATE_STEPS,
    MAX_TEMPLATE_TEXT,
    MAX_TEMPLATE_TOKENS,
)

_EACH = "scenekit.each"
"""Filter put around every `{% for %}` iterable: one step per item. Its name cannot be written in a template."""
_CHECKED = "scenekit.checked"
"""Filter put around every `~` concatenation: its result is checked like any other value."""
_PRINTF_WIDTHS = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS_PER_BIT = math.log10(2)
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
_VALUE_HINT = "prompts and names are short text: check the repetition (`*`), loops and filters in this string"


class TemplateLimitError(SecurityError):
    """A template went over one of the caps in `scenekit.spec.limits`; `hint` says what to look at."""

    def __init__(self, message: str, hint: str = _VALUE_HINT):
        super().__init__(message)
        self.hint = hint


class SpecSandbox(ImmutableSandboxedEnvironment):
    """The sandbox every string of one spec is rendered in; it meters all of them against one budget.

    Immutable: templates cannot change lists and mappings from `vars` (so one clip's strings cannot
    change what the next one sees). No `lipsum` global (it makes paragraphs of text on request)."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=self._charge,
            extensions=[_TokenMeter],
        )
        self.tokens = 0
        self.steps = 0
        self.chars = 0
        self.globals.pop("lipsum", None)
        self.globals["range"] = self._range
        self.filters = {name: self._metered_filter(name, f) for name, f in self.filters.items()}
        self.filters[_EACH] = self._each
        self.filters[_CHECKED] = self._charge
        self._compiled: dict[str, Any] = {}

    def render(self, text: str, context: Mapping[str, Any]) -> str:
        """`text` rendered with `context`; raises TemplateLimitError once the output would pass `MAX_TEMPLATE_TEXT`."""
        template = self._compiled.get(text)
        if template is None:
            template = self._compiled[text] = self.from_string(text)
        pieces, length = [], 0
        for piece in template.generate(context):
            length += len(piece)
            if length > MAX_TEMPLATE_TEXT:
                raise TemplateLimitError(f"the rendered string is longer than {MAX_TEMPLATE_TEXT:,} characters")
            pieces.append(piece)
        return "".join(pieces)

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        return super()._generate(_Metered().visit(source), name, filename, defer_init)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return self._charge(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        receiver = getattr(obj, "__self__", None)
        if isinstance(receiver, _SIZED) and not isinstance(obj, Macro):
            self._check_call(getattr(obj, "__name__", "the call"), receiver, [*args, *kwargs.values()])
        return self._charge(super().call(context, obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            _check_format(value.__self__)
        return wrapper

    def _metered_filter(self, name: str, run: Callable[..., Any]) -> Callable[..., Any]:
        """`run` with its arguments checked before and its result charged after."""

        @functools.wraps(run)
        def metered(*args: Any, **kwargs: Any) -> Any:
            values = [a for a in (*args, *kwargs.values()) if not _is_jinja_state(a)]
            if name == "format" and values and isinstance(values[0], str):
                _check_printf(values[0])
            elif values:
                self._check_call(f"|{name}", values[0], values[1:])
            return self._charge(run(*args, **kwargs))

        return metered

    def _check_call(self, name: str, receiver: Any, args: list[Any]) -> None:
        """Refuse a call that could make more than the templates may still make; charge what it reads."""
        estimate = _estimated_size(receiver, args)
        if self.chars + estimate > MAX_TEMPLATE_CHARS:
            raise TemplateLimitError(
                f"`{name}` could make about {estimate:,} characters or items; the spec's templates "
                f"may make at most {MAX_TEMPLATE_CHARS:,} in all"
            )
        self.chars += sum(len(a) for a in (receiver, *args) if isinstance(a, _SIZED))

    def count_token(self) -> None:
        """Count one piece of template syntax read (`_TokenMeter`)."""
        self.tokens += 1
        if self.tokens > MAX_TEMPLATE_TOKENS:
            raise TemplateLimitError(
                f"the spec's templates have more than {MAX_TEMPLATE_TOKENS:,} pieces of template syntax",
                "templates fill in short text: generate repeated clips with one `for:` loop "
                "rather than writing templates out many times",
            )

    def _range(self, *args: int) -> range:
        numbers = safe_range(*args)
        self._step(len(numbers))
        return numbers

    def _each(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self._step(1)
            yield item

    def _charge(self, value: Any) -> Any:
        """`value`, counted as one step and its size; raises TemplateLimitError past a cap."""
        if isinstance(value, int) and not isinstance(value, bool) and _digits(value) > MAX_TEMPLATE_DIGITS:
            raise TemplateLimitError(
                f"a template made a number of more than {MAX_TEMPLATE_DIGITS:,} digits",
                "check the arithmetic (`**`, `*`) in this string",
            )
        size, looked_at = _size(value, MAX_TEMPLATE_TEXT)
        if size > MAX_TEMPLATE_TEXT:
            raise TemplateLimitError(f"a template made a value of more than {MAX_TEMPLATE_TEXT:,} characters or items")
        self.chars += size
        if self.chars > MAX_TEMPLATE_CHARS:
            raise TemplateLimitError(f"the spec's templates made more than {MAX_TEMPLATE_CHARS:,} characters in all")
        self._step(looked_at)
        return value

    def _step(self, count: int) -> None:
        self.steps += count
        if self.steps > MAX_TEMPLATE_STEPS:
            raise TemplateLimitError(
                f"the spec's templates ran more than {MAX_TEMPLATE_STEPS:,} operations (loop iterations, calls, filters)",
                "check the loops (`for`, `range`) in the templates: nested loops multiply",
            )


class _TokenMeter(Extension):
    """Counts every token the lexer reads, before it is parsed, against `MAX_TEMPLATE_TOKENS`."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        environment: SpecSandbox = self.environment  # type: ignore[assignment]
        for token in stream:
            environment.count_token()
            yield token


class _Metered(NodeTransformer):
    """Puts `_EACH` around every loop's iterable and `_CHECKED` around every `~`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _EACH, [], [], None, None, lineno=node.iter.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, _CHECKED, [], [], None, None, lineno=node.lineno)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `*` and `**` whose result would pass the caps, before computing it."""
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            repeated = isinstance(sequence, str | list | tuple) and _is_int(count)
            if repeated and _size(sequence, MAX_TEMPLATE_TEXT)[0] * count > MAX_TEMPLATE_TEXT:
                raise TemplateLimitError(
                    f"repeating a value {count:,} times would make more than {MAX_TEMPLATE_TEXT:,} characters or items"
                )
        if _is_int(left) and _is_int(right) and _digits(left) + _digits(right) > MAX_TEMPLATE_DIGITS + 1:
            raise _too_many_digits()
    elif operator == "**" and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        if (abs(left).bit_length() - 1) * right * _DIGITS_PER_BIT > MAX_TEMPLATE_DIGITS:
            raise _too_many_digits()
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)


def _too_many_digits() -> TemplateLimitError:
    return TemplateLimitError(
        f"the result would have more than {MAX_TEMPLATE_DIGITS:,} digits",
        "check the arithmetic (`**`, `*`) in this string",
    )


def _check_format(text: str) -> None:
    """Refuse a `str.format` string whose widths or precisions pass `MAX_TEMPLATE_TEXT`."""
    for _, field, spec, _ in string.Formatter().parse(text):
        if field is not None and spec:
            if "{" in spec:
                raise TemplateLimitError(
                    "a width or precision taken from an argument (`{:{w}}`) is not allowed in a spec",
                    "write the width as a number",
                )
            _check_widths(re.findall(r"\d+", spec))


def _check_printf(text: str) -> None:
    """Refuse a `%` format whose widths or precisions pass `MAX_TEMPLATE_TEXT`."""
    widths = [width for match in _PRINTF_WIDTHS.finditer(text) for width in match.groups() if width]
    if "*" in widths:
        raise TemplateLimitError(
            "a width or precision taken from an argument (`%*d`) is not allowed in a spec",
            "write the width as a number",
        )
    _check_widths(widths)


def _check_widths(widths: list[str]) -> None:
    for width in widths:
        if len(width) > 7 or int(width) > MAX_TEMPLATE_TEXT:
            raise TemplateLimitError(f"a format width or precision of {width} is more than {MAX_TEMPLATE_TEXT:,}")


def _estimated_size(receiver: Any, args: list[Any]) -> int:
    """What a method or filter could make at most, roughly: its largest text or list argument (or the
    value it works on) times the next largest argument, count or length."""
    lengths = sorted((max(1, len(a)) for a in (receiver, *args) if isinstance(a, _SIZED)), reverse=True)
    counts = [abs(a) for a in args if _is_int(a)]
    return lengths[0] * max([1, *lengths[1:2], *counts]) if lengths else 0


def _size(value: Any, limit: int) -> tuple[int, int]:
    """Characters and items in `value`, nested ones included (counting stops once past `limit`), and how
    many values were looked at to count them."""
    total, looked_at, pending = 0, 0, [value]
    while pending and total <= limit:
        item = pending.pop()
        looked_at += 1
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += 1
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 1
            pending.extend(item)
        else:
            total += _digits(item) if _is_int(item) else 1
    return total, looked_at


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _digits(number: int) -> int:
    """Decimal digits of `number`, from its bit length (may be one more than exact)."""
    return int(abs(number).bit_length() * _DIGITS_PER_BIT) + 1


def _is_jinja_state(value: Any) -> bool:
    """The context, eval context or environment Jinja passes to some filters first."""
    return type(value).__module__.startswith("jinja2.") and not isinstance(value, str)
