"""ledger debt change and operator note

Each ledger row now also records how it changed the account's debt, so debt
is explained by the ledger like the balance is (and a refund against an empty
balance leaves a row whose reference makes a retry a no-op). Operator notes
get a column of their own instead of being squeezed into reason or reference.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-23 12:06:12.693647
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credit_transactions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("debt_change", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("note", sa.String(length=500), nullable=True))
        batch_op.drop_constraint(op.f("ck_credit_transactions_amount_not_zero"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_credit_transactions_moves_balance_or_debt"),
            "amount <> 0 OR debt_change <> 0",
        )
    # Debt recorded before this revision had no ledger row: open it with one,
    # so that debt == sum(debt_change) holds from here on.
    op.execute(
        "INSERT INTO credit_transactions"
        " (user_id, amount, reason, reference, balance_after, debt_change, created_at)"
        " SELECT user_id, 0, 'debt_opening', 'debt_opening:0006', balance, debt, updated_at"
        " FROM user_credits WHERE debt > 0"
    )


def downgrade() -> None:
    # Rows that moved only debt cannot exist under the old constraint.
    op.execute("DELETE FROM credit_transactions WHERE amount = 0")
    with op.batch_alter_table("credit_transactions", schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f("ck_credit_transactions_moves_balance_or_debt"), type_="check"
        )
        batch_op.create_check_constraint(
            op.f("ck_credit_transactions_amount_not_zero"), "amount <> 0"
        )
        batch_op.drop_column("note")
        batch_op.drop_column("debt_change")
