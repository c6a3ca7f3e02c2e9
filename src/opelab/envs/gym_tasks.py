"""Gymnasium tasks as batched ``VectorTask``s: classic control in plain numpy, MuJoCo through gymnasium.

Every task simulates a batch of episodes at once: ``reset(n, rng)`` returns the states of ``n`` fresh
episodes (one row each), ``step(states, actions, rng)`` returns ``(next_states, rewards, terminated)`` and
``observe(states)`` what a policy sees. Episodes are cut at ``horizon`` by the caller (``collect``,
``rollout_values``); ``terminated`` marks the task's own terminal states only.

Classic control (CartPole-v1, Acrobot-v1, MountainCar-v0, Pendulum-v1, MountainCarContinuous-v0) is
re-implemented as vectorized numpy from the dynamics gymnasium documents (Barto, Sutton & Anderson 1983 for
the cart-pole; Sutton 1996 and Sutton & Barto 2018 for the acrobot, "book" dynamics, RK4 over 0.2 s; Moore
1990 for the mountain car), with the same constants, start distributions, rewards and termination rules.
The tests step gymnasium's own environments from the same states and compare. Observations are float64
(gymnasium returns float32 copies of the same float64 states).

MuJoCo tasks (Reacher-v5, InvertedPendulum-v5, Hopper-v5, Swimmer-v5; ``pip install "opelab[mujoco]"``)
keep the simulator state in the rows: ``[observation | qpos | qvel]``. One gymnasium environment steps the
rows one after the other (``set_state``, then the environment's own ``step``), so rewards and terminations
are gymnasium's. Initial states use the environment's own reset noise, drawn from a generator seeded by
``rng``, so the same seed gives the same episodes.
"""

from __future__ import annotations

import math

import numpy as np

from opelab.data import ActionSpace

MUJOCO_EXTRA = 'MuJoCo tasks need the mujoco extra: pip install "opelab[mujoco]" (gymnasium[mujoco])'


class BatchTask:
    """Shared parts of a batched task: name, horizon, discount, action space, observation shape.

    Subclasses implement ``reset`` and ``step`` (and ``observe`` when the state is not the observation).
    """

    name: str
    action_space: ActionSpace
    obs_shape: tuple[int, ...]

    def __init__(self, horizon: int, gamma: float) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon: expected a positive int, found {horizon!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.number)) or not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma: expected a float in [0, 1], found {gamma!r}")
        self.horizon = int(horizon)
        self.gamma = float(gamma)

    def observe(self, states: np.ndarray) -> np.ndarray:
        """What a policy sees of each state, shape (batch, *obs_shape). The states themselves by default."""
        return states

    def check_actions(self, actions: np.ndarray, batch: int) -> np.ndarray:
        """Actions as an array of the action space's shape; raises naming what was expected and found."""
        space = self.action_space
        actions = np.asarray(actions)
        if space.is_discrete:
            if actions.shape != (batch,) or not np.issubdtype(actions.dtype, np.integer):
                found = f"shape {actions.shape}, dtype {actions.dtype}"
                raise ValueError(f"actions: expected {batch} ints for {self.name}, found {found}")
            bad = (actions < 0) | (actions >= space.n_actions)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"actions: expected ints in [0, {space.n_actions}), found {actions[i]} at index {i}")
            return actions
        if actions.ndim == 1 and space.action_dim == 1:
            actions = actions[:, None]
        if actions.shape != (batch, space.action_dim):
            expected = (batch, space.action_dim)
            raise ValueError(f"actions: expected shape {expected} for {self.name}, found {actions.shape}")
        if not np.isfinite(actions).all():
            raise ValueError(f"actions: expected finite values, found {actions[~np.isfinite(actions)][0]}")
        return actions.astype(np.float64, copy=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, horizon={self.horizon}, gamma={self.gamma})"


# ---------------------------------------------------------------------------------------------- classic control
class CartPole(BatchTask):
    """CartPole-v1: keep a pole upright by pushing the cart left (0) or right (1) with 10 N.

    State (x, ẋ, θ, θ̇), Euler steps of τ = 0.02 s with
        temp = (F + m_p l θ̇² sin θ) / M,   θ̈ = (g sin θ − cos θ · temp) / (l (4/3 − m_p cos² θ / M)),
        ẍ = temp − m_p l θ̈ cos θ / M,
    g = 9.8, m_cart = 1, m_p = 0.1, M = 1.1, l = 0.5 (half the pole). Reward 1 per step (the failing step
    included); terminated when |x| > 2.4 or |θ| > 12°. Start: each coordinate uniform on [−0.05, 0.05].
    """

    name = "cartpole"
    gym_id = "CartPole-v1"
    action_space = ActionSpace.discrete(2)
    obs_shape = (4,)
    GRAVITY, CART_MASS, POLE_MASS, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * math.pi / 360

    def __init__(self, horizon: int = 200, gamma: float = 0.99) -> None:
        super().__init__(horizon, gamma)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-0.05, 0.05, size=(n, 4))

    def step(self, states, actions, rng):
        actions = self.check_actions(actions, len(states))
        x, x_dot, theta, theta_dot = states.T
        total = self.CART_MASS + self.POLE_MASS
        pole_moment = self.POLE_MASS * self.HALF_LENGTH
        force = np.where(actions == 1, self.FORCE, -self.FORCE)
        cos, sin = np.cos(theta), np.sin(theta)
        temp = (force + pole_moment * theta_dot**2 * sin) / total
        inertia = self.HALF_LENGTH * (4.0 / 3.0 - self.POLE_MASS * cos**2 / total)
        theta_acc = (self.GRAVITY * sin - cos * temp) / inertia
        x_acc = temp - pole_moment * theta_acc * cos / total
        tau = self.TAU
        nxt = np.stack([x + tau * x_dot, x_dot + tau * x_acc, theta + tau * theta_dot, theta_dot + tau * theta_acc], axis=1)
        done = (np.abs(nxt[:, 0]) > self.X_LIMIT) | (np.abs(nxt[:, 2]) > self.THETA_LIMIT)
        return nxt, np.ones(len(states)), done


def _wrap_angle(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Shift x by multiples of (high − low) into [low, high] (values already inside stay as they are)."""
    width = high - low
    shifted = np.where(x > high, x - width * np.ceil((x - high) / width), x)
    return np.where(shifted < low, shifted + width * np.ceil((low - shifted) / width), shifted)


class Acrobot(BatchTask):
    """Acrobot-v1: swing the tip of a two-link pendulum above the bar (torque −1, 0, +1 on the joint).

    State (θ₁, θ₂, θ̇₁, θ̇₂), observed as (cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂). One RK4 step of dt = 0.2 s
    of the "book" equations (Sutton & Barto, 2018, §16.3) with unit masses and lengths, centres of mass at
    0.5, moments of inertia 1, g = 9.8; angles wrapped to [−π, π], velocities clipped to ±4π and ±9π.
    Reward −1 per step, 0 on the step that reaches the goal −cos θ₁ − cos(θ₁ + θ₂) > 1 (terminal).
    Start: each coordinate uniform on [−0.1, 0.1].
    """

    name = "acrobot"
    gym_id = "Acrobot-v1"
    action_space = ActionSpace.discrete(3)
    obs_shape = (6,)
    DT, M1, M2, L1, LC1, LC2, I1, I2, G = 0.2, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 9.8
    MAX_VEL_1, MAX_VEL_2 = 4 * math.pi, 9 * math.pi

    def __init__(self, horizon: int = 500, gamma: float = 0.99) -> None:
        super().__init__(horizon, gamma)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-0.1, 0.1, size=(n, 4))

    def observe(self, states: np.ndarray) -> np.ndarray:
        t1, t2, d1, d2 = states.T
        return np.stack([np.cos(t1), np.sin(t1), np.cos(t2), np.sin(t2), d1, d2], axis=1)

    def _derivatives(self, s: np.ndarray, torque: np.ndarray) -> np.ndarray:
        t1, t2, dt1, dt2 = s.T
        m1, m2, l1, lc1, lc2, i1, i2, g = self.M1, self.M2, self.L1, self.LC1, self.LC2, self.I1, self.I2, self.G
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * np.cos(t2)) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * np.cos(t2)) + i2
        phi2 = m2 * lc2 * g * np.cos(t1 + t2 - math.pi / 2)
        phi1 = (
            -m2 * l1 * lc2 * dt2**2 * np.sin(t2)
            - 2 * m2 * l1 * lc2 * dt2 * dt1 * np.sin(t2)
            + (m1 * lc1 + m2 * l1) * g * np.cos(t1 - math.pi / 2)
            + phi2
        )
        ddt2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dt1**2 * np.sin(t2) - phi2) / (m2 * lc2**2 + i2 - d2**2 / d1)
        ddt1 = -(d2 * ddt2 + phi1) / d1
        return np.stack([dt1, dt2, ddt1, ddt2], axis=1)

    def step(self, states, actions, rng):
        actions = self.check_actions(actions, len(states))
        torque = actions.astype(np.float64) - 1.0
        h = self.DT
        k1 = self._derivatives(states, torque)
        k2 = self._derivatives(states + h / 2 * k1, torque)
        k3 = self._derivatives(states + h / 2 * k2, torque)
        k4 = self._derivatives(states + h * k3, torque)
        nxt = states + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        nxt[:, 0] = _wrap_angle(nxt[:, 0], -math.pi, math.pi)
        nxt[:, 1] = _wrap_angle(nxt[:, 1], -math.pi, math.pi)
        nxt[:, 2] = np.clip(nxt[:, 2], -self.MAX_VEL_1, self.MAX_VEL_1)
        nxt[:, 3] = np.clip(nxt[:, 3], -self.MAX_VEL_2, self.MAX_VEL_2)
        done = -np.cos(nxt[:, 0]) - np.cos(nxt[:, 1] + nxt[:, 0]) > 1.0
        return nxt, np.where(done, 0.0, -1.0), done


class MountainCar(BatchTask):
    """MountainCar-v0: drive an underpowered car up the right hill (push left 0, none 1, right 2).

    State (position, velocity): v' = clip(v + (a − 1)·0.001 − 0.0025 cos(3 x), ±0.07), x' = clip(x + v',
    −1.2, 0.6), and v' = 0 when the car hits the left wall. Reward −1 per step; terminated when x' ≥ 0.5.
    Start: position uniform on [−0.6, −0.4], velocity 0.
    """

    name = "mountaincar"
    gym_id = "MountainCar-v0"
    action_space = ActionSpace.discrete(3)
    obs_shape = (2,)
    MIN_X, MAX_X, MAX_SPEED, GOAL_X, FORCE, GRAVITY = -1.2, 0.6, 0.07, 0.5, 0.001, 0.0025

    def __init__(self, horizon: int = 200, gamma: float = 0.99) -> None:
        super().__init__(horizon, gamma)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.uniform(-0.6, -0.4, size=n), np.zeros(n)], axis=1)

    def step(self, states, actions, rng):
        actions = self.check_actions(actions, len(states))
        x, v = states.T
        v = np.clip(v + (actions - 1) * self.FORCE - self.GRAVITY * np.cos(3 * x), -self.MAX_SPEED, self.MAX_SPEED)
        x = np.clip(x + v, self.MIN_X, self.MAX_X)
        v = np.where((x == self.MIN_X) & (v < 0), 0.0, v)
        done = (x >= self.GOAL_X) & (v >= 0.0)
        return np.stack([x, v], axis=1), np.full(len(states), -1.0), done


class MountainCarContinuous(BatchTask):
    """MountainCarContinuous-v0: the mountain car with a force a ∈ [−1, 1] (one dimension).

    v' = clip(v + 0.0015·clip(a, −1, 1) − 0.0025 cos(3 x), ±0.07), x' = clip(x + v', −1.2, 0.6), v' = 0 at the
    left wall. Reward −0.1·a² (the unclipped action, as gymnasium), plus 100 on reaching x' ≥ 0.45 (terminal).
    """

    name = "mountaincar_continuous"
    gym_id = "MountainCarContinuous-v0"
    action_space = ActionSpace.continuous(1, low=(-1.0,), high=(1.0,))
    obs_shape = (2,)
    MIN_X, MAX_X, MAX_SPEED, GOAL_X, POWER, GRAVITY = -1.2, 0.6, 0.07, 0.45, 0.0015, 0.0025

    def __init__(self, horizon: int = 999, gamma: float = 0.99) -> None:
        super().__init__(horizon, gamma)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.uniform(-0.6, -0.4, size=n), np.zeros(n)], axis=1)

    def step(self, states, actions, rng):
        a = self.check_actions(actions, len(states))[:, 0]
        x, v = states.T
        v = v + np.clip(a, -1.0, 1.0) * self.POWER - self.GRAVITY * np.cos(3 * x)
        v = np.clip(v, -self.MAX_SPEED, self.MAX_SPEED)
        x = np.clip(x + v, self.MIN_X, self.MAX_X)
        v = np.where((x == self.MIN_X) & (v < 0), 0.0, v)
        done = (x >= self.GOAL_X) & (v >= 0.0)
        return np.stack([x, v], axis=1), np.where(done, 100.0, 0.0) - 0.1 * a**2, done


class Pendulum(BatchTask):
    """Pendulum-v1: swing a pendulum up and hold it with a torque u ∈ [−2, 2] (one dimension).

    State (θ, θ̇), observed as (cos θ, sin θ, θ̇). With u clipped to [−2, 2], g = 10, m = l = 1, dt = 0.05:
    θ̇' = clip(θ̇ + (3g/(2l) sin θ + 3u/(m l²)) dt, ±8), θ' = θ + θ̇' dt. Reward −(norm(θ)² + 0.1 θ̇² + 0.001 u²)
    with norm(θ) the angle in [−π, π). Never terminates. Start: θ uniform on [−π, π], θ̇ on [−1, 1].
    """

    name = "pendulum"
    gym_id = "Pendulum-v1"
    action_space = ActionSpace.continuous(1, low=(-2.0,), high=(2.0,))
    obs_shape = (3,)
    MAX_SPEED, MAX_TORQUE, DT, MASS, LENGTH = 8.0, 2.0, 0.05, 1.0, 1.0

    def __init__(self, horizon: int = 200, gamma: float = 0.99, g: float = 10.0) -> None:
        super().__init__(horizon, gamma)
        self.g = float(g)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform([-math.pi, -1.0], [math.pi, 1.0], size=(n, 2))

    def observe(self, states: np.ndarray) -> np.ndarray:
        return np.stack([np.cos(states[:, 0]), np.sin(states[:, 0]), states[:, 1]], axis=1)

    def step(self, states, actions, rng):
        u = np.clip(self.check_actions(actions, len(states))[:, 0], -self.MAX_TORQUE, self.MAX_TORQUE)
        theta, theta_dot = states.T
        normalized = (theta + math.pi) % (2 * math.pi) - math.pi
        cost = normalized**2 + 0.1 * theta_dot**2 + 0.001 * u**2
        accel = 3 * self.g / (2 * self.LENGTH) * np.sin(theta) + 3.0 / (self.MASS * self.LENGTH**2) * u
        theta_dot = np.clip(theta_dot + accel * self.DT, -self.MAX_SPEED, self.MAX_SPEED)
        return np.stack([theta + theta_dot * self.DT, theta_dot], axis=1), -cost, np.zeros(len(states), dtype=bool)


# ---------------------------------------------------------------------------------------------- MuJoCo
def mujoco_available() -> bool:
    """Whether gymnasium's MuJoCo environments can be built here."""
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True


class MujocoTask(BatchTask):
    """A gymnasium MuJoCo environment stepped row by row from states ``[observation | qpos | qvel]``.

    Rewards, terminations and initial-state noise are gymnasium's (``env_kwargs`` go to ``gymnasium.make``).
    Stepping restores each row with ``set_state`` first, so a row's next state depends only on its state
    and action (up to the solver's warm start, which carries over from the previous row).
    """

    def __init__(self, name: str, gym_id: str, horizon: int, gamma: float, **env_kwargs) -> None:
        super().__init__(horizon, gamma)
        if not mujoco_available():
            raise ImportError(f"{name}: {MUJOCO_EXTRA}")
        import gymnasium

        self.name, self.gym_id = name, gym_id
        self.env = gymnasium.make(gym_id, **env_kwargs).unwrapped
        space = self.env.action_space
        dim = int(space.shape[0])
        self.action_space = ActionSpace.continuous(dim, low=space.low.tolist(), high=space.high.tolist())
        self.obs_shape = tuple(int(d) for d in self.env.observation_space.shape)
        self.nq, self.nv = int(self.env.model.nq), int(self.env.model.nv)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        env = self.env
        env.np_random = np.random.default_rng(rng.integers(2**63))
        states = np.empty((n, self.obs_shape[0] + self.nq + self.nv))
        for i in range(n):
            obs, _ = env.reset()
            states[i] = self._row(obs)
        return states

    def _row(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, self.env.data.qpos, self.env.data.qvel])

    def observe(self, states: np.ndarray) -> np.ndarray:
        return states[:, : self.obs_shape[0]]

    def step(self, states, actions, rng):
        actions = self.check_actions(actions, len(states))
        env, k = self.env, self.obs_shape[0]
        nxt = np.empty_like(states)
        rewards = np.empty(len(states))
        done = np.zeros(len(states), dtype=bool)
        for i in range(len(states)):
            env.set_state(states[i, k : k + self.nq], states[i, k + self.nq :])
            obs, rewards[i], done[i], _, _ = env.step(actions[i])
            nxt[i] = self._row(obs)
        return nxt, rewards, done


def reacher(horizon: int = 30, gamma: float = 0.99, **env_kwargs) -> MujocoTask:
    """Reacher-v5: move a two-joint arm's tip to a random target (reward −distance − control cost)."""
    return MujocoTask("reacher", "Reacher-v5", horizon, gamma, **env_kwargs)


def inverted_pendulum(horizon: int = 100, gamma: float = 0.99, **env_kwargs) -> MujocoTask:
    """InvertedPendulum-v5: balance a pole on a cart (reward 1 per step; terminated when |angle| > 0.2)."""
    return MujocoTask("inverted_pendulum", "InvertedPendulum-v5", horizon, gamma, **env_kwargs)


def hopper(horizon: int = 30, gamma: float = 0.99, **env_kwargs) -> MujocoTask:
    """Hopper-v5: hop forward (healthy bonus + forward velocity − control cost; terminated when unhealthy)."""
    return MujocoTask("hopper", "Hopper-v5", horizon, gamma, **env_kwargs)


def swimmer(horizon: int = 100, gamma: float = 0.99, **env_kwargs) -> MujocoTask:
    """Swimmer-v5: swim forward in a viscous fluid (forward velocity − control cost; never terminates)."""
    return MujocoTask("swimmer", "Swimmer-v5", horizon, gamma, **env_kwargs)
