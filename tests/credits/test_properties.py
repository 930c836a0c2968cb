"""Property: any interleaving of top-ups, spending and refunds is linearizable.

Hypothesis draws an opening balance and a few batches of operations (with
references that repeat, so replays and conflicts happen too). Each batch
runs concurrently, one session per operation. Afterwards:

- the invariants hold: balance == sum(ledger), debt == sum(debt changes),
  the balance_after chain is intact, nothing is negative (``verify_ledger``
  plus an independent sum);
- the outcome is one a serial execution would give: some order of the
  batch's operations, applied one by one to a plain-Python model of the
  account, produces exactly the observed results and the observed state.

Examples are few, small and derandomised, so the test is quick and repeatable
on both databases.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from accessai.core.db import create_sessionmaker
from accessai.credits import service as credits
from tests.conftest import TestDatabase as Database
from tests.credits.support import account_state, in_own_session, ledger_sum
from tests.factories import create_user

REASONS = {"add": "admin_grant", "deduct": "summarize", "take_back": "stripe_refund"}


@dataclass(frozen=True)
class Op:
    kind: str  # add | deduct | take_back
    amount: int
    reference: str | None


@dataclass
class Model:
    """The account as a serial execution would leave it."""

    balance: int
    debt: int = 0
    # reference -> (kind, amount, the outcome of its first execution)
    done: dict[str, tuple[str, int, tuple[object, ...]]] = field(default_factory=dict)

    def copy(self) -> Model:
        return Model(self.balance, self.debt, dict(self.done))

    def apply(self, op: Op) -> tuple[object, ...]:
        if op.reference is not None and op.reference in self.done:
            kind, amount, outcome = self.done[op.reference]
            if (kind, amount) != (op.kind, op.amount):
                return ("conflict",)
            return ("replay", *outcome[1:])
        outcome: tuple[object, ...]
        if op.kind == "add":
            self.balance += op.amount
            outcome = ("ok", self.balance)
            repay = min(self.balance, self.debt)
            self.balance -= repay
            self.debt -= repay
        elif op.kind == "deduct":
            if self.debt > 0:
                return ("on_hold",)
            if self.balance < op.amount:
                return ("insufficient",)
            self.balance -= op.amount
            outcome = ("ok", self.balance)
        else:
            taken = min(self.balance, op.amount)
            self.balance -= taken
            self.debt += op.amount - taken
            outcome = ("ok", taken, op.amount - taken)
        if op.reference is not None:
            self.done[op.reference] = (op.kind, op.amount, outcome)
        return outcome


def observed(result: object) -> tuple[object, ...]:
    if isinstance(result, credits.CreditMovement):
        return ("replay" if result.replayed else "ok", result.balance_after)
    if isinstance(result, credits.TakeBack):
        return ("replay" if result.replayed else "ok", result.taken, result.shortfall)
    if isinstance(result, credits.InsufficientCreditsError):
        assert result.balance < result.required
        return ("insufficient",)
    if isinstance(result, credits.AccountOnHoldError):
        return ("on_hold",)
    if isinstance(result, credits.ReferenceConflictError):
        return ("conflict",)
    raise AssertionError(f"unexpected outcome: {result!r}")


def serial_explanation(
    model: Model, batch: list[Op], outcomes: list[tuple[object, ...]], state: tuple[int, int]
) -> Model | None:
    """A model state reached by some serial order matching every outcome, or None."""
    for order in itertools.permutations(range(len(batch))):
        trial = model.copy()
        if (
            all(trial.apply(batch[i]) == outcomes[i] for i in order)
            and (
                trial.balance,
                trial.debt,
            )
            == state
        ):
            return trial
    return None


operations = st.builds(
    Op,
    kind=st.sampled_from(["add", "deduct", "deduct", "take_back"]),
    amount=st.integers(min_value=1, max_value=60),
    reference=st.one_of(st.none(), st.none(), st.sampled_from(["r1", "r2", "r3"])),
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    # `db` only empties the tables after the test; every example makes its own user.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    opening=st.integers(min_value=0, max_value=120),
    batches=st.lists(st.lists(operations, min_size=1, max_size=4), min_size=1, max_size=4),
)
async def test_concurrent_movements_are_linearizable_and_keep_the_invariants(
    db: Database, opening: int, batches: list[list[Op]]
) -> None:
    maker = create_sessionmaker(db.engine)
    async with maker() as session:
        user_id: uuid.UUID = (await create_user(session, credits=opening)).id
    model = Model(balance=opening)

    for batch in batches:

        def job(op: Op) -> Callable[[AsyncSession], Awaitable[object]]:
            async def run(s: AsyncSession) -> object:
                reason = REASONS[op.kind]
                if op.kind == "add":
                    return await credits.add_credits(s, user_id, op.amount, reason, op.reference)
                if op.kind == "deduct":
                    return await credits.deduct_credits(s, user_id, op.amount, reason, op.reference)
                # A refund always has a reference; give unreferenced ones a unique one.
                reference = op.reference or f"re-{uuid.uuid4().hex}"
                return await credits.take_back_credits(s, user_id, op.amount, reason, reference)

            return run

        results = await asyncio.gather(*(in_own_session(maker, job(op)) for op in batch))
        outcomes = [observed(result) for result in results]
        async with maker() as session:
            state = await account_state(session, user_id)
            assert state[0] >= 0
            assert state[0] == await ledger_sum(session, user_id)
        explained = serial_explanation(model, batch, outcomes, state)
        assert explained is not None, (model, batch, outcomes, state)
        model = explained

    async with maker() as session:
        mismatches = await credits.verify_ledger(session)
    assert [m for m in mismatches if m.user_id == user_id] == []
