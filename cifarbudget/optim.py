"""Optimizers: parameter groups, the builtin optimizer factories and the wrappers they need.

Every factory has the signature the engine calls::

    factory(model, *, lr, momentum, weight_decay, nesterov, **params) -> torch.optim.Optimizer

It receives the model (not its parameters) so that it can build parameter groups
(:func:`param_groups`: normalisation weights, normalisation biases and other biases apart from the
rest) and, for SAM, reach the model's BatchNorm layers. Every factory validates its parameters and
raises :class:`~cifarbudget.errors.RunError` (one line) on a bad value.

This module owns:

- :func:`param_groups`, the grouping helper;
- the builtin factories :func:`sgd`, :func:`adamw`, :func:`lookahead`, :func:`sam`, :func:`muon`;
- the optimizers behind them that torch does not have: :class:`Lookahead` (Zhang et al. 2019),
  :class:`SAM` (Foret et al. 2021; ASAM, Kwon et al. 2021) and :class:`MuonHybrid` (torch's Muon,
  Jordan 2024, on the conv filters seen as matrices, SGD on everything else).

Wrappers share ``param_groups`` with the optimizer they drive (LR schedulers work on them) and
their ``state_dict()`` holds everything needed to continue bit for bit. An optimizer that needs a
closure (SAM) has ``needs_closure = True``; the engine then calls ``optimizer.step(closure)``,
where ``closure()`` zeroes the gradients, runs the forward pass, computes the loss, calls
``backward()`` and returns the loss. ``passes_per_step`` (2 for SAM, 1 when absent) is how many
forward and backward passes one step costs.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from cifarbudget.errors import RunError, UnknownNameError
from cifarbudget.identity import RUN_POSITIONAL
from cifarbudget.registry import check_params

# Modules whose parameters are normalisation parameters (BatchNorm, InstanceNorm, GroupNorm,
# LayerNorm, RMSNorm and their subclasses, e.g. timm's LayerNorm2d).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
GROUP_NAMES = ("weights", "norm_weights", "norm_biases", "biases")
MUON_ADJUST_LR = ("original", "match_rms_adamw", "spectral_unclamped")
_HOOK_DICTS = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)


# --- validation ---------------------------------------------------------------------------------
def _number(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RunError(f"{what} must be a finite number (got {value!r})")
    return float(value)


def _positive(what: str, value: Any) -> float:
    v = _number(what, value)
    if v <= 0:
        raise RunError(f"{what} must be positive (got {value!r})")
    return v


def _non_negative(what: str, value: Any) -> float:
    v = _number(what, value)
    if v < 0:
        raise RunError(f"{what} must be non-negative (got {value!r})")
    return v


def _unit(what: str, value: Any, *, low_open: bool = False, high_open: bool = True) -> float:
    """A number in [0, 1) by default; ``low_open``/``high_open`` exclude the ends."""
    v = _number(what, value)
    low_ok = v > 0 if low_open else v >= 0
    high_ok = v < 1 if high_open else v <= 1
    if not (low_ok and high_ok):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise RunError(f"{what} must be in {interval} (got {value!r})")
    return v


def _flag(what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RunError(f"{what} must be true or false (got {value!r})")
    return value


def _count(what: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RunError(f"{what} must be an integer >= {minimum} (got {value!r})")
    return value


def _check_run_args(name: str, lr: Any, momentum: Any, weight_decay: Any, nesterov: Any) -> None:
    """The four arguments every factory receives from the run."""
    _positive(f"optimizer {name}: lr", lr)
    _unit(f"optimizer {name}: momentum", momentum)
    _non_negative(f"optimizer {name}: weight_decay", weight_decay)
    _flag(f"optimizer {name}: nesterov", nesterov)


# --- parameter groups ---------------------------------------------------------------------------
def split_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The trainable parameters of ``model`` by kind, each once, in ``model.parameters()`` order.

    ``norm_weights`` and ``norm_biases`` are the parameters of normalisation layers (see
    :data:`NORM_TYPES`; a norm layer's parameter named ``bias`` is a bias, every other one a
    weight); ``biases`` are the parameters named ``bias`` of every other layer; ``weights`` are
    the rest (conv and linear weights, embeddings, ...).
    """
    kind: dict[int, str] = {}
    for module in model.modules():
        is_norm = isinstance(module, NORM_TYPES)
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                kind.setdefault(id(p), "norm_biases" if is_norm else "biases")
            else:
                kind.setdefault(id(p), "norm_weights" if is_norm else "weights")
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    for p in model.parameters():  # deduplicated (tied weights appear once)
        if p.requires_grad:
            groups[kind[id(p)]].append(p)
    return groups


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    norm_weight_decay: float | None = None,
    bias_lr_scale: float = 1.0,
    norm_lr_scale: float = 1.0,
    weight_lr_scale: float = 1.0,
    exclude: Iterable[torch.Tensor] = (),
) -> list[dict[str, Any]]:
    """Parameter groups for a torch optimizer: normalisation parameters and biases apart.

    Groups (named by a ``"name"`` key; empty groups are left out), from :func:`split_parameters`:

    ========================  =========================  ==============================
    group                     learning rate              weight decay
    ========================  =========================  ==============================
    ``weights``               ``lr * weight_lr_scale``   ``weight_decay``
    ``norm_weights``          ``lr * norm_lr_scale``     ``norm_weight_decay``
    ``norm_biases``           ``lr * bias_lr_scale``     ``norm_weight_decay``
    ``biases`` (conv/linear)  ``lr``                     ``norm_weight_decay``
    ========================  =========================  ==============================

    ``norm_weight_decay`` ``None`` means ``weight_decay``; so with the defaults every group has
    the same hyper-parameters and an optimizer built on them steps exactly like one built on
    ``model.parameters()``. ``bias_lr_scale`` is the BatchNorm-bias learning rate of airbench
    (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv:2404.00498: 64x);
    ``norm_weight_decay=0`` is the usual "no weight decay on norms and biases". ``weight_lr_scale``
    serves optimizers that train most weights otherwise (Muon: then ``weights`` is the classifier).
    Parameters in ``exclude`` (optimised elsewhere, e.g. by Muon) and frozen ones are left out.
    """
    _positive("lr", lr)
    weight_decay = _non_negative("weight_decay", weight_decay)
    norm_wd = (
        weight_decay if norm_weight_decay is None else _non_negative("norm_weight_decay", norm_weight_decay)
    )
    bias_lr_scale = _positive("bias_lr_scale", bias_lr_scale)
    norm_lr_scale = _positive("norm_lr_scale", norm_lr_scale)
    weight_lr_scale = _positive("weight_lr_scale", weight_lr_scale)
    settings = {
        "weights": (lr * weight_lr_scale, weight_decay),
        "norm_weights": (lr * norm_lr_scale, norm_wd),
        "norm_biases": (lr * bias_lr_scale, norm_wd),
        "biases": (lr, norm_wd),
    }
    skip = {id(p) for p in exclude}
    groups = []
    for name, params in split_parameters(model).items():
        kept = [p for p in params if id(p) not in skip]
        if kept:
            group_lr, group_wd = settings[name]
            groups.append({"params": kept, "name": name, "lr": group_lr, "weight_decay": group_wd})
    if not groups:
        raise RunError(f"{type(model).__name__} has no trainable parameters to optimise")
    return groups


# --- builtin factories --------------------------------------------------------------------------
def sgd(
    model: nn.Module,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    bn_bias_lr_scale: float = 1.0,
    norm_weight_decay: float | None = None,
) -> torch.optim.SGD:
    """SGD with (Nesterov) momentum and L2 weight decay (``torch.optim.SGD``).

    Nesterov momentum as in Sutskever et al. 2013 ("On the importance of initialization and
    momentum in deep learning"). ``bn_bias_lr_scale`` multiplies the learning rate of the biases
    of normalisation layers (airbench uses 64); ``norm_weight_decay`` is the weight decay of
    normalisation parameters and of every bias (``None``: ``weight_decay``). With the defaults
    this is exactly ``torch.optim.SGD(model.parameters(), ...)``.
    """
    _check_run_args("sgd", lr, momentum, weight_decay, nesterov)
    if nesterov and momentum <= 0:
        raise RunError("optimizer sgd: nesterov needs a positive momentum")
    groups = param_groups(
        model,
        lr=lr,
        weight_decay=weight_decay,
        norm_weight_decay=norm_weight_decay,
        bias_lr_scale=_positive("optimizer sgd: bn_bias_lr_scale", bn_bias_lr_scale),
    )
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def adamw(
    model: nn.Module,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float,
    nesterov: bool = False,
    betas: tuple[float, float] | list[float] | None = None,
    eps: float = 1e-8,
    bn_bias_lr_scale: float = 1.0,
    norm_weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019, arXiv:1711.05101).

    ``betas`` defaults to ``(momentum, 0.999)``: the run's momentum is Adam's beta1 (0.9 by
    default, torch's default). ``nesterov=True`` gives NAdamW, Adam with Nesterov momentum
    (Dozat 2016, "Incorporating Nesterov Momentum into Adam"; ``torch.optim.NAdam`` with
    decoupled weight decay). ``bn_bias_lr_scale`` and ``norm_weight_decay`` as for :func:`sgd`.
    """
    _check_run_args("adamw", lr, momentum, weight_decay, nesterov)
    if betas is None:
        betas = (momentum, 0.999)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise RunError(f"optimizer adamw: betas must be two numbers (got {betas!r})")
    beta = (_unit("optimizer adamw: betas[0]", betas[0]), _unit("optimizer adamw: betas[1]", betas[1]))
    eps = _positive("optimizer adamw: eps", eps)
    groups = param_groups(
        model,
        lr=lr,
        weight_decay=weight_decay,
        norm_weight_decay=norm_weight_decay,
        bias_lr_scale=_positive("optimizer adamw: bn_bias_lr_scale", bn_bias_lr_scale),
    )
    if nesterov:
        return torch.optim.NAdam(
            groups, lr=lr, betas=beta, eps=eps, weight_decay=weight_decay, decoupled_weight_decay=True
        )
    return torch.optim.AdamW(groups, lr=lr, betas=beta, eps=eps, weight_decay=weight_decay)


def _optimizer_factory(name: Any) -> Callable[..., Optimizer]:
    """The factory registered as optimizer ``name`` (the builtin one before the registry exists)."""
    if not isinstance(name, str):
        raise RunError(f"base optimizer must be a name (got {name!r})")
    from cifarbudget.plugins import KINDS, get_registry

    if "optimizers" in KINDS:
        try:
            return get_registry("optimizers").get(name).factory
        except UnknownNameError as exc:
            raise RunError(str(exc)) from None
    if name not in BUILTIN_OPTIMIZERS:
        raise RunError(f"Unknown optimizer {name!r}; builtin: {', '.join(BUILTIN_OPTIMIZERS)}")
    return BUILTIN_OPTIMIZERS[name]


def _build_base(
    wrapper: str, base: Any, model: nn.Module, run_args: dict[str, Any], params: dict[str, Any]
) -> Optimizer:
    factory = _optimizer_factory(base)
    # the model is passed positionally; it is the run's, like the hyperparameters in run_args
    supplied = {"model", *run_args}
    check_params(
        f"optimizer {base!r} (the base of {wrapper})",
        factory,
        params,
        supplied,
        flag="--opt-param ",
        positional=RUN_POSITIONAL["optimizers"],
    )
    optimizer = factory(model, **run_args, **params)
    if not isinstance(optimizer, Optimizer):
        raise RunError(f"optimizer {base!r} did not return a torch.optim.Optimizer")
    return optimizer


def lookahead(
    model: nn.Module,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    base: str = "sgd",
    k: int = 5,
    alpha: float = 0.5,
    **base_params: Any,
) -> Lookahead:
    """Lookahead around the optimizer registered as ``base`` (Zhang et al. 2019, arXiv:1907.08610).

    Every ``k`` steps of ``base`` the slow weights move ``alpha`` of the way to the fast ones and
    the fast weights restart from there. ``base_params`` go to the base factory.
    """
    _check_run_args("lookahead", lr, momentum, weight_decay, nesterov)
    k = _count("optimizer lookahead: k", k)
    alpha = _unit("optimizer lookahead: alpha", alpha, low_open=True, high_open=False)
    run_args = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
    return Lookahead(_build_base("lookahead", base, model, run_args, base_params), k=k, alpha=alpha)


def sam(
    model: nn.Module,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    base: str = "sgd",
    rho: float = 0.05,
    adaptive: bool = False,
    eta: float = 0.01,
    **base_params: Any,
) -> SAM:
    """Sharpness-Aware Minimization around ``base`` (Foret et al. 2021, arXiv:2010.01412).

    ``adaptive=True`` is ASAM (Kwon et al. 2021, arXiv:2102.11600), whose neighbourhood is scaled
    by ``|w| + eta`` (weights; biases unscaled); it needs a larger ``rho`` than SAM (the authors
    use 0.5 where SAM uses 0.05). Two forward and
    backward passes per step.
    """
    _check_run_args("sam", lr, momentum, weight_decay, nesterov)
    rho = _positive("optimizer sam: rho", rho)
    adaptive = _flag("optimizer sam: adaptive", adaptive)
    eta = _non_negative("optimizer sam: eta", eta)
    run_args = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
    inner = _build_base("sam", base, model, run_args, base_params)
    if getattr(inner, "needs_closure", False):
        raise RunError(f"optimizer sam cannot wrap {base!r}: it needs a closure of its own")
    return SAM(inner, model, rho=rho, adaptive=adaptive, eta=eta)


def muon(
    model: nn.Module,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    muon_lr: float = 0.02,
    muon_momentum: float = 0.95,
    muon_nesterov: bool = True,
    muon_weight_decay: float = 0.0,
    muon_normalize: bool = False,
    ns_steps: int = 5,
    adjust_lr_fn: str = "original",
    linear: bool = False,
    bn_bias_lr_scale: float = 1.0,
    norm_weight_decay: float | None = None,
    head_lr_scale: float = 1.0,
) -> MuonHybrid:
    """Muon on the conv filters, SGD on the rest (Jordan 2024, "Muon: an optimizer for hidden layers").

    Muon (``torch.optim.Muon``) orthogonalises each momentum-averaged gradient matrix with five
    Newton-Schulz steps. Conv filters ``(out, in, kh, kw)`` are optimised as ``(out, in*kh*kw)``
    matrices, as in the airbench/hiverge CIFAR-10 speed runs; with ``linear=True`` Linear weights
    too (by default the classifier stays with SGD, as there). Muon uses ``muon_lr``,
    ``muon_momentum``, ``muon_nesterov``, ``muon_weight_decay`` (decoupled), ``ns_steps`` and
    ``adjust_lr_fn`` (torch's: ``original`` scales by ``sqrt(max(1, out/in))``); every other
    parameter gets SGD with the run's ``lr``, ``momentum``, ``weight_decay`` and ``nesterov``
    (``bn_bias_lr_scale`` and ``norm_weight_decay`` as for :func:`sgd`). ``head_lr_scale``
    multiplies the SGD learning rate of the weights Muon leaves to it (with ``linear=False``, the
    classifier's; not the norms' or any bias): airbench94's Muon variant gives its classifier 12.6
    times the BatchNorm biases' rate, where ``bn_bias_lr_scale=64`` alone gives it 1/64.

    ``muon_normalize=True`` rescales each Muon-trained matrix to Frobenius norm ``sqrt(out)`` (rows
    of norm 1 on average) before every step, as airbench94's Muon variant does (Jordan,
    KellerJordan/cifar10-airbench, ``airbench94_muon.py``). A filter that a normalisation layer
    follows (conv -> [pool] -> BatchNorm) is scale-invariant, so its norm only sets the effective
    step: Muon's updates have a fixed size, the norm grows as they accumulate and the effective
    rate decays on its own; with the norm fixed, ``muon_lr`` and its schedule are the effective
    rate. Meant for such filters only: a matrix no normalisation follows changes its function.
    """
    _check_run_args("muon", lr, momentum, weight_decay, nesterov)
    if not hasattr(torch.optim, "Muon"):
        raise RunError(f"optimizer muon needs torch >= 2.9 (this is torch {torch.__version__})")
    if nesterov and momentum <= 0:
        raise RunError("optimizer muon: nesterov needs a positive momentum")
    muon_lr = _positive("optimizer muon: muon_lr", muon_lr)
    muon_momentum = _unit("optimizer muon: muon_momentum", muon_momentum)
    muon_nesterov = _flag("optimizer muon: muon_nesterov", muon_nesterov)
    muon_weight_decay = _non_negative("optimizer muon: muon_weight_decay", muon_weight_decay)
    muon_normalize = _flag("optimizer muon: muon_normalize", muon_normalize)
    head_lr_scale = _positive("optimizer muon: head_lr_scale", head_lr_scale)
    ns_steps = _count("optimizer muon: ns_steps", ns_steps)
    if ns_steps >= 100:
        raise RunError(f"optimizer muon: ns_steps must be below 100 (got {ns_steps})")
    if adjust_lr_fn not in MUON_ADJUST_LR:
        raise RunError(
            f"optimizer muon: adjust_lr_fn must be one of {', '.join(MUON_ADJUST_LR)} (got {adjust_lr_fn!r})"
        )
    linear = _flag("optimizer muon: linear", linear)
    matrices = [
        p
        for m in model.modules()
        if isinstance(m, nn.modules.conv._ConvNd) or (linear and isinstance(m, nn.Linear))
        for name, p in m.named_parameters(recurse=False)
        if name == "weight" and p.requires_grad
    ]
    matrices = list({id(p): p for p in matrices}.values())
    if not matrices:
        raise RunError(f"optimizer muon: {type(model).__name__} has no conv filters for Muon")
    taken = {id(p) for p in matrices}
    aux = None
    if any(p.requires_grad and id(p) not in taken for p in model.parameters()):
        groups = param_groups(
            model,
            lr=lr,
            weight_decay=weight_decay,
            norm_weight_decay=norm_weight_decay,
            bias_lr_scale=_positive("optimizer muon: bn_bias_lr_scale", bn_bias_lr_scale),
            weight_lr_scale=head_lr_scale,
            exclude=matrices,
        )
        aux = torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    return MuonHybrid(
        matrices,
        aux,
        lr=muon_lr,
        momentum=muon_momentum,
        nesterov=muon_nesterov,
        weight_decay=muon_weight_decay,
        ns_steps=ns_steps,
        adjust_lr_fn=adjust_lr_fn,
        normalize=muon_normalize,
    )


# options added after the CPU compute track's Muon runs were recorded: at these values it steps as
# before, so those runs keep their ids (cifarbudget.identity)
muon.identity_neutral = {"muon_normalize": False, "head_lr_scale": 1.0}  # type: ignore[attr-defined]


# --- optimizers that drive other optimizers -----------------------------------------------------
class _Composite(Optimizer):
    """Base of optimizers built on other optimizers: torch's hooks, without copying any group.

    ``Optimizer.__init__`` would copy the parameter groups; these classes must share them, so
    they set up only what ``Optimizer`` needs besides (its hook dictionaries).
    """

    needs_closure: bool = False
    passes_per_step: int = 1  # forward + backward passes per step (training-compute accounting)

    def _init_optimizer(self) -> None:
        for name in _HOOK_DICTS:
            setattr(self, name, OrderedDict())
        self._warned_capturable_if_run_uncaptured = True
        self._patch_step_function()


class _Wrapper(_Composite):
    """An optimizer that drives ``base``: its ``param_groups`` and ``defaults`` are ``base``'s."""

    def __init__(self, base: Optimizer) -> None:
        self.base = base
        self.state: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        self._init_optimizer()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base.param_groups

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        self.base.param_groups = groups

    @property
    def defaults(self) -> dict[str, Any]:
        return self.base.defaults

    @defaults.setter
    def defaults(self, values: dict[str, Any]) -> None:
        self.base.defaults = values

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.base.add_param_group(param_group)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _load_base(self, state_dict: Mapping[str, Any], kind: str) -> None:
        if not isinstance(state_dict, Mapping) or state_dict.get("kind") != kind or "base" not in state_dict:
            raise RunError(f"the optimizer state to load is not a {kind} state (was the optimizer changed?)")
        self.base.load_state_dict(state_dict["base"])


class Lookahead(_Wrapper):
    """Lookahead (Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back",
    arXiv:1907.08610), around any optimizer.

    The slow weights ``phi`` start at the weights of the first step; every ``k`` steps of the base
    optimizer they move ``phi <- phi + alpha * (theta - phi)`` and the fast weights restart there
    (``theta <- phi``). The base optimizer's state (momentum) is kept across syncs, as in the
    paper's experiments. Buffers (BatchNorm statistics) are not interpolated.
    """

    def __init__(self, base: Optimizer, *, k: int = 5, alpha: float = 0.5) -> None:
        super().__init__(base)
        self.k, self.alpha = (
            _count("lookahead k", k),
            _unit("lookahead alpha", alpha, low_open=True, high_open=False),
        )
        self.needs_closure = bool(getattr(base, "needs_closure", False))
        self.passes_per_step = int(getattr(base, "passes_per_step", 1))
        self.steps = 0  # base steps taken
        self._slow: list[torch.Tensor] | None = None  # one per parameter of param_groups, in order

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        params = self._params()
        if self._slow is None:
            self._slow = [p.detach().clone() for p in params]
        loss = self.base.step(closure) if closure is not None else self.base.step()
        self.steps += 1
        if self.steps % self.k == 0:
            diff = torch._foreach_sub(params, self._slow)
            torch._foreach_add_(self._slow, diff, alpha=self.alpha)
            torch._foreach_copy_(params, self._slow)
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "lookahead",
            "base": self.base.state_dict(),
            "steps": self.steps,
            "slow": None if self._slow is None else list(self._slow),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_base(state_dict, "lookahead")
        params = self._params()
        slow = state_dict.get("slow")
        if slow is not None and len(slow) != len(params):
            raise RunError(f"the lookahead state holds {len(slow)} slow weights, the model has {len(params)}")
        self.steps = int(state_dict["steps"])
        self._slow = (
            None
            if slow is None
            else [
                s.detach().to(device=p.device, dtype=p.dtype, copy=True)
                for s, p in zip(slow, params, strict=True)
            ]
        )

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, base={self.base!r})"


class SAM(_Wrapper):
    """Sharpness-Aware Minimization (Foret, Kleiner, Mobahi & Neyshabur 2021, arXiv:2010.01412).

    ``step(closure)`` evaluates the closure at ``w`` (gradient ``g``), moves to the worst case in
    the ``rho``-ball, ``w + e`` with ``e = rho * g / ||g||``, evaluates the closure there, restores
    ``w`` exactly and lets the base optimizer step with the gradient of the second pass. With
    ``adaptive=True`` it is ASAM (Kwon et al. 2021, arXiv:2102.11600): with ``T = |w| + eta``
    element-wise for weights and ``T = 1`` for biases (as in the authors' code),
    ``e = rho * T^2 g / ||T g||``; the authors use ``rho = 0.5``, ``eta = 0.01``.

    BatchNorm running statistics are updated by the first pass only: during the second pass every
    ``_BatchNorm`` of ``model`` has momentum 0 (as in davda54/sam's ``disable_running_stats``)
    and its ``num_batches_tracked`` is put back afterwards. Returns the loss of the first pass.
    """

    needs_closure = True
    passes_per_step = 2

    def __init__(
        self,
        base: Optimizer,
        model: nn.Module,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.01,
    ) -> None:
        super().__init__(base)
        self.model = model
        self.rho, self.adaptive = _positive("sam rho", rho), _flag("sam adaptive", adaptive)
        self.eta = _non_negative("sam eta", eta)
        self._saved: dict[int, torch.Tensor] = {}  # w during the second pass (transient)
        # ASAM scales weights only, as the authors' code does: the parameters named "bias"
        self._biases = {id(p) for name, p in model.named_parameters() if name.rpartition(".")[2] == "bias"}

    @torch.no_grad()
    def _perturb(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Move every parameter with a gradient to ``w + e``; return them and their saved ``w``."""
        params = [p for p in self._params() if p.grad is not None]
        if not params:
            return [], []
        saved = []
        for p in params:
            buf = self._saved.get(id(p))
            if buf is None or buf.shape != p.shape or buf.device != p.device or buf.dtype != p.dtype:
                buf = self._saved[id(p)] = torch.empty_like(p)
            saved.append(buf)
        torch._foreach_copy_(saved, params)
        grads = [p.grad for p in params if p.grad is not None]  # all of them: params have a gradient
        if self.adaptive:  # T = |w| + eta for weights, 1 for biases
            scale = [None if id(p) in self._biases else p.abs().add_(self.eta) for p in params]
            scaled = [g if t is None else g * t for g, t in zip(grads, scale, strict=True)]  # T g
            step = [s if t is None else s * t for s, t in zip(scaled, scale, strict=True)]  # T^2 g
        else:
            scaled = step = grads
        device = params[0].device
        norm = torch.linalg.vector_norm(torch.stack([n.to(device) for n in torch._foreach_norm(scaled)]))
        factor = self.rho / (norm + 1e-12)
        torch._foreach_add_(params, [s * factor.to(s.device) for s in step])
        return params, saved

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if closure is None:
            raise RuntimeError("SAM needs a closure: optimizer.step(closure) (see needs_closure)")
        with torch.enable_grad():
            loss = closure()
        params, saved = self._perturb()
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        counts = [None if m.num_batches_tracked is None else m.num_batches_tracked.clone() for m in norms]
        try:
            for m in norms:
                m.momentum = 0.0
            with torch.enable_grad():
                closure()
        finally:
            with torch.no_grad():
                for m, momentum, count in zip(norms, momenta, counts, strict=True):
                    m.momentum = momentum
                    if count is not None:
                        assert m.num_batches_tracked is not None  # count is its clone
                        m.num_batches_tracked.copy_(count)
                if params:
                    torch._foreach_copy_(params, saved)
        self.base.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "sam", "base": self.base.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_base(state_dict, "sam")

    def __repr__(self) -> str:
        return f"SAM(rho={self.rho}, adaptive={self.adaptive}, base={self.base!r})"


def _matrix_view(p: torch.Tensor) -> torch.Tensor:
    """``p`` as an ``(out, fan_in)`` matrix sharing its storage (channels_last: columns permuted).

    A channels_last filter is stored as ``(out, kh, kw, in)``; its matrix then has the columns in
    that order. Newton-Schulz orthogonalisation commutes with column permutations, so the update
    is the same as for the ``(out, in*kh*kw)`` matrix.
    """
    flat = p.detach()
    if flat.ndim > 2:
        if flat.is_contiguous():
            flat = flat.view(flat.shape[0], -1)
        elif flat.ndim == 4 and flat.is_contiguous(memory_format=torch.channels_last):
            flat = flat.permute(0, 2, 3, 1).reshape(flat.shape[0], -1)
        else:
            raise RunError(f"optimizer muon: a parameter of shape {tuple(p.shape)} has an unsupported layout")
        if flat.data_ptr() != p.data_ptr():
            raise RunError(f"optimizer muon: cannot view a parameter of shape {tuple(p.shape)} as a matrix")
    return flat


def _as_matrix(t: torch.Tensor, permuted: bool) -> torch.Tensor:
    """Gradient ``t`` laid out as :func:`_matrix_view` laid out its parameter (a view when it can)."""
    if t.ndim == 2:
        return t
    if permuted:  # the parameter is channels_last: its matrix columns are (kh, kw, in)
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
    return t.reshape(t.shape[0], -1)


class MuonHybrid(_Composite):
    """``torch.optim.Muon`` on weight matrices (conv filters flattened), another optimizer on the rest.

    Muon (Jordan 2024, https://kellerjordan.github.io/posts/muon/) accepts only 2-D parameters.
    Here each filter ``(out, in, kh, kw)`` is handed to torch's Muon as a view of shape
    ``(out, in*kh*kw)`` on the same storage, with its gradient reshaped alike, so torch's Muon
    update is applied to the real weights in place. ``param_groups`` are the Muon group (holding
    the real parameters) followed by the groups of ``aux``; LR schedulers may change any of them.
    With ``normalize`` each matrix is rescaled to Frobenius norm ``sqrt(rows)`` before its step
    (see :func:`muon`). Build it after the model is on its device and in its memory format.
    """

    def __init__(
        self,
        matrices: Sequence[torch.Tensor],
        aux: Optimizer | None,
        *,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        adjust_lr_fn: str = "original",
        normalize: bool = False,
    ) -> None:
        if not hasattr(torch.optim, "Muon"):
            raise RunError(f"optimizer muon needs torch >= 2.9 (this is torch {torch.__version__})")
        self.matrices = list(matrices)
        self._views = [_matrix_view(p) for p in self.matrices]
        self._permuted = [p.ndim > 2 and not p.is_contiguous() for p in self.matrices]
        self.normalize = bool(normalize)
        hyper = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        self.muon = torch.optim.Muon([{"params": self._views, **hyper}])
        # the public group: the real parameters and the Muon group's hyper-parameters
        self._muon_group: dict[str, Any] = {
            **{k: v for k, v in self.muon.param_groups[0].items() if k != "params"},
            "params": self.matrices,
            "name": "muon",
        }
        self.aux = aux
        self.state: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        self._init_optimizer()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [self._muon_group, *(self.aux.param_groups if self.aux is not None else [])]

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        raise AttributeError("MuonHybrid.param_groups cannot be replaced; change the groups in place")

    @property
    def defaults(self) -> dict[str, Any]:
        return {**self.muon.defaults, **(self.aux.defaults if self.aux is not None else {})}

    @defaults.setter
    def defaults(self, values: dict[str, Any]) -> None:
        raise AttributeError("MuonHybrid.defaults cannot be replaced; they are its optimizers' defaults")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise RunError("optimizer muon: parameter groups cannot be added after it is built")

    def _sync(self) -> None:
        inner = self.muon.param_groups[0]
        for key, value in self._muon_group.items():
            if key not in ("params", "name"):
                inner[key] = value

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for p, view, permuted in zip(self.matrices, self._views, self._permuted, strict=True):
            if view.data_ptr() != p.data_ptr():
                raise RuntimeError("MuonHybrid: the model's parameters moved after the optimizer was built")
            view.grad = None if p.grad is None else _as_matrix(p.grad, permuted)
            if self.normalize and view.grad is not None:  # no host sync: a zero matrix stays zero
                view.mul_(math.sqrt(view.shape[0]) / view.norm().clamp_min(1e-12))
        self._sync()
        self.muon.step()
        for view in self._views:
            view.grad = None
        if self.aux is not None:
            self.aux.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "muon",
            "muon": self.muon.state_dict(),
            "muon_group": {k: v for k, v in self._muon_group.items() if k != "params"},
            "aux": None if self.aux is None else self.aux.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, Mapping) or state_dict.get("kind") != "muon":
            raise RunError("the optimizer state to load is not a muon state (was the optimizer changed?)")
        if (state_dict["aux"] is None) != (self.aux is None):
            raise RunError("the muon state to load was saved for a model with other parameters")
        self.muon.load_state_dict(state_dict["muon"])
        self._muon_group.update({k: v for k, v in state_dict["muon_group"].items() if k != "params"})
        self._sync()
        if self.aux is not None:
            self.aux.load_state_dict(state_dict["aux"])

    def __repr__(self) -> str:
        hyper = {k: v for k, v in self._muon_group.items() if k not in ("params", "name")}
        return f"MuonHybrid({len(self.matrices)} matrices, {hyper}, aux={self.aux!r})"


BUILTIN_OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": sgd,
    "adamw": adamw,
    "lookahead": lookahead,
    "sam": sam,
    "muon": muon,
}


def _lookahead_passes(params: Mapping[str, Any]) -> int:
    """Lookahead adds no pass: its base's passes per step (SAM: 2), the base given the parameters
    lookahead passes on to it (not its own ``base``, ``k``, ``alpha``: a lookahead around a
    lookahead wraps ``sgd`` inside)."""
    from cifarbudget.plugins import get_registry

    base = get_registry("optimizers").get(str(params.get("base", "sgd"))).factory
    passes = getattr(base, "passes_per_step", 1)
    base_params = {k: v for k, v in params.items() if k not in ("base", "k", "alpha")}
    return int(passes(base_params) if callable(passes) else passes)


# Training-compute accounting before any optimizer is built (cifarbudget.compute.passes_per_step).
sam.passes_per_step = 2  # type: ignore[attr-defined]
lookahead.passes_per_step = _lookahead_passes  # type: ignore[attr-defined]
