"""The re-ranker's behaviour prior (search.rerank.behaviour) and its restraints for sparse, logged judgments."""

import math

import numpy as np
import pytest

from search.evaluation.judgments import JudgedQuery
from search.rerank.behaviour import (BEHAVIOUR_FEATURE, BehaviourPrior, mean_rate, out_of_fold, pool_evidence, prior_value,
                                     prior_values)
from search.rerank.features import build_features, channel_columns, feature_names, field_names
from search.rerank.model import (RESIDUAL_SKIP, SPARSE_WEIGHT_DECAY, WEIGHT_DECAY, Normaliser, RerankerConfig, _pad,
                                 _torch_model, fit, forward)
from search.rerank.train import query_data

from test_rerank import COLOURS, dataset, synthetic


def judged(qid, evidence):
    return JudgedQuery(query_id=qid, kind="text", text=qid, labels={p: 1 for p in evidence}, evidence=evidence)


def test_priors_pool_smooth_and_leave_a_query_out():
    a = judged("a", {"P1": (2.0, 2.0), "P2": (0.0, 3.0)})
    b = judged("b", {"P1": (1.0, 1.0), "P3": (1.0, 4.0)})
    totals = pool_evidence([a.evidence, b.evidence])
    assert totals == {"P1": (3.0, 3.0), "P2": (0.0, 3.0), "P3": (1.0, 4.0)}
    mean = mean_rate(totals)
    assert mean == pytest.approx(4.0 / 10.0)
    # by hand: log(((A + m mu) / (E + m)) / mu), m = 5
    assert prior_value(3.0, 3.0, mean=mean, strength=5.0) == pytest.approx(math.log((3 + 2.0) / 8.0 / 0.4))
    assert prior_value(0.0, 0.0, mean=mean) == 0.0 and prior_value(1.0, 1.0, mean=0.0) == 0.0
    priors = prior_values(totals, mean=mean)
    assert priors["P1"] > 0 > priors["P2"]
    # a's own evidence taken out: P1 keeps only b's, P2 is back to the mean, P3 (not a's) unchanged
    without_a = out_of_fold(totals, a.evidence, priors, mean=mean)
    assert without_a["P1"] == pytest.approx(prior_value(1.0, 1.0, mean=mean))
    assert without_a["P2"] == pytest.approx(0.0) and without_a["P3"] == priors["P3"]
    prior = BehaviourPrior.learn([a, b])
    assert prior is not None and prior.priors == priors and dict(prior.without(a)) == dict(without_a)
    stored = prior.to_json()
    assert stored["feature"] == BEHAVIOUR_FEATURE and set(stored["products"]) == {"P1", "P2", "P3"}
    assert BehaviourPrior.learn([JudgedQuery(query_id="h", kind="text", text="x", labels={"P1": 3})]) is None
    assert BehaviourPrior.learn([judged("c", {"P1": (0.0, 2.0)})]) is None  # nothing acted on: no prior


def test_the_behaviour_column_looks_priors_up_by_product_id():
    candidates, _ = synthetic(np.random.default_rng(1), n=6)
    attributes = ("color", BEHAVIOUR_FEATURE)
    assert field_names(attributes) == ("category", "brand", "attr:color")
    names = feature_names(attributes)
    assert names[-1] == BEHAVIOUR_FEATURE and len(names) == len(feature_names(("color",))) + 1
    ids = [p["id"] for p in candidates.products]
    rows, _ = build_features(candidates, attributes=attributes, behaviour={ids[0]: 0.5, ids[2]: -1.0})
    assert rows[:, -1].tolist() == [0.5, 0.0, -1.0, 0.0, 0.0, 0.0]
    plain, _ = build_features(candidates, attributes=("color",))
    np.testing.assert_array_equal(rows[:, :-1], plain)
    unknown, _ = build_features(candidates, attributes=attributes)
    assert not unknown[:, -1].any()
    assert len(channel_columns(attributes)) == len(channel_columns(("color",))) + 1


def test_sparse_judgments_restrain_the_model_by_default():
    skip, zero = RerankerConfig(unjudged="skip"), RerankerConfig()
    assert (skip.residual_bound, skip.averaging, skip.decay) == (RESIDUAL_SKIP, True, SPARSE_WEIGHT_DECAY)
    assert (zero.residual_bound, zero.averaging, zero.decay) == (0.0, False, WEIGHT_DECAY)
    assert RerankerConfig(unjudged="skip", arch="gated").residual_bound == 0.0
    chosen = RerankerConfig(unjudged="skip", residual=0.0, average=False, weight_decay=0.01)
    assert (chosen.residual_bound, chosen.averaging, chosen.decay) == (0.0, False, 0.01)
    for bad in ({"residual": -1.0}, {"residual": float("nan")}, {"residual": 1.0, "arch": "gated"}, {"weight_decay": -0.1}):
        with pytest.raises(ValueError):
            RerankerConfig(**bad)


def test_residual_forward_equals_torch_and_stays_within_its_bound():
    import torch

    attributes = ("color",)
    data = dataset(3, 4)
    norm = Normaliser.fit(data)
    model = _torch_model("concat", 8, attributes, residual=0.5, norm=norm)
    params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    assert params["residual"].tolist() == [0.5, feature_names(attributes).index("fused_z")]
    x, q, _, _ = _pad(data, norm)
    with torch.no_grad():
        expected = model(x, q).numpy()
    column = feature_names(attributes).index("fused_z")
    for i, d in enumerate(data):
        got = forward("concat", params, norm, d.rows, d.query)
        np.testing.assert_allclose(got, expected[i, : len(d.labels)], rtol=1e-4, atol=1e-5)
        assert np.all(np.abs(got - d.rows[:, column]) <= 0.5 + 1e-6)


def test_sparse_training_with_priors_learns_and_averages():
    rng = np.random.default_rng(5)
    data = []
    for i in range(24):
        candidates, query = synthetic(rng, colour=COLOURS[i % 4])
        shown = dict(list(query.labels.items())[:10])
        sparse = JudgedQuery(query_id=query.query_id, kind="text", text=query.text, labels=shown,
                             evidence={p: (float(v > 0), 1.0) for p, v in shown.items()})
        prior = BehaviourPrior.learn([sparse])
        data.append(query_data(candidates, sparse, attributes=("color", BEHAVIOUR_FEATURE), unjudged="skip",
                               behaviour=prior.without(sparse) if prior else None))
    assert all(not d.rows[:, -1].any() for d in data)  # one query alone: out of fold, every prior is the mean
    config = RerankerConfig(epochs=3, unjudged="skip")
    result = fit(data[:18], data[18:], config, attributes=("color", BEHAVIOUR_FEATURE))
    assert "residual" in result.params and all(np.isfinite(e.loss) for e in result.epochs)
    single = fit(data[:18], [], RerankerConfig(epochs=1, unjudged="skip"), attributes=("color", BEHAVIOUR_FEATURE))
    plain = fit(data[:18], [], RerankerConfig(epochs=1, unjudged="skip", average=False), attributes=("color", BEHAVIOUR_FEATURE))
    for k in plain.params:  # after one epoch the running mean is that epoch's weights
        np.testing.assert_array_equal(single.params[k], plain.params[k])
