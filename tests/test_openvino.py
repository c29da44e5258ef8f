"""The image tower on OpenVINO (runtime auto/openvino on the CPU): the same embeddings as
torch, recorded in every scan's identity, converted once per weights and version, a
damaged conversion rebuilt, and a scan made by one runtime never reused as the other's."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from policy_engine.errors import ConfigError, ModelError
from policy_engine.models import openvino_tower
from policy_engine.models.clip import ClipEmbedder
from policy_engine.models.openvino_tower import resolve_runtime

pytest.importorskip("openvino", reason="the openvino package is not installed")


def test_auto_takes_openvino_on_the_cpu_and_torch_elsewhere(monkeypatch) -> None:
    assert resolve_runtime("auto", "cpu", "bf16") == "openvino"
    assert resolve_runtime("auto", "cpu", "fp32") == "openvino"
    assert resolve_runtime("auto", "cpu", "fp16") == "torch"  # not a CPU precision of it
    assert resolve_runtime("auto", "cuda", "bf16") == "torch"
    assert resolve_runtime("AUTO", "hpu", "bf16") == "torch"
    assert resolve_runtime("torch", "cpu", "bf16") == "torch"
    with pytest.raises(ConfigError, match="on the CPU, but the device is cuda"):
        resolve_runtime("openvino", "cuda", "bf16")
    with pytest.raises(ConfigError, match="fp32 or bf16, not fp16"):
        resolve_runtime("openvino", "cpu", "fp16")
    with pytest.raises(ConfigError, match="choose one of: auto, torch, openvino"):
        resolve_runtime("onnx", "cpu", "bf16")
    monkeypatch.setattr(openvino_tower, "openvino_installed", lambda: False)
    assert resolve_runtime("auto", "cpu", "bf16") == "torch"
    with pytest.raises(ModelError, match="pip install openvino"):
        resolve_runtime("openvino", "cpu", "bf16")


@pytest.fixture
def conversions(monkeypatch) -> list[int]:
    """Every conversion made (its image size)."""
    made: list[int] = []
    convert = openvino_tower._convert

    def counted(tower, image_size: int):  # noqa: ANN202
        made.append(image_size)
        return convert(tower, image_size)

    monkeypatch.setattr(openvino_tower, "_convert", counted)
    return made


def _load(model: Path, runtime: str, dtype: str = "fp32") -> ClipEmbedder:
    return ClipEmbedder.load(str(model), device="cpu", dtype=dtype, runtime=runtime)


def test_openvino_embeds_as_torch_does_and_says_so(tiny_clip_dir: Path, conversions) -> None:
    pixels = np.random.default_rng(4).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    torch_fp32 = _load(tiny_clip_dir, "torch")
    openvino = _load(tiny_clip_dir, "openvino")
    assert torch_fp32.identity.runtime == "torch"
    assert openvino.identity.runtime.startswith("openvino 20")
    assert openvino.identity.dtype == "fp32" and openvino.image_tower is None
    a, b = torch_fp32.embed_images(pixels), openvino.embed_images(pixels)
    assert b.shape == (5, 16) and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert ((a * b).sum(axis=1) > 0.9999).all()
    bf16 = _load(tiny_clip_dir, "auto", "bf16")  # same conversion, compiled for bf16
    assert bf16.identity.runtime == openvino.identity.runtime
    assert ((a * bf16.embed_images(pixels)).sum(axis=1) > 0.99).all()
    assert len(conversions) <= 1  # converted once (or never, if cached by an earlier test)
    # text embeddings are torch's either way
    assert np.array_equal(torch_fp32.embed_texts(["a fight"]), openvino.embed_texts(["a fight"]))


def test_a_damaged_conversion_is_made_again(tiny_clip_dir: Path, conversions, caplog) -> None:
    first = _load(tiny_clip_dir, "openvino")
    folder = first._openvino.folder
    pixels = np.random.default_rng(5).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    expected = first.embed_images(pixels)
    weights = folder / "tower.bin"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated file, as a crash leaves
    conversions.clear()
    with caplog.at_level(logging.WARNING):
        again = _load(tiny_clip_dir, "openvino")
    assert conversions == [32] and "does not load" in caplog.text
    assert np.allclose(again.embed_images(pixels), expected, atol=1e-6)
    shutil.rmtree(folder)  # gone altogether: converted again, quietly
    conversions.clear()
    _load(tiny_clip_dir, "openvino")
    assert conversions == [32] and (folder / "tower.xml").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_cache_that_cannot_be_written_costs_a_conversion_not_the_run(
    tiny_clip_dir: Path, conversions, caplog, monkeypatch
) -> None:
    import openvino

    def full_disk(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("basic_ios::clear: iostream error")  # what a full disk gives

    first = _load(tiny_clip_dir, "openvino")
    shutil.rmtree(first._openvino.folder)
    monkeypatch.setattr(openvino, "save_model", full_disk)
    pixels = np.random.default_rng(6).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING):
        embedder = _load(tiny_clip_dir, "openvino")
    assert "could not be kept" in caplog.text and conversions
    assert np.allclose(embedder.embed_images(pixels), first.embed_images(pixels), atol=1e-6)
    folder = first._openvino.folder
    assert not folder.exists() and not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_a_scan_by_one_runtime_is_not_reused_as_the_other(
    store, tiny_clip_dir: Path, colour_video: Path
) -> None:
    from policy_engine.media.video import SamplingSpec
    from policy_engine.models.provider import ModelProvider
    from policy_engine.pipeline import AnalysisOptions
    from policy_engine.pipeline.scan import Scanner
    from policy_engine.policy.defaults import DEFAULT_CATEGORIES
    from policy_engine.policy.loader import parse_ruleset

    rules = parse_ruleset(
        "ruleset: r\nversion: 1\ncategories:\n"
        + "".join(f"  {c.name}: {{prompts: [{c.prompts[0]!r}], null: {str(c.null).lower()}}}\n"
                  for c in DEFAULT_CATEGORIES)
        + "rules:\n  - id: x\n    when: {category: violence, coverage_above: 50%}\n"
        "    then: {review: required}\n",
        "r.yaml",
    )  # fmt: skip

    def scan(runtime: str) -> tuple[str, int]:
        models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32", runtime=runtime)
        scanner = Scanner(store, [rules], models, AnalysisOptions(sampling=SamplingSpec(fps=1)))
        [outcome] = scanner.scan([colour_video])
        assert outcome.status != "failed", outcome.error
        return outcome.status, outcome.scan_id

    status, torch_scan = scan("torch")
    assert status == "scanned" and store.scan(torch_scan).runtime == "torch"
    status, openvino_scan = scan("openvino")
    assert status == "scanned" and store.scan(openvino_scan).runtime.startswith("openvino ")
    # the threads and policies each ran with, recorded with the scan
    ran = store.scan(openvino_scan).decoding["execution"]
    assert ran["runtime"].startswith("openvino ") and ran["torch_threads"] >= 1
    assert ran["openvino"]["enable_cpu_pinning"] == "False"
    assert ran["openvino"]["performance_hint"] == "LATENCY"
    assert int(ran["openvino"]["inference_num_threads"]) >= 1
    assert store.scan(torch_scan).decoding["execution"]["runtime"] == "torch"
    from policy_engine.pipeline.review import decision_summary

    [current] = store.current_decisions().values()
    summary = decision_summary(store.decision(current.id))["scan"]
    assert summary["execution"]["runtime"] == summary["runtime"]  # the scan it was made on
    assert scan("auto") == ("reused", openvino_scan)  # auto is openvino on this CPU
    assert scan("torch") == ("reused", torch_scan)


def test_scans_from_before_the_runtime_was_recorded_count_as_torch(store) -> None:
    from policy_engine.analysis.scoring import Category
    from policy_engine.store.synthetic import SYNTHETIC_MODEL, seed_scan

    assert SYNTHETIC_MODEL.runtime is None  # written as an older engine wrote scans
    categories = [Category("v", ("a fight",)), Category("other", ("x",), null=True)]
    asset_id, scan_id = seed_scan(
        store, name="old", categories=categories,
        probabilities=np.full((4, 2), 0.5, np.float32), duration=2.0,
    )  # fmt: skip
    row = store.scan(scan_id)
    key = (asset_id, row.weights_sha256, row.sampling_key)
    assert row.runtime is None
    assert store.reusable_scan(*key, "torch") == scan_id
    assert store.reusable_scan(*key, "openvino") is None


def test_the_runtime_flag_reaches_the_scan_and_is_said(tiny_clip_dir: Path, colour_video) -> None:
    import json

    from typer.testing import CliRunner

    from policy_engine.cli import app

    def analyse(*flags: str) -> dict:
        result = CliRunner().invoke(app, [
            "analyze", str(colour_video), "--model", str(tiny_clip_dir), "--device", "cpu",
            "--fps", "1", "--json", *flags,
        ])  # fmt: skip
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    assert analyse("--runtime", "torch")["model"]["runtime"] == "torch"
    assert analyse("--runtime", "openvino")["model"]["runtime"].startswith("openvino ")
    refused = CliRunner().invoke(app, [
        "analyze", str(colour_video), "--model", str(tiny_clip_dir), "--device", "cpu",
        "--dtype", "fp16", "--runtime", "openvino",
    ])  # fmt: skip
    assert refused.exit_code == 2 and "fp32 or bf16, not fp16" in refused.stderr


_PROCESS = """
import json, sys
import numpy as np
from policy_engine.models.clip import ClipEmbedder
embedder = ClipEmbedder.load(sys.argv[1], device="cpu", dtype="fp32", runtime="openvino")
prompts = sys.argv[2:]
text = embedder.embed_texts(prompts)
pixels = np.random.default_rng(8).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
print(json.dumps({"transformers": "transformers" in sys.modules,
                  "text": text.tolist(), "image": embedder.embed_images(pixels).tolist()}))
"""


def test_a_process_with_its_model_and_prompts_cached_starts_without_transformers(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    """Start-up (issue: speed): the image tower from the cached conversion and known
    prompts from the prompt store; transformers only for a prompt never seen."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}

    def process(*prompts: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-c", _PROCESS, str(tiny_clip_dir), *prompts],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = process("a fight", "a laptop")  # converts, encodes, keeps both
    second = process("a laptop", "a fight")
    assert first["transformers"] and not second["transformers"]
    assert np.allclose(second["image"], first["image"], atol=1e-6)
    assert np.array_equal(np.array(second["text"])[::-1], np.array(first["text"]))
    third = process("a fight", "a brand new prompt")  # the text tower, loaded for it
    reference = _load(tiny_clip_dir, "torch").embed_texts(["a brand new prompt"])[0]
    assert third["transformers"] and np.allclose(third["text"][1], reference, atol=1e-5)
    assert np.array_equal(third["text"][0], first["text"][0])


def test_the_prompt_store_survives_damage_and_a_full_disk(
    tmp_path: Path, caplog, monkeypatch
) -> None:
    from policy_engine.models import prompts
    from policy_engine.models.prompts import PromptStore

    store = PromptStore(tmp_path, "sha256:" + "ab" * 32, "cpu", "bf16")
    store.save({"a fight": np.array([0.6, 0.8], np.float32)})
    assert np.array_equal(store.load()["a fight"], np.array([0.6, 0.8], np.float32))
    store.path.write_text("{not json")
    assert store.load() == {}
    store.path.unlink()

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prompts.os, "replace", full_disk)
    with caplog.at_level(logging.WARNING):
        store.save({"a fight": np.array([0.6, 0.8], np.float32)})
    assert "could not be kept" in caplog.text and not store.path.exists()
    assert list(store.path.parent.iterdir()) == []  # no temporary file left behind


def test_threads_sharing_one_embedder_get_their_own_answers(tiny_clip_dir: Path) -> None:
    """The service's threads share one embedder; OpenVINO's compiled model reuses one
    infer request, so the tower takes one caller at a time."""
    from concurrent.futures import ThreadPoolExecutor

    embedder = _load(tiny_clip_dir, "openvino")
    batches = [np.random.default_rng(i).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
               for i in range(12)]  # fmt: skip
    alone = [embedder.embed_images(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(embedder.embed_images, batches * 3))
    for i, found in enumerate(together):
        assert np.allclose(found, alone[i % 12], atol=1e-6)


def test_a_users_query_is_embedded_but_not_written_down(tiny_clip_dir: Path) -> None:
    embedder = _load(tiny_clip_dir, "openvino")
    embedder.embed_texts(["a rule's prompt"])
    query = embedder.embed_texts(["my private search"], keep=False)
    kept = embedder.text.store.load()
    assert "a rule's prompt" in kept and "my private search" not in kept
    assert np.array_equal(embedder.embed_texts(["my private search"], keep=False), query)


def test_a_cpu_that_cannot_compile_keeps_the_cache_and_says_what_to_do(
    tiny_clip_dir: Path, monkeypatch, caplog
) -> None:
    folder = _load(tiny_clip_dir, "openvino")._openvino.folder
    monkeypatch.setattr(
        openvino_tower, "_config", lambda dtype: {"INFERENCE_PRECISION_HINT": "no-such-type"}
    )
    with pytest.raises(ModelError, match="use --runtime torch"):
        _load(tiny_clip_dir, "openvino")
    assert (folder / "tower.xml").is_file()  # not a damaged cache: kept for the others
    with caplog.at_level(logging.WARNING):
        fallback = _load(tiny_clip_dir, "auto")
    assert fallback.identity.runtime == "torch" and "torch runs it" in caplog.text


def test_what_a_killed_conversion_left_is_cleared(tiny_clip_dir: Path, conversions) -> None:
    import os
    import time

    folder = _load(tiny_clip_dir, "openvino")._openvino.folder
    shutil.rmtree(folder)
    folder.mkdir()  # a folder without a model: a rename could never replace it
    stale = folder.parent / f".{folder.name}.dead"
    stale.mkdir()
    (stale / "tower.bin").write_bytes(b"half")
    old = time.time() - 2 * openvino_tower._STALE_STAGING_S
    os.utime(stale, (old, old))
    fresh = folder.parent / f".{folder.name}.busy"  # another process converting right now
    fresh.mkdir()
    conversions.clear()
    _load(tiny_clip_dir, "openvino")
    assert conversions == [32] and (folder / "tower.xml").is_file()
    assert not stale.exists() and fresh.exists()
    shutil.rmtree(fresh)


def test_a_conversion_whose_record_disagrees_with_it_is_made_again(
    tiny_clip_dir: Path, conversions
) -> None:
    import json

    folder = _load(tiny_clip_dir, "openvino")._openvino.folder
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "embed_dim": meta["embed_dim"] + 1}))
    conversions.clear()
    assert _load(tiny_clip_dir, "openvino").identity.embed_dim == meta["embed_dim"]
    assert conversions == [32]


def test_a_torch_run_never_probes_devices_to_decide_reuse(tiny_clip_dir: Path, monkeypatch) -> None:
    from policy_engine.models import device
    from policy_engine.models.provider import ModelProvider

    def no_probing(*args: object) -> None:
        raise AssertionError("a device was probed")

    monkeypatch.setattr(device, "select_device", no_probing)
    assert ModelProvider(str(tiny_clip_dir), runtime="torch").runtime_family() == "torch"
    monkeypatch.setattr(openvino_tower, "openvino_installed", lambda: False)
    assert ModelProvider(str(tiny_clip_dir), runtime="auto").runtime_family() == "torch"
