"""luz._dist.plan: what a run in one process and a run in a process group get from the seam
(the process group is real: this process alone, over Gloo)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import luz
from luz._dist.plan import ProcessGroup, SingleProcess, plan_for
from luz._dist.sync import DistributedSync, GatherForEvaluation, HeldStop, ReducedMetrics
from luz.callbacks.defaults import Metrics, Profile


def _loader(n: int = 10) -> DataLoader[tuple[torch.Tensor, ...]]:
    return DataLoader(TensorDataset(torch.arange(float(n)).view(-1, 1)), batch_size=4, shuffle=True)


def test_a_single_process_plan_changes_nothing() -> None:
    plan = plan_for(luz.Accelerator(cpu=True, distributed=False))
    assert type(plan) is SingleProcess
    profile = Profile()
    for fit in (True, False):
        runner = plan.runner([profile], fit=fit)
        assert runner.callbacks == [profile]
        assert runner.stop_policy is None
    assert type(plan.metrics()) is Metrics
    train, valid = _loader(), _loader()
    assert plan.fit_loaders(train, valid) == (train, valid)
    assert plan.eval_loader(valid) is valid
    predictions = [torch.ones(2), torch.zeros(3)]
    assert plan.all_predictions(predictions) is predictions
    state = torch.get_rng_state()
    plan.start_fit()
    assert torch.equal(torch.get_rng_state(), state)


def test_a_process_group_plan_syncs_shards_and_gathers(one_rank_group: None) -> None:
    acc = luz.Accelerator(cpu=True, distributed=True)
    plan = plan_for(acc)
    assert isinstance(plan, ProcessGroup)
    profile = Profile()
    fit_runner = plan.runner([profile], fit=True)
    assert [type(cb) for cb in fit_runner.callbacks] == [DistributedSync, GatherForEvaluation, Profile]
    assert isinstance(fit_runner.stop_policy, HeldStop)
    eval_runner = plan.runner([profile])
    assert [type(cb) for cb in eval_runner.callbacks] == [GatherForEvaluation, Profile]
    assert eval_runner.stop_policy is None
    assert isinstance(plan.metrics(), ReducedMetrics)

    # The training sampler's seed is the number the global stream would draw next, read from a
    # copy: the global stream is not advanced, so the model initialises as in one process.
    torch.manual_seed(7)
    expected_seed = int(torch.randint(0, 2**31 - 1, ()).item())
    torch.manual_seed(7)
    state = torch.get_rng_state()
    train, valid = plan.fit_loaders(_loader(), _loader(6))
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(train.sampler, DistributedSampler)
    assert train.sampler.seed == expected_seed
    assert train.sampler.shuffle
    assert sorted(int(x) for (batch,) in valid for x in batch.flatten()) == list(range(6))  # one rank: all
    assert plan.fit_loaders(_loader(), None)[1] is None

    predictions = [torch.arange(3.0), torch.arange(3.0, 5.0)]
    gathered = plan.all_predictions(predictions)
    assert [p.tolist() for p in gathered] == [[0.0, 1.0, 2.0], [3.0, 4.0]]
    assert all(p.device == acc.device for p in gathered)
