"""Every figure renders to PNG bytes."""

from analysis.engine import figures
from analysis.engine.ablation import measure_ablation
from analysis.engine.activations import profile_activations
from tests.analysis.engine_helpers import planted_model_and_data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARM_RESULTS = {
    arm: [
        {"seed": seed, "history": [{"epoch": e, "test_accuracy": 0.5 + 0.1 * e + 0.01 * seed}
                                   for e in (1, 2)]}
        for seed in range(3)
    ]
    for arm in ("baseline", "variant", "control")
}  # fmt: skip
AGGREGATE = {
    "metric": "test_accuracy",
    "verdict": "improved",
    "arms": {
        "baseline": {"mean": 0.7, "ci_low": 0.68, "ci_high": 0.72, "values": [0.69, 0.7, 0.71]},
        "variant": {"mean": 0.75, "ci_low": None, "ci_high": None, "values": [0.75]},
    },
}


def test_training_curves_png():
    assert figures.training_curves_png(ARM_RESULTS).startswith(PNG_SIGNATURE)


def test_metric_by_arm_png():
    assert figures.metric_by_arm_png(AGGREGATE).startswith(PNG_SIGNATURE)


def test_selectivity_heatmap_png():
    model, dataset = planted_model_and_data()
    profile = profile_activations(model, dataset, layers=["relu1", "fc_out"]).to_dict()
    assert figures.selectivity_heatmap_png(profile, "c").startswith(PNG_SIGNATURE)
    assert figures.selectivity_heatmap_png(profile, "code").startswith(PNG_SIGNATURE)


def test_ablation_effect_png():
    model, dataset = planted_model_and_data()
    result = measure_ablation(model, dataset, layer="relu1", units=[3], random_sets=4)
    assert figures.ablation_effect_png(result.to_dict()).startswith(PNG_SIGNATURE)
