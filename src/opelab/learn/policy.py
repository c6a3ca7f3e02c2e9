"""``LearnedPolicy``: a trained d3rlpy algorithm as a base for opelab's heads.

Discrete algorithms (``double_dqn``, ``discrete_cql``, ``discrete_bcq``) expose Q-values: ``action_values(obs)``
is Q̂(s, ·), shape (batch, n_actions), computed with d3rlpy's ``predict_value`` on every (observation, action)
pair in one batched call. A ``LearnedPolicy`` therefore satisfies the ``ActionValues`` protocol, and the heads
wrap it directly: ``GreedyPolicy(lp)``, ``SoftmaxPolicy(lp, τ)``, ``EpsilonGreedyPolicy(GreedyPolicy(lp), ε)``.

Continuous algorithms (``sac``, ``cql``, ``iql``, ``td3_plus_bc``, ``bcq``) expose their deterministic action:
``lp(obs)`` is d3rlpy's ``predict`` (the actor's mean, or BCQ's best perturbed action, squashed and rescaled to
the task's box), shape (batch, action_dim), the base μ(s) that ``GaussianPolicy`` and
``TruncatedGaussianPolicy`` take. BCQ's own ``predict`` is random (it decodes ``n_action_samples`` candidate
actions from fresh VAE latents and keeps the one the first critic values most), so μ(s) would change from
call to call and pscores would not match the sampled actions; ``lp(obs)`` runs the same rule with one fixed
set of latents (drawn once from seed 0, clipped to [−0.5, 0.5] as d3rlpy does) shared by every observation,
which makes μ a function of s (common random numbers). For discrete algorithms ``lp(obs)`` is ``predict`` too:
the argmax of Q̂ for DQN and CQL; for discrete BCQ the argmax over the actions its imitator allows (so
``GreedyPolicy(lp)``, the plain argmax of Q̂, may differ from ``lp(obs)`` there). ``q_values(obs, actions)``
evaluates Q̂ at given actions.

Saving writes opelab's policy file (``opelab.learn.policy_file``): one safetensors file holding the weights of
every network and, in its header, a JSON document with the format version, the opelab algorithm, hidden sizes,
action space, name, observation shape, action size and d3rlpy's serialised config (scalers included). Opening
it runs no code: no pickle, no ``torch.load``. ``LearnedPolicy.load`` tells the format by content; d3rlpy's own
``.d3`` file is a pickle and is refused (``UnsafeModelError``) unless ``trust_pickle=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from opelab.data import ActionSpace
from opelab.learn.algorithms import ALGORITHMS, check_hidden, hidden_label
from opelab.learn.policy_file import read_policy_file, write_policy_file

__all__ = ["LearnedPolicy"]


class LearnedPolicy:
    """A trained d3rlpy algorithm with opelab's batched interfaces (see the module docstring).

    ``algorithm`` is the opelab short name (``ALGORITHMS``), ``hidden`` the MLP sizes, ``action_space`` the
    task's. ``name`` defaults to ``"<algorithm>_<hidden>"``, e.g. ``"discrete_cql_64x64"``.
    """

    def __init__(
        self,
        algo: Any,
        algorithm: str,
        hidden: Sequence[int],
        action_space: ActionSpace,
        name: str | None = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm: expected one of {list(ALGORITHMS)}, found {algorithm!r}")
        if not isinstance(action_space, ActionSpace):
            raise TypeError(f"action_space: expected an opelab ActionSpace, found {type(action_space).__name__}")
        if getattr(algo, "impl", None) is None:
            raise ValueError("algo: expected a built d3rlpy algorithm (trained or loaded), found one without networks")
        spec = ALGORITHMS[algorithm]
        if spec.action_type != action_space.type:
            raise ValueError(
                f"action_space: expected {spec.action_type} actions for {algorithm}, found {action_space.type}"
            )
        size = action_space.n_actions if action_space.is_discrete else action_space.action_dim
        if int(algo.action_size) != size:
            raise ValueError(f"algo.action_size: expected {size} (from action_space), found {algo.action_size}")
        self.algo = algo
        self.algorithm = algorithm
        self.hidden = check_hidden(hidden)
        self.action_space = action_space
        self.name = name or f"{algorithm}_{hidden_label(self.hidden)}"

    @property
    def is_discrete(self) -> bool:
        return self.action_space.is_discrete

    @property
    def n_actions(self) -> int:
        """Number of actions (discrete algorithms only, so that only they satisfy ``ActionValues``)."""
        if not self.is_discrete:
            raise AttributeError(f"n_actions: {self.name} has continuous actions (action_dim = {self.action_dim})")
        return self.action_space.n_actions

    @property
    def action_dim(self) -> int:
        return 1 if self.is_discrete else self.action_space.action_dim

    def _observations(self, observations: np.ndarray) -> np.ndarray:
        obs = np.asarray(observations)
        if obs.ndim == 1 and self.algo.impl.observation_shape == (1,):
            obs = obs[:, None]  # scalar state ids, as to_d3rlpy writes them
        expected = tuple(self.algo.impl.observation_shape)
        if obs.shape[1:] != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(f"observations: expected shape (batch, {shape}), found {obs.shape}")
        return obs.astype(np.float32, copy=False)

    def action_values(self, observations: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """Q̂(s, a) for every action, shape (batch, n_actions), float64 (discrete algorithms)."""
        if not self.is_discrete:
            raise TypeError(f"action_values: {self.name} has continuous actions; call it for μ(s) or use q_values")
        obs = self._observations(observations)
        batch, A = len(obs), self.n_actions
        if batch == 0:
            return np.zeros((0, A))
        repeated = np.repeat(obs, A, axis=0)  # (batch·A, *obs_shape): each observation once per action
        actions = np.tile(np.arange(A), batch)
        return np.asarray(self.algo.predict_value(repeated, actions), dtype=np.float64).reshape(batch, A)

    def q_values(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Q̂(s, a) of given actions, shape (batch,), float64."""
        obs = self._observations(observations)
        actions = np.asarray(actions)
        if self.is_discrete:
            actions = actions.reshape(len(obs)).astype(np.int64)
        else:
            actions = actions.reshape(len(obs), self.action_dim).astype(np.float32)
        return np.asarray(self.algo.predict_value(obs, actions), dtype=np.float64)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """The algorithm's deterministic action: (batch,) int64 (discrete) or (batch, action_dim) float64."""
        obs = self._observations(observations)
        if len(obs) == 0:
            return np.zeros((0,) if self.is_discrete else (0, self.action_dim))
        if self.algorithm == "bcq":
            actions = self._bcq_actions(obs)
        else:
            actions = np.asarray(self.algo.predict(obs))
        if self.is_discrete:
            return actions.reshape(len(obs)).astype(np.int64)
        return actions.reshape(len(obs), self.action_dim).astype(np.float64)

    def _bcq_actions(self, obs: np.ndarray) -> np.ndarray:
        """BCQ's best-of-n perturbed VAE actions with latents fixed across calls (see the module docstring)."""
        import torch

        impl, config = self.algo.impl, self.algo.config
        n, A = int(impl._n_action_samples), self.action_dim
        latent = torch.randn(n, 2 * A, generator=torch.Generator().manual_seed(0)).clamp(-0.5, 0.5)
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32)
            if config.observation_scaler is not None:
                x = config.observation_scaler.transform(x)
            batch = len(x)
            repeated = x.repeat_interleave(n, dim=0)  # (batch·n, *obs_shape), observation-major
            decoded = impl._modules.vae_decoder(repeated, latent.repeat(batch, 1))
            candidates = impl._modules.policy(repeated, decoded).squashed_mu  # (batch·n, A)
            values = impl._q_func_forwarder.compute_expected_q(repeated, candidates, "none")[0].view(batch, n)
            best = candidates.view(batch, n, A)[torch.arange(batch), values.argmax(dim=1)]
            if config.action_scaler is not None:
                best = config.action_scaler.reverse_transform(best)
        return best.numpy()

    def save(self, path: str | PathLike[str]) -> Path:
        """Write the policy as an opelab policy file (safetensors, conventionally ``*.safetensors``; other suffixes
        are written as given, the format is told by content) and return its path. Optimizer states are not saved
        (``self.algo.save(path)`` writes d3rlpy's ``.d3`` pickle with them, for d3rlpy's own tools)."""
        return write_policy_file(
            path, self.algo, algorithm=self.algorithm, hidden=self.hidden, action_space=self.action_space,
            name=self.name,
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | PathLike[str], name: str | None = None, *, trust_pickle: bool = False) -> LearnedPolicy:
        """Load what ``save`` wrote; ``name`` overrides the saved name.

        Raises ``ModelFileError`` (a ``ValueError``, one line) on a file that is not a readable policy file and
        ``UnsafeModelError`` on a pickle such as d3rlpy's ``.d3``, which is read (``d3rlpy.load_learnable``, the
        algorithm, sizes and action box recovered from its config) only with ``trust_pickle=True``: opening a
        pickle runs code stored in it, so pass it only for files you made yourself.
        """
        algo, document = read_policy_file(path, trust_pickle=trust_pickle)
        return cls(algo, document.algorithm, document.hidden, document.action_space, name=name or document.name)

    def __repr__(self) -> str:
        return f"LearnedPolicy(name={self.name!r}, algorithm={self.algorithm!r}, hidden={self.hidden})"
