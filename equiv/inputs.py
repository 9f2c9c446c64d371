"""Input strategies by form key: each registered form's ``inputs`` (declared in its family
module), narrowed by options.

``seqcheck.properties.inputs_for``/``options`` forward here: the strategy builders live in
``properties``, which knows no registry keys; which builder a key uses is part of the form's
declaration, so the lookup lives with the registry.
"""

from __future__ import annotations

from seqcheck.equiv.registry import form_keys, get_form
from seqcheck.properties.describe import Option, describe, markdown, option_names


def _builder(key: str):
    try:
        return get_form(key).inputs
    except KeyError:
        raise KeyError(f"no input strategy for {key!r}; known: {', '.join(form_keys())}") from None


def inputs_for(key: str, **options):
    """The strategy of valid keyword arguments for form ``key``, narrowed by ``options``.

    >>> from seqcheck.properties import inputs_for
    >>> strategy = inputs_for("attention.flash.tiled", causal=True, softcap=None, head_dim=4)
    >>> large = inputs_for("attention.flash.tiled", size="large", k_len=range(60, 70))

    Each option takes a strategy, a ``range`` or a fixed value; ``size`` picks a size tier
    ("small", "default", "large"; docs/inputs.md). ``options(key)`` lists the options ``key``
    accepts.
    """
    make = _builder(key)
    unknown = sorted(set(options) - option_names(make))
    if unknown:
        raise TypeError(f"inputs_for({key!r}): unknown option(s) {', '.join(unknown)}; "
                        f"options are {', '.join(sorted(option_names(make)))}")
    return make(**options)


def options(key: str) -> dict[str, Option]:
    """The options ``inputs_for(key, ...)`` accepts, in signature order: name -> one line
    "description (default: ...)" (an ``Option``, a str with ``.default`` and ``.description``).

    >>> from seqcheck.properties import options
    >>> print(options("attention.flash.tiled")["k_len"])
    key length Tk (default: 1..11 (large: 15..257 near multiples of 16))
    """
    return describe(_builder(key), key)


def options_markdown(keys=None) -> str:
    """The options tables of docs/inputs.md: one table per group of forms with the same options."""
    return markdown({key: options(key) for key in (form_keys() if keys is None else keys)})
