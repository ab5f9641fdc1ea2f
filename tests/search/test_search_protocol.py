"""The WSOL search protocol's parts on real Optuna studies (in memory and sqlite): the space,
the seeded draws, budget, failures and resumption after a kill; and that every
hparams_search=wsol_<method> config composes onto the recipes with keys that exist."""

import math

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from camlab.errors import CamlabError
from camlab.search import protocol
from camlab.search.space import active, draw, parse_space, trial_seeded_sampler

optuna = pytest.importorskip("optuna")

SPG_LIKE = {
    "model": {"optimizer": {"lr": {"log_uniform": [1.0e-4, 10.0]}},
              "large_feature_map": {"choice": [False, True], "if": {"model.arch": "reference"}}},
    "method": {"threshold_1l": {"uniform": [0.0, 1.0]},
               "threshold_1h": {"uniform": ["method.threshold_1l", 1.0]},
               "beta": {"reciprocal_uniform": [0.0, 2.0], "shift": -0.5}},
}  # fmt: skip


def study(seed=0, storage=None, name="s"):
    return protocol.open_study(name, storage, trial_seeded_sampler(seed))


def arch(value):
    return lambda key: {"model.arch": value}.get(key)


def test_space_is_flattened_in_order_and_drawn_within_its_bounds():
    space = parse_space(SPG_LIKE)
    assert list(space) == ["model.optimizer.lr", "model.large_feature_map",
                           "method.threshold_1l", "method.threshold_1h", "method.beta"]  # fmt: skip
    s = study()
    for _ in range(40):
        trial = s.ask()
        values = draw(space, trial, arch("reference"))
        assert 1e-4 <= values["model.optimizer.lr"] < 10.0
        assert values["model.large_feature_map"] in (False, True)
        # delta_h ~ U[delta_l, 1]: the bound is the value drawn before it.
        assert values["method.threshold_1l"] <= values["method.threshold_1h"] <= 1.0
        # CutMix's size prior 1 / U(0, 2] - 1/2, from the raw draw optuna stores.
        u = 2.0 - trial.params["method.beta"]
        assert 0.0 < u <= 2.0
        assert values["method.beta"] == pytest.approx(1.0 / u - 0.5, rel=1e-12)
        assert values["method.beta"] >= 0.0
        s.tell(trial, 1.0)
    lrs = [t.params["model.optimizer.lr"] for t in s.trials]
    # Log-uniform over five decades: about a fifth of the draws per decade, none piled up.
    assert 3 <= sum(lr < 1e-3 for lr in lrs) <= 15
    # The feature-map size exists on the reference's networks only.
    trial = s.ask()
    assert "model.large_feature_map" not in draw(space, trial, arch("torchvision"))


@pytest.mark.parametrize(
    "space, message",
    [
        ({}, "hparams_search=wsol_<method>"),
        ({"method": {"x": {"uniform": [0, 1], "choice": [1]}}}, "exactly one of"),
        ({"method": {"x": {"uniform": [0, 1], "bogus": 1}}}, "exactly one of"),
        ({"method": {"h": {"uniform": ["method.l", 1.0]}}}, "must name a key drawn before it"),
        ({"method": {"x": {"uniform": [0.0]}}}, "needs [low, high]"),
    ],
)
def test_bad_spaces_are_refused_naming_the_key(space, message):
    with pytest.raises(CamlabError, match=message.replace("[", r"\[")):
        parse_space(space)


def test_draws_depend_on_seed_and_trial_only():
    space = parse_space(SPG_LIKE)

    def draws(seed, n=3):
        s = study(seed)
        return [draw(space, s.ask(), arch("reference")) for _ in range(n)]

    first = draws(0)
    assert draws(0) == first  # another study, same seed: the same trials
    assert draws(1) != first
    assert first[0] != first[1]


class Launcher:
    """Runs 'trials' as a job would: returns a JobReturn whose value is a function of the
    drawn learning rate; a trial whose lr is above ``fail_above`` raises, as a diverging
    training run's CamlabError does."""

    def __init__(self, fail_above=math.inf, kill_at=None):
        self.fail_above, self.kill_at, self.launched = fail_above, kill_at, []

    def __call__(self, jobs, first):
        returns = []
        for number, overrides in enumerate(jobs, start=first):
            if number == self.kill_at:
                raise KeyboardInterrupt  # the search process dies mid-trial
            self.launched.append(number)
            lr = float(dict(o.split("=", 1) for o in overrides)["model.optimizer.lr"])
            ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
            if lr > self.fail_above:
                ret.status = JobStatus.FAILED
                ret._return_value = CamlabError("optimized_metric is NaN")
            else:
                ret.return_value = -abs(math.log10(lr) + 2)  # best at lr = 1e-2
            returns.append(ret)
        return returns


def run(s, budget, launcher, space=SPG_LIKE):
    parsed = parse_space(space)
    protocol.run_trials(s, budget, lambda t: draw(parsed, t, arch("reference")), launcher,
                        ["data=shapes"])  # fmt: skip


def test_budget_counts_failed_trials_and_the_search_goes_on():
    s = study()
    launcher = Launcher(fail_above=1.0)
    run(s, 8, launcher)
    states = [t.state.name for t in s.trials]
    assert len(states) == 8 and "FAIL" in states and "COMPLETE" in states
    for t in s.trials:
        lr = t.params["model.optimizer.lr"]
        assert (t.state.name == "FAIL") == (lr > 1.0)
        if t.state.name == "FAIL":
            assert t.user_attrs["error"] == "CamlabError: optimized_metric is NaN"
        assert t.user_attrs["overrides"]["model.optimizer.lr"] == repr(lr)
    best = protocol.select(s)
    assert best.value == max(t.value for t in s.trials if t.state.name == "COMPLETE")
    run(s, 8, launcher)  # the budget is spent: nothing more runs
    assert len(s.trials) == 8


def test_a_killed_search_resumes_into_the_same_trials(tmp_path):
    storage = f"sqlite:///{tmp_path}/study.db"
    whole = study(storage=storage, name="whole")
    run(whole, 5, Launcher())

    killed = study(storage=storage, name="killed")
    with pytest.raises(KeyboardInterrupt):
        run(killed, 5, Launcher(kill_at=2))
    assert [t.state.name for t in killed.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]

    resumed = study(storage=storage, name="killed")  # a new process loads the study
    assert protocol.recover_interrupted(resumed) == [2]
    launcher = Launcher()
    run(resumed, 5, launcher)
    trials = resumed.trials
    assert trials[2].state.name == "FAIL" and trials[2].user_attrs["interrupted"]
    assert launcher.launched == [3, 4, 5]
    assert trials[3].params == trials[2].params  # the interrupted trial's values, again
    assert len(protocol.counted(resumed)) == 5
    done = [t.params for t in trials if t.state.name == "COMPLETE"]
    assert done == [t.params for t in whole.trials]  # what the uninterrupted search ran
    record = protocol.trial_record(trials[2])
    assert record["interrupted"] and record["state"] == "FAIL"


@pytest.mark.parametrize("method", ["cam", "has", "acol", "spg", "adl", "cutmix"])
@pytest.mark.parametrize("recipe", ["wsol_cub_vgg16_cam", "wsol_openimages_resnet50_cam", None])
def test_each_method_search_composes_with_keys_that_exist(method, recipe):
    from hydra import compose, initialize_config_dir

    import camlab.cli

    overrides = [f"hparams_search=wsol_{method}"] + ([f"experiment={recipe}"] if recipe else [])
    with initialize_config_dir(camlab.cli.CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.method.name == method  # the search's method wins over the recipe's cam
    sweeper = cfg.hydra.sweeper
    assert sweeper.budget == 30 and sweeper.direction == "maximize"
    assert sweeper._target_.endswith("WSOLSearchSweeper")
    assert cfg.test is False and cfg.callbacks.model_checkpoint.monitor is None
    space = parse_space(OmegaConf.to_container(sweeper.space, resolve=True))
    for key, spec in space.items():  # a typo in a space would override a key nothing reads
        if not active(spec, lambda k: OmegaConf.select(cfg, k)):
            assert key == "model.large_feature_map" and recipe is None
            continue
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key
    own = {k for k in space if k.startswith("method.")}
    expected = {
        "cam": set(), "acol": {"threshold"}, "adl": {"drop_rate", "threshold"},
        "has": {"drop_rate", "grid_size"}, "cutmix": {"beta", "prob"},
        "spg": {f"threshold_{i}{x}" for i in (1, 2, 3) for x in "lh"},
    }[method]  # fmt: skip
    assert own == {f"method.{k}" for k in expected}
    if recipe:
        assert cfg.model.arch == "reference"
        metric = "val/pxap" if "openimages" in recipe else "val/max_box_acc_v2"
        assert cfg.optimized_metric == metric
        assert sweeper.study_name.startswith(f"wsol_{method}_{recipe.split('_')[1]}_")


def test_search_runs_through_the_slurm_launcher_in_batches():
    from hydra import compose, initialize_config_dir

    import camlab.cli

    overrides = ["hparams_search=wsol_adl", "experiment=wsol_cub_resnet50_cam",
                 "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                 "hydra.sweeper.batch=8"]  # fmt: skip
    with initialize_config_dir(camlab.cli.CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_
    assert cfg.hydra.launcher.tasks_per_node == 4
    assert cfg.hydra.sweeper.batch == 8 and cfg.hydra.sweeper.budget == 30
    assert OmegaConf.to_yaml(cfg.hydra.sweep).count("subdir: trial_${hydra.job.num}") == 1
