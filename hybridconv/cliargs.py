"""Command-line options generated from configuration dataclasses.

``hybridconv``'s verbs are configured by dataclasses (``SimConfig``, ``FinetuneConfig``, the
verbs' own configs in :mod:`hybridconv.configs`). :func:`add_options` turns every field into an
``argparse`` option: its name (``eta_x`` -> ``--eta-x``, with the vocabulary's other spellings
as aliases: ``--lr-x``, and ``--dx`` deprecated), its default and help text, its domain. So
keyword arguments, options and defaults cannot drift apart, and ``--help`` shows every
default.

A field's vocabulary row (:mod:`hybridconv.spec`) is the one ``spec.option`` names, else the
row of the field's name (``lr_x`` -> ``eta_x``), else none (a plain field: a path, a switch,
its type taken from its default). The option checks its value when it is parsed, through the
row's :func:`~hybridconv.spec.validate`, and the error names the option as the user typed it:
``--eta-x must be a finite real number > 0, got -1.0``. :func:`from_args` then builds the
config, and :func:`option_error` turns a config's own error (which names a field) into one that
names the option.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from . import spec

__all__ = ["CLIError", "add_options", "from_args", "option_error", "flag_of", "Option",
           "typed_options"]


class CLIError(Exception):
    """An error reported as one line ``hybridconv: error: ...`` and exit status 2."""


_FIRST_CLASS = frozenset({"lr_x", "lr_y"})
"""Aliases of :data:`hybridconv.spec.ALIASES` accepted without a warning (torch users' names
of the step sizes); the others (``dx``, ``dy``) are deprecated."""


def flag_of(name: str) -> str:
    """``eta_x`` -> ``--eta-x``."""
    return "--" + name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Option:
    """What one field becomes on the command line."""

    field: str
    dest: str
    flags: tuple[str, ...]
    deprecated: tuple[str, ...]
    row: str | None
    among: spec.Choice | None
    default: Any
    help: str
    positive: bool
    nullable: bool
    none_value: str | None
    kind: str  # "choice", "quantity", "bool", "str", "int", "float"
    choices: tuple[str, ...] | None
    positional: bool
    nargs: str | None
    append: bool
    metavar: str | None
    default_help: str | None
    reason: str | None
    required: str | None


def _row_of(name: str, meta: Mapping[str, Any]) -> tuple[str | None, spec.Choice | None]:
    if "row" in meta:
        return meta["row"], meta.get("among")
    key = spec.canonical(name)
    if key in spec.CHOICES or key in spec.QUANTITIES:
        return key, None
    return None, None


def describe(cls: type, name: str, overrides: Mapping[str, Any] | None = None) -> Option:
    """The :class:`Option` of field ``name`` of dataclass ``cls`` (``overrides``: metadata
    replaced for this verb, e.g. ``{"none_value": "0"}``)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    meta = {**f.metadata, **(overrides or {})}
    row, among = _row_of(f.name, meta)
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = None
    key = among.name if among is not None else row
    if among is not None or (key is not None and key in spec.CHOICES):
        kind = "choice"
    elif key is not None:
        kind = "quantity"
    elif isinstance(default, bool):
        kind = "bool"
    elif isinstance(default, int):
        kind = "int"
    elif isinstance(default, float):
        kind = "float"
    else:
        kind = "str"
    help_text = meta.get("help")
    if help_text is None and key is not None:
        help_text = (among or spec.CHOICES.get(key) or spec.QUANTITIES[key]).help \
            if kind == "choice" else spec.QUANTITIES[key].description
    canon = spec.canonical(f.name) if key is not None and kind == "quantity" else f.name
    flags = [flag_of(canon)] + list(meta.get("flags", ()))
    deprecated = list(meta.get("deprecated_flags", ()))
    if kind == "quantity":  # the vocabulary's other spellings of the same quantity
        for alias, target in spec.ALIASES.items():
            if target == canon and flag_of(alias) not in flags + deprecated:
                (flags if alias in _FIRST_CLASS else deprecated).append(flag_of(alias))
    if f.name != canon and flag_of(f.name) not in flags + deprecated:
        (flags if f.name in _FIRST_CLASS else deprecated).append(flag_of(f.name))
    choices = meta.get("choices")
    if kind == "choice":
        choices = (among or spec.CHOICES[key]).values
    return Option(
        field=f.name, dest=f.name, flags=tuple(flags), deprecated=tuple(deprecated), row=key,
        among=among, default=default, help=help_text or "", positive=meta.get("positive", False),
        nullable=meta.get("nullable", False) or default is None,
        none_value=meta.get("none_value"), kind=kind, choices=choices,
        positional=meta.get("positional", False), nargs=meta.get("nargs"),
        append=meta.get("append", False),
        metavar=meta.get("metavar") or (canon.upper() if kind == "quantity" else None),
        default_help=meta.get("default_help"), reason=meta.get("reason"),
        required=meta.get("required"))


def _number(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _warn(message: str) -> None:
    print(f"hybridconv: warning: {message}", file=sys.stderr)


def parse_value(opt: Option, text: str, label: str) -> Any:
    """One command-line word -> the field's value, checked by its vocabulary row."""
    if opt.none_value is not None and text == opt.none_value:
        return None
    try:
        if opt.kind == "choice":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = spec.validate(opt.row, text, label=label, among=opt.among)
            for w in caught:
                _warn(str(w.message))
            return value
        if opt.kind == "quantity":
            return spec.validate(opt.row, _number(text), label=label, positive=opt.positive)
        if opt.kind == "int":
            return int(text)
        if opt.kind == "float":
            return float(text)
    except ValueError as e:
        if opt.kind in ("int", "float"):
            raise CLIError(f"{label} must be {'an integer' if opt.kind == 'int' else 'a number'}"
                           f", got {text!r}") from None
        raise CLIError(str(e)) from None
    if opt.choices is not None and text not in opt.choices:
        raise CLIError(f"{label} must be one of {', '.join(opt.choices)}, got {text!r}")
    return text


class _Checked(argparse.Action):
    """Parses and validates the value through the field's vocabulary row, warns for a
    deprecated spelling of the option."""

    def __init__(self, option_strings, dest, *, opt: Option, **kw):
        self.opt = opt
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        label = option_string or self.opt.flags[0].lstrip("-").replace("-", "_")
        if option_string in self.opt.deprecated:
            _warn(f"{option_string} is deprecated; use {self.opt.flags[0]}")
        if isinstance(values, list):
            value = [parse_value(self.opt, v, label) for v in values]
        else:
            value = parse_value(self.opt, values, label)
        if self.opt.append:
            value = [*(getattr(namespace, self.dest, None) or []), value]
        setattr(namespace, self.dest, value)
        _remember(namespace, self.dest, option_string)


class _Switch(argparse._StoreTrueAction):
    """A switch (``store_true``) that remembers it was typed."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        _remember(namespace, self.dest, option_string)


class _Deprecated(argparse.Action):
    """A deprecated spelling of a switch."""

    def __init__(self, option_strings, dest, *, opt: Option, **kw):
        self.opt = opt
        super().__init__(option_strings, dest, nargs=0, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.opt.deprecated:
            _warn(f"{option_string} is deprecated; use {self.opt.flags[0]}")
        setattr(namespace, self.dest, True)
        _remember(namespace, self.dest, option_string)


_TYPED = "_typed_flags"


def typed_options(args: argparse.Namespace) -> dict[str, str]:
    """The options the user typed: destination -> the spelling typed (``{"eta_x":
    "--lr-x"}``)."""
    return dict(getattr(args, _TYPED, None) or {})


def _remember(namespace: argparse.Namespace, dest: str, option_string: str | None) -> None:
    """Which spelling the user typed for ``dest`` (error messages repeat it)."""
    if option_string:
        typed = dict(getattr(namespace, _TYPED, None) or {})
        typed[dest] = option_string
        setattr(namespace, _TYPED, typed)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def help_text(opt: Option) -> str:
    """The help line: the field's help, then its default (or that it is required)."""
    text = opt.help
    if opt.required:
        text += f" (required {opt.required})" if opt.required != "yes" else " (required)"
    elif opt.kind != "bool" and "(default" not in text:
        if opt.default is None or opt.default == []:
            text += f" (default: {opt.default_help or 'none'})"
        else:
            text += f" (default: {_show(opt.default)})"
    if opt.reason:
        text += f"; {opt.reason}"
    if opt.deprecated:
        text += f"; {', '.join(opt.deprecated)} deprecated"
    return text.replace("%", "%%")


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: Iterable[str] = (),
                only: Iterable[str] | None = None, suppress: bool = False,
                overrides: Mapping[str, Mapping[str, Any]] | None = None,
                defaults: Mapping[str, Any] | None = None) -> list[Option]:
    """Add an option for every field of dataclass ``cls`` (except ``skip``; or ``only``).

    ``suppress``: the options' defaults are not set (a sub-command's options then keep a value
    given before it); ``overrides``: per-field metadata for this verb; ``defaults``: per-field
    defaults for this verb (a verb's documented exception: pass its reason in ``overrides``).
    Returns the options added.
    """
    skip = set(skip)
    names = [f.name for f in dataclasses.fields(cls)
             if (only is None or f.name in only) and f.name not in skip
             and f.metadata.get("cli", True)]
    if only is not None:
        names = [n for n in only if n in names]
    out = []
    for name in names:
        opt = describe(cls, name, (overrides or {}).get(name))
        if defaults and name in defaults:
            opt = dataclasses.replace(opt, default=defaults[name])
        default = argparse.SUPPRESS if suppress else opt.default
        kw: dict[str, Any] = {"help": help_text(opt), "default": default}
        if opt.kind == "bool":
            if opt.deprecated:
                parser.add_argument(*opt.flags, dest=opt.dest, action=_Switch, **kw)
                parser.add_argument(*opt.deprecated, dest=opt.dest, opt=opt,
                                    action=_Deprecated, help=argparse.SUPPRESS,
                                    default=argparse.SUPPRESS)
            else:
                parser.add_argument(*opt.flags, dest=opt.dest, action=_Switch, **kw)
            out.append(opt)
            continue
        metavar = opt.metavar
        if metavar is None and opt.choices is not None:
            metavar = "{" + ",".join(opt.choices) + "}"
        if opt.nargs:
            kw["nargs"] = opt.nargs
        if opt.positional:
            parser.add_argument(opt.dest, action=_Checked, opt=opt, metavar=metavar,
                                **{k: v for k, v in kw.items() if k != "default"})
        else:
            parser.add_argument(*opt.flags, *opt.deprecated, dest=opt.dest, action=_Checked,
                                opt=opt, metavar=metavar, **kw)
        out.append(opt)
    return out


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The config ``cls`` from the parsed options that are its fields (and ``extra``); its
    own errors name the options (:func:`option_error`)."""
    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
          if f.init and hasattr(args, f.name)}
    kw.update(extra)
    try:
        return cls(**kw)
    except ValueError as e:
        raise option_error(e, cls, args=args) from None


_LEAD = re.compile(r"^(?:config\.)?([A-Za-z_][A-Za-z0-9_]*)\b")


def option_error(error: BaseException, *classes: type,
                 args: argparse.Namespace | None = None) -> CLIError:
    """A config's ``ValueError`` (which starts with a field's name: ``"eta_x must be ..."``) as
    a :class:`CLIError` naming the option as the user typed it (``"--lr-x must be ..."``, or
    the option's main spelling if it was not typed); first line only."""
    text = str(error).splitlines()[0] if str(error) else repr(error)
    names = {f.name for cls in classes for f in dataclasses.fields(cls)}
    m = _LEAD.match(text)
    if m and m.group(1) in names:
        opt = describe(next(c for c in classes
                            if m.group(1) in {f.name for f in dataclasses.fields(c)}),
                       m.group(1))
        typed = (getattr(args, _TYPED, None) or {}) if args is not None else {}
        label = typed.get(opt.dest) or (opt.flags[0] if not opt.positional
                                        else opt.dest.upper())
        text = label + text[m.end():]
    return CLIError(text)
