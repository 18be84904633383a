"""The loop and its callbacks: the events a callback sees, in order, in every backend; the
quick-run caps as a callback an edge turns on; no environment variable read by a constructor."""

import pytest

from nin import callbacks as C
from nin import quick
from nin.backends import get_backend


class Log(C.Callback):
    """Records every event with what the trainer says at that moment; its hooks are written
    as they were before `logs` existed, and are called as they were."""

    def __init__(self):
        self.events = []

    def before_fit(self, trainer):
        self.events.append(("before_fit",))

    def on_fit_start(self, trainer):
        self.events.append(("fit_start", trainer.epoch))

    def on_epoch_start(self, trainer):
        self.events.append(("epoch_start", trainer.epoch))

    def on_losses(self, trainer, losses):
        self.events.append(("losses", trainer.train_batch_idx, len(losses)))

    def on_batch_end(self, trainer):
        self.events.append(("batch",))

    def on_epoch_end(self, trainer, record):
        self.events.append(
            ("epoch_end", trainer.epoch, record["epoch"], len(trainer.history.epochs))
        )

    def on_fit_end(self, trainer):
        self.events.append(("fit_end", trainer.epoch))


def _trainer(backend, root, epochs=2, batches=12, **kwargs):
    B = get_backend(backend)
    B.set_seed(0)
    data = B.FashionMNIST(root=root, batch_size=8, resize=(67, 67))
    trainer = B.Trainer(
        max_epochs=epochs,
        limit_train_batches=batches,
        limit_val_batches=1,
        progress=False,
        **kwargs,
    )
    return B, data, trainer


def test_a_callback_sees_the_loop_in_order(backend, synthetic_root):
    B, data, trainer = _trainer(backend, synthetic_root, callbacks=[Log()])
    log = trainer.callbacks[-1]
    trainer.fit(B.NiN(recipe="nin"), data)
    ev = log.events
    assert ev[:3] == [("before_fit",), ("fit_start", 0), ("epoch_start", 0)]
    # synced every 10 steps and at the epoch's end; the history already holds the epoch
    assert [e for e in ev if e[0] == "losses"] == [
        ("losses", 10, 10),
        ("losses", 12, 2),
        ("losses", 22, 10),
        ("losses", 24, 2),
    ]
    assert ev.count(("batch",)) == 24
    assert [e for e in ev if e[0] == "epoch_end"] == [
        ("epoch_end", 1, 1, 1),
        ("epoch_end", 2, 2, 2),
    ]
    assert ev[-1] == ("fit_end", 2)


class LogsSeen(C.Callback):
    """Records the `logs` of every hook that takes them."""

    def __init__(self):
        self.events = []

    def on_batch_start(self, trainer, logs):
        self.events.append(("batch_start", logs))

    def on_losses(self, trainer, losses, logs):
        self.events.append(("losses", logs, losses))

    def on_batch_end(self, trainer, logs):
        self.events.append(("batch_end", logs))

    def on_validation_end(self, trainer, metrics, logs):
        self.events.append(("validation_end", logs, metrics))


def test_hooks_that_take_logs_are_told_the_step_lr_rate_and_losses(backend, synthetic_root):
    from nin.recipes import lr_at

    B, data, trainer = _trainer(backend, synthetic_root, callbacks=[LogsSeen()])
    ev = trainer.callbacks[-1].events
    history = trainer.fit(B.NiN(recipe="nin"), data)
    plain, synced = ["batch_start", "batch_end"], ["batch_start", "losses", "batch_end"]
    epoch = plain * 9 + synced + plain + synced + ["validation_end"]  # a sync every 10 steps
    assert [e[0] for e in ev] == epoch * 2
    starts = [e[1] for e in ev if e[0] == "batch_start"]
    ends = [e[1] for e in ev if e[0] == "batch_end"]
    assert [g.step for g in starts] == list(range(24)) and [g.step for g in ends] == [*range(1, 25)]
    assert [g.epoch for g in ends] == [0] * 12 + [1] * 12 and ends[-1].step_in_epoch == 12
    assert [g.lr for g in starts] == pytest.approx(
        [lr_at(step, 24, trainer.base_lr, "onecycle") for step in range(24)], rel=1e-6
    )  # the lr each step runs at (float32 in some optimizers)
    assert {g.precision for g in starts + ends} == {"fp32"} and starts[0].images_per_s is None
    synced = [e for e in ev if e[0] == "losses"]
    assert [(g.step, g.first_step, len(g.losses)) for _, g, _ in synced] == [
        (10, 1, 10), (12, 11, 2), (22, 13, 10), (24, 23, 2)
    ]  # fmt: skip
    assert all(g.losses == tuple(losses) and g.images_per_s > 0 for _, g, losses in synced)
    assert [loss for _, g, _ in synced for loss in g.losses] == [s[1] for s in history.steps]
    validated = [e for e in ev if e[0] == "validation_end"]
    assert [(g.epoch, g.step) for _, g, _ in validated] == [(0, 12), (1, 24)]
    assert [m for *_, m in validated] == [
        {"loss": e["val_loss"], "acc": e["val_acc"]} for e in history.epochs
    ]
    assert C.takes_logs(LogsSeen().on_losses) and not C.takes_logs(Log().on_losses)


def _settings(**changes):
    from types import SimpleNamespace

    given = dict(
        progress=True, out_dir=None, resume=False, overwrite=False, stuck_check=150, on_stuck="warn"
    )
    return SimpleNamespace(**{**given, **changes})


def test_the_default_callbacks_and_their_order(tmp_path):
    names = [type(c).__name__ for c in C.default_callbacks(_settings(out_dir=tmp_path))]
    assert names == [
        "TerminateOnNaN",
        "RecordHistory",
        "StuckCheck",
        "ClaimRunFolder",
        "ExportRun",
        "SaveCheckpoint",  # the commit point: after the files it vouches for
        "ProgressBar",
        "LiveBoard",
    ]
    resumed = C.default_callbacks(_settings(out_dir=tmp_path, resume=True))
    names = [type(c).__name__ for c in resumed]
    assert names.index("ClaimRunFolder") + 1 == names.index("ResumeFromCheckpoint")
    assert names.index("ResumeFromCheckpoint") < names.index("ProgressBar")  # its line first
    quiet = C.default_callbacks(_settings(progress=False))
    assert "ProgressBar" not in [type(c).__name__ for c in quiet]


def test_a_callback_can_stop_the_run(backend, synthetic_root):
    class StopAfterFirstSync(C.Callback):
        def on_losses(self, trainer, losses):
            raise KeyboardInterrupt

    B, data, trainer = _trainer(backend, synthetic_root, callbacks=[StopAfterFirstSync()])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(B.NiN(recipe="nin"), data)
    assert len(trainer.history.steps) == 10  # recorded before the user's callback ran


def test_the_environment_is_read_at_the_edge_not_in_constructors(monkeypatch, synthetic_root):
    """NIN_QUICK alone changes nothing a constructor makes; `quick.enable_from_env()` (a
    notebook's first cell) turns the caps on for the Trainer and the data."""
    monkeypatch.setenv("NIN_QUICK", "epochs=1,train_batches=3,val_batches=1,batch_size=4")
    B, data, trainer = _trainer("torch", synthetic_root, epochs=2, batches=5)
    assert data.batch_size == 8 and not any(isinstance(c, C.QuickCaps) for c in trainer.callbacks)
    try:
        settings = quick.enable_from_env(announce=False)
        assert settings.train_batches == 3
        B, data, trainer = _trainer("torch", synthetic_root, epochs=2, batches=5)
        trainer.fit(B.NiN(recipe="nin"), data)
    finally:
        quick.disable()
    assert data.batch_size == 4
    assert trainer.max_epochs == 1 and len(trainer.history.steps) == 3


def test_library_messages_name_arguments_and_the_cli_names_its_flags(tmp_path):
    """The library's wording is Python's (`resume=True`); nin.cli alone says the flags, from
    the arguments the error names (nin.errors), not from its text."""
    from nin import runs
    from nin.cli import build_parser
    from nin.errors import Message, arg

    (tmp_path / "checkpoint.npz").write_bytes(b"a run")
    with pytest.raises(runs.RunExistsError) as err:
        runs.claim_out_dir(tmp_path)
    message = str(err.value)
    assert "`resume=True`" in message and "`out_dir`" in message and "--" not in message
    wording = build_parser().parse_args(["train"]).wording
    said = wording(err.value)
    assert "--resume" in said and "--overwrite" in said and "--out" in said and "`" not in said
    mentions = dict(a=arg("resize", 67), b=arg("recipe", "nin"), c=arg("max_epochs", 4))
    assert (
        wording(Message("(e.g. {a}), {b}, {c}", **mentions))
        == "(e.g. --resize 67), --recipe nin, --epochs 4"
    )


def test_a_resume_after_a_stop_mid_epoch_scales_momentum_from_the_last_step_run(
    synthetic_root, tmp_path, monkeypatch
):
    """Keras' and MXNet's SGD momentum holds the lr of the last step that ran
    (`Trainer._scale_momentum`); a run stopped mid-epoch saves a whole epoch, so its
    checkpoint keeps that lr and the resume scales the buffer from it."""
    from nin.recipes import lr_at
    from nin.training import TrainerBase

    ratios: list[float] = []
    monkeypatch.setattr(TrainerBase, "_scale_momentum", lambda self, ratio: ratios.append(ratio))

    class StopAfterTwo(C.Callback):
        def on_batch_end(self, trainer):
            trainer.stop_training = trainer.train_batch_idx == 2

    run = dict(epochs=2, batches=4, out_dir=tmp_path / "run")
    B, data, trainer = _trainer("torch", synthetic_root, callbacks=[StopAfterTwo()], **run)
    trainer.fit(B.NiN(recipe="nin"), data)
    assert len(trainer.history.steps) == 2 and trainer.last_lr is not None
    ratios.clear()
    B, data, trainer = _trainer("torch", synthetic_root, resume=True, **run)
    trainer.fit(B.NiN(recipe="nin"), data)
    lr = [lr_at(step, 8, trainer.base_lr, "onecycle") for step in range(8)]
    assert ratios == pytest.approx([lr[4] / lr[1], lr[5] / lr[4], lr[6] / lr[5], lr[7] / lr[6]])


def test_time_limit_stops_training_after_the_step_that_passes_it(synthetic_root):
    B, data, trainer = _trainer(
        "torch", synthetic_root, epochs=3, batches=12, callbacks=[C.TimeLimit(0)]
    )
    history = trainer.fit(B.NiN(recipe="nin"), data)
    assert trainer.callbacks[-1].stopped and trainer.stop_training
    assert len(history.steps) == 1 and len(history.epochs) == 1  # the epoch still validates


def test_the_run_folder_claim_refuses_a_run_unless_told(tmp_path):
    from nin import runs

    (tmp_path / "checkpoint.npz").write_bytes(b"a run")
    with pytest.raises(runs.RunExistsError):
        C.ClaimRunFolder(tmp_path).before_fit(None)
    C.ClaimRunFolder(tmp_path, overwrite=True).before_fit(None)
    assert not (tmp_path / "checkpoint.npz").exists()


def test_checkpoint_export_and_resume_each_do_their_own_job(synthetic_root, tmp_path):
    """Alone, SaveCheckpoint writes checkpoint.npz only, ExportRun the other files only, and
    ResumeFromCheckpoint continues from a checkpoint (writing its files again) or refuses one
    made for another run."""
    from nin import runs

    class StopAfterAnEpoch(C.Callback):
        def on_epoch_end(self, trainer, record):
            trainer.stop_training = True

    saved, exported = tmp_path / "saved", tmp_path / "exported"
    B, data, trainer = _trainer(
        "torch", synthetic_root, 2, 3, callbacks=[C.SaveCheckpoint(saved), StopAfterAnEpoch()]
    )
    first = trainer.fit(B.NiN(recipe="nin"), data)
    assert sorted(p.name for p in saved.iterdir()) == ["checkpoint.npz"]
    _, meta = runs.read_checkpoint(saved / "checkpoint.npz")
    assert meta["epoch"] == 1 and meta["backend"] == "torch" and meta["run"]["fast"] is False

    resume = C.ResumeFromCheckpoint(saved, progress=False)
    B, data, trainer = _trainer(
        "torch", synthetic_root, epochs=2, batches=3, callbacks=[resume, C.ExportRun(exported)]
    )
    history = trainer.fit(B.NiN(recipe="nin"), data)
    assert len(history.epochs) == 2 and history.epochs[0] == first.epochs[0]
    files = ["board.png", "history.json", "weights.npz"]
    assert sorted(p.name for p in exported.iterdir()) == files
    assert sorted(p.name for p in saved.iterdir()) == sorted(["checkpoint.npz", *files])
    assert runs.read_checkpoint(saved / "checkpoint.npz")[1]["epoch"] == 1  # not saved again

    B, data, trainer = _trainer("torch", synthetic_root, epochs=2, batches=4, callbacks=[resume])
    with pytest.raises(runs.CheckpointError, match="num train batches 3 vs 4"):
        trainer.fit(B.NiN(recipe="nin"), data)
