import json

import pytest

from tfcompress.pipeline.recipe import Recipe, RecipeError, builtin_names, get

GOOD = {
    "stages": [
        {"prune": {"target_sparsity": 0.75, "schedule": "polynomial",
                   "epochs": 6}},
        {"cluster": {"clusters": 16, "init": "kmeans++",
                     "preserve_sparsity": True, "epochs": 3}},
        {"quantize": {"epochs": 3}},
    ],
    "fit": {"batch_size": 32, "optimizer": "adam", "learning_rate": 0.001,
            "loss": "sparse_categorical_crossentropy", "from_logits": True,
            "validation_split": 0.1},
}


def test_design_recipe_parses_and_round_trips():
    rec = Recipe.from_dict(GOOD)
    assert [s.kind for s in rec.stages] == ["prune", "cluster", "quantize"]
    assert rec.name == "PCQAT"
    assert Recipe.from_dict(rec.to_dict()).to_dict() == rec.to_dict()


@pytest.mark.parametrize("mutate,field", [
    (lambda r: r["stages"][1]["cluster"].update(clusters=1),
     "stages[1].cluster.clusters"),
    (lambda r: r["stages"][0]["prune"].update(sparsity=0.5),
     "stages[0].prune.sparsity"),
    (lambda r: r["stages"][0]["prune"].update(target_sparsity="high"),
     "stages[0].prune.target_sparsity"),
    (lambda r: r["stages"][0]["prune"].update(schedule="cubic"),
     "stages[0].prune.schedule"),
    (lambda r: r["stages"].append({"sparsify": {}}), "stages[3].sparsify"),
    (lambda r: r["fit"].update(batchsize=8), "fit.batchsize"),
    (lambda r: r["stages"].insert(0, {"quantize": {}}), "stages[0].quantize"),
    (lambda r: r.update(stages=[]), "stages"),
    (lambda r: r["stages"][1]["cluster"].update(epochs=True),
     "stages[1].cluster.epochs"),
])
def test_invalid_recipes_name_the_field(mutate, field):
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(data)
    assert str(err.value).startswith(field)


def test_yaml_and_json_files(tmp_path):
    import yaml
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "r.json").write_text(json.dumps(GOOD))
    assert get(str(tmp_path / "r.yaml")).to_dict() == \
        get(str(tmp_path / "r.json")).to_dict()
    (tmp_path / "bad.yaml").write_text("stages: [prune: {clusters: 3}]")
    with pytest.raises(RecipeError, match=r"bad.yaml: stages\[0\].prune.clusters"):
        get(str(tmp_path / "bad.yaml"))


def test_builtin_recipes_are_valid():
    names = builtin_names()
    assert {"pcqat", "prune_qat", "structured_2of4"} <= set(names)
    for name in names:
        assert Recipe.load(name).stages
