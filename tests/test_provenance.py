"""The code digest that names what computed a fine-tuning run (``hybridconv.provenance``)."""

from __future__ import annotations

import shutil

from hybridconv import provenance


def test_the_digest_is_stable_and_covers_every_finetuning_source(tmp_path, monkeypatch):
    code = provenance.code_on_disk()
    assert len(code) == 12 and int(code, 16) >= 0 and provenance.code_on_disk() == code
    names = {f"{p.parent.name}/{p.name}" for p in provenance.finetune_sources()}
    assert {"finetune/trainer.py", "finetune/optimizer.py", "experiments/runner.py",
            "hybridconv/spec.py", "sim/runner.py"} <= names
    copy = tmp_path / "hybridconv"
    shutil.copytree(provenance.PACKAGE, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE", copy)
    assert provenance.code_on_disk() == code  # the same files give the same digest
    for rel in ("finetune/sampler.py", "spec.py", "sim/runner.py"):
        f = copy / rel
        text = f.read_text()
        f.write_text(text + "# a comment\n")
        assert provenance.code_on_disk() != code, rel  # any byte of any source counts
        f.write_text(text)
    (copy / "theory" / "bound.py").write_text("# not run by fine-tuning\n")
    assert provenance.code_on_disk() == code


def test_the_digest_covers_the_library_versions(monkeypatch):
    code = provenance.code_on_disk()
    real = provenance.versions()
    monkeypatch.setattr(provenance, "versions", lambda: {**real, "torch": "0.0.0"})
    assert provenance.code_on_disk() != code
    assert set(real) == {"python", "numpy", "torch", "transformers", "peft"}


def test_a_process_names_the_code_it_loaded_not_the_files_changed_under_it(tmp_path,
                                                                          monkeypatch):
    """A sweep started before a change of the sources (a merge during a long grid) runs the
    code it loaded: its rows must not take the new files' digest."""
    import hybridconv.finetune.trainer  # noqa: F401 -- pins the digest at import

    loaded = provenance.finetune_code()
    assert loaded == provenance.code_on_disk()
    copy = tmp_path / "hybridconv"
    shutil.copytree(provenance.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE", copy)
    (copy / "finetune" / "trainer.py").write_text("# changed on disk\n")
    assert provenance.code_on_disk() != loaded
    assert provenance.finetune_code() == loaded
