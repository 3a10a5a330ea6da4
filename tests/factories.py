"""factory_boy factories for knowledge-base rows (they bypass services on purpose: fixtures)."""

import datetime

import factory

from kb import models

SHAPES_SPEC = {
    "input_shape": [1, 12, 12],
    "num_classes": 4,
    "layers": [
        {"name": "conv1", "type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1},
        {"name": "relu1", "type": "relu"},
        {"name": "pool1", "type": "maxpool2d", "kernel_size": 2},
        {"name": "conv2", "type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"name": "relu2", "type": "relu"},
        {"name": "pool2", "type": "maxpool2d", "kernel_size": 2},
        {"name": "flatten", "type": "flatten"},
        {"name": "fc1", "type": "linear", "out_features": 16},
        {"name": "relu3", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 4},
    ],
}


class ResearcherFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Researcher

    pseudonym = factory.Sequence(lambda n: f"Participant {n}")
    full_name = factory.Sequence(lambda n: f"Secret Person {n}")
    contact_email = factory.Sequence(lambda n: f"person{n}@example.org")
    role = models.Researcher.Role.ML_ENGINEER
    seniority = models.Researcher.Seniority.SENIOR
    consent_given = True
    consent_date = datetime.date(2026, 1, 5)
    consent_scope = models.Researcher.ConsentScope.QUOTES


class SurveyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Survey

    title = factory.Sequence(lambda n: f"Survey {n}")


class QuestionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Question

    survey = factory.SubFactory(SurveyFactory)
    position = factory.Sequence(lambda n: n + 1)
    text = "How useful is it?"
    kind = models.Question.Kind.LIKERT


class InterviewFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Interview

    researcher = factory.SubFactory(ResearcherFactory)
    conducted_on = datetime.date(2026, 2, 1)
    transcript = "We want actionable steps for improving the model, not pretty pictures."


class ThemeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Theme

    name = factory.Sequence(lambda n: f"Theme {n}")


class SubjectModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.SubjectModel

    name = factory.Sequence(lambda n: f"Model {n}")
    kind = models.SubjectModel.Kind.EXTERNAL


class BuiltinModelFactory(SubjectModelFactory):
    kind = models.SubjectModel.Kind.BUILTIN
    architecture_spec = factory.LazyFunction(lambda: dict(SHAPES_SPEC))


class FindingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Finding

    subject_model = factory.SubFactory(SubjectModelFactory)
    title = factory.Sequence(lambda n: f"Finding {n}")
    layer_name = "mixed3b"
    unit_indices = factory.LazyFunction(lambda: [1, 2, 3])


class InsightFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Insight

    title = factory.Sequence(lambda n: f"Insight {n}")
    statement = "Widen where the concept lives."


class ChangeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ArchitectureChange

    insight = factory.SubFactory(InsightFactory)
    target_model = factory.SubFactory(BuiltinModelFactory)
    operation = models.ArchitectureChange.Operation.WIDEN_LAYER
    # conv2 + 2 units has a budget-matched random control (fc1 + 5 units).
    parameters = factory.LazyFunction(lambda: {"layer": "conv2", "units": 2})
