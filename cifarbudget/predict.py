"""Predictions of a trained run on new images: inference with the run's own weights, normalisation,
precision and TTA, and the Kaggle submission CSV.

:func:`predict` rebuilds the model of a run from its record, loads the weights the run evaluated
(the EMA weights when the run used EMA; :func:`cifarbudget.engine.load_weights`) and evaluates
them with the engine's :func:`~cifarbudget.engine.evaluate`: same normalisation, precision, batch
size and TTA as the run's final evaluation, so that on a run's own test split the accuracy equals
the recorded one. Input formats are read by :mod:`cifarbudget.data.inputs`.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cifarbudget.data.core import DeviceSplit
from cifarbudget.data.inputs import Inputs, check_inputs, is_pickle, load_inputs
from cifarbudget.device import DeviceSettings, configure_backends, resolve, select_device
from cifarbudget.engine import CHECKPOINT, EVAL_BATCH_SIZE, evaluate, load_weights
from cifarbudget.errors import CifarBudgetError, DataError, RunError, describe
from cifarbudget.io import atomic_write_bytes, atomic_write_text
from cifarbudget.progress import Progress
from cifarbudget.results import DIVERGED, FAILED, FINISHED, RESULT_FILE, RunResult, load_result

log = logging.getLogger(__name__)

# The run's final evaluation uses the engine's evaluation batch size; using the same one keeps
# every forward pass the same shape, hence the same kernels and the same numbers.
DEFAULT_BATCH_SIZE = EVAL_BATCH_SIZE
CSV_HEADER = ("ID", "Labels")

__all__ = [
    "Inputs",
    "Predictions",
    "is_pickle",
    "load_inputs",
    "load_model",
    "load_run",
    "map_labels",
    "predict",
]


@dataclass
class Predictions:
    """What :func:`predict` returns: one predicted class per id, probabilities, and accuracy if labeled."""

    run_id: str
    ids: list[str]
    indices: np.ndarray  # int64 (N,): predicted class indices
    probs: np.ndarray  # float32 (N, C): softmax of the (TTA-averaged) logits
    classes: list[str]  # the run's class names
    tta: str  # the TTA policy used ("none" for none)
    device: str
    targets: np.ndarray | None = None  # int64 (N,): true classes, when the input is labeled
    accuracy: float | None = None  # of ``indices``, i.e. with ``tta``
    indices_no_tta: np.ndarray | None = None  # labeled input with TTA on: the plain predictions too
    accuracy_no_tta: float | None = None
    recorded_accuracy: float | None = None  # on the run's own test split: what the run recorded
    recorded_accuracy_no_tta: float | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labels(self) -> list[str]:
        """The predicted class names (the index as text where the run has no name for it)."""
        return [self.classes[i] if i < len(self.classes) else str(i) for i in self.indices.tolist()]

    def csv_text(self, labels: str = "name", header: Sequence[str] = CSV_HEADER) -> str:
        """The submission: ``header`` (``ID,Labels``), then one row per id in input order."""
        if labels not in ("name", "index"):
            raise DataError(f"labels must be 'name' or 'index', got {labels!r}")
        if len(header) != 2 or not all(header):
            raise DataError(f"the CSV header needs two column names, got {tuple(header)!r}")
        values = self.labels if labels == "name" else [str(i) for i in self.indices.tolist()]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(self.ids, values, strict=True))
        return buffer.getvalue()

    def write_csv(self, path: Path | str, labels: str = "name", header: Sequence[str] = CSV_HEADER) -> None:
        """Write :meth:`csv_text` atomically."""
        atomic_write_text(path, self.csv_text(labels, header))

    def probs_npy(self) -> bytes:
        """The ``(N, C)`` float32 probabilities as the bytes of a ``.npy`` file."""
        buffer = io.BytesIO()
        np.save(buffer, self.probs, allow_pickle=False)
        return buffer.getvalue()

    def save_probs(self, path: Path | str) -> None:
        """Save the ``(N, C)`` float32 probabilities as ``.npy``, atomically."""
        atomic_write_bytes(path, self.probs_npy())

    def confusion_matrix(self, tta: bool = True) -> list[list[int]]:
        """Rows: true class, columns: predicted (as ``result.json`` records it); needs labels."""
        from cifarbudget.engine import confusion_matrix

        preds = self.indices if tta or self.indices_no_tta is None else self.indices_no_tta
        if self.targets is None:
            raise DataError("the input has no labels: no confusion matrix")
        n = self.probs.shape[1]
        return confusion_matrix(torch.from_numpy(preds), torch.from_numpy(self.targets), n)


# --- the run ------------------------------------------------------------------------------------
def load_run(run_or_checkpoint: Path | str) -> tuple[RunResult, Path]:
    """The record of a run and its checkpoint, from a run folder or a file inside one."""
    path = Path(run_or_checkpoint).expanduser()
    if not path.exists():
        raise RunError(f"no run at {path}: pass a run folder (result.json + {CHECKPOINT}) or its checkpoint")
    if path.is_dir():
        run_dir, checkpoint = path, path / CHECKPOINT
    elif path.name == RESULT_FILE:
        run_dir, checkpoint = path.parent, path.parent / CHECKPOINT
    else:
        run_dir, checkpoint = path.parent, path
    if not (run_dir / RESULT_FILE).is_file():
        raise RunError(f"{run_dir} is not a run folder: it has no {RESULT_FILE}")
    try:
        result = load_result(run_dir)
    except CifarBudgetError as exc:
        raise RunError(str(exc)) from None
    if not checkpoint.is_file():
        raise RunError(f"run {result.run_id} has no checkpoint ({checkpoint} is missing)")
    if result.status in (DIVERGED, FAILED):
        raise RunError(f"run {result.run_id} {result.status}: {result.error or 'its weights are not usable'}")
    return result, checkpoint


def with_run_data_dir(inputs: str | Path, result: RunResult) -> str | Path:
    """The run's own dataset named without a folder (``imagefolder``) reads the folder the run read
    (``manifest.settings.data_dir``), not the default data folder; anything else is left as given."""
    name = str(inputs)
    root = (result.manifest.get("settings") or {}).get("data_dir")
    if name != result.spec.get("dataset") or not root or Path(name).expanduser().exists():
        return inputs
    return f"{name}:{root}"


def load_model(result: RunResult, checkpoint: Path) -> nn.Module:
    """The run's model, built with the parameters it was trained with (``--model-param``), with
    the weights it was evaluated with (EMA weights when it used EMA)."""
    from cifarbudget.api import create_model

    spec = result.spec
    classes = result.data.get("classes") or []
    num_classes = int(spec.get("num_classes") or len(classes))
    if not num_classes:
        raise RunError(f"run {result.run_id}: its record has neither num_classes nor the class names")
    # options such as an activation or a stem stride change the network without changing the
    # state dict's keys or shapes: without them the weights would load into a different network
    model = create_model(spec["model"], num_classes=num_classes, **(spec.get("model_params") or {}))
    try:
        return load_weights(model, checkpoint, run_id=result.run_id, ema=float(spec.get("ema") or 0) > 0)
    except RunError as exc:
        raise RunError(f"run {result.run_id} (model {spec['model']!r}): {exc}") from None


# --- inference ----------------------------------------------------------------------------------
def map_labels(inputs: Inputs, classes: list[str], num_classes: int) -> np.ndarray | None:
    """The input's labels as indices into the run's classes (matched by name where the input names them)."""
    if inputs.labels is None:
        return None
    labels = inputs.labels.long()
    if inputs.classes is not None and list(inputs.classes) != list(classes[: len(inputs.classes)]):
        index = {name: i for i, name in enumerate(classes)}
        unknown = [c for c in inputs.classes if c not in index]
        if unknown:
            raise DataError(f"{inputs.source}: class {unknown[0]!r} is not one of the run's classes")
        labels = torch.tensor([index[c] for c in inputs.classes], dtype=torch.long)[labels]
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{inputs.source}: labels outside 0..{num_classes - 1}")
    return labels.numpy()


def _own_test_split(inputs: Inputs, result: RunResult) -> bool:
    """Whether ``inputs`` is the test split the run evaluated: the same dataset, source and size,
    and, where the run recorded its data id, the same data (a folder of the same name elsewhere,
    or changed since, is not the run's test split)."""
    from cifarbudget.identity import data_id

    def strip(source: str) -> str:
        return source.removesuffix(":train").removesuffix(":test")

    data = result.data
    if not (
        inputs.kind == "dataset"
        and inputs.dataset is not None
        and inputs.dataset == result.spec.get("dataset")
        and len(inputs) == data.get("n_test")
    ):
        return False
    recorded = result.spec.get("data_id")
    if recorded and inputs.root is not None:  # the data themselves, wherever the folder is now
        return bool(data_id(inputs.dataset, inputs.root) == recorded)
    return strip(inputs.source) == strip(str(data.get("source", "")))


def _settings_like_the_run(result: RunResult, device: str | None, amp: bool | None) -> DeviceSettings:
    """Device settings that mirror the run's precision and memory format on the kind of device it ran on."""
    dev = select_device(device)
    recorded = result.manifest.get("engine") or {}
    same_kind = str(result.manifest.get("device", "")).split(":")[0] == dev.type
    run_amp = recorded.get("amp") if same_kind else None
    run_cl = recorded.get("channels_last") if same_kind else None
    return resolve(dev, amp=run_amp if amp is None else amp, channels_last=run_cl)


def predict(
    run_or_checkpoint: Path | str,
    inputs: Inputs | Path | str,
    *,
    tta: str | None = None,
    tta_params: dict[str, object] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    amp: bool | None = None,
    progress: bool = False,
) -> Predictions:
    """Predict the class of every image in ``inputs`` with the run at ``run_or_checkpoint``.

    ``tta``: a registered TTA policy, ``"none"``, or ``None`` for the run's own (with its recorded
    parameters); ``tta_params``: that policy's parameters (``{"fraction": 0.5}``). ``batch_size``
    defaults to the run's evaluation batch size; ``device`` to cuda, mps or cpu; ``amp``
    (bf16 autocast) to what the run used on this kind of device. For labeled inputs the accuracy
    is computed (and, with TTA, the accuracy without it); on the run's own test split both equal
    the recorded test accuracies when the device and precision match the run's.
    """
    from cifarbudget.identity import tta_key
    from cifarbudget.runner import build_tta, check_tta_params

    result, checkpoint = load_run(run_or_checkpoint)
    if result.status != FINISHED:
        epochs = result.spec.get("epochs")
        log.warning(
            "run %s is %s (%d of %s epochs); predicting with its last checkpoint",
            result.run_id,
            result.status,
            len(result.history),
            epochs,
        )
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1 (got {batch_size})")
    if tta is None:  # the run's own policy, with the parameters it was evaluated with
        tta_name, params = result.spec.get("tta", "none"), dict(result.spec.get("tta_params") or {})
        params.update(tta_params or {})
    else:
        tta_name, params = tta, dict(tta_params or {})
    check_tta_params(tta_name, params)
    data = inputs if isinstance(inputs, Inputs) else load_inputs(with_run_data_dir(inputs, result))
    check_inputs(data)
    model = load_model(result, checkpoint)
    settings = _settings_like_the_run(result, device, amp)
    configure_backends(settings)
    model = model.to(settings.device, memory_format=settings.memory_format)  # type: ignore[call-overload]  # torch's stubs omit Module.to(device, memory_format=...)
    classes = list(result.data.get("classes") or [])
    num_classes = int(result.spec.get("num_classes") or len(classes))
    targets = map_labels(data, classes, num_classes)
    mean, std = result.data.get("mean"), result.data.get("std")
    if not mean or not std:
        raise RunError(f"run {result.run_id}: its record has no normalisation mean/std")
    # built as the run built it: with the run's normalisation (a policy that un-normalises asks for it)
    policy = build_tta(tta_name, {"mean": mean, "std": std}, params) if tta_name != "none" else None
    labels = torch.from_numpy(targets) if targets is not None else torch.full((len(data),), -1)
    split = DeviceSplit.from_tensors(data.images, labels, settings.device, mean, std, settings.channels_last)

    passes = 2 if policy is not None and targets is not None else 1
    enabled = progress and len(data) > batch_size
    try:
        with Progress(total=passes * len(data), unit="img", desc="predict", enabled=enabled) as bar:
            out_tta = evaluate(
                model, split, settings, tta=policy, batch_size=batch_size, return_logits=True, progress=bar
            )
            plain = (
                evaluate(model, split, settings, batch_size=batch_size, progress=bar) if passes == 2 else None
            )
    except RuntimeError as exc:
        size = tuple(data.images.shape[-2:])
        if size == (32, 32):
            raise
        first = describe(exc, with_type=False)
        raise DataError(
            f"model {result.spec['model']!r} cannot take {size[0]}x{size[1]} images: {first}"
        ) from None

    out = Predictions(
        run_id=result.run_id,
        ids=list(data.ids),
        indices=out_tta["predictions"].numpy().astype(np.int64),
        probs=torch.softmax(out_tta["logits"], dim=1).numpy(),
        classes=classes,
        tta=tta_key(tta_name, params),
        device=str(settings.device),
        targets=targets,
    )
    if targets is not None:
        n = len(targets)
        out.accuracy = int((out.indices == targets).sum()) / n
        if plain is not None:
            out.indices_no_tta = plain["predictions"].numpy().astype(np.int64)
            out.accuracy_no_tta = int((out.indices_no_tta == targets).sum()) / n
        if _own_test_split(data, result) and result.status == FINISHED:
            final = result.final
            out.recorded_accuracy_no_tta = final.get("test_acc")
            if tta_name == "none":
                out.recorded_accuracy = final.get("test_acc")
            else:  # the evaluation the record has for this policy and these parameters, if any
                evaluated = (final.get("tta_evals") or {}).get(out.tta) or {}
                legacy = final.get("test_acc_tta") if final.get("tta") == out.tta else None
                out.recorded_accuracy = evaluated.get("test_acc", legacy)
    return out
