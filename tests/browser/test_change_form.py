"""The change form's script: only the chosen operation's fields show, and the layer fields
suggest the chosen model's layers."""

import pytest
from playwright.sync_api import expect

from kb.models import ArchitectureChange
from tests.browser.conftest import log_in
from tests.factories import BuiltinModelFactory, InsightFactory

pytestmark = pytest.mark.django_db(transaction=True)

PARAMETERS = ["layer", "units", "after", "new_layer", "hp_name", "hp_value", "description",
              "after_block", "n_heads", "block", "heads", "d_mlp"]  # fmt: skip


def _shown(page) -> list[str]:
    return [name for name in PARAMETERS if page.locator(f"#id_{name}").is_visible()]


def test_the_change_form_shows_only_the_chosen_operations_fields(
    page, live_server, researcher_user
):
    InsightFactory(title="Widen conv2")
    model = BuiltinModelFactory(name="Shapes CNN")
    log_in(page, live_server, "rita", "pw-rita")
    page.goto(f"{live_server.url}/changes/new/")
    page.wait_for_load_state("domcontentloaded")
    assert _shown(page) == []  # no operation chosen yet

    page.get_by_label("Insight").select_option(label="Widen conv2")
    page.get_by_label("Target model").select_option(label="Shapes CNN")
    expect(page.locator("#id_layer")).to_have_attribute("list", f"layers-of-model-{model.pk}")
    page.get_by_label("Operation").select_option("insert_layer")
    assert _shown(page) == ["after", "new_layer"]
    page.get_by_label("Operation").select_option("widen_layer")
    assert _shown(page) == ["layer", "units"]

    # A wrong layer comes back beside its field, with the operation's fields still alone
    page.locator("#id_layer").fill("conv9")
    page.get_by_label("Units").fill("2")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#id_layer-errors")).to_contain_text(
        "no layer named 'conv9'; the model's layers are conv1, relu1, pool1, conv2"
    )
    assert _shown(page) == ["layer", "units"]
    expect(page.locator("#id_layer")).to_have_attribute("list", f"layers-of-model-{model.pk}")
    page.locator("#id_layer").fill("conv2")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Widen a layer on Shapes CNN")
    assert ArchitectureChange.objects.get().parameters == {"layer": "conv2", "units": 2}
