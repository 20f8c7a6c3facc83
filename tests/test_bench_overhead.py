"""``python -m benchmarks.overhead --out`` rewrites only its own bullets."""

from benchmarks import overhead

DOC = """## Targets

### Missed targets: why, and what would close them

- **gzip (0.089 of float32)**: entropy.
- **tfc.cluster (digits) training overhead (1.37x)**: old text.
- **tfc.quantize (DS-CNN) training overhead (1.37x)**: old text.

## Structured compression
""".split("\n")


def _res(cpu: float) -> dict:
    row = {"ratio": 1.34, "spread": (0.8, 2.1), "cpu_ratio": cpu}
    return {"overhead_dscnn": {"tfc.quantize": row}}


def test_overhead_bullets_are_replaced_and_others_kept():
    misses = [("overhead", 1.34, "tfc.quantize (DS-CNN)")]
    out = overhead._missed(list(DOC), misses, _res(1.25))
    bullets = [line for line in out if line.startswith("- ")]
    assert bullets[0].startswith("- **gzip")
    assert len(bullets) == 2 and "old text" not in "\n".join(out)
    assert bullets[1].startswith(
        "- **tfc.quantize (DS-CNN) training overhead (1.34x)**: QAT")
    assert "CPU time was 1.25x" in bullets[1] and "load" in bullets[1]
    assert "0.80-2.10x" in bullets[1]
    assert out[-3:] == ["", "## Structured compression", ""]


def test_met_targets_lose_their_bullets():
    out = overhead._missed(list(DOC), [], {})
    assert [line for line in out if line.startswith("- ")] == [
        "- **gzip (0.089 of float32)**: entropy."]
    alone = [line for line in DOC if "gzip" not in line]
    out = overhead._missed(alone, [], {})
    assert "- none: every target met." in out


def test_cpu_bound_miss_is_not_blamed_on_load():
    text = overhead.why("tfc.quantize (DS-CNN)", 1.4, _res(1.38))
    assert "CPU time was 1.38x plain fit." in text and "load" not in text


def test_a_miss_never_prints_as_the_limit():
    assert overhead.ratio_text(1.3004) == "1.3004"
    assert overhead.ratio_text(1.304) == "1.304"
    assert overhead.ratio_text(1.296) == "1.30"
    assert overhead.ratio_text(1.37) == "1.37"
