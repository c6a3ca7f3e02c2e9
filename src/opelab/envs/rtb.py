"""Real-time bidding under a budget: a synthetic, vectorized model of an advertiser's bidding agent.

Written from the published descriptions of budget-constrained bidding as an MDP (Cai et al., "Real-Time
Bidding by Reinforcement Learning in Display Advertising", WSDM 2017; Wu et al., "Budget Constrained
Bidding by Model-free Reinforcement Learning in Display Advertising", CIKM 2018) and of the RTB simulator
used to benchmark offline RL and OPE (Kiyohara et al., "Accelerating Offline Reinforcement Learning
Application in Real-Time Bidding and Recommendation: Potential Use of Simulation", 2021): an episode is one
day split into ``horizon`` time slots; in each slot the agent picks a bid multiplier λ, and the bidder then
takes part in ``n_auctions`` second-price auctions with bids λ · v · p̂ (value per click × predicted CTR).

Auction k of slot t (all draws independent across episodes, slots and auctions):
    impression score  q_k = w·x_k ~ N(0, ω²)  (features x_k ~ N(0, I) seen through a linear CTR model with
                      ‖w‖ = ω; only the score matters below, so it is drawn directly: ω = ``ctr_spread``)
    p̂_k = σ(β₀ + q_k)                                                predicted = true click probability
    market price m_k = exp(μ_t + κ q_k + s ε_k), ε_k ~ N(0, 1)        lognormal, pricier for better impressions
    μ_t = log(median_price) + A sin(2π t / T)                        daily seasonality of competition
    won_k  = λ v p̂_k > m_k  and  Σ_{j ≤ k: λ v p̂_j > m_j} m_j ≤ remaining budget   (auctions arrive in order;
             bidding stops for the slot at the first win the budget cannot pay: it never goes negative)
    paid   = Σ_k won_k m_k (second price: the highest competing bid),  clicks ~ Bernoulli(p̂_k) on wins.
Reward: the number of clicks won in the slot. Episodes last ``horizon`` slots (no early termination; an
exhausted budget simply wins nothing more).

State = observation, 7 floats: [slots left / T, budget left / B, last slot's spend / B, last win rate, last
clicks, last mean paid price / v, last multiplier]. Actions: ``RealTimeBidding`` chooses from a grid of
multipliers (discrete); ``RealTimeBiddingContinuous`` takes λ ∈ [0.1, 10] directly (values outside are
clipped by the market, the logged action stays as given).
"""

from __future__ import annotations

import math

import numpy as np

from opelab.data import ActionSpace
from opelab.envs.gym_tasks import BatchTask

DEFAULT_MULTIPLIERS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0)


class _BiddingMarket(BatchTask):
    obs_shape = (7,)

    def __init__(
        self,
        *,
        horizon: int,
        gamma: float,
        n_auctions: int,
        budget: float,
        value_per_click: float,
        base_ctr: float,
        ctr_spread: float,
        median_price: float,
        price_sd: float,
        price_ctr_slope: float,
        seasonality: float,
    ) -> None:
        super().__init__(horizon, gamma)
        if isinstance(n_auctions, bool) or not isinstance(n_auctions, (int, np.integer)) or n_auctions < 1:
            raise ValueError(f"n_auctions: expected a positive int, found {n_auctions!r}")
        for field, value in (("budget", budget), ("value_per_click", value_per_click), ("median_price", median_price)):
            if not value > 0:
                raise ValueError(f"{field}: expected a positive float, found {value!r}")
        if not 0 < base_ctr < 1:
            raise ValueError(f"base_ctr: expected a float in (0, 1), found {base_ctr!r}")
        for field, value in (("price_sd", price_sd), ("ctr_spread", ctr_spread)):
            if not value >= 0:
                raise ValueError(f"{field}: expected a non-negative float, found {value!r}")
        self.n_auctions, self.ctr_spread = int(n_auctions), float(ctr_spread)
        self.budget, self.value_per_click = float(budget), float(value_per_click)
        self.base_logit = math.log(base_ctr / (1 - base_ctr))
        self.median_price, self.price_sd = float(median_price), float(price_sd)
        self.price_ctr_slope, self.seasonality = float(price_ctr_slope), float(seasonality)

    def reset(self, n: int, rng: np.random.Generator) -> np.ndarray:
        states = np.zeros((n, 7))
        states[:, 0] = 1.0  # all slots left
        states[:, 1] = 1.0  # the whole budget left
        return states

    def multipliers(self, actions: np.ndarray) -> np.ndarray:
        """The bid multiplier λ of each action, shape (batch,)."""
        raise NotImplementedError

    def step(self, states, actions, rng):
        lam = self.multipliers(self.check_actions(actions, len(states)))  # (b,)
        b, K, T = len(states), self.n_auctions, self.horizon
        slot = np.rint((1.0 - states[:, 0]) * T)  # (b,) index of the current slot
        budget_left = states[:, 1] * self.budget
        score = self.ctr_spread * rng.standard_normal((b, K))  # (b, K) w·x
        ctr = 1.0 / (1.0 + np.exp(-(self.base_logit + score)))
        log_mu = math.log(self.median_price) + self.seasonality * np.sin(2 * math.pi * slot / T)
        price = np.exp(log_mu[:, None] + self.price_ctr_slope * score + self.price_sd * rng.standard_normal((b, K)))
        bids = lam[:, None] * self.value_per_click * ctr
        wants = bids > price
        spend_if_won = np.cumsum(np.where(wants, price, 0.0), axis=1)
        won = wants & (spend_if_won <= budget_left[:, None])
        clicks = (won & (rng.random((b, K)) < ctr)).sum(axis=1).astype(np.float64)
        paid = np.where(won, price, 0.0).sum(axis=1)
        n_won = won.sum(axis=1)
        nxt = np.empty_like(states)
        nxt[:, 0] = (T - slot - 1) / T
        nxt[:, 1] = np.maximum(budget_left - paid, 0.0) / self.budget
        nxt[:, 2] = paid / self.budget
        nxt[:, 3] = n_won / K
        nxt[:, 4] = clicks
        nxt[:, 5] = np.where(n_won > 0, paid / np.maximum(n_won, 1), 0.0) / self.value_per_click
        nxt[:, 6] = lam
        return nxt, clicks, np.zeros(b, dtype=bool)


class RealTimeBidding(_BiddingMarket):
    """Budget-constrained bidding with a discrete grid of bid multipliers (see the module docstring).

    Defaults: 24 hourly slots, 100 auctions per slot, v = 100 per click, base CTR 5 %, median market price 5,
    a budget of 2000 (bidding λ = 1 all day would spend about twice that), γ = 1 (the day's clicks).
    """

    name = "rtb"

    def __init__(
        self,
        *,
        horizon: int = 24,
        gamma: float = 1.0,
        multipliers: tuple[float, ...] = DEFAULT_MULTIPLIERS,
        n_auctions: int = 100,
        budget: float = 2000.0,
        value_per_click: float = 100.0,
        base_ctr: float = 0.05,
        ctr_spread: float = 1.0,
        median_price: float = 5.0,
        price_sd: float = 0.6,
        price_ctr_slope: float = 0.5,
        seasonality: float = 0.3,
    ) -> None:
        super().__init__(
            horizon=horizon, gamma=gamma, n_auctions=n_auctions, budget=budget, value_per_click=value_per_click,
            base_ctr=base_ctr, ctr_spread=ctr_spread, median_price=median_price, price_sd=price_sd,
            price_ctr_slope=price_ctr_slope, seasonality=seasonality,
        )  # fmt: skip
        grid = np.asarray(multipliers, dtype=np.float64)
        if grid.ndim != 1 or len(grid) < 2 or not (grid > 0).all():
            raise ValueError(f"multipliers: expected at least two positive floats, found {multipliers!r}")
        self.grid = grid
        self.action_space = ActionSpace.discrete(len(grid))

    def multipliers(self, actions: np.ndarray) -> np.ndarray:
        return self.grid[actions]


class RealTimeBiddingContinuous(_BiddingMarket):
    """Budget-constrained bidding with a continuous bid multiplier λ ∈ [low, high] (default [0.1, 10])."""

    name = "rtb_continuous"

    def __init__(
        self,
        *,
        horizon: int = 24,
        gamma: float = 1.0,
        low: float = 0.1,
        high: float = 10.0,
        n_auctions: int = 100,
        budget: float = 2000.0,
        value_per_click: float = 100.0,
        base_ctr: float = 0.05,
        ctr_spread: float = 1.0,
        median_price: float = 5.0,
        price_sd: float = 0.6,
        price_ctr_slope: float = 0.5,
        seasonality: float = 0.3,
    ) -> None:
        super().__init__(
            horizon=horizon, gamma=gamma, n_auctions=n_auctions, budget=budget, value_per_click=value_per_click,
            base_ctr=base_ctr, ctr_spread=ctr_spread, median_price=median_price, price_sd=price_sd,
            price_ctr_slope=price_ctr_slope, seasonality=seasonality,
        )  # fmt: skip
        if not 0 <= low < high:
            raise ValueError(f"low, high: expected 0 <= low < high, found {low!r}, {high!r}")
        self.low, self.high = float(low), float(high)
        self.action_space = ActionSpace.continuous(1, low=(low,), high=(high,))

    def multipliers(self, actions: np.ndarray) -> np.ndarray:
        return np.clip(actions[:, 0], self.low, self.high)
