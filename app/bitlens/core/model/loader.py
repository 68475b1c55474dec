"""Opening an ONNX file (or a model built in code) as a :class:`LoadedModel`.

The loader owns an in-memory copy of the model: small external tensors
read in, large ones memory-mapped where they are (read in only when
something asks for :attr:`LoadedModel.proto`), nodes sorted topologically and given unique names (see
:mod:`bitlens.core.model.graph`). The user's file is only read, never
written. Every failure a user can cause is a :class:`ModelLoadError` whose
one-line message names the file and the problem.
"""

from __future__ import annotations

import mmap
import os
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from bitlens.core.errors import ModelLoadError
from bitlens.core.fileio import stat_regular
from bitlens.core.limits import MAX_MODEL_FILE_BYTES
from bitlens.core.model import splice
from bitlens.core.model.bn_fold import fold_batchnorms
from bitlens.core.model.conv_add_fold import fold_conv_adds
from bitlens.core.model.conv_mul_fold import fold_conv_muls
from bitlens.core.model.external import (
    READ_CHUNK,
    external_tensors,
    is_external,
    iter_external_data,
    map_tensor,
)
from bitlens.core.model.folding import fold_constants
from bitlens.core.model.graph import ConstSource, GraphOrderError, NodeSlot, normalize, walk
from bitlens.core.model.half_activations import half_activations_note
from bitlens.core.model.hardswish import (
    decompose_hardsigmoid_mul,
    decompose_hardswish,
    hardswish_note,
    pair_note,
)
from bitlens.core.model.identity_drop import drop_identities
from bitlens.core.model.inventory import build_inventory
from bitlens.core.model.irversion import drop_constant_inputs, fit_ir_version
from bitlens.core.model.loop_invariants import loop_constants_note, read_loop_constants
from bitlens.core.model.ml_domain import ml_ops, non_tensor_outputs_note, uses_onnx_domain
from bitlens.core.model.ml_domain import note as ml_note
from bitlens.core.model.negative_dims import negative_dims_as_dynamic, negative_dims_note
from bitlens.core.model.old_opset import raise_old_opset
from bitlens.core.model.optional_outputs import name_omitted_outputs
from bitlens.core.model.prequantized import note as quantized_note
from bitlens.core.model.prequantized import quantized_ops
from bitlens.core.model.proto_size import byte_size
from bitlens.core.model.rawspill import (
    Detached,
    RawWeight,
    adopt,
    detach,
    detached_values,
    graph_growth,
    reattach,
    spill_raw,
)
from bitlens.core.model.selected_outputs import before_pick, selected_outputs
from bitlens.core.model.selected_outputs import note as selected_note
from bitlens.core.model.stored_grid import note as stored_grid_note
from bitlens.core.model.stored_grid import stored_grids
from bitlens.core.model.tensors import as_float, constant_value, to_numpy
from bitlens.core.model.types import ModelInfo, WeightInfo
from bitlens.core.model.validate import check_model, element_count, expected_raw_bytes
from bitlens.core.model.wire import initializer_raw_spans
from bitlens.core.results import Progress, drain

# Leading bytes of common files that are not ONNX, for a clearer message.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an executable"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
)


@dataclass(eq=False)
class LoadedModel:
    """A model ready for the engine: its proto and its description.

    ``graph_proto`` may leave large external tensors in their files (see
    bitlens.core.model.external): :meth:`weight`, :meth:`tensor_value` and
    :meth:`materialize` read them through memory maps. :attr:`proto` is the same proto
    with every external tensor read in (on first use; the exporter needs it whole).
    Large float weights the loader wrote to its scratch map (rawspill.py) are held there
    only: ``graph_proto`` refers to their place in the file, and the same methods serve
    them from the map. Never written back to the user's file."""

    graph_proto: onnx.ModelProto
    info: ModelInfo
    path: Path | None
    _consts: dict[tuple[str, str], ConstSource] = field(default_factory=dict, repr=False)
    _cache: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    _paths: dict[str, list[str]] = field(default_factory=dict, repr=False)  # name -> graph paths

    base_dir: Path | None = None
    bn_folded: int = 0  # BatchNormalizations folded into their Conv (bitlens.core.model.bn_fold)
    add_folded: int = 0  # per-channel Adds folded into their Conv's bias (conv_add_fold)
    mul_folded: int = 0  # per-channel Muls folded into their Conv (conv_mul_fold)
    hardswish_split: int = 0  # HardSwish ops, x * HardSigmoid(x) pairs written as Add, Clip, Mul, Div
    # main-graph initializers whose bytes only the scratch map holds (rawspill.detach)
    _detached: dict[str, Detached] = field(default_factory=dict, repr=False)
    _file_stamp: tuple[int, int] | None = field(default=None, repr=False)  # size, mtime_ns

    def __post_init__(self) -> None:
        for path, name in self._consts:
            self._paths.setdefault(name, []).append(path)

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else "model"

    @property
    def proto(self) -> onnx.ModelProto:
        """The whole model in memory: external tensors still in their files are read in now
        (once); the memory maps :meth:`weight` hands out stay valid."""
        self.materialize(self.graph_proto)
        return self.graph_proto

    def copy_proto(self) -> onnx.ModelProto:
        """A copy of ``graph_proto`` with the weights only the scratch map holds put back;
        tensors in external files stay there (a copy to rewrite, e.g. a new model)."""
        copy = onnx.ModelProto()
        copy.CopyFrom(self.graph_proto)
        reattach(copy, self._detached)
        return copy

    def serialized(self) -> bytes:
        """The whole model's bytes, every tensor in (``proto.SerializeToString()`` once read
        in) without a second copy of the scratch map's weights in protobuf (splice.py)."""
        outside = external_tensors(self.graph_proto)
        if any(detached_values(t, self._detached) is None for t in outside):
            return self.whole().SerializeToString()  # files besides the map: a copy read in
        return splice.serialized(self.graph_proto, self._detached)

    def whole(self) -> onnx.ModelProto:
        """The model with every tensor in memory, for one use: :attr:`proto` itself when
        nothing is left out, else a copy read in (``graph_proto`` keeps leaving them out).
        Not to be modified."""
        if not external_tensors(self.graph_proto):
            return self.graph_proto
        copy = onnx.ModelProto()
        copy.CopyFrom(self.graph_proto)
        self.materialize(copy)
        return copy

    def runnable(self) -> onnx.ModelProto | str:
        """The model as ONNX Runtime should open it: its file when tensors are still in
        external files (ONNX Runtime reads them from there itself), unless its IR version
        had to be lowered for this ONNX Runtime (bitlens.core.model.irversion); else
        :attr:`proto`, read in whole. A model whose only tensors left out are the scratch
        map's is opened from its file too when the loader rewrote nothing ONNX Runtime
        reads (no note) and the file is as it was read; else from a copy read in."""
        outside = [
            t for t in external_tensors(self.graph_proto)
            if detached_values(t, self._detached) is None
        ]  # fmt: skip
        if (
            self.path is not None
            and self.graph_proto.ir_version == self.info.ir_version
            and not (self.bn_folded or self.add_folded or self.mul_folded or self.hardswish_split)
            and outside
        ):
            return str(self.path)
        if not self._detached:
            return self.proto
        if (
            self.path is not None
            and self.graph_proto.ir_version == self.info.ir_version
            and not self.info.notes
            and self._file_stamp == _stamp(self.path)
        ):
            return str(self.path)  # no copy of the weights in this process
        return self.whole()

    @property
    def nbytes(self) -> int:
        """The model's size: its protobuf encoding plus external data not read in."""
        outside = sum(
            expected_raw_bytes(t.data_type, element_count(t.dims)) or 0
            for t in external_tensors(self.graph_proto)
            if detached_values(t, self._detached) is None
        )
        # sized a node and a tensor at a time: one ByteSize held the interpreter lock 20-28 ms
        # in the window's open job (core/model/proto_size.py)
        size = byte_size(self.graph_proto) + outside
        if grown := graph_growth(self.graph_proto, self._detached):
            graph = byte_size(self.graph_proto.graph)  # its length prefix grows too
            size += _field_bytes(graph + grown) - _field_bytes(graph)
        return size

    def tensor_value(self, tensor: onnx.TensorProto) -> np.ndarray:
        """A tensor's values in its stored type (a read-only map for external data)."""
        if (d := detached_values(tensor, self._detached)) is not None:
            return d.values
        if is_external(tensor):
            assert self.base_dir is not None
            return map_tensor(tensor, self.base_dir, self.label)
        return to_numpy(tensor)

    def materialize(self, model: onnx.ModelProto) -> None:
        """Read into ``model`` (a graph copied from this one, e.g. a simulation graph) the
        external tensors it still refers to."""
        reattach(model, self._detached)
        if external_tensors(model):
            assert self.base_dir is not None
            drain(iter_external_data(model, self.base_dir, self.label))

    def weight(self, name: str | WeightInfo, graph_path: str | None = None) -> np.ndarray:
        """Float values of a weight or bias (float64 stays float64, others float32).

        ``name`` is a tensor name (or a :class:`WeightInfo`); it may be an
        initializer or a Constant node's output, in the main graph or a
        subgraph. When several subgraphs define the same name, pass
        ``graph_path`` (a WeightInfo carries its own). The array is cached and
        read-only.
        """
        if isinstance(name, WeightInfo):
            name, graph_path = name.name, name.graph_path
        key = self._key(name, graph_path)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        src = self._consts[key]
        if src.node is not None:
            raw = constant_value(src.node)
        else:
            assert src.tensor is not None
            raw = self.tensor_value(src.tensor)
        values = as_float(raw) if raw.dtype.kind == "f" or raw.dtype.name == "bfloat16" else raw
        values.setflags(write=False)
        if src.tensor is None or not is_external(src.tensor):
            # Values read from a map are not kept: statistics read weight after weight, and
            # each map's pages leave the process's memory when the caller drops it.
            self._cache[key] = values
        return values

    def holds_weight(self, w: WeightInfo) -> bool:
        """Whether :meth:`weight` keeps ``w``'s values in memory (decoded, not mapped)."""
        return self._key(w.name, w.graph_path) in self._cache

    def hold_weight(self, w: WeightInfo, values: np.ndarray) -> None:
        """Keep ``values`` as ``w``'s values from now on: the same numbers held elsewhere,
        e.g. memory-mapped (bitlens.core.engine.weightspill); checked against the current."""
        key = self._key(w.name, w.graph_path)
        old = self._cache[key]
        if values.dtype != old.dtype or values.shape != old.shape:
            raise ValueError(f"values of {w.name!r} must keep dtype and shape")
        values.setflags(write=False)
        self._cache[key] = values

    def _key(self, name: str, graph_path: str | None) -> tuple[str, str]:
        if graph_path is not None:
            if (graph_path, name) not in self._consts:
                raise KeyError(f"no constant {name!r} in graph {graph_path or 'main'!r}")
            return graph_path, name
        paths_of = self._paths.get(name, [])
        if not paths_of:
            raise KeyError(f"no constant named {name!r} in the model")
        if len(paths_of) > 1:
            if "" in paths_of:
                return "", name
            paths = ", ".join(sorted(paths_of))
            raise KeyError(
                f"constant {name!r} is defined in several subgraphs ({paths}); pass graph_path"
            )
        return paths_of[0], name


def load_model(path: str | Path, *, fold_bn: bool = True) -> LoadedModel:
    """Open an ONNX file; raise ModelLoadError naming the file and the problem.

    ``fold_bn``: fold each BatchNormalization that directly follows a Conv into the
    Conv's weight and bias (bitlens.core.model.bn_fold), each Mul by a per-channel
    constant after a Conv into it (conv_mul_fold), and each Add of a per-channel constant
    after a Conv into its bias (bitlens.core.model.conv_add_fold), as ONNX Runtime does."""
    gen = iter_load_model(path, fold_bn=fold_bn)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def iter_load_model(
    path: str | Path, *, fold_bn: bool = True
) -> Generator[Progress, None, LoadedModel]:
    """:func:`load_model` as a job: yields after each chunk it reads, so a window job
    reading a large model from a slow disk can be cancelled between chunks."""
    p = Path(path).expanduser()
    data = yield from _read_file(p)
    head = bytes(data[:4096])  # what _not_onnx reads
    proto = onnx.ModelProto()
    view = memoryview(data)
    try:
        proto.ParseFromString(view)
        spans = initializer_raw_spans(view)  # measured here: no copy (wire.py)
        raw_lengths = None if spans is None else [s if s is None else s[1] - s[0] for s in spans]
        # large float weights out to a mapped scratch file from these bytes (rawspill.py)
        spilled = spill_raw(view, proto.graph, spans)
    except (DecodeError, RuntimeError, ValueError) as exc:
        if "MaxDepth" in str(exc) or "recursion" in str(exc).lower():
            raise ModelLoadError(
                f"{p}: the model nests subgraphs (If/Loop/Scan bodies) deeper than the protobuf "
                "parser's limit of about 30 levels; it cannot be read"
            ) from None
        raise ModelLoadError(f"{p}: {_not_onnx(head, 'is corrupt or truncated')}") from None
    finally:
        view.release()
        if isinstance(data, mmap.mmap):
            data.close()  # the file's bytes: the parsed proto holds its own copy
        del data
    if not proto.HasField("graph"):
        raise ModelLoadError(f"{p}: {_not_onnx(head, 'has no graph')}")
    return (yield from _iter_finish(proto, p, p.parent, fold_bn, raw_lengths, spilled))


def from_proto(
    proto: onnx.ModelProto, path: Path | None = None, *, fold_bn: bool = True
) -> LoadedModel:
    """Wrap a model built in code (copied: the caller's proto is left as it is).

    ``path`` says where the model would live, so that external data can be
    found next to it; ``fold_bn`` as for :func:`load_model`.
    """
    if not isinstance(proto, onnx.ModelProto):
        raise ModelLoadError(f"expected an onnx.ModelProto, got {type(proto).__name__}")
    own = onnx.ModelProto()
    own.CopyFrom(proto)
    p = Path(path) if path is not None else None
    return drain(_iter_finish(own, p, p.parent if p is not None else None, fold_bn))


def _iter_finish(
    proto: onnx.ModelProto,
    path: Path | None,
    base_dir: Path | None,
    fold_bn: bool = True,
    raw_lengths: list[int | None] | None = None,
    spilled: dict[str, RawWeight] | None = None,
) -> Generator[Progress, None, LoadedModel]:
    """The checks and in-memory rewrites shared by every way in. ``spilled``: large
    weights written from the file's bytes (rawspill.py), held by the model for those the
    rewrites here left as the file has them."""
    label = str(path) if path is not None else "model"
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(f"{label}: the model has no graph nodes")
    if not any(op.domain in ("", "ai.onnx") for op in proto.opset_import) and uses_onnx_domain(
        proto
    ):
        raise ModelLoadError(f"{label}: the model declares no ONNX opset (truncated or corrupt?)")
    dynamic_note = negative_dims_note(negative_dims_as_dynamic(proto))
    # before anything decodes a tensor or reads external data
    check_model(proto, label, raw_lengths)
    # Every external location and size is checked here; large tensors stay in their files.
    yield from iter_external_data(proto, base_dir, label, keep_large=True)
    file_ir = drop_constant_inputs(proto)
    name_omitted_outputs(proto)
    parsed = proto
    proto, opset_note = raise_old_opset(proto)
    if proto is not parsed:  # converted: every tensor is the converter's copy
        spilled = None
    carried = read_loop_constants(proto)
    try:
        slots = normalize(proto)
    except GraphOrderError as exc:
        raise ModelLoadError(f"{label}: {exc}") from None
    _check_defined(slots, proto, label)
    # After normalize, so nodes keep the names (and layers the names) they have unfolded.
    folded = fold_constants(proto, lambda m: drain(iter_external_data(m, base_dir, label)))
    bn = fold_batchnorms(proto) if fold_bn else None
    muls = fold_conv_muls(proto) if fold_bn else None  # before the Adds: Conv, Mul, Add
    adds = fold_conv_adds(proto) if fold_bn else None
    hardswish = decompose_hardswish(proto) if fold_bn else 0
    pairs = decompose_hardsigmoid_mul(proto) if fold_bn else 0
    # as ONNX Runtime does: the target's placement sees its graph. After the folds, which an
    # Identity still stops as before (PP-OCRv5's ConvTranspose -> Identity -> bias Add)
    identities = drop_identities(proto) if fold_bn else 0
    folds = (bn, muls, adds)
    if folded.nodes or identities or hardswish or pairs or any(
        f is not None and f.folded for f in folds
    ):
        slots = walk(proto)
    rewritten = set(folded.names)  # a copy: the note below counts only constant folds
    for fold in folds:
        rewritten |= fold.rewritten if fold is not None else frozenset()
    adopted = adopt(spilled or {}, proto.graph, rewritten)
    detached: dict[str, Detached] = {}
    if adopted and spilled and path is not None and _names_itself(path):
        # the proto's own copy of those bytes goes (rawspill.detach), where the file can be
        # named as their location, as ONNX Runtime or a copy of the proto would read it.
        # Clearing a field frees nothing of protobuf's arena (upb): a copy without them
        # does, once nothing refers to the parsed message (the slots are walked again).
        detached = detach(proto.graph, adopted, spilled, path.name)
        fresh = onnx.ModelProto()
        fresh.CopyFrom(proto)
        proto = fresh
        slots = walk(proto)
    info = build_inventory(proto, path, slots)
    if info.ir_version != file_ir:  # reports the file's own IR version
        info = replace(info, ir_version=file_ir)
    weights = {w.name for layer in info.layers for w in layer.weights} & folded.names
    prequant = quantized_note(quantized_ops(proto), len(info.layers))
    ml = ml_note(ml_ops(proto), len(info.layers))
    untensored = non_tensor_outputs_note(info.outputs) if info.layers else None
    bn_note = bn.note() if bn is not None else None
    add_note = adds.note() if adds is not None else None
    mul_note = muls.note() if muls is not None else None
    decoded = Counter(folded.decoded[w] for w in weights if w in folded.decoded)
    ir_note, folded_note = fit_ir_version(proto), folded.note(len(weights), decoded)
    notes = [
        n
        for n in (
            dynamic_note,
            opset_note,
            ir_note,
            folded_note,
            bn_note,
            mul_note,
            add_note,
            hardswish_note(hardswish),
            pair_note(pairs),
            prequant,
            ml,
            untensored,
        )
        if n
    ]
    weight_names = {w.name for layer in info.layers for w in layer.weights}
    if loop_note := loop_constants_note(len(carried & weight_names)):
        notes.append(loop_note)
    if half_note := half_activations_note(info):
        notes.append(half_note)
    picked = selected_outputs(proto.graph) if info.layers else {}
    if picked and (picked_note := selected_note(picked, before_pick(proto.graph))):
        notes.append(picked_note)
    if notes:
        info = replace(info, notes=tuple(notes))
    consts: dict[tuple[str, str], ConstSource] = {}
    for scope in {id(s.scope): s.scope for s in slots}.values():
        for name, src in scope.consts.items():
            consts[(scope.path, name)] = src
    model = LoadedModel(
        graph_proto=proto,
        info=info,
        path=path,
        _consts=consts,
        base_dir=base_dir,
        bn_folded=bn.folded if bn is not None else 0,
        add_folded=adds.folded if adds is not None else 0,
        mul_folded=muls.folded if muls is not None else 0,
        hardswish_split=hardswish + pairs,
    )
    model._detached = detached
    model._file_stamp = _stamp(path) if detached and path is not None else None
    for name, values in adopted.items():
        src = consts.get(("", name))
        if src is not None and src.tensor is not None and src.node is None:
            model._cache[("", name)] = values
    if decoded:  # the presets keep such weights on the file's own int8 grid
        coded = [w for layer in info.layers for w in layer.weights if w.name in folded.decoded]
        grids = stored_grids(coded, model.weight)
        grid_note = stored_grid_note(grids)
        notes = tuple(info.notes) + ((grid_note,) if grid_note else ())
        model.info = replace(info, stored_grids=grids, notes=notes)
    return model


def _names_itself(path: Path) -> bool:
    """Whether ``path``'s name, in its folder, leads to the file itself and not out through
    a link (external.resolve_location refuses such a location)."""
    try:
        return Path(os.path.realpath(path)).parent == Path(os.path.realpath(path.parent))
    except (OSError, ValueError):
        return False


def _stamp(path: Path) -> tuple[int, int] | None:
    """The file's size and modification time, to tell whether it changed since the load."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _field_bytes(n: int) -> int:
    """Encoded size of a length-delimited protobuf field of ``n`` bytes (ModelProto.graph)."""
    return 1 + max(1, (n.bit_length() + 6) // 7) + n


def _check_defined(slots: list[NodeSlot], proto: onnx.ModelProto, label: str) -> None:
    """Every value a node reads must exist: a dangling name means a broken file."""
    for slot in slots:
        for name in slot.node.input:
            if name and not slot.scope.defines(name):
                raise ModelLoadError(
                    f"{label}: node {slot.name} reads {name!r}, which nothing defines "
                    "(corrupt or truncated model?)"
                )
    main = slots[0].scope
    for out in proto.graph.output:
        if not main.defines(out.name):
            raise ModelLoadError(f"{label}: model output {out.name!r} is not computed by any node")


def _buffer(size: int) -> bytearray | mmap.mmap:
    """A writable buffer of ``size`` zero bytes for a file's contents: anonymous memory
    whose pages the kernel maps in at once (MAP_POPULATE, Linux) where it can, else a
    bytearray, whose pages fault in one by one as the file is read into them (ddddocr's
    54 MB common.onnx: read in 30-36 ms against 45-52 ms, near-quiet 2-core machine)."""
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate and size:
        try:
            return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
        except (OSError, ValueError):  # e.g. no room to map it at once: read as before
            pass
    return bytearray(size)


def _read_file(p: Path) -> Generator[Progress, None, bytearray | mmap.mmap]:
    """The file's bytes: a regular file only (a FIFO or /dev/zero would block or never end)."""
    st = stat_regular(p, ModelLoadError, "file")
    if st.st_size > MAX_MODEL_FILE_BYTES:
        raise ModelLoadError(
            f"{p}: {st.st_size} bytes is over the 2 GiB an ONNX file can hold; larger models keep "
            "their weights in external data files"
        )
    data = _buffer(st.st_size)
    view = memoryview(data)
    done = 0
    try:
        with open(p, "rb") as fh:
            while done < st.st_size:
                n = fh.readinto(view[done : done + READ_CHUNK])
                if not n:
                    break
                done += n
                yield Progress(done, st.st_size, f"reading {p.name}")
            grew = bool(fh.read(1))
    except OSError as exc:
        raise ModelLoadError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    finally:
        view.release()
    if done != st.st_size or grew:
        raise ModelLoadError(f"{p}: the file changed while being read; try again")
    if not len(data):
        raise ModelLoadError(f"{p}: the file is empty")
    return data


def _not_onnx(data: bytes, fallback: str) -> str:
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return f"not an ONNX model (looks like {kind})"
    if _looks_like_text(data[:4096]):
        return "not an ONNX model (looks like a text file)"
    return f"not a valid ONNX model (the file {fallback})"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


__all__ = ["LoadedModel", "from_proto", "iter_load_model", "load_model"]
