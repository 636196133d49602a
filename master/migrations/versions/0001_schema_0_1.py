"""The schema of hpsearch 0.1: sweeps, stages, trials, their epochs, ensembles.

A database made by hpsearch before migrations existed (by create_all, without an
alembic_version table) is brought to this schema the old way and stamped with it
(master.migrate); every later change is a revision after this one.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "finished",
                "cancelled",
                "failed",
                name="sweepstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sweeps_status"), ["status"], unique=False)

    op.create_table(
        "ensembles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "top-k", "checkpoints", "seeds", name="ensemblekind", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("curve", sa.JSON(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=True),
        sa.Column("val_acc", sa.Double(), nullable=True),
        sa.Column("test_acc", sa.Double(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "finished",
                "exploded",
                "failed",
                "stopped",
                name="trialstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ensembles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ensembles_sweep_id"), ["sweep_id"], unique=False)

    op.create_table(
        "stages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("epochs", sa.Double(), nullable=False),
        sa.Column("keep_top", sa.Integer(), nullable=True),
        sa.Column("promote", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("space", sa.JSON(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending", "running", "finished", name="stagestatus", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sweep_id", "index"),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("stage_index", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("start_epoch", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("num_epochs", sa.Double(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "finished",
                "exploded",
                "failed",
                "stopped",
                name="trialstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("epochs_done", sa.Float(), nullable=False),
        sa.Column("best_val_acc", sa.Double(), nullable=True),
        sa.Column("best_epoch", sa.Double(), nullable=True),
        sa.Column("train_acc", sa.Double(), nullable=True),
        sa.Column("val_acc", sa.Double(), nullable=True),
        sa.Column("explosion", sa.JSON(), nullable=True),
        sa.Column("checkpoints", sa.JSON(), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["parent_id"], ["trials.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index("ix_trials_rank", ["best_val_acc", "epochs_done"], unique=False)
        batch_op.create_index("ix_trials_status_job", ["status", "job_id"], unique=False)
        batch_op.create_index(
            "ix_trials_sweep_stage_status", ["sweep_id", "stage_index", "status"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        # The leaderboard's exact order (master.models.ranking): PostgreSQL only, whose DESC
        # puts NULLs first; SQLite has no NULLS LAST in an index.
        op.create_index(
            "ix_trials_leaderboard",
            "trials",
            [sa.text("best_val_acc DESC NULLS LAST"), sa.text("epochs_done DESC"), "id"],
        )

    op.create_table(
        "trial_epochs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Double(), nullable=False),
        sa.Column("cost", sa.Double(), nullable=True),
        sa.Column("train_acc", sa.Double(), nullable=False),
        sa.Column("val_acc", sa.Double(), nullable=False),
        sa.Column("average_val_acc", sa.Double(), nullable=True),
        sa.Column("learning_rate", sa.Double(), nullable=True),
        sa.Column("update_ratio", sa.JSON(), nullable=False),
        sa.Column("loss", sa.JSON(), nullable=False),
        sa.Column("distributions", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["trial_id"], ["trials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trial_id", "epoch"),
    )


def downgrade() -> None:
    op.drop_table("trial_epochs")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_trials_leaderboard", table_name="trials")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_sweep_stage_status")
        batch_op.drop_index("ix_trials_status_job")
        batch_op.drop_index("ix_trials_rank")

    op.drop_table("trials")
    op.drop_table("stages")
    with op.batch_alter_table("ensembles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ensembles_sweep_id"))

    op.drop_table("ensembles")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sweeps_status"))

    op.drop_table("sweeps")
