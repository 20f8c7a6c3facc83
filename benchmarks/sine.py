"""The sine sample: bytes, arena and error of the micro model."""

from __future__ import annotations

from benchmarks.common import (
    gz,
    litert_metric,
    log,
    tf_convert,
)


def bench_sine(res: dict, epochs: int) -> None:
    from sample_models import sine
    from tfcompress.pipeline import jobs as pipeline
    (x, y), (xt, yt) = sine.load_data()
    log(f"sine: training ({epochs} epochs)")
    m = sine.build_model()
    sine.compile_model(m)
    m.fit(x, y, epochs=epochs, batch_size=sine.BATCH_SIZE, verbose=0)
    f32 = tf_convert(m, mode="float32")
    art = pipeline.convert_and_validate(m, x, xt, yt, target="micro",
                                        mode="int8", name="sine")
    r = art.report
    micro = r["validation"].get("micro", {})
    res["sine"] = {
        "float32": {"bytes": len(f32), "gzip": gz(f32),
                    "mae": litert_metric(f32, xt, yt, "mae")},
        "int8": {"bytes": len(art.plain_tflite), "gzip": gz(art.plain_tflite),
                 "mae": r["validation"]["litert"].get("mae"),
                 "arena": micro.get("arena_bytes"),
                 "arena_rec": micro.get("arena_recommended"),
                 "passed": art.passed},
        "epochs": epochs,
    }


