"""The schema of plan JSON and ONNX Runtime ``TensorQuantOverrides`` files, checked strictly.

A plan file is read once through :func:`read_json_file` (a regular file,
under a size cap, UTF-8, bounded nesting and integer size) and checked by
:func:`check_plan_dict` or :func:`check_ort_overrides` before anything
builds a plan from it. Types are exact: ``"dynamic": "no"`` is an error,
not ``True``; an unknown key is an error naming the keys that are known
(a typo is never silently ignored, unlike ORT's free-form ``extra_options``).
The ORT keys are those of onnxruntime's quantizer,
https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/python/tools/quantization/tensor_quant_overrides.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bitlens.core.errors import PlanError
from bitlens.core.fileio import stat_regular
from bitlens.core.limits import MAX_JSON_BYTES

MAX_NAME = 200  # a format name longer than this is not a format
MAX_DEPTH = 64  # plans nest 3 levels, overrides 4 (with "convert")
MAX_INT_DIGITS = 30

PLAN_KEYS = frozenset({"bitlens_plan", "model", "layers", "target"})
CHOICE_KEYS = frozenset({"weight", "activation", "dynamic", "recovery"})
# Per-tensor override keys ORT's quantizer reads, with the JSON types they take.
ORT_KEYS: dict[str, tuple[type, ...]] = {
    "quant_type": (str,),
    "symmetric": (bool,),
    "reduce_range": (bool,),
    "axis": (int,),
    "scale": (int, float),
    "zero_point": (int,),
    "rmin": (int, float),
    "rmax": (int, float),
    "domain": (str,),
    "convert": (dict,),
    "quant_axes": (list,),
    "block_size": (int,),
}


# -- reading ----------------------------------------------------------------------------------
def read_json_file(path: str | Path, what: str = "plan") -> Any:
    """Parse a small JSON file safely; every failure is one PlanError line naming the file."""
    p = Path(path)
    st = stat_regular(p, PlanError, f"{what} file")
    if st.st_size > MAX_JSON_BYTES:
        raise PlanError(f"{p}: {st.st_size} bytes is too large for a {what} file")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(st.st_size)
    except OSError as exc:
        raise PlanError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(f"{p.name}: not UTF-8 text (byte {exc.start}); not a {what} file") from None
    return loads(text, f"{p.name}")


def loads(text: str, source: str = "plan") -> Any:
    """``json.loads`` with the nesting depth and integer sizes bounded."""
    depth = _max_depth(text)
    if depth > MAX_DEPTH:
        raise PlanError(f"{source}: JSON nested {depth} levels deep (at most {MAX_DEPTH})")
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except PlanError as exc:
        raise PlanError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{source} is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise PlanError(f"{source} is not valid JSON: {str(exc)[:200]}") from None


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise PlanError(f"an integer of {len(digits)} digits is not a plan value")
    return int(digits)


def _no_constant(name: str) -> Any:
    raise PlanError(f"{name} is not a JSON value")


def _max_depth(text: str) -> int:
    """Deepest bracket nesting outside strings, counted without recursion."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0  # cannot be deeper: skip the scan
    depth = best = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > best:
                best = depth
                if best > MAX_DEPTH:
                    return best
        elif ch in "]}":
            depth -= 1
    return best


# -- plans ------------------------------------------------------------------------------------
def check_plan_dict(data: Any, version: int) -> dict[str, tuple[str | None, str | None, bool]]:
    """layer -> (weight, activation, dynamic) from a plan object, every type checked."""
    if not isinstance(data, dict) or "bitlens_plan" not in data:
        raise PlanError("not a Bitlens plan (no 'bitlens_plan' version key)")
    _no_unknown(data, PLAN_KEYS, "plan")
    v = data["bitlens_plan"]
    if type(v) is not int:
        raise PlanError(f"plan version must be an integer, not {_kind(v)}")
    if v != version:
        raise PlanError(f"plan version {v} is not supported (this is version {version})")
    if "model" in data and not isinstance(data["model"], dict):
        raise PlanError(f"plan 'model' must be an object, not {_kind(data['model'])}")
    layers = data.get("layers")
    if not isinstance(layers, dict):
        raise PlanError("plan has no 'layers' object")
    out: dict[str, tuple[str | None, str | None, bool]] = {}
    for name, entry in layers.items():
        if not isinstance(entry, dict):
            raise PlanError(f"layer {name!r}: expected an object with 'weight' and 'activation'")
        _no_unknown(entry, CHOICE_KEYS, f"layer {name!r}")
        w = _format_name(entry.get("weight"), f"layer {name!r}: weight")
        a = _format_name(entry.get("activation"), f"layer {name!r}: activation")
        dyn = entry.get("dynamic", False)
        if type(dyn) is not bool:
            raise PlanError(f"layer {name!r}: 'dynamic' must be true or false, not {_kind(dyn)}")
        out[name] = (w, a, dyn)
    return out


def plan_recoveries(data: dict[str, Any]) -> dict[str, str | None]:
    """layer -> its "recovery" method name (None when absent) of a checked plan object."""
    out: dict[str, str | None] = {}
    for name, entry in data["layers"].items():
        value = entry.get("recovery")
        if value is not None and not isinstance(value, str):
            raise PlanError(f"layer {name!r}: 'recovery' must be a method name, not {_kind(value)}")
        out[name] = value
    return out


def _format_name(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PlanError(f"{what} must be a format name or null, not {_kind(value)}")
    if len(value) > MAX_NAME:
        raise PlanError(f"{what}: a format name of {len(value)} characters is not a format")
    return value


# -- ORT overrides ------------------------------------------------------------------------------
def check_ort_overrides(data: Any) -> dict[str, list[dict[str, Any]]]:
    """Tensor -> list of override objects, with ORT's keys and their types checked."""
    if not isinstance(data, dict):
        raise PlanError(f"expected an object of tensor overrides, not {_kind(data)}")
    for tensor, entries in data.items():
        if not isinstance(entries, list) or not entries:
            raise PlanError(f"override for {tensor!r}: expected a non-empty list of objects")
        for i, entry in enumerate(entries):
            where = f"override for {tensor!r}" + (f" [{i}]" if len(entries) > 1 else "")
            if not isinstance(entry, dict):
                raise PlanError(f"{where}: expected an object, not {_kind(entry)}")
            _no_unknown(entry, frozenset(ORT_KEYS), where)
            for key, value in entry.items():
                types = ORT_KEYS[key]
                ok = isinstance(value, types) and not (type(value) is bool and bool not in types)
                if not ok:
                    want = " or ".join(_TYPE_NAMES[t] for t in types)
                    raise PlanError(f"{where}: {key!r} must be {want}, not {_kind(value)}")
            if "axis" in entry and not -64 <= entry["axis"] <= 63:
                raise PlanError(f"{where}: axis {entry['axis']} is not an axis")
    return data


_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
               dict: "an object", list: "a list"}  # fmt: skip


def _no_unknown(obj: dict[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in obj if k not in known)
    if unknown:
        raise PlanError(
            f"{where}: unknown key {unknown[0][:60]!r} (known: {', '.join(sorted(known))})"
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(value), repr(value)[:40])


__all__ = ["check_ort_overrides", "check_plan_dict", "loads", "read_json_file"]
