"""Learning from the shop: the click model, judgments from the log, weighted training, replay evaluation, CLI."""

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from search.behaviour.click_model import fit_pbm, ips_weights, propensities
from search.behaviour.judgments_from_log import (SearchLogError, collect_judgments, judgments_from_log, parse_when,
                                                 query_key, write_judgments)
from search.behaviour.log import LoggedEvent, LoggedSearch, SearchLog, ShownHit
from search.behaviour.replay import replay_log
from search.evaluation.judgments import JudgedQuery, JudgmentsError, read_judgments
from vitrina.cli import cli

THETA = 1.0 / np.arange(1, 11) ** 0.8  # examination of positions 1..10


# -- the click model -------------------------------------------------------------------------------------------
def simulate(rng, *, queries=200, products=10, sessions=50, shuffle=0.5):
    """Impressions of a PBM with known θ (``THETA``) and γ: each query shows its products best-γ first, except
    that a ``shuffle`` share of sessions shows a random order and the others swap two products (rank variation)."""
    gamma = rng.uniform(0.05, 0.9, (queries, products))
    pairs, positions = [], []
    for q in range(queries):
        best = np.argsort(-gamma[q])
        for _ in range(sessions):
            order = rng.permutation(products) if rng.random() < shuffle else best.copy()
            if shuffle and rng.random() >= shuffle:
                i, j = rng.integers(products, size=2)
                order[[i, j]] = order[[j, i]]
            pairs.append(q * products + order)
            positions.append(np.arange(1, products + 1))
    pairs, positions = np.concatenate(pairs), np.concatenate(positions)
    clicks = rng.random(pairs.size) < THETA[positions - 1] * gamma.reshape(-1)[pairs]
    return pairs, positions, clicks, gamma.reshape(-1)


def test_em_recovers_the_examination_probabilities_of_a_known_click_model():
    pairs, positions, clicks, gamma = simulate(np.random.default_rng(0))
    model = fit_pbm(pairs, positions, clicks)
    assert model.converged and model.theta[0] == 1.0 and model.theta.shape == (10,)
    error = np.abs(model.theta - THETA)
    assert error.max() <= 0.05, (model.theta.round(3), THETA.round(3))  # measured: 0.011 (mean 0.005)
    assert np.corrcoef(model.gamma, gamma)[0, 1] >= 0.8  # γ from 50 impressions a pair is noisier (0.885)
    assert np.all(np.diff(model.theta) < 0)
    naive = np.bincount(positions - 1, clicks) / np.bincount(positions - 1)  # click rates conflate γ with position
    assert np.abs(naive / naive[0] - THETA).max() > 2 * error.max()
    np.testing.assert_allclose(model.click_probability(pairs[:5], positions[:5]),
                               model.theta[positions[:5] - 1] * model.gamma[pairs[:5]])


def test_without_rank_variation_position_and_product_cannot_be_told_apart():
    pairs, positions, clicks, _ = simulate(np.random.default_rng(1), shuffle=0.0, sessions=40)
    assert len(set(zip(pairs.tolist(), positions.tolist()))) == 200 * 10  # each product at one position only
    model = fit_pbm(pairs, positions, clicks)
    assert np.abs(model.theta - THETA).max() > 0.1  # every product always at one position: θ not identifiable


def test_em_edge_cases():
    assert fit_pbm([0, 1], [1, 2], [0, 0]).theta.tolist() == [1.0, 1.0]  # no click: no correction
    assert fit_pbm([0, 0, 1], [1, 3, 7], [1, 0, 1], n_positions=4).theta.shape == (4,)  # deeper share the last
    with pytest.raises(ValueError, match="1-based"):
        fit_pbm([0], [0], [1])
    with pytest.raises(ValueError, match="differ in length"):
        fit_pbm([0, 1], [1], [1])


def test_propensities_and_clipped_inverse_propensity_weights():
    theta = [1.0, 0.5, 0.25, 0.05]
    assert propensities(theta, [1, 2, 3, 4, 9]).tolist() == [1.0, 0.5, 0.25, 0.05, 0.05]
    assert ips_weights(theta, [1, 2, 3, 4, 9]).tolist() == [1.0, 2.0, 4.0, 10.0, 10.0]
    assert ips_weights(theta, [4], max_weight=30).tolist() == pytest.approx([20.0])
    assert ips_weights([1.0, 0.0], [2]).tolist() == [10.0]
    with pytest.raises(ValueError):
        propensities(theta, [0])
    with pytest.raises(ValueError):
        ips_weights(theta, [1], max_weight=0.5)


# -- a log written by SearchLog -------------------------------------------------------------------------------
def hits(*ids):
    return tuple(ShownHit(product_id=p, position=i, score=1.0 / i) for i, p in enumerate(ids, start=1))


def write_log(folder, searches, events=()):
    log = SearchLog(folder)
    for s in searches:
        log.record_search(s)
    for e in events:
        log.record_event(e)
    log.flush()
    log.close()
    return folder


def text_search(qid, at, text, shown, *, weight=1.0, where=None):
    return LoggedSearch(query_id=qid, at=at, terms=[{"text": text, "weight": weight}], shown=hits(*shown), where=where)


def event(qid, pid, kind, position, at):
    return LoggedEvent(query_id=qid, product_id=pid, kind=kind, position=position, at=at)


@pytest.fixture
def shop_log(tmp_path):
    """Two searches for "red widget" (pooled), one photo query, one filtered "blue" query at t=3000."""
    searches = [
        text_search("a", 1000, "red widget", ["P000", "P004", "P008", "P012", "P016"]),
        text_search("b", 2000, "red widget", ["P004", "P000", "P008"]),
        LoggedSearch(query_id="c", at=2100, terms=[{"image_sha256": "ab" * 32, "weight": 1.0}], shown=hits("P001", "P005")),
        text_search("d", 3000, "blue widget", ["P002", "P006"], weight=0.7, where={"price": {"lt": 20}}),
    ]
    events = [event("a", "P008", "click", 3, 1001), event("a", "P008", "purchase", 3, 1002), event("a", "P000", "click", 1, 1003),
              event("b", "P004", "add_to_cart", 1, 2001), event("c", "P005", "click", 2, 2101),
              event("d", "P006", "click", 2, 3001), event("gone", "P001", "click", 1, 999)]
    return write_log(tmp_path / "log", searches, events)


def by_query(rows):
    out = {}
    for r in rows:
        out.setdefault(r["text"], {})[r["product_id"]] = r
    return out


def test_judgments_labels_weights_and_skipped_photo_queries(shop_log):
    found = collect_judgments(shop_log, labels="event")
    assert (found.searches, found.in_window, found.replayable) == (4, 4, 3)
    assert found.skipped == {"photo": 1, "vector": 0, "product": 0, "other": 0}
    assert found.events == 6 and found.orphan_events == 1 and found.queries == 2
    rows = by_query(found.rows)
    red, blue = rows["red widget"], rows["blue widget"]
    assert {p: r["label"] for p, r in red.items()} == {"P000": 1, "P004": 2, "P008": 3, "P012": 0, "P016": 0}
    assert {p: r["label"] for p, r in blue.items()} == {"P002": 0, "P006": 1}
    assert len({r["query_id"] for r in red.values()}) == 1 and red["P000"]["query_id"] == query_key([("text", "red widget", 1.0)], None)
    assert found.positives == {"click": 2, "add_to_cart": 1, "purchase": 1}
    theta = np.asarray(found.theta)
    assert theta[0] == 1.0 and len(theta) == 5
    assert red["P008"]["weight"] == pytest.approx(min(1 / theta[2], 10), rel=1e-4)  # bought after a click at 3
    assert red["P000"]["weight"] == red["P004"]["weight"] == 1.0  # chosen at position 1
    assert blue["P006"]["weight"] == pytest.approx(min(1 / theta[1], 10), rel=1e-4)
    assert red["P012"]["weight"] == 1.0
    assert blue["P006"]["weights"] == {"text": 0.7} and blue["P006"]["where"] == {"price": {"lt": 20}}
    assert red["P000"]["logged_at"].startswith("1970-01-01T00:33:20")  # the later of its two searches (t=2000)
    plain = judgments_from_log(shop_log, correct_bias=False, labels="event")
    assert {r["weight"] for r in plain} == {1.0} and len(plain) == len(found.rows)
    assert collect_judgments(shop_log, min_impressions=2).rows and all(
        r["product_id"] in ("P000", "P004", "P008") for r in collect_judgments(shop_log, min_impressions=2).rows)


def rows_weight(rows, pid):
    return next(r["weight"] for r in rows if r["product_id"] == pid)


def simulated_log(folder, pairs, clicks):
    """``simulate``'s impressions (5 products a search) and clicks as searches and events written by SearchLog."""
    searches, events = [], []
    for n, start in enumerate(range(0, pairs.size, 5)):
        qid, q = f"s{n}", pairs[start] // 5
        shown = [f"Q{q}-{pairs[i] % 5}" for i in range(start, start + 5)]
        searches.append(text_search(qid, 1000 + n, f"query {q}", shown))
        events += [event(qid, shown[i], "click", i + 1, 1000.5 + n) for i in range(5) if clicks[start + i]]
    return write_log(folder, searches, events)


def test_a_simulated_shop_log_gives_theta_and_inverse_propensity_weights(tmp_path):
    """Searches and clicks drawn from the known click model, written through SearchLog, read back."""
    rng = np.random.default_rng(3)
    pairs, _, clicks, _ = simulate(rng, queries=30, products=5, sessions=40)
    found = collect_judgments(simulated_log(tmp_path / "log", pairs, clicks), max_weight=3.0, labels="event")
    assert found.impressions == pairs.size and found.queries == 30 and found.replayable == 1200
    assert np.abs(np.asarray(found.theta) - THETA[:5]).max() <= 0.08, found.theta  # fewer impressions: looser
    deep = [r["weight"] for r in found.rows if r["label"] > 0]
    assert max(deep) > 1.5 and all(1.0 <= w <= 3.0 for w in deep)  # clicked lower down: weighs more, clipped at 3
    assert all(r["weight"] == 1.0 for r in found.rows if r["label"] == 0)


def test_before_and_after_split_the_log_by_time(shop_log):
    older = collect_judgments(shop_log, before=2500)
    newer = collect_judgments(shop_log, after="1970-01-01T00:41:40")  # t=2500, UTC
    assert (older.in_window, older.skipped["photo"], older.queries) == (3, 1, 1)
    assert (newer.in_window, newer.queries) == (1, 1) and {r["text"] for r in newer.rows} == {"blue widget"}
    assert parse_when("1970-01-01T00:41:40+00:00") == parse_when("2500") == 2500.0
    with pytest.raises(ValueError, match="not a date"):
        parse_when("yesterday")


def test_written_judgments_read_back_with_their_weights(shop_log, tmp_path):
    rows = judgments_from_log(shop_log, labels="event")
    queries = {q.text: q for q in read_judgments(write_judgments(rows, tmp_path / "out" / "log.jsonl"))}
    red, blue = queries["red widget"], queries["blue widget"]
    assert red.labels == {"P000": 1, "P004": 2, "P008": 3, "P012": 0, "P016": 0}
    assert red.label_weights["P008"] == rows_weight(rows, "P008") and red.label_weights["P012"] == 1.0
    assert red.weights is None
    assert blue.search_args() == {"text": "blue widget", "image": None, "weights": {"text": 0.7}, "where": {"price": {"lt": 20}}}
    assert red.kind == "text" and red.query_id.startswith("log-")


def test_rows_carry_their_evidence_and_it_reads_back(shop_log, tmp_path):
    corrected, plain = collect_judgments(shop_log), collect_judgments(shop_log, correct_bias=False)
    red = by_query(corrected.rows)["red widget"]
    theta = corrected.theta
    # P000 was shown at 1 and 2 and clicked once; P012 shown once at 4, never acted on
    assert red["P000"]["acted"] == 1 and red["P000"]["examined"] == pytest.approx(theta[0] + theta[1], abs=1e-4)
    assert red["P012"]["acted"] == 0 and red["P012"]["examined"] == pytest.approx(theta[3], abs=1e-4)
    assert by_query(plain.rows)["red widget"]["P000"]["examined"] == 2.0  # uncorrected: impressions
    queries = {q.text: q for q in read_judgments(write_judgments(corrected.rows, tmp_path / "j.jsonl"))}
    assert queries["red widget"].evidence["P000"] == (1.0, red["P000"]["examined"])
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"query_id": "q", "text": "x", "product_id": "P", "label": 1, "acted": 1}) + "\n")
    with pytest.raises(JudgmentsError, match=r"bad.jsonl:1: examined must be a finite number >= 0"):
        read_judgments(path)


def test_a_bad_row_weight_is_named(tmp_path):
    from search.evaluation.judgments import JudgmentsError

    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps({"query_id": "q", "text": "x", "product_id": "P", "label": 1, "weight": -1}) + "\n")
    with pytest.raises(JudgmentsError, match=r"j.jsonl:1: weight must be a finite number >= 0"):
        read_judgments(path)
    path.write_text(json.dumps({"query_id": "q", "text": "x", "product_id": "P", "label": 1, "weight": "inf"}) + "\n")
    with pytest.raises(JudgmentsError, match="j.jsonl:1: weight"):
        read_judgments(path)


def test_product_terms_and_missing_logs(tmp_path):
    similar = LoggedSearch(query_id="s", at=10, terms=[{"product": "P001", "weight": 1.0}, {"text": "in red", "weight": 0.5}],
                           shown=hits("P002", "P003"))
    folder = write_log(tmp_path / "log", [similar], [event("s", "P003", "click", 2, 11)])
    assert collect_judgments(folder).skipped["product"] == 1
    rows = judgments_from_log(folder, product_terms=True)
    assert rows[0]["terms"] == [{"product": "P001", "weight": 1.0}, {"text": "in red", "weight": 0.5}]
    assert read_judgments(write_judgments(rows, tmp_path / "p.jsonl"))[0].search_args() == {
        "terms": [({"product": "P001"}, 1.0), ("in red", 0.5)]}
    with pytest.raises(SearchLogError, match="no such log folder"):
        judgments_from_log(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SearchLogError, match="no search log in it"):
        judgments_from_log(tmp_path / "empty")


# -- training with label weights ------------------------------------------------------------------------------
def _old_loss(objective, scores, labels, mask, weights, max_label):
    """``search.rerank.model._loss`` as it was before label weights (verbatim)."""
    import torch
    import torch.nn.functional as F

    if objective == "pointwise":
        target = labels / max(max_label, 1.0)
        losses = F.binary_cross_entropy_with_logits(scores, target, reduction="none") * mask
        per_query = losses.sum(1) / mask.sum(1).clamp(min=1)
    else:
        gain = torch.pow(2.0, labels) - 1.0
        pair = (gain[:, :, None] - gain[:, None, :]).clamp(min=0) * (mask[:, :, None] & mask[:, None, :])
        diff = scores[:, :, None] - scores[:, None, :]
        per_query = (pair * F.softplus(-diff)).sum((1, 2)) / pair.sum((1, 2)).clamp(min=1e-9)
    return (per_query * weights).sum() / weights.sum().clamp(min=1e-9)


def training_data(seed, count=12, n=15):
    from search.rerank.features import QUERY_FEATURES, feature_names
    from search.rerank.model import QueryData

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        rows = rng.normal(size=(n, len(feature_names(())))).astype(np.float32)
        labels = np.minimum(np.maximum(rows[:, 0] * 1.5 + rng.normal(0, 0.5, n), 0), 3).round().astype(np.float32)
        out.append(QueryData(rows=rows, query=rng.normal(size=len(QUERY_FEATURES)).astype(np.float32), labels=labels,
                             mask=np.ones(n, bool), judged=np.sort(labels)[::-1], fused=rng.normal(size=n).astype(np.float32),
                             kind="text" if i % 3 else "photo"))
    return out


@pytest.mark.parametrize("objective", ["pairwise", "pointwise"])
def test_weights_of_one_train_exactly_as_before(objective):
    import torch

    from search.rerank.model import RerankerConfig, _loss, fit

    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(3, 8, generator=g), torch.randint(0, 4, (3, 8), generator=g).float()
    mask, qw = torch.rand(3, 8, generator=g) > 0.2, torch.tensor([1.0, 0.5, 2.0])
    before = _old_loss(objective, scores, labels, mask, qw, 3.0)
    assert torch.equal(_loss(objective, scores, labels, mask, qw, 3.0), before)
    assert torch.equal(_loss(objective, scores, labels, mask, qw, 3.0, torch.ones(3, 8)), before)
    assert not torch.equal(_loss(objective, scores, labels, mask, qw, 3.0, torch.full((3, 8), 2.0)), before)

    config = RerankerConfig(objective=objective, epochs=4, seed=5, hidden=8)
    train, val = training_data(1), training_data(2, count=4)
    plain = fit(train, val, config)
    ones = fit([replace(d, weights=np.ones(len(d.labels), np.float32)) for d in train], val, config)
    assert [e.loss for e in ones.epochs] == [e.loss for e in plain.epochs] and ones.best_epoch == plain.best_epoch
    assert all(np.array_equal(ones.params[k], plain.params[k]) for k in plain.params)
    heavy = fit([replace(d, weights=np.where(d.labels > 0, 5.0, 1.0).astype(np.float32)) for d in train], val, config)
    assert [e.loss for e in heavy.epochs] != [e.loss for e in plain.epochs]


def test_label_weights_reach_the_training_data_and_log_judgments_train(engine, shop_log, tmp_path):
    from search.rerank.model import RerankerConfig
    from search.rerank.train import query_candidates, query_data, train_reranker

    query = JudgedQuery(query_id="q", kind="text", text="red square widget", labels={"P000": 3, "P004": 0},
                        label_weights={"P000": 4.0})
    candidates, _ = query_candidates(engine, query, depth=10)
    ids = [p["id"] for p in candidates.products]
    data = query_data(candidates, query)
    assert data.weights is not None and data.weights[ids.index("P000")] == 4.0
    assert sorted(set(data.weights.tolist())) == [1.0, 4.0]
    assert query_data(candidates, replace(query, label_weights={})).weights is None

    queries = read_judgments(write_judgments(judgments_from_log(shop_log), tmp_path / "log.jsonl"))
    _, report = train_reranker(engine, queries, config=RerankerConfig(epochs=2, id_queries=0, val_fraction=0.0, hidden=4))
    assert report.train_queries == 2 and report.skipped == 0 and len(report.epochs) == 2


# -- replay evaluation ----------------------------------------------------------------------------------------
def test_replay_ranks_the_logged_choice_first(engine, tmp_path):
    first = [h.product_id for h in engine.search("red square widget", k=5).hits]
    searches = [
        text_search("a", 100, "red square widget", [first[2], first[1], first[0]]),  # it was shown third then
        text_search("b", 200, "red square widget", first[:3]),
        LoggedSearch(query_id="c", at=300, terms=[{"image_sha256": "cd" * 32, "weight": 1.0}], shown=hits("P001")),
        text_search("d", 400, "green widget", ["P001"]),
        text_search("e", 500, "blue widget", ["P002"]),  # no event: not scored
    ]
    events = [event("a", first[0], "click", 3, 101), event("b", first[0], "purchase", 1, 201),
              event("c", "P001", "click", 1, 301), event("d", "NOT-IN-INDEX", "click", 1, 401)]
    folder = write_log(tmp_path / "log", searches, events)
    report = replay_log(engine, folder, ks=(1, 10))
    assert (report.searches, report.with_events, report.replayed, report.queries) == (5, 4, 2, 1)
    assert report.skipped["photo"] == 1 and report.skipped["gone"] == 1 and report.gone_products == 1
    assert report.mrr == 1.0 and report.ndcg == {"ndcg@1": 1.0, "ndcg@10": 1.0}
    assert report.logged["mrr"] == pytest.approx((1 / 3 + 1) / 2)
    assert replay_log(engine, folder, after=150).replayed == 1 and replay_log(engine, folder, before=150).replayed == 1
    assert replay_log(engine, folder, rerank=False).to_json()["mrr"] == 1.0

    similar = LoggedSearch(query_id="f", at=600, terms=[{"product": first[0], "weight": 1.0}], shown=hits(first[1]),
                           params={"k": 10})  # "more like this": no exclude logged, the product itself is left out
    folder = write_log(tmp_path / "log2", [similar], [event("f", first[0], "click", 1, 601)])
    assert replay_log(engine, folder).skipped["product"] == 1
    liked = replay_log(engine, folder, product_terms=True)
    assert liked.replayed == 1 and liked.mrr == 0.0  # excluded, as the shop showed it


# -- the command line -----------------------------------------------------------------------------------------
def test_judgments_command(shop_log, tmp_path):
    runner = CliRunner()
    out = tmp_path / "j.jsonl"
    result = runner.invoke(cli, ["judgments", "--from-log", str(shop_log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 in the log" in result.output and "1 photo" in result.output and "purchase 1" in result.output
    assert "position bias θ (position 1 = 1): 1.00" in result.output and len(read_judgments(out)) == 2
    data = json.loads(runner.invoke(cli, ["judgments", "--from-log", str(shop_log), "--out", str(out), "--json",
                                          "--no-bias-correction", "--before", "1970-01-01T00:41:40"]).stdout)
    assert data["judged_pairs"] == 5 and data["bias_corrected"] is False and data["in_window"] == 3
    assert {q.label_weights.get("P008") for q in read_judgments(out)} == {1.0}

    missing = runner.invoke(cli, ["judgments", "--from-log", str(tmp_path / "nowhere"), "--out", str(out)])
    assert missing.exit_code == 1 and "no such log folder" in missing.output
    alone = runner.invoke(cli, ["judgments", "--from-log", "--out", str(out)], env={"VITRINA_INDEX": None})
    assert alone.exit_code == 2 and "--from-log without a location" in alone.output
    bad = runner.invoke(cli, ["judgments", "--from-log", str(shop_log), "--out", str(out), "--before", "someday"])
    assert bad.exit_code == 2 and "not a date: 'someday'" in bad.output
    order = runner.invoke(cli, ["judgments", "--from-log", str(shop_log), "--out", str(out), "--after", "2000-01-02",
                                "--before", "2000-01-01"])
    assert order.exit_code == 2 and "--after must be earlier than --before" in order.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(cli, ["judgments", "--from-log", str(tmp_path / "empty"), "--out", str(out)])
    assert empty.exit_code == 1 and "no search log in it" in empty.output
    none = runner.invoke(cli, ["judgments", "--from-log", str(shop_log), "--out", str(tmp_path / "x.jsonl"), "--after", "2030-01-01"])
    assert none.exit_code == 1 and "no judged queries from 2030-01-01" in none.output and not (tmp_path / "x.jsonl").exists()


def test_eval_from_log_command(built_index, tiny_encoder, tmp_path, monkeypatch):
    from search import SearchEngine

    monkeypatch.setattr("search.engine.load_encoder", lambda config: tiny_encoder)
    with SearchEngine.open(built_index, encoder=tiny_encoder) as engine:
        top = engine.search("yellow circle widget", k=1).hits[0].product_id
    folder = write_log(tmp_path / "log", [text_search("a", 100, "yellow circle widget", ["P001", top])],
                       [event("a", top, "add_to_cart", 2, 101)])
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", "--index", str(built_index), "--from-log", str(folder), "--no-rerank"])
    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1 searches" in result.output and "today" in result.output and "1.000" in result.output
    data = json.loads(runner.invoke(cli, ["eval", "--index", str(built_index), "--from-log", str(folder), "--json",
                                          "-k", "5"]).stdout)
    assert data["mrr"] == 1.0 and data["ndcg"] == {"ndcg@5": 1.0} and data["logged"]["mrr"] == 0.5
    both = runner.invoke(cli, ["eval", "--index", str(built_index), "--from-log", str(folder), "--judgments", str(tmp_path / "x")])
    assert both.exit_code == 2
    neither = runner.invoke(cli, ["eval", "--index", str(built_index)])
    assert neither.exit_code == 2 and "give --judgments FILE or --from-log [DIR|URL]" in neither.output
    late = runner.invoke(cli, ["eval", "--index", str(built_index), "--from-log", str(folder), "--after", "2030-01-01"])
    assert late.exit_code == 1 and "no logged search with events could be replayed" in late.output
    bad = runner.invoke(cli, ["eval", "--index", str(built_index), "--from-log", str(folder), "--before", "13/13/13"])
    assert bad.exit_code == 2 and "not a date" in bad.output

    import shutil

    from search.behaviour.log import INDEX_LOG_FOLDER

    own = shutil.copytree(built_index, tmp_path / "own-index")  # --from-log alone: the log `serve --log` keeps with it
    shutil.copytree(folder, own / INDEX_LOG_FOLDER)
    result = runner.invoke(cli, ["eval", "--index", str(own), "--from-log", "--no-rerank", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["log"] == str(own / INDEX_LOG_FOLDER)
    out = tmp_path / "own.jsonl"
    assert runner.invoke(cli, ["judgments", "--index", str(own), "--from-log", "--out", str(out)]).exit_code == 0
    assert out.is_file()


def test_the_index_log_location_follows_the_metadata(tmp_path):
    from search.behaviour.log import index_log_location

    assert index_log_location(tmp_path) == str(tmp_path / "search-log")
    assert index_log_location(tmp_path, "postgresql://shop@db/shop") == "postgresql+psycopg://shop@db/shop"
    (tmp_path / "database.json").write_text(json.dumps({"url": "postgresql+psycopg://vitrina@db/s"}))
    assert index_log_location(tmp_path) == "postgresql+psycopg://vitrina@db/s"


def test_rate_labels_undo_the_position_bias_of_a_known_click_model(tmp_path):
    """Clicks drawn from a position-based model with known θ and attractiveness γ, written through SearchLog:
    the bias-corrected click-through rate (clicks over the θ the product was examined with) labels products
    as ``ceil(3 γ)`` would far more often than the raw rate, which marks down whatever was shown low."""
    import math

    rng = np.random.default_rng(5)
    pairs, _, clicks, gamma = simulate(rng, queries=60, products=5, sessions=60)
    folder = simulated_log(tmp_path / "log", pairs, clicks)

    def agreement(correct_bias):
        rows = judgments_from_log(folder, correct_bias=correct_bias)
        truth = {f"Q{k // 5}-{k % 5}": math.ceil(3 * g) for k, g in enumerate(gamma)}
        assert {r["weight"] for r in rows} == {1.0} and {r["label"] for r in rows} <= {0, 1, 2, 3}
        return np.mean([r["label"] == truth[r["product_id"]] for r in rows])

    corrected, raw = agreement(True), agreement(False)
    print(f"rate labels agreeing with ceil(3 gamma): corrected {corrected:.3f}, raw {raw:.3f}")
    assert corrected >= raw + 0.15 and corrected >= 0.6, (corrected, raw)
    with pytest.raises(ValueError, match="labels must be one of rate, event"):
        judgments_from_log(folder, labels="clicks")
