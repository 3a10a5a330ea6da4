"""Every write the API offers, each with a body its serializer accepts, for tests that try
bad input on all of them. '@name' stands for the id of the kb fixture's record of that name."""

import json
import re

from kb.services.records import record_is_versioned

REFERENCE = re.compile(r"@(\w+)")

# (method, path, body); body None: the action reads no body.
WRITES = [
    ("post", "/api/researchers/", {"pseudonym": "P2", "role": "ml_engineer",
                                   "seniority": "senior"}),
    ("patch", "/api/researchers/@researcher/", {"research_area": "vision"}),
    ("post", "/api/researchers/@researcher/anonymise/", None),
    ("post", "/api/surveys/", {"title": "Second survey"}),
    ("patch", "/api/surveys/@survey/", {"description": "Longer."}),
    ("post", "/api/questions/", {"survey": "@survey", "text": "Why?", "kind": "free_text"}),
    ("patch", "/api/questions/@question/", {"text": "How useful, really?"}),
    ("post", "/api/questions/@question/move/", {"direction": "down"}),
    ("post", "/api/invitations/", {"survey": "@survey", "researcher": "@researcher"}),
    ("post", "/api/invitations/@invitation/withdraw/", None),
    ("post", "/api/interviews/", {"researcher": "@researcher", "conducted_on": "2026-03-01"}),
    ("patch", "/api/interviews/@interview/", {"summary": "Wants steps, twice."}),
    ("post", "/api/answers/", {"interview": "@interview", "question": "@question", "value": 3}),
    ("patch", "/api/answers/@answer/", {"likert": 3}),
    ("post", "/api/themes/", {"name": "Trust"}),
    ("patch", "/api/themes/@theme/", {"description": "Can act on it."}),
    ("post", "/api/highlights/", {"interview": "@interview", "start": 0, "end": 2,
                                  "quote": "We", "themes": ["@theme"]}),
    ("patch", "/api/highlights/@highlight/", {"note": "Key quote."}),
    ("post", "/api/models/", {"name": "InceptionV1"}),
    ("patch", "/api/models/@model/", {"family": "cnn"}),
    ("post", "/api/models/@model/profile/", {"config": {}}),
    ("post", "/api/findings/", {"subject_model": "@model", "title": "Edges",
                                "layer_name": "conv1", "unit_indices": [0]}),
    ("patch", "/api/findings/@finding/", {"concept": "curve"}),
    ("post", "/api/findings/@finding/ablate/", {"config": {}}),
    ("post", "/api/insights/", {"title": "Curves matter", "statement": "They do.",
                                "findings": [{"finding": "@finding"}]}),
    ("patch", "/api/insights/@insight/", {"title": "Widen conv2 more"}),
    ("post", "/api/insights/@insight/unlink/", {"findings": ["@finding"]}),
    ("post", "/api/changes/", {"insight": "@insight", "target_model": "@model",
                               "operation": "manual"}),
    ("patch", "/api/changes/@change/", {"rationale": "Room for curves."}),
    ("post", "/api/changes/@change/copy/", None),
    ("post", "/api/changes/@change/run-experiment/", {"config": {}}),
    ("post", "/api/outcomes/", {"change": "@change", "verdict": "improved",
                                "baseline_values": [0.8], "variant_values": [0.9]}),
    ("patch", "/api/outcomes/@outcome/", {"notes": "Seen twice."}),
    ("post", "/api/runs/@run/cancel/", None),
    ("post", "/api/runs/@run/retry/", None),
    *(("delete", f"/api/{kind}/@{name}/", None) for kind, name in (
        ("researchers", "researcher"), ("surveys", "survey"), ("questions", "question"),
        ("interviews", "interview"), ("answers", "answer"), ("themes", "theme"),
        ("highlights", "highlight"), ("models", "model"), ("findings", "finding"),
        ("insights", "insight"), ("changes", "change"), ("outcomes", "outcome"))),
]  # fmt: skip
WRITE_IDS = [f"{method} {path}" for method, path, _ in WRITES]


def resolve(value, kb):
    """Replace each '@name' (in a path, or a body's values) by the kb record's id."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value)
        if whole:
            return kb[whole[1]].pk
        return REFERENCE.sub(lambda reference: str(kb[reference[1]].pk), value)
    if isinstance(value, dict):
        return {key: resolve(item, kb) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, kb) for item in value]
    return value


def send_json(client, method: str, path: str, text: str):
    """Send `text` as the JSON body, exactly as given."""
    return getattr(client, method)(path, data=text, content_type="application/json")


def send(client, method: str, path: str, body):
    return send_json(client, method, path, json.dumps(body))


def if_match(record) -> dict:
    """The If-Match header a client sends to change `record` as it is stored now (insights,
    findings and changes refuse a PATCH that names no version); none for other records."""
    if not record_is_versioned(record):
        return {}
    version = type(record).objects.values_list("version", flat=True).get(pk=record.pk)
    return {"If-Match": f'"{version}"'}
