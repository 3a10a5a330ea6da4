# The transformer change operations (issue 13): insert_block, remove_block, add_heads,
# widen_mlp. Choices only: no SQL on either database (`sqlmigrate kb 0010` prints no-ops), so
# SQLite keeps its table and the search triggers 0009 installed on it.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("kb", "0009_search_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="architecturechange",
            name="operation",
            field=models.CharField(
                choices=[
                    ("widen_layer", "Widen a layer"),
                    ("insert_layer", "Insert a layer"),
                    ("remove_layer", "Remove a layer"),
                    ("set_hyperparameter", "Set a hyperparameter"),
                    ("insert_block", "Insert a block"),
                    ("remove_block", "Remove a block"),
                    ("add_heads", "Add attention heads"),
                    ("widen_mlp", "Widen an MLP"),
                    ("manual", "Manual / free-form"),
                ],
                max_length=24,
            ),
        ),
        migrations.AlterField(
            model_name="historicalarchitecturechange",
            name="operation",
            field=models.CharField(
                choices=[
                    ("widen_layer", "Widen a layer"),
                    ("insert_layer", "Insert a layer"),
                    ("remove_layer", "Remove a layer"),
                    ("set_hyperparameter", "Set a hyperparameter"),
                    ("insert_block", "Insert a block"),
                    ("remove_block", "Remove a block"),
                    ("add_heads", "Add attention heads"),
                    ("widen_mlp", "Widen an MLP"),
                    ("manual", "Manual / free-form"),
                ],
                max_length=24,
            ),
        ),
    ]
