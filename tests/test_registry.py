"""The registry: decorator registration, wildcard listing, close-match errors, duplicates, families."""

from __future__ import annotations

import pytest
from convae.registry import (
    DuplicateModelError,
    UnknownModelError,
    create_model,
    family_variants,
    get_spec,
    list_models,
    register_model,
    register_pretrained,
    registry,
)


@pytest.fixture
def scratch_names():
    added: list[str] = []
    yield added
    for name in added:
        registry._SPECS.pop(name, None)


def test_seed_is_registered_with_shipped_file_name():
    spec = get_spec("seed")
    assert spec.pretrained == "seed.safetensors"
    assert "seed" in list_models()


def test_list_models_wildcards_and_natural_sort(scratch_names):
    from convae.models.seed import SeedAutoencoder

    for name in ("zz-test-10", "zz-test-2", "zz-test-1", "zz-other"):
        register_model(name)(lambda: SeedAutoencoder())
        scratch_names.append(name)
    assert list_models("zz-test-*") == ["zz-test-1", "zz-test-2", "zz-test-10"]
    assert list_models("zz-*", exclude="*-1*") == ["zz-other", "zz-test-2"]
    assert list_models(["zz-other", "zz-test-2"]) == ["zz-other", "zz-test-2"]


def test_unknown_name_names_close_matches():
    with pytest.raises(UnknownModelError, match="did you mean seed"):
        get_spec("sed")
    with pytest.raises(UnknownModelError, match="convae models"):
        get_spec("qqqqqqqq")


def test_duplicate_registration_names_both_sources(scratch_names):
    from convae.models.seed import SeedAutoencoder

    def first():
        return SeedAutoencoder()

    def second():
        return SeedAutoencoder()

    register_model("zz-dup")(first)
    scratch_names.append("zz-dup")
    with pytest.raises(DuplicateModelError) as err:
        register_model("zz-dup")(second)
    assert "first" in str(err.value) and "second" in str(err.value)


def test_pretrained_variants_are_data_beside_their_architecture():
    spec = get_spec("fmh-q3")
    assert (spec.architecture, spec.family, spec.quality, spec.pretrained) == ("hyperprior", "fmh", 3,
                                                                                "fmh-q3.safetensors")
    assert spec.factory is get_spec("hyperprior").factory and spec.config["lmbda"] == 0.005
    assert [s.name for s in family_variants("photoh")] == ["photoh-q0", "photoh-q1", "photoh-q2", "photoh-q3"]
    assert get_spec("hyperprior").family is None and get_spec("hyperprior").pretrained is None


def test_pretrained_name_registered_twice_is_refused(scratch_names):
    register_pretrained("zz-pre", "hyperprior", "zz.safetensors", source="test")
    scratch_names.append("zz-pre")
    with pytest.raises(DuplicateModelError, match="zz-pre"):
        register_pretrained("zz-pre", "factorized", "zz.safetensors", source="test2")
    with pytest.raises(UnknownModelError, match="unknown architecture"):
        register_pretrained("zz-pre2", "no-such-arch", "zz.safetensors", source="test")


def test_registry_does_not_import_the_models():
    """Built-in variants arrive through the entry-point group, as plugins do: no registry -> models import."""
    import ast
    from pathlib import Path

    import convae.registry as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith(("convae.models", "convae.zoo")) for n in names), (path.name, names)


def test_create_model_records_variant_and_config():
    net = create_model("seed")
    assert net.variant == "seed" and net.config == {"bits": 8}


def test_a_file_named_like_a_variant_in_the_current_folder_does_not_replace_it(tmp_path, monkeypatch):
    """``-m seed`` is the shipped seed even beside a file named ``seed``; ``./seed`` names that file."""
    from convae.zoo import is_weights_path, load_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "seed").write_bytes(b"not weights")
    (tmp_path / "photoh-q2").write_bytes(b"not weights")
    (tmp_path / "mine").write_bytes(b"not weights")
    assert not is_weights_path("seed") and not is_weights_path("photoh-q2")
    assert is_weights_path("./seed") and is_weights_path("mine")
    assert load_model("seed").model.variant == "seed"
    assert load_model(None).source == "photov"


def test_user_models_folder_errors_are_one_line_and_a_bad_file_hides_nothing(runner, tmp_path, monkeypatch):
    from tests.codec_util import invoke, one_line_error

    monkeypatch.setenv("CONVAE_HOME", "~no-such-user-here/x")
    one_line_error(invoke(runner, "models"), 2, "CONVAE_HOME")
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    (models / "junk.safetensors").write_bytes(b"not weights")
    (models / "gone.safetensors").symlink_to(tmp_path / "missing")
    monkeypatch.setenv("CONVAE_HOME", str(tmp_path / "home"))
    with pytest.warns(UserWarning) as warned:  # the CLI prints each as one `convae: warning:` line
        result = invoke(runner, "models", "--json")
    assert result.exit_code == 0, result.stderr
    assert "photoh-q2" in result.stdout and "junk" not in result.stdout
    messages = " ".join(str(w.message) for w in warned)
    assert "skipped user model junk" in messages and "skipped user model gone" in messages
