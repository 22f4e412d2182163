"""Every store wrapper passes on the whole Store interface, found by looking at Store itself: a method added
to Store later and not forwarded by a wrapper fails here instead of silently falling back to Store's
default behind the wrapper (a wrapper once left out changes_since, so every rerun listed every folder)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import mailmigrate
from contract.factories import FreeSlots
from mailmigrate.errors import ConnectionLost, FolderFailed
from mailmigrate.stores.base import Store
from mailmigrate.stores.sided import SidedStore, side_of
from mailmigrate.stores.wrapper import StoreWrapper


def _all_modules():
    for info in pkgutil.walk_packages(mailmigrate.__path__, "mailmigrate."):
        if info.name.endswith("__main__"):
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # an optional dependency (a server's client library) not installed
            continue


def _classes():
    seen = set()
    for mod in _all_modules():
        for obj in vars(mod).values():
            if inspect.isclass(obj) and obj.__module__.startswith("mailmigrate") and obj not in seen:
                seen.add(obj)
                yield obj


def store_methods() -> list[str]:
    """Store's public interface: its methods and its declared capabilities."""
    return sorted(n for n, v in vars(Store).items() if not n.startswith("_") and callable(v))


def capabilities() -> list[str]:
    return sorted(n for n, v in vars(Store).items() if not n.startswith("_") and not callable(v))


WRAPPERS = sorted({c for c in _classes() if issubclass(c, StoreWrapper)}, key=lambda c: c.__qualname__)


def test_the_wrappers_are_found():
    names = {c.__name__ for c in WRAPPERS}
    assert {"StoreWrapper", "SidedStore", "SlotStore"} <= names


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda c: c.__qualname__)
def test_every_store_method_and_capability_is_forwarded(wrapper):
    missing = [n for n in store_methods() + capabilities() if getattr(wrapper, n) is getattr(Store, n)]
    assert not missing, f"{wrapper.__qualname__} does not forward {missing}"


def test_no_store_class_forwards_by_name():
    """__getattr__ passes on whatever the wrapped object has, and nothing it should have but lacks."""
    offenders = [c.__qualname__ for c in _classes() if issubclass(c, Store) and "__getattr__" in vars(c)]
    assert not offenders


class Recorder(Store):
    """Answers every call of the interface with a token of its own, recording what it was given."""

    kind, writable, ordered_keys, searches = "recorder", True, True, True
    preset, max_message_size = "gmail", 1234

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []


def _recording(name):
    def method(self, *args, **kwargs):
        self.calls.append((name, args, kwargs))
        if name == "append_started":  # a call in two halves: its answer comes from the second
            def second_half():
                self.calls.append(("append_started: answer", (), {}))
                return ("answer", name)
            return second_half
        return ("answer", name)
    return method


for _name in store_methods():
    setattr(Recorder, _name, _recording(_name))
Recorder.__abstractmethods__ = frozenset()


def _arguments(name):
    """One distinct token per parameter of Store's method, keyword-only ones by keyword."""
    args, kwargs = [], {}
    for p in list(inspect.signature(getattr(Store, name)).parameters.values())[1:]:
        token = object()
        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = token
        else:
            args.append(token)
    return tuple(args), kwargs


def _wrap(wrapper, inner):
    if wrapper is SidedStore:
        return SidedStore(inner, "target")
    if wrapper.__name__ == "SlotStore":
        return wrapper(inner, FreeSlots(), "mm:slots:target:x", 1)
    return wrapper(inner)


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda c: c.__qualname__)
@pytest.mark.parametrize("name", store_methods())
def test_each_call_reaches_the_wrapped_store_with_its_arguments(wrapper, name):
    inner = Recorder()
    outer = _wrap(wrapper, inner)
    args, kwargs = _arguments(name)
    answer = getattr(outer, name)(*args, **kwargs)
    if name == "append_started":
        assert [c[0] for c in inner.calls] == [name]  # the first half only, until the answer is asked for
        answer = answer()
        assert [c[0] for c in inner.calls] == [name, "append_started: answer"]
    got = [c for c in inner.calls if c[0] == name]
    if name == "reconnect" and not got:
        # SlotStore swaps the connection as close() and open() around keeping its slot
        assert [c[0] for c in inner.calls] == ["close", "open"]
        return
    assert got, f"{wrapper.__qualname__}.{name} did not reach the wrapped store"
    _, got_args, got_kwargs = got[-1]
    assert got_args == args and got_kwargs == kwargs
    if name not in ("open", "close", "reconnect", "clone"):  # SlotStore does its own around these
        assert answer == ("answer", name)


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda c: c.__qualname__)
def test_capabilities_are_the_wrapped_stores(wrapper):
    outer = _wrap(wrapper, Recorder())
    assert [getattr(outer, n) for n in capabilities()] == [getattr(Recorder, n) for n in capabilities()]


class _Failing(Recorder):
    def list_folders(self):
        raise ConnectionLost("gone")

    def fetch(self, path, keys):
        yield ("meta", "body")
        raise FolderFailed("broken mid-stream")


def test_the_side_is_named_on_errors_from_calls_and_from_streams():
    s = SidedStore(_Failing(), "source")
    with pytest.raises(ConnectionLost) as e:
        s.list_folders()
    assert side_of(e.value) == "source"
    stream = s.fetch(("INBOX",), ["1"])
    assert next(stream) == ("meta", "body")
    with pytest.raises(FolderFailed) as e:
        next(stream)
    assert side_of(e.value) == "source"


def test_the_side_is_named_on_an_error_from_the_second_half_of_an_append():
    """The target's answer to a batch is read after the next batch was read from the source: an error in it
    still names the target."""

    class Refusing(Recorder):
        def append_started(self, path, items):
            def answer():
                raise ConnectionLost("gone before answering")
            return answer

    finish = SidedStore(Refusing(), "target").append_started(("INBOX",), [])
    with pytest.raises(ConnectionLost) as e:
        finish()
    assert side_of(e.value) == "target"


def test_a_side_once_named_stays():
    """A target error re-raised through the source's wrapper (one store calling the other) keeps its side."""
    err = ConnectionLost("target gone")
    err._mm_side = "target"

    class Raising(Recorder):
        def open(self):
            raise err

    with pytest.raises(ConnectionLost) as e:
        SidedStore(Raising(), "source").open()
    assert side_of(e.value) == "target"
