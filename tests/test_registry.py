"""The registry: decorator registration, wildcard listing, close-match errors, duplicates, deprecation."""

from __future__ import annotations

import pytest
from convae.registry import (
    DuplicateModelError,
    UnknownModelError,
    create_model,
    deprecate,
    get_spec,
    list_models,
    register_model,
)
from convae.registry.registry import _DEPRECATED, unregister


@pytest.fixture
def scratch_names():
    added: list[str] = []
    yield added
    for name in added:
        unregister(name)
    _DEPRECATED.pop("old-scratch", None)


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


def test_deprecated_name_resolves_to_new(scratch_names):
    deprecate("old-scratch", "seed")
    assert get_spec("old-scratch").name == "seed"
    assert create_model("old-scratch").variant == "seed"


def test_create_model_records_variant_and_config():
    net = create_model("seed")
    assert net.variant == "seed" and net.config == {"bits": 8}
