"""The finish of a --time-limit run: priced at what it runs, optional work dropped in a stated order."""

import pytest

from imagefit.training.finish_plan import (
    DROP_ORDER,
    SMALL_INDEX,
    FinishBudget,
    FinishCounts,
    FinishWork,
    finish_seconds,
    plan_finish,
)

COUNTS = FinishCounts(train=4000, val=500, test=500)
FULL = FinishWork(sizes=(192, 224, 256), views=2, index_size=5000)
PRICE = dict(per_image=0.01, counts=COUNTS, report_seconds=15.0)


def test_every_piece_is_priced_at_the_size_and_views_it_may_run_at():
    # sizes cost (224/192)^2 = 1.36 and (256/192)^2 = 1.78 a training-size image; the dearest candidate,
    # 1.78 x 2 views = 3.56, prices evaluation (val + test) and the index (4000 training + 500 val images).
    factors = 1 + (224 / 192) ** 2 + (256 / 192) ** 2
    dearest = (256 / 192) ** 2 * 2
    expected = 0.01 * (500 * factors * 2 + 1000 * dearest + 4500 * dearest) + 15.0
    assert finish_seconds(FULL, **PRICE) == pytest.approx(expected)
    plain = FinishWork(sizes=(192,), views=1, index_size=0)
    assert finish_seconds(plain, **PRICE) == pytest.approx(0.01 * (500 + 1000) + 15.0)
    assert finish_seconds(plain, **PRICE, choose=False) == pytest.approx(0.01 * 1000 + 15.0)


def test_what_fits_is_kept_whole():
    work, dropped = plan_finish(FULL, left=finish_seconds(FULL, **PRICE), **PRICE)
    assert (work, dropped) == (FULL, [])


def test_a_short_finish_drops_optional_work_in_the_stated_order():
    steps = []
    work = FULL
    for name, cheaper in DROP_ORDER:  # the price after each drop, in order
        work = cheaper(work)
        steps.append((name, work, finish_seconds(work, **PRICE)))
    assert [s[2] for s in steps] == sorted((s[2] for s in steps), reverse=True), "each drop is cheaper"
    for count, (_, expected, seconds) in enumerate(steps, start=1):
        work, dropped = plan_finish(FULL, left=seconds + 0.001, **PRICE)
        assert work == expected
        assert dropped == [name for name, *_ in steps[:count]]
    assert steps[0][1].sizes == (192,) and steps[1][1].index_size == SMALL_INDEX
    assert steps[2][1].views == 1 and steps[3][1].index_size == 0


def test_when_nothing_fits_the_floor_still_evaluates():
    work, dropped = plan_finish(FULL, left=0.0, **PRICE)
    assert work == FinishWork(sizes=(192,), views=1, index_size=0)
    assert len(dropped) == len(DROP_ORDER)


def test_nothing_is_said_dropped_that_was_not_asked_for():
    asked = FinishWork(sizes=(192,), views=1, index_size=0)  # no tuning, no mirror, no index
    assert plan_finish(asked, left=0.0, **PRICE) == (asked, [])


def test_the_budget_settles_from_the_time_left_and_its_measured_first_pass():
    now = [1000.0]
    budget = FinishBudget(deadline=1100.0, counts=COUNTS, index_size=5000, clock=lambda: now[0])
    # 100 s left; the first pass (500 val images, 2 views at 0.01 s) just took 10 s and is priced again.
    work = budget.settle(per_image=0.01, spent=10.0, sizes=FULL.sizes, views=2)
    assert work == plan_finish(FULL, left=110.0, **PRICE)[0]
    assert budget.work == work and budget.said().startswith("time limit: the finish leaves out larger evaluation sizes")
    roomy = FinishBudget(deadline=1e6, counts=COUNTS, index_size=5000, clock=lambda: now[0])
    assert roomy.settle(per_image=0.01, spent=10.0, sizes=FULL.sizes, views=2) == FULL and roomy.said() == ""


def test_choose_inference_tries_only_what_the_budget_settled(tiny_run):
    import time

    from imagefit import runs
    from imagefit.models.trained import load_trained
    from imagefit.training.polish import choose_inference

    run = runs.load_run(tiny_run)
    val = [s for s in run.split() if s.split == "val"]
    budget = FinishBudget(deadline=time.perf_counter(), counts=FinishCounts(40, len(val)), index_size=5000)
    model = load_trained(run)
    _, candidates, _ = choose_inference(model, run.train_preprocess, val, run.classes, mirror=True, budget=budget)
    assert budget.work == FinishWork(sizes=(32,), views=1, index_size=0), "no time left: the floor"
    assert [(c["size"], c["tta_n"]) for c in candidates] == [(32, 1)]
    _, everything, _ = choose_inference(model, run.train_preprocess, val, run.classes, mirror=True)
    assert {(c["size"], c["tta_n"]) for c in everything} == {(32, 1), (32, 2), (48, 1), (48, 2)}
