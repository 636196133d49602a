"""trials.lost_attempts: the attempts whose worker died, which alone fail a trial.

Before, a trial failed after MAX_ATTEMPTS enqueues of any kind, so clean shutdowns (each
re-queues its trial) used up the attempts a dead worker should have.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch_op:
        batch_op.add_column(
            sa.Column("lost_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch_op:
        batch_op.drop_column("lost_attempts")
