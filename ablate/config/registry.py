"""The plug-in registration API: a module adds norms, activations, stems, blocks or whole (timm) models by name.

    from ablate.config.registry import register_norm

    @register_norm("ws_group")
    def ws_group(channels: int) -> nn.Module: ...

What each kind's constructor is called with (the builder in `ablate.nn` calls it, as it calls its own layers):
  norm        f(channels) -> nn.Module
  activation  f() -> nn.Module
  stem        f(cfg: NetConfig, layers: LayerFn) -> nn.Module, taking `cfg.in_chans` channels to `cfg.stem_out`
              and shrinking the image by `reduction` (a keyword of `register_stem`: the feature sizes are
              checked with it before anything is built)
  block       f(in_chs, out_chs, hidden, stride, spec: BlockSpec, drop_path) -> nn.Module (as `ablate.nn.net.Block`)
  model       a timm entry function (`register_model`: timm's own `timm.models.register_model`, recorded here)

This module imports neither torch nor timm (study validation reads the names); the names a study may use are the
built-in ones and these. docs/plugins.md has a worked example.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

KINDS = ("norm", "activation", "stem", "block", "model")


@dataclass(frozen=True)
class Entry:
    """One registered name: its constructor, the module that registered it, and its options (a stem's
    `reduction`)."""

    kind: str
    name: str
    build: Callable[..., Any]
    module: str
    options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}


def _register(kind: str, name: str, fn: Callable[..., Any] | None, **options: Any) -> Any:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {kind} is registered under a non-empty name (got {name!r})")

    def add(f: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[kind][name] = Entry(kind, name, f, getattr(f, "__module__", None) or "", dict(options))
        return f

    return add(fn) if fn is not None else add


def register_norm(name: str, fn: Callable[[int], Any] | None = None) -> Any:
    """Register `fn(channels) -> nn.Module` as norm `name`; usable as a decorator (`@register_norm("x")`)."""
    return _register("norm", name, fn)


def register_activation(name: str, fn: Callable[[], Any] | None = None) -> Any:
    """Register `fn() -> nn.Module` as activation `name`; usable as a decorator."""
    return _register("activation", name, fn)


def register_stem(name: str, fn: Callable[..., Any] | None = None, *, reduction: int) -> Any:
    """Register `fn(cfg, layers) -> nn.Module` as stem `name`; `reduction`: how many times smaller its output
    feature map is than the image (4 for the ResNet and ConvNeXt-T stems)."""
    if not isinstance(reduction, int) or reduction < 1:
        raise ValueError(f"stem '{name}': reduction must be a positive integer (got {reduction!r})")
    return _register("stem", name, fn, reduction=reduction)


def register_block(name: str, fn: Callable[..., Any] | None = None) -> Any:
    """Register a residual block class (or factory) as block `name`; see `ablate.nn.net.Block` for its arguments."""
    return _register("block", name, fn)


def register_model(fn: Callable[..., Any]) -> Callable[..., Any]:
    """timm's `register_model` (the model is then a `timm:` name like any other), recorded as a plug-in's."""
    from timm.models import register_model as timm_register

    _register("model", fn.__name__, fn)
    return timm_register(fn)


def entry(kind: str, name: str) -> Entry | None:
    """The plug-in registered under `name` as a `kind`, or None (a built-in name, or none at all)."""
    return _REGISTRY[kind].get(name)


def names(kind: str) -> tuple[str, ...]:
    return tuple(_REGISTRY[kind])


def record_model(name: str, module: str) -> None:
    """A timm model that a plug-in module registered with timm itself (`timm.models.register_model`): built by
    `timm.create_model` like any timm model, recorded here for its module (whose source enters variant ids)."""
    if name not in _REGISTRY["model"]:
        _REGISTRY["model"][name] = Entry("model", name, _by_timm, module)


def _by_timm(**kwargs: Any) -> Any:
    raise TypeError("a plug-in's timm model is built by timm.create_model")


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Registrations made inside are undone on leaving (tests; one process checking several studies)."""
    saved = {kind: dict(entries) for kind, entries in _REGISTRY.items()}
    try:
        yield
    finally:
        for kind, entries in saved.items():
            _REGISTRY[kind].clear()
            _REGISTRY[kind].update(entries)
