"""Comparing a study the services ran (its StudyRound rows and final report) with the engine's
reference, run_study_locally, on the study's frozen design."""

from analysis.engine.studies import run_study_locally
from analysis.models import Study, StudyRound

# What a planned row's plan holds beyond the engine's plan: the change to record and the
# guided candidate's mechanism request (run_study_locally keeps them beside the plan).
STORED_BESIDE_THE_PLAN = ("change", "mechanism_request")


def assert_rows_and_report_are_the_engines(study: Study) -> None:
    """Every row (plan, spec, parameters, values, summary, mechanism, decision, kept, sat
    out) and the final report equal run_study_locally's for the study's config and model."""
    local = run_study_locally(study.config, study.config["model"]["architecture_spec"])
    rows = list(StudyRound.objects.filter(study=study).order_by("index", "track"))
    assert [(row.index, row.track) for row in rows] == [
        (row["index"], row["track"]) for row in local["rounds"]
    ]
    for row, expected in zip(rows, local["rounds"], strict=True):
        where = f"round {row.index} {row.track}"
        sat_out = "error" in row.plan
        assert sat_out == expected["sat_out"], where
        stored = {
            "spec": row.spec, "parameters": row.parameters, "params_added": row.params_added,
            "values": row.values, "summary": row.summary, "mechanism": row.mechanism,
            "decision": row.decision, "kept": row.kept,
        }  # fmt: skip
        assert stored == {key: expected[key] for key in stored}, where
        if row.index == 0:
            continue  # round 0's plan says where the base model came from, and who sends jobs
        plan = {key: value for key, value in row.plan.items() if key not in STORED_BESIDE_THE_PLAN}
        assert plan == expected["plan"], where
        if not sat_out:
            assert row.plan["change"] == {
                "operation": expected["operation"],
                "parameters": expected["change_parameters"],
            }, where
    assert study.result == local["report"]
