"""Export a trained run's model to safetensors, TorchScript or ONNX, checked against PyTorch.

:func:`export_run` loads the weights the run was evaluated with (the EMA weights when the run
used EMA, via :func:`cifarbudget.predict.load_model`) and writes one file:

- ``safetensors``: the registered model's ``state_dict`` (so ``create_model(name,
  **spec["model_params"])`` + ``load_state_dict`` rebuilds it, see
  :func:`load_exported_safetensors`); the normalisation and the run's spec are written beside
  it, in the file's metadata and in a JSON sidecar ``<output>.json``.
- ``torchscript``: :class:`NormalizedModel` (normalisation baked in) traced with
  ``torch.jit.trace``; metadata in the archive's ``_extra_files`` (``cifarbudget.json``).
- ``onnx``: :class:`NormalizedModel` exported with PyTorch's TorchScript-based ONNX exporter
  (``dynamo=False``, opset 17, dynamic batch axis; it needs no ``onnxscript``), checked with
  ``onnx.checker``; metadata in the model's ``metadata_props``.

Input of the TorchScript and ONNX models: float32 ``(N, 3, H, W)`` RGB pixels in 0..255, ``H x W``
the run's image size (32 x 32 for CIFAR; the check images', else the record's ``data.image_size``;
channels first, as CIFAR's arrays after a transpose); the model computes
``(x - 255 * mean) / (255 * std)`` with the run's per-channel mean and std (0..1 units), exactly
as the trainer normalises, and returns logits ``(N, C)``. Metadata everywhere: run id, model
name, classes, mean, std, the weights used (``ema`` or ``model``) and the full spec as JSON.

With ``check=True`` (default) the exported bytes are loaded back by the format's own reader
(onnxruntime's CPU execution provider, ``torch.jit.load``, ``safetensors.torch.load``) and run
on the first 1,000 images of the run's test split, next to the eager PyTorch model in float32:
the largest absolute logit difference must be below 1e-4 (:data:`MAX_LOGIT_DIFF`) and the
predicted classes identical, else :class:`~cifarbudget.errors.RunError` and nothing is written.
Files are written atomically. The optional packages are imported when used: ``safetensors``,
``onnx`` and ``onnxruntime`` come with the ``[export]`` extra.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import json
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarbudget.errors import CifarBudgetError, RunError
from cifarbudget.io import atomic_write_bytes, atomic_write_json

FORMATS = ("safetensors", "torchscript", "onnx")
DEFAULT_SUFFIX = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}
MAX_LOGIT_DIFF = 1e-4
CHECK_IMAGES = 1000
ONNX_OPSET = 17
METADATA_FORMAT = "cifarbudget.export/1"
TORCHSCRIPT_METADATA_FILE = "cifarbudget.json"
_JSON_KEYS = ("classes", "mean", "std", "spec", "num_classes", "image_size")
_CHECK_BATCH = 250


class NormalizedModel(nn.Module):
    """A classifier that takes RGB pixels in 0..255 and normalises them itself.

    ``forward(images)``: ``images`` ``(N, 3, H, W)``, any real or integer dtype in 0..255;
    returns ``model((images.float() - 255 * mean) / (255 * std))``, the formula (and float32
    rounding) of the trainer's normalisation, so its logits equal the run's bit for bit.
    """

    mean: torch.Tensor  # buffers (register_buffer), already scaled by 255
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise RunError(f"mean and std need 3 values (RGB), got {len(mean)} and {len(std)}")
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images.float() - self.mean) / self.std)


@dataclass
class ExportReport:
    """What :func:`export_run` wrote and how the written file compared with PyTorch."""

    run_id: str
    format: str
    output: Path
    bytes: int
    weights: str  # "ema" or "model"
    sidecar: Path | None = None  # the JSON metadata beside a safetensors file
    checked_images: int = 0  # 0 when not checked
    check_split: str = ""  # e.g. "synthetic test split"
    runtime: str = ""  # the reader that ran the exported file
    max_abs_diff: float | None = None  # max |logit(export) - logit(PyTorch)| over the checked images
    predictions_identical: bool | None = None
    tolerance: float = MAX_LOGIT_DIFF

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (paths as text), e.g. for ``--json`` output."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(output=str(self.output), sidecar=None if self.sidecar is None else str(self.sidecar))
        out["passed"] = self.passed
        return out

    @property
    def passed(self) -> bool | None:
        """Whether the check passed (``None`` when it did not run)."""
        if self.max_abs_diff is None:
            return None
        return self.max_abs_diff < self.tolerance and bool(self.predictions_identical)

    def summary(self) -> str:
        """Lines for the terminal: the file, then the check."""
        size = f"{self.bytes / 1e6:.1f} MB" if self.bytes >= 100_000 else f"{self.bytes} bytes"
        weights = "EMA weights" if self.weights == "ema" else "weights"
        lines = [f"exported run {self.run_id} ({weights}) to {self.output} ({self.format}, {size})"]
        if self.sidecar is not None:
            lines.append(f"  metadata  {self.sidecar}")
        if self.max_abs_diff is None:
            lines.append("  check     skipped")
        else:
            verdict = "passed" if self.passed else "FAILED"
            same = "identical" if self.predictions_identical else "DIFFERENT"
            lines.append(
                f"  check     {verdict}: {self.runtime} on the first {self.checked_images} images of the "
                f"{self.check_split}: max |logit difference| {self.max_abs_diff:.2e} "
                f"(limit {self.tolerance:.0e}), predictions {same}"
            )
        return "\n".join(lines)


def _require(module: str, extra: str, what: str) -> Any:
    """Import an optional dependency or raise a one-line :class:`RunError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise RunError(f"{what} needs the {package} package: pip install 'cifarbudget[{extra}]'") from None


def _version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "?"


# --- metadata -----------------------------------------------------------------------------------
def export_metadata(
    result: Any, *, weights: str, normalization: str, image_size: tuple[int, int] = (32, 32)
) -> dict[str, str]:
    """The string-to-string metadata every format carries (JSON for lists and the spec)."""
    from cifarbudget import __version__

    spec = result.spec
    classes = list(result.data.get("classes") or [])
    return {
        "format": METADATA_FORMAT,
        "producer": f"cifarbudget {__version__}",
        "run_id": result.run_id,
        "model": str(spec["model"]),
        "dataset": str(spec.get("dataset", "")),
        "num_classes": json.dumps(int(spec.get("num_classes") or len(classes))),
        "classes": json.dumps(classes),
        "mean": json.dumps([float(v) for v in result.data["mean"]]),
        "std": json.dumps([float(v) for v in result.data["std"]]),
        "image_size": json.dumps(list(image_size)),
        "input": f"float32 (N, 3, {image_size[0]}, {image_size[1]}) RGB pixels in 0..255",
        "normalization": normalization,
        "weights": weights,
        "status": str(result.status),
        "spec": json.dumps(spec, sort_keys=True),
    }


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    """:func:`export_metadata`'s strings with the JSON fields parsed back into lists and dicts."""
    out: dict[str, Any] = dict(raw)
    for key in _JSON_KEYS:
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


def read_export_metadata(path: Path | str) -> dict[str, Any]:
    """The metadata of an exported file of any of the three formats (recognised by its bytes)."""
    path = Path(path)
    try:
        head = path.read_bytes()[:16]
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(b"PK\x03\x04"):  # a zip archive: TorchScript
        extra = {TORCHSCRIPT_METADATA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", FutureWarning
            )  # torch.jit is deprecated in favour of torch.export
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        return decode_metadata(json.loads(extra[TORCHSCRIPT_METADATA_FILE]))
    if len(head) >= 10 and head[8:10] == b'{"':  # an 8-byte header length, then the JSON header
        safe_open = _require("safetensors", "export", "reading safetensors").safe_open
        with safe_open(str(path), framework="pt") as f:
            return decode_metadata(f.metadata() or {})
    onnx = _require("onnx", "export", "reading ONNX files")
    model = onnx.load(str(path), load_external_data=False)
    return decode_metadata({p.key: p.value for p in model.metadata_props})


# --- the formats --------------------------------------------------------------------------------
def _safetensors_bytes(model: nn.Module, meta: dict[str, str]) -> bytes:
    st = _require("safetensors.torch", "export", "safetensors export")
    # clone: safetensors refuses tensors that share memory (tied weights) or are not contiguous
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return st.save(state, metadata=meta)


def _torchscript_bytes(wrapper: NormalizedModel, example: torch.Tensor, meta: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, and tracer warnings are advisory:
        # the check below runs the traced file on real images, at another batch size
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(meta)})
    return buffer.getvalue()


def _legacy_exporter() -> dict[str, Any]:
    """``dynamo=False`` where ``torch.onnx.export`` has the switch (torch >= 2.5; before, it is the only exporter)."""
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def _onnx_bytes(wrapper: NormalizedModel, example: torch.Tensor, meta: dict[str, str]) -> bytes:
    onnx = _require("onnx", "export", "ONNX export")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and constant-folding notes
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,  # type: ignore[arg-type]  # torch types f as a path; the legacy exporter also writes to a BytesIO
            **_legacy_exporter(),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, meta)
    model.doc_string = (
        f"cifarbudget run {meta['run_id']}: {meta['model']}, input {meta['input']}, output logits"
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def load_exported_safetensors(path: Path | str, *, normalize: bool = True) -> nn.Module:
    """Rebuild the registered model of an exported safetensors file, in eval mode.

    ``normalize=True`` wraps it in :class:`NormalizedModel` with the file's mean and std (input:
    pixels in 0..255); ``normalize=False`` returns the bare registered model (input: normalised).
    """
    st = _require("safetensors.torch", "export", "reading safetensors")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _model_from_safetensors(data, st, normalize, str(path))


def _model_from_safetensors(data: bytes, st: Any, normalize: bool, where: str) -> nn.Module:
    from cifarbudget.api import create_model

    meta = decode_metadata(_safetensors_header_metadata(data, where))
    if meta.get("format") != METADATA_FORMAT:
        raise RunError(f"{where} is not a cifarbudget export (no {METADATA_FORMAT!r} metadata)")
    model_params = (meta.get("spec") or {}).get("model_params") or {}  # the spec is the run's
    model = create_model(meta["model"], num_classes=int(meta["num_classes"]), **model_params)
    try:
        model.load_state_dict(st.load(data))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RunError(f"{where} does not fit model {meta['model']!r} as registered now: {first}") from None
    model.eval()
    return NormalizedModel(model, meta["mean"], meta["std"]).eval() if normalize else model


def _safetensors_header_metadata(data: bytes, where: str) -> dict[str, str]:
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
    except (struct.error, ValueError) as exc:
        raise RunError(f"{where} is not a safetensors file ({exc})") from None
    return dict(header.get("__metadata__") or {})


# --- the check ----------------------------------------------------------------------------------
def recorded_data_root(result: Any) -> Path | None:
    """The data root the run recorded (builtin sources are ``NAME:ROOT:SPLIT``), when it exists."""
    source = str(result.data.get("source") or "")
    name = str(result.spec.get("dataset", ""))
    for split in (":train", ":test"):
        if source.startswith(f"{name}:") and source.endswith(split):
            root = Path(source[len(name) + 1 : -len(split)])
            return root if root.exists() else None
    return None


def load_test_split(result: Any, data_dir: Path | str | None, purpose: str, hint: str = "") -> Any:
    """The run's test split from the dataset registry: its root is ``data_dir``, else the root the
    run recorded (when it still exists), else :func:`cifarbudget.data.core.default_data_dir`. A
    missing or unreadable split is a one-line :class:`RunError` ("cannot {purpose} the ... test split")."""
    from cifarbudget.data.core import as_split, default_data_dir
    from cifarbudget.plugins import get_registry

    name = result.spec["dataset"]
    root = (
        Path(data_dir).expanduser()
        if data_dir is not None
        else recorded_data_root(result) or default_data_dir()
    )
    try:
        return as_split(
            get_registry("datasets").get(name).factory(root, train=False, download=False), name, "test"
        )
    except (CifarBudgetError, OSError) as exc:
        raise RunError(
            f"cannot {purpose} the {name} test split: {exc}" + (f" {hint}" if hint else "")
        ) from None


def load_check_images(result: Any, data_dir: Path | str | None, n: int = CHECK_IMAGES) -> torch.Tensor:
    """The first ``n`` images of the run's test split, uint8 ``(n, 3, H, W)``.

    The split comes from the dataset registry; its root is ``data_dir``, else the root the run
    recorded (when it still exists), else :func:`cifarbudget.data.core.default_data_dir`.
    """
    split = load_test_split(
        result, data_dir, "check the export on", "(pass the data folder, or skip the check)"
    )
    name = result.spec["dataset"]
    images = split.images[:n]
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise RunError(
            f"dataset {name!r} returned images {images.dtype} {tuple(images.shape)}, not uint8 (N, 3, H, W)"
        )
    return images


@torch.no_grad()
def _chunked(fn: Callable[[torch.Tensor], Any], images: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.as_tensor(fn(chunk)).float() for chunk in images.split(_CHECK_BATCH)])


def _exported_runner(fmt: str, data: bytes) -> tuple[Callable[[torch.Tensor], Any], str]:
    """A function running the exported bytes through the format's own reader, and its name."""
    if fmt == "onnx":
        ort = _require("onnxruntime", "export", "the ONNX check")
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        runtime = f"onnxruntime {ort.__version__} (CPUExecutionProvider)"
        return (lambda x: session.run(["logits"], {"images": x.float().numpy()})[0]), runtime
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        return (lambda x: module(x.float())), f"torch.jit.load (torch {torch.__version__})"
    st = _require("safetensors.torch", "export", "safetensors export")
    model = _model_from_safetensors(data, st, True, "the exported safetensors")
    return (lambda x: model(x.float())), f"safetensors {_version('safetensors')} + create_model"


# --- the entry point ----------------------------------------------------------------------------
def export_run(
    run_dir: Path | str,
    fmt: str,
    output: Path | str,
    *,
    check: bool = True,
    data_dir: Path | str | None = None,
    check_images: int = CHECK_IMAGES,
) -> ExportReport:
    """Export the run at ``run_dir`` (a run folder or its checkpoint) as ``fmt`` to ``output``.

    ``check``: run the exported file through its own reader on the first ``check_images`` test
    images and compare with PyTorch (see the module docstring); a failed check raises
    :class:`RunError` and writes nothing. ``data_dir``: where the test split is.
    """
    from cifarbudget.predict import load_model, load_run

    if fmt not in FORMATS:
        raise RunError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    output = Path(output).expanduser()
    if output.is_dir():
        raise RunError(f"-o {output} is a folder; give a file name such as model{DEFAULT_SUFFIX[fmt]}")
    if check and check_images < 1:
        raise RunError(f"check_images must be at least 1, got {check_images}")
    result, checkpoint = load_run(run_dir)
    if not result.data.get("mean") or not result.data.get("std"):
        raise RunError(f"run {result.run_id}: its record has no normalisation mean/std")
    torch_model = load_model(result, checkpoint).cpu().float().eval()
    weights = "ema" if float(result.spec.get("ema") or 0) > 0 else "model"
    wrapper = NormalizedModel(torch_model, result.data["mean"], result.data["std"]).eval()

    images = load_check_images(result, data_dir, check_images) if check else None
    if images is not None:
        example = images[:2].float()
    else:  # the training images' size as recorded (32 x 32 for a record from before it was)
        height, width = (int(v) for v in result.data.get("image_size") or (32, 32))
        example = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255

    if fmt == "safetensors":
        normalization = "outside: feed model((pixels_0_255 / 255 - mean) / std); mean, std in 0..1 units"
    else:
        normalization = "inside: the model takes pixels in 0..255 and normalises them with mean and std"
    size = (int(example.shape[-2]), int(example.shape[-1]))
    meta = export_metadata(result, weights=weights, normalization=normalization, image_size=size)
    try:
        if fmt == "safetensors":
            data = _safetensors_bytes(torch_model, meta)
        elif fmt == "torchscript":
            data = _torchscript_bytes(wrapper, example, meta)
        else:
            data = _onnx_bytes(wrapper, example, meta)
    except CifarBudgetError:
        raise
    except Exception as exc:  # an exporter's failure on an unusual model: one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RunError(
            f"cannot export model {result.spec['model']!r} to {fmt}: {type(exc).__name__}: {first}"
        ) from None

    report = ExportReport(result.run_id, fmt, output, len(data), weights)
    if images is not None:
        expected = _chunked(wrapper, images)
        try:
            run_exported, report.runtime = _exported_runner(fmt, data)
            got = _chunked(run_exported, images)
        except CifarBudgetError:
            raise
        except Exception as exc:  # the format's reader refused the file
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise RunError(
                f"export check failed, nothing written: the exported {fmt} file does not run: "
                f"{type(exc).__name__}: {first}"
            ) from None
        if got.shape != expected.shape:
            raise RunError(
                f"the exported {fmt} model returned shape {tuple(got.shape)}, PyTorch {tuple(expected.shape)}"
            )
        report.checked_images = len(images)
        report.check_split = f"{result.spec['dataset']} test split"
        report.max_abs_diff = float((got - expected).abs().max())
        report.predictions_identical = bool(torch.equal(got.argmax(1), expected.argmax(1)))
        if not report.passed:
            raise RunError(
                f"export check failed, nothing written: {report.summary().splitlines()[-1].strip()}"
            )

    atomic_write_bytes(output, data)
    if fmt == "safetensors":
        report.sidecar = output.with_name(output.name + ".json")
        sidecar = decode_metadata(meta)
        sidecar.update(
            file=output.name, sha256=hashlib.sha256(data).hexdigest(), tensors_format="safetensors"
        )
        atomic_write_json(report.sidecar, sidecar)
    return report
