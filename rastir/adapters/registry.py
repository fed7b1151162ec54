"""The adapter registry: which adapter reads which object, decided once per class.

Response phase, in priority order (seed 001):

1. framework adapters (200-300) unwrap, again and again until nothing unwraps;
2. the first provider adapter (1-199) that recognises what is left reads it;
3. the fallback (0) reads the common shapes of anything else.

The answer "which adapters may handle this class" is cached per class, so the usual
case (an SDK response object) costs one dict lookup before the adapter's own reads.
Adapters whose answer depends on the value (``match_type`` returns None) stay in the
cached candidate list and are asked about each object.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from rastir.adapters.base import (
    FALLBACK,
    FRAMEWORK,
    PROVIDER,
    AdapterResult,
    BaseAdapter,
    TokenDelta,
)

__all__ = ["AdapterRegistry", "get_registry"]

# One candidate: the adapter, and whether its class match is certain (no value check).
_Cand = tuple[BaseAdapter, bool]
_MAX_CACHE: Final = 2048  # classes remembered per phase; dynamic classes must not grow it forever
_MAX_UNWRAP: Final = 8  # framework unwrap rounds: a cycle must not loop forever

_RANGES: Final[dict[str, tuple[int, int]]] = {
    FRAMEWORK: (200, 300),
    PROVIDER: (1, 199),
    FALLBACK: (0, 0),
}


class AdapterRegistry:
    """An ordered set of adapters and the per-class caches over them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adapters: tuple[BaseAdapter, ...] = ()
        self._frameworks: tuple[BaseAdapter, ...] = ()
        self._providers: tuple[BaseAdapter, ...] = ()  # providers then fallbacks
        self._requesters: tuple[BaseAdapter, ...] = ()
        self._arg_scanners: tuple[BaseAdapter, ...] = ()
        self._streamers: tuple[BaseAdapter, ...] = ()
        self._fw_cache: dict[type, tuple[_Cand, ...]] = {}
        self._pv_cache: dict[type, tuple[_Cand, ...]] = {}
        self._st_cache: dict[type, tuple[_Cand, ...]] = {}
        self._rq_cache: dict[type, BaseAdapter | None] = {}

    # -- registration ----------------------------------------------------------------
    @property
    def adapters(self) -> tuple[BaseAdapter, ...]:
        """The registered adapters, highest priority first."""
        return self._adapters

    def register(self, adapter: BaseAdapter, *, replace: bool = True) -> BaseAdapter:
        """Add ``adapter``; one with the same name is replaced (unless ``replace=False``).

        Raises:
            TypeError: ``adapter`` is not a :class:`BaseAdapter` instance.
            ValueError: unknown kind, a priority outside its kind's range, or a
                duplicate name with ``replace=False``.
        """
        if not isinstance(adapter, BaseAdapter):
            raise TypeError(f"expected a BaseAdapter instance, got {adapter!r}")
        bounds = _RANGES.get(adapter.kind)
        if bounds is None:
            raise ValueError(f"adapter kind must be one of {sorted(_RANGES)}, got {adapter.kind!r}")
        low, high = bounds
        if not low <= adapter.priority <= high:
            raise ValueError(
                f"a {adapter.kind} adapter's priority must be in {low}..{high}, "
                f"got {adapter.priority}"
            )
        with self._lock:
            kept = [a for a in self._adapters if a.name != adapter.name]
            if len(kept) != len(self._adapters) and not replace:
                raise ValueError(f"an adapter named {adapter.name!r} is already registered")
            kept.append(adapter)
            self._rebuild(kept)
        return adapter

    def unregister(self, name: str) -> bool:
        """Remove the adapter called ``name``; False when there was none."""
        with self._lock:
            kept = [a for a in self._adapters if a.name != name]
            if len(kept) == len(self._adapters):
                return False
            self._rebuild(kept)
            return True

    def _rebuild(self, adapters: list[BaseAdapter]) -> None:
        # Stable: equal priorities keep registration order.
        ordered = tuple(sorted(adapters, key=lambda a: -a.priority))
        self._adapters = ordered
        self._frameworks = tuple(a for a in ordered if a.kind == FRAMEWORK and a.supports_response)
        self._providers = tuple(a for a in ordered if a.kind != FRAMEWORK and a.supports_response)
        self._requesters = tuple(a for a in ordered if a.supports_request)
        # Adapters that inspect the whole argument list themselves (custom
        # ``can_handle_request``) rather than one argument's class.
        self._arg_scanners = tuple(
            a
            for a in self._requesters
            if type(a).can_handle_request is not BaseAdapter.can_handle_request
        )
        self._streamers = tuple(a for a in ordered if a.supports_streaming)
        self._fw_cache = {}
        self._pv_cache = {}
        self._st_cache = {}
        self._rq_cache = {}

    # -- resolution ----------------------------------------------------------------------
    @staticmethod
    def _candidates(pool: tuple[BaseAdapter, ...], cls: type, stream: bool) -> tuple[_Cand, ...]:
        found: list[_Cand] = []
        for adapter in pool:
            try:
                m = adapter.match_stream_type(cls) if stream else adapter.match_type(cls)
            except Exception:
                continue
            if m is True:
                found.append((adapter, True))
                break
            if m is None:
                found.append((adapter, False))
        return tuple(found)

    def _pick(
        self,
        cache: dict[type, tuple[_Cand, ...]],
        pool: tuple[BaseAdapter, ...],
        obj: Any,
        stream: bool = False,
    ) -> BaseAdapter | None:
        cls = type(obj)
        cands = cache.get(cls)
        if cands is None:
            cands = self._candidates(pool, cls, stream)
            if len(cache) >= _MAX_CACHE:
                cache.clear()
            cache[cls] = cands
        for adapter, certain in cands:
            if certain:
                return adapter
            try:
                ok = adapter.can_handle_stream(obj) if stream else adapter.can_handle(obj)
            except Exception:
                ok = False
            if ok:
                return adapter
        return None

    def framework_for(self, obj: Any) -> BaseAdapter | None:
        """The framework adapter that unwraps ``obj``, or None."""
        return self._pick(self._fw_cache, self._frameworks, obj)

    def provider_for(self, obj: Any) -> BaseAdapter | None:
        """The provider (or fallback) adapter that reads ``obj``, or None."""
        return self._pick(self._pv_cache, self._providers, obj)

    def stream_adapter_for(self, chunk: Any) -> BaseAdapter | None:
        """The adapter that reads this stream chunk, or None."""
        return self._pick(self._st_cache, self._streamers, chunk, True)

    # -- the phases ------------------------------------------------------------------------
    def response(self, result: Any) -> list[AdapterResult]:
        """Run the response phase; results outermost first (later ones are more concrete)."""
        cls = type(result)
        wrappers = self._fw_cache.get(cls)
        if wrappers is None:
            wrappers = self._candidates(self._frameworks, cls, False)
            if len(self._fw_cache) >= _MAX_CACHE:
                self._fw_cache.clear()
            self._fw_cache[cls] = wrappers
        first: BaseAdapter | None = None
        for adapter, certain in wrappers:
            if not certain:
                try:
                    certain = adapter.can_handle(result)
                except Exception:
                    continue
            if certain:
                first = adapter
                break
        if first is None:  # nothing unwraps it (the common case): straight to providers
            cands = self._pv_cache.get(cls)
            if cands is not None:
                for adapter, certain in cands:
                    if not certain:
                        try:
                            certain = adapter.can_handle(result)
                        except Exception:
                            continue
                    if certain:
                        return [adapter.transform(result)]
                return []
            reader = self._pick(self._pv_cache, self._providers, result)
            return [] if reader is None else [reader.transform(result)]
        out: list[AdapterResult] = []
        obj = result
        fw: BaseAdapter | None = first
        for _ in range(_MAX_UNWRAP):
            if fw is None:
                break
            r = fw.transform(obj)
            out.append(r)
            inner = r.unwrapped_result
            if inner is None or inner is obj:
                obj = None
                break
            obj = inner
            fw = self.framework_for(obj)
        if obj is not None:
            pv = self.provider_for(obj)
            if pv is not None:
                out.append(pv.transform(obj))
        return out

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[AdapterResult]:
        """Request-phase results of the adapters that recognise an argument."""
        out: list[AdapterResult] = []
        cache = self._rq_cache
        for values in (args, kwargs.values()):
            for value in values:
                cls = type(value)
                try:
                    adapter = cache[cls]
                except KeyError:
                    adapter = self._request_adapter(cls)
                if adapter is not None:
                    r = adapter.extract_request_object(value)
                    if r is not None:
                        out.append(r)
        for adapter in self._arg_scanners:
            if adapter.can_handle_request(args, kwargs):
                r = adapter.extract_request_metadata(args, kwargs)
                if r is not None:
                    out.append(r)
        return out

    def _request_adapter(self, cls: type) -> BaseAdapter | None:
        found: BaseAdapter | None = None
        if cls not in _PLAIN:
            for adapter in self._requesters:
                try:
                    if adapter.match_request_type(cls):
                        found = adapter
                        break
                except Exception:
                    continue
        if len(self._rq_cache) >= _MAX_CACHE:
            self._rq_cache.clear()
        self._rq_cache[cls] = found
        return found

    def output_messages(self, result: Any) -> list[dict[str, Any]] | None:
        """The generated messages in ``result`` (used only with capture_content on)."""
        obj = result
        found: list[dict[str, Any]] | None = None
        for _ in range(_MAX_UNWRAP):
            fw = self.framework_for(obj)
            if fw is None:
                break
            found = fw.extract_output_messages(obj) or found
            inner = fw.transform(obj).unwrapped_result
            if inner is None or inner is obj:
                return found
            obj = inner
        pv = self.provider_for(obj)
        if pv is not None:
            found = pv.extract_output_messages(obj) or found
        return found

    def stream_delta(self, chunk: Any) -> TokenDelta | None:
        """What one stream chunk says, or None when no adapter reads it."""
        adapter = self.stream_adapter_for(chunk)
        if adapter is None:
            return None
        return adapter.extract_stream_delta(chunk)


# Argument classes no adapter is ever interested in.
_PLAIN: Final[frozenset[type]] = frozenset(
    (str, bytes, int, float, bool, type(None), list, tuple, dict, set, frozenset)
)

_registry: AdapterRegistry | None = None
_init_lock = threading.Lock()


def get_registry() -> AdapterRegistry:
    """The process's registry, with the built-in adapters, created on first use."""
    global _registry
    reg = _registry
    if reg is None:
        with _init_lock:
            reg = _registry
            if reg is None:
                from rastir.adapters._builtin import builtin_adapters

                reg = AdapterRegistry()
                for adapter in builtin_adapters():
                    reg.register(adapter)
                _registry = reg
    return reg
