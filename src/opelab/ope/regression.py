"""Cross-fitted reward models q̂(x, a) = Ê[r | x, a] for one-step (bandit) logs, on scikit-learn estimators.

``fit_reward_model(dataset)`` regresses the logged reward of each round on the features

    φ(x_i, a[, k]) = [ x_i  |  e_a (one-hot, A columns) or info.action_features[a]  |  e_k (one-hot, len_list) ]

(the context ``observations[:, 0]`` flattened, the action, and the position k when ``dataset.positions`` is
given) and predicts q̂(x_i, a) for every logged round i and every action a, at the round's logged position.
The result is one (n, A) float64 table that every evaluation policy shares: the direct method reads
V̂(x_i) = Σ_a π(a | x_i) q̂(x_i, a) and the doubly robust forms read q̂(x_i, a_i) too (Dudík, Langford & Li,
2011). ``RewardModel.q_and_v(pi)`` gives both in the (P, n, 1) layout of ``OPEInput``, with the
policy-independent q̂(x_i, a_i) as a read-only broadcast view, never copied per policy.

Model: any scikit-learn estimator (cloned for every fold with ``sklearn.base.clone``). The default is
``HistGradientBoostingClassifier`` when every reward is 0 or 1 (q̂ = ``predict_proba[:, 1]``, the
probability of reward 1) and ``HistGradientBoostingRegressor`` otherwise, both with a fixed
``random_state`` and ``DEFAULT_MAX_ITER`` boosting iterations (sized so that 10^6 rounds of 10 actions fit
and predict in under 30 s on one core; prediction, n·A rows, dominates). A classifier given by the user is used the
same way and needs 0/1 rewards.

Cross-fitting (``n_folds = K > 1``, Chernozhukov et al., 2018): the rounds are split into K random folds
(``fold_seed``; the same split as ``build_inputs`` and ``estimate_pscores`` with the same seed) and each
fold's predictions come from the model fit on the other K − 1 folds, so no round's q̂ has seen its own
reward. K = 1 fits and predicts on every round.

The design follows the regression model of the Open Bandit Pipeline (Saito et al., 2021: context, action
one-hot or action context, position, K-fold cross-fitting); unlike OBP, which predicts every position
((n, A, len_list)), q̂ is predicted at the logged position only, which is what the estimators read.
Prediction runs over chunks of rows of the expanded (round, action) feature matrix (a few MiB each), so the
(n·A, features) matrix is never built.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from opelab.data import LoggedDataset
from opelab.data.behavior import fold_indices
from opelab.data.validation import freeze
from opelab.ope.inputs import OPEInputError

# the default models' boosting: 30 iterations at learning rate 0.2 fit about as well as 50 at sklearn's 0.1 and
# keep 10^6 rounds × 10 actions (10^7 predicted rows) under 30 s on one core
DEFAULT_MAX_ITER = 30
DEFAULT_LEARNING_RATE = 0.2
CHUNK_BYTES = 2**22  # default size of a chunk of the expanded feature matrix: it stays in cache while every tree reads it
CHUNK_ROWS = 2**16  # ... and at most this many of its rows


@dataclass(frozen=True, eq=False)
class RewardModel:
    """q̂(x_i, a) on every logged round, from a model fit over ``n_folds`` folds (module docstring).

    q         (n, A) float64, read-only: q̂(x_i, a) at round i's context and logged position
    q_logged  (n,) float64, read-only: q̂(x_i, a_i), the logged action's entry
    models    the fitted estimator of each fold (a ``DummyRegressor`` where a fold's training rewards are
              all equal, which a classifier cannot fit)
    uses_proba  True when q̂ is a classifier's probability of reward 1
    """

    q: np.ndarray  # (n, A)
    q_logged: np.ndarray  # (n,)
    n_folds: int
    fold_seed: int
    models: tuple[Any, ...]
    uses_proba: bool

    def q_and_v(self, eval_action_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the estimators read for P evaluation policies, as ``OPEInput.q_hat`` and ``OPEInput.v_hat``.

        ``eval_action_probs``: π(· | x_i) of shape (P, n, A), or (P, n, 1, A) as ``OPEInput`` holds it.
        Returns q_hat (P, n, 1) = q̂(x_i, a_i), a read-only broadcast view of ``q_logged`` (stride 0 on the
        policy axis), and v_hat (P, n, 1) = Σ_a π(a | x_i) q̂(x_i, a), the direct method's per-round value.
        """
        pi = np.asarray(eval_action_probs, dtype=np.float64)
        n, A = self.q.shape
        if pi.ndim == 4 and pi.shape[2] == 1:
            pi = pi[:, :, 0]  # a view
        if pi.ndim != 3 or pi.shape[1:] != (n, A):
            raise OPEInputError(
                f"eval_action_probs: expected shape (P, n={n}, A={A}) or (P, {n}, 1, {A}), found {np.shape(eval_action_probs)}"
            )
        P = pi.shape[0]
        q_hat = np.broadcast_to(self.q_logged[None, :, None], (P, n, 1))  # read-only, no copy per policy
        v_hat = np.einsum("pna,na->pn", pi, self.q)[:, :, None]  # (P, n, 1); no (P, n, A) temporary
        return q_hat, freeze(v_hat)


def default_reward_model(binary: bool) -> Any:
    """The default estimator: a histogram gradient-boosted classifier of P(r = 1 | x, a) for 0/1 rewards, a
    regressor of E[r | x, a] otherwise (``DEFAULT_MAX_ITER`` iterations at ``DEFAULT_LEARNING_RATE``,
    ``random_state`` 0; sklearn's early stopping on a 10% validation split above 10 000 rounds)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if binary else HistGradientBoostingRegressor
    return cls(max_iter=DEFAULT_MAX_ITER, learning_rate=DEFAULT_LEARNING_RATE, random_state=0)


def fit_reward_model(
    dataset: LoggedDataset,
    model: Any = None,
    n_folds: int = 1,
    fold_seed: int = 0,
    *,
    chunk_rows: int | None = None,
) -> RewardModel:
    """Fit q̂(x, a) on the rounds of a one-step ``dataset`` and predict it for every round and action.

    ``model``: a scikit-learn estimator (anything with ``fit`` and ``predict``; a classifier also needs
    ``predict_proba`` and 0/1 rewards), cloned for each of the ``n_folds`` cross-fitting folds of rounds
    (``fold_seed``); None takes ``default_reward_model``. ``chunk_rows`` bounds the rows of the expanded
    (round, action) matrix predicted at once (at least one round's A rows); None takes as many as fit in
    ``CHUNK_BYTES`` (4 MiB), at most ``CHUNK_ROWS``: tree ensembles predict a chunk once per tree, and a chunk
    that stays in cache predicts about twice as fast as a larger one. See the module docstring for the features.
    """
    from sklearn.base import clone, is_classifier
    from sklearn.dummy import DummyRegressor

    features = _check_dataset(dataset)
    n = dataset.n_trajectories
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or not 1 <= n_folds <= n:
        raise OPEInputError(f"n_folds: expected an int in [1, n_rounds = {n}], found {n_folds!r}")
    if isinstance(fold_seed, bool) or not isinstance(fold_seed, (int, np.integer)):
        raise OPEInputError(f"fold_seed: expected an int, found {fold_seed!r}")
    if chunk_rows is None:
        chunk_rows = max(1, min(CHUNK_ROWS, CHUNK_BYTES // (8 * features.width)))
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise OPEInputError(f"chunk_rows: expected a positive int or None, found {chunk_rows!r}")
    rewards = np.asarray(dataset.rewards[:, 0], dtype=np.float64)
    binary = bool(np.isin(rewards, (0.0, 1.0)).all())
    if model is None:
        model = default_reward_model(binary)
    if isinstance(model, type):
        raise OPEInputError(f"model: expected an estimator instance, found the class {model.__name__}; give {model.__name__}()")
    for method in ("fit", "predict"):
        if not callable(getattr(model, method, None)):
            raise OPEInputError(f"model: expected a scikit-learn estimator with fit and predict, found {type(model).__name__} without {method}")
    uses_proba = is_classifier(model)
    if uses_proba:
        if not callable(getattr(model, "predict_proba", None)):
            raise OPEInputError(f"model: expected a classifier with predict_proba, found {type(model).__name__} without it")
        if not binary:
            bad = int(np.flatnonzero(~np.isin(rewards, (0.0, 1.0)))[0])
            raise OPEInputError(
                f"model: a classifier ({type(model).__name__}) needs rewards in {{0, 1}}, found {rewards[bad]!r} at round {bad}; "
                "give a regressor"
            )

    q = np.empty((n, features.n_actions))
    fitted = []
    for train, test in fold_indices(n, int(n_folds), int(fold_seed)):
        X, y = features.logged(train), rewards[train]
        if uses_proba and np.all(y == y[0]):  # one class: a classifier cannot be fit, the answer is known
            estimator, column = DummyRegressor(strategy="constant", constant=y[0]).fit(X[:1], y[:1]), None
        else:
            estimator = clone(model, safe=False).fit(X, y)
            column = int(np.flatnonzero(estimator.classes_ == 1)[0]) if uses_proba else None
        del X  # the training matrix is not held while predicting
        for rows in _chunks(test, max(1, int(chunk_rows) // features.n_actions)):
            expanded = features.expanded(rows)  # (len(rows) · A, d)
            if column is None:
                values = estimator.predict(expanded)
            else:
                values = estimator.predict_proba(expanded)[:, column]
            q[rows] = np.asarray(values, dtype=np.float64).reshape(len(rows), features.n_actions)
        fitted.append(estimator)
    if not np.isfinite(q).all():
        raise OPEInputError(f"model: expected finite predictions, found {q[~np.isfinite(q)][0]!r} from {type(model).__name__}")
    q_logged = np.take_along_axis(q, features.actions[:, None], axis=1)[:, 0]
    return RewardModel(freeze(q), freeze(q_logged), int(n_folds), int(fold_seed), tuple(fitted), uses_proba)


@dataclass(frozen=True)
class _RewardFeatures:
    """φ(x_i, a[, k]) rows (module docstring): the context block per round, the action block per action and
    the one-hot position block per round."""

    context: np.ndarray  # (n, d_x) float64
    actions: np.ndarray  # (n,) intp, the logged actions
    action_block: np.ndarray  # (A, d_a): the identity or info.action_features
    positions: np.ndarray | None  # (n,) int64, the logged positions
    n_positions: int

    @property
    def n_actions(self) -> int:
        return self.action_block.shape[0]

    @property
    def width(self) -> int:
        """Number of feature columns d."""
        return self.context.shape[1] + self.action_block.shape[1] + (self.n_positions if self.positions is not None else 0)

    def _blocks(self, rounds: np.ndarray, actions: np.ndarray | None) -> np.ndarray:
        """(m, a, d) features of ``rounds`` with their logged ``actions`` (a = 1) or, for None, every action
        (a = A), written into one array by broadcasting."""
        m, dx, da = len(rounds), self.context.shape[1], self.action_block.shape[1]
        out = np.zeros((m, 1 if actions is not None else self.n_actions, self.width))
        out[:, :, :dx] = self.context[rounds][:, None]
        out[:, :, dx : dx + da] = self.action_block[None] if actions is None else self.action_block[actions][:, None]
        if self.positions is not None:
            out[np.arange(m), :, dx + da + self.positions[rounds]] = 1.0
        return out

    def logged(self, rounds: np.ndarray) -> np.ndarray:
        """Features of the logged (x_i, a_i, k_i) of ``rounds``, (m, d)."""
        return self._blocks(rounds, self.actions[rounds])[:, 0]

    def expanded(self, rounds: np.ndarray) -> np.ndarray:
        """Features of (x_i, a, k_i) for every round of ``rounds`` and every action a, round-major, (m · A, d)."""
        blocks = self._blocks(rounds, None)
        return blocks.reshape(-1, blocks.shape[2])


def _chunks(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _check_dataset(dataset: LoggedDataset) -> _RewardFeatures:
    if not isinstance(dataset, LoggedDataset):
        raise OPEInputError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    if dataset.horizon != 1:
        raise OPEInputError(
            f"dataset: expected one-step (bandit) logs with horizon 1 for a reward model, found horizon {dataset.horizon}; "
            "fit Q̂ of trajectories by FQE (build_inputs(q_function='fqe' or 'neural_fqe'))"
        )
    space = dataset.action_space
    if not space.is_discrete:
        raise OPEInputError(f"dataset: expected discrete actions for a reward model, found {space.type} actions")
    n = dataset.n_trajectories
    context = np.asarray(dataset.observations[:, 0], dtype=np.float64).reshape(n, -1)
    block = dataset.info.action_features
    if block is None:
        block = np.eye(space.n_actions)
    positions = None if dataset.positions is None else np.asarray(dataset.positions[:, 0])
    return _RewardFeatures(
        context=context,
        actions=np.asarray(dataset.actions[:, 0], dtype=np.intp),
        action_block=block,
        positions=positions,
        n_positions=dataset.info.len_list or 0,
    )
