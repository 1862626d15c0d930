"""``Optimizer``: the base class that holds parameters, their hyper-parameters and their state.

The API mirrors ``torch.optim.Optimizer`` so that what a learner knows transfers:

    opt = AdamW(model.parameters(), lr=1e-3)          # or a list of param-group dicts
    loss.backward(); opt.step(); opt.zero_grad()

* ``param_groups`` is a list of dicts. Each has ``"params"`` (a list of Parameters) and every
  hyper-parameter (``"lr"``, ``"betas"``, ...). A schedule changes ``group["lr"]`` between steps.
* ``state[p]`` is a dict per parameter (moment estimates, step count), created on its first step.
* ``state_dict()`` returns plain data: NumPy arrays for the tensors of the state and JSON-able
  scalars for everything else, with parameters replaced by their position (0, 1, 2, ... across the
  groups). ``minillm.training.checkpoint`` stores the arrays in safetensors and the rest in JSON; no pickle.

A subclass implements only ``_update(p, grad, state, group)``: the update rule for one parameter,
written as its paper writes it. Its in-place, threaded twin lives in the fast layer.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor, no_grad
from ..fast.dispatch import lookup


class Optimizer:
    """Base class of every optimizer.

    Args:
        params: an iterable of Parameters, or of dicts ``{"params": [...], "lr": ..., ...}`` (param
            groups, each with its own options; options a group leaves out come from ``defaults``).
        defaults: the default hyper-parameters of this optimizer (``{"lr": 1e-3, ...}``).
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Parameters or dicts, e.g. model.parameters(), "
                            "not a single Tensor")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters with its own options (e.g. no weight decay for biases)."""
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
        ids = [id(p) for p in group["params"]]
        if len(set(ids)) != len(ids):
            raise ValueError("a parameter group lists the same parameter twice (it would be updated twice)")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(i in seen for i in ids):
            raise ValueError("some parameters appear in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    # ------------------------------------------------------------------ the training-loop API
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``p.grad = None`` (or zero them in place with ``set_to_none=False``)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self) -> None:
        """Update every parameter that requires grad and has a gradient; skip the others.

        Runs inside ``no_grad()`` and writes ``p.data`` in place, so references to the array
        (views, the model's tied weights) see the new values. The reference path updates one
        parameter after another in this thread with ``_update``. When the fast layer is on and
        has registered a subclass of this optimizer's class (``minillm/fast/cpu_optim.py``: in
        place, over threads), that subclass's ``update_all`` runs instead, on this optimizer's
        groups and state (``viewed_as``).
        """
        jobs = []
        for group in self.param_groups:
            for p in group["params"]:
                if not p.requires_grad or p.grad is None:
                    continue
                if p.grad.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}.step: gradient of shape {p.grad.shape} "
                                     f"for a parameter of shape {p.data.shape}")
                jobs.append((p, p.grad, self.state.setdefault(p, {}), group))
        fast = lookup(type(self), *[p.data for p, *_ in jobs])
        with no_grad():
            (self if fast is None else self.viewed_as(fast)).update_all(jobs)

    def update_all(self, jobs: list) -> None:
        """Apply ``_update`` to each ``(p, grad, state, group)`` of ``jobs``, one after another."""
        for p, grad, state, group in jobs:
            self._update(p, grad, state, group)

    def viewed_as(self, cls: type) -> "Optimizer":
        """This optimizer as an instance of ``cls``, a subclass: the same attribute dict (groups,
        state), not a copy, so what ``cls``'s methods change is changed here."""
        if not issubclass(cls, type(self)):
            raise TypeError(f"viewed_as: {cls.__name__} is not a subclass of {type(self).__name__}")
        view = object.__new__(cls)
        view.__dict__ = self.__dict__
        return view

    def _update(self, p, grad, state: dict, group: dict) -> None:  # pragma: no cover - abstract
        """Apply the update rule to one parameter ``p`` (in place) given its gradient."""
        raise NotImplementedError(f"{type(self).__name__} has no update rule")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The optimizer as plain data: ``{"state": {index: {name: array or scalar}}, "param_groups": [...]}``.

        Parameters are replaced by their index, counted across the groups in order. Arrays are
        NumPy (copied from the GPU when needed); scalars are Python ints/floats.
        """
        index_of: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
                packed["params"].append(index_of[id(p)])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index_of[id(p)]] = {name: _to_plain(value) for name, value in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a ``state_dict()``: hyper-parameters of each group (lr included) and per-parameter state.

        The optimizer must have been built over the same parameters, in the same groups and order.
        Arrays are moved to each parameter's device and cast to its dtype.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the checkpoint has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        params_by_index = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"load_state_dict: group {i} has {len(saved['params'])} parameters in the "
                                 f"checkpoint, {len(group['params'])} in this optimizer")
            params_by_index.update(zip(saved["params"], group["params"]))
        for saved, group in zip(saved_groups, self.param_groups):
            for key, value in saved.items():
                if key == "params":
                    continue
                # JSON turns tuples (betas, eps) into lists: give them back their original type.
                if isinstance(value, list) and isinstance(group.get(key, self.defaults.get(key)), tuple):
                    value = tuple(value)
                group[key] = value
        self.state = {}
        for index, saved in state_dict["state"].items():
            p = params_by_index[int(index)]
            xp = backend.get_array_module(p.data)
            restored = {}
            for name, value in saved.items():
                if isinstance(value, np.ndarray) or backend.is_cupy_array(value):
                    if xp is np:
                        value = np.array(backend.to_device(value, "cpu"), dtype=p.data.dtype)
                    else:
                        value = backend.to_device(value, p.device).astype(p.data.dtype, copy=True)
                restored[name] = value
            self.state[p] = restored

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            options = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {options}")
        return "\n".join(lines) + "\n)"


def _to_plain(value):
    """A state value as NumPy array (a copy) or Python scalar, ready for safetensors/JSON."""
    if isinstance(value, np.ndarray) or backend.is_cupy_array(value):
        if value.ndim == 0:
            return value.item()
        return np.array(backend.to_device(value, "cpu"), copy=True)
    if isinstance(value, np.generic):
        return value.item()
    return value

