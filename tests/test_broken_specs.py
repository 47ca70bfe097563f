"""The broken-spec corpus: every spec in tests/corpus/broken/ has exactly one defect and must give
one clear, located error with exit code 2, and leave no output video and no cache entry behind.

Each corpus file starts with a header line

    # expect: [FILE:]LINE:COL FIELD :: MESSAGE-SUBSTRING

LINE:COL is where the error must point (1-based, as scenekit prints it); FILE (relative to the spec)
is given only when the error lies in another file, e.g. an included one. FIELD is the field path
scenekit prints (`-` when the error has no field). MESSAGE-SUBSTRING must appear in the error line.
Optional lines anywhere in the file (by convention at its end, so line numbers stay put):

    # reject: TEXT     the output must not contain TEXT (e.g. a misleading hint)
    # xfail: REASON    a known scenekit bug; the case is marked xfail(strict=True) with this reason

The corpus is copied into a temporary folder with an empty `scenekit.toml` at the copy's root, so
the project folder is the copied corpus: `../support/...` is inside it, `../../../...` is not.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from scenekit.cli import app

TESTS = Path(__file__).resolve().parent
CORPUS = TESTS / "corpus"
BROKEN = CORPUS / "broken"
EXAMPLE = TESTS.parent / "specs" / "examples" / "lighthouse.yaml"

_HEADER = re.compile(r"^# expect: (?:(?P<file>\S+):)?(?P<line>\d+):(?P<col>\d+) (?P<field>\S+) :: (?P<message>.+?)\s*$")
_ERROR_LINE = re.compile(r": error: ")


@dataclass(frozen=True)
class Case:
    """One corpus spec and what scenekit must say about it."""

    path: Path
    file: str  # base name of the file the error must point into
    line: int
    col: int
    field: str | None
    message: str
    rejected: tuple[str, ...]
    xfail: str | None

    @property
    def name(self) -> str:
        return self.path.name


def _read_case(path: Path) -> Case:
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    match = _HEADER.match(lines[0]) if lines else None
    assert match, f"{path.name}: the first line must be '# expect: [FILE:]LINE:COL FIELD :: MESSAGE'"
    rejected = tuple(line.removeprefix("# reject:").strip() for line in lines if line.startswith("# reject:"))
    xfails = [line.removeprefix("# xfail:").strip() for line in lines if line.startswith("# xfail:")]
    return Case(
        path=path,
        file=Path(match["file"]).name if match["file"] else path.name,
        line=int(match["line"]),
        col=int(match["col"]),
        field=None if match["field"] == "-" else match["field"],
        message=match["message"],
        rejected=rejected,
        xfail=xfails[0] if xfails else None,
    )


CASES = [_read_case(path) for path in sorted(BROKEN.glob("*.yaml"))]


def _params() -> list:
    params = []
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=f"scenekit bug: {case.xfail}")] if case.xfail else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tests/corpus/ that is its own project folder."""
    root = tmp_path_factory.mktemp("corpus-project") / "corpus"
    shutil.copytree(CORPUS, root)
    (root / "scenekit.toml").write_text("")
    return root


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.rglob("*")}


def test_every_corpus_file_is_a_distinct_case():
    assert sorted(p.name for p in BROKEN.iterdir() if p.is_file()) == [case.name for case in CASES], "only *.yaml cases"
    assert len({case.name.split("-", 1)[0] for case in CASES}) == len(CASES), "case numbers must be unique"
    bodies = [case.path.read_bytes().split(b"\n", 1)[-1] for case in CASES]
    assert len(set(bodies)) == len(bodies), "two cases hold the same spec"
    assert sum(1 for case in CASES if case.xfail is None) >= 30, "at least 30 cases must pass as they are"


def test_the_case_check_rejects_a_valid_spec(runner: CliRunner, tmp_path: Path):
    """The check the corpus runs must fail for a spec that renders: it is not vacuous."""
    case = Case(EXAMPLE, EXAMPLE.name, 1, 1, None, "error", (), None)
    result = runner.invoke(app, ["validate", str(EXAMPLE)])
    with pytest.raises(AssertionError):
        _check_result(case, EXAMPLE, result)


@pytest.mark.parametrize("case", _params())
def test_broken_spec_gives_one_located_error(case: Case, corpus_copy: Path, runner: CliRunner):
    spec = corpus_copy / "broken" / case.name
    cache = corpus_copy / f"cache-{spec.stem}"
    before = _tree(corpus_copy)

    try:
        result = runner.invoke(app, ["render", str(spec), "--cache-dir", str(cache)])
        _check_result(case, spec, result)
        # Nothing is left behind: no video, no manifest, no cache entry, no new file at all.
        assert not list(corpus_copy.rglob("*.mp4")), f"a video was written\n{_shown(case, result)}"
        assert not cache.exists() or not any(cache.iterdir()), f"cache entries left in {cache}"
        after = _tree(corpus_copy) - ({cache.name + "/"} if cache.exists() else set())
        assert after == before, f"files appeared: {sorted(after - before)}, vanished: {sorted(before - after)}"
    finally:  # keep the shared copy clean for the next case, whatever this one did
        for leftover in sorted(_tree(corpus_copy) - before, key=len):
            path = corpus_copy / leftover
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()


def _shown(case: Case, result: Result) -> str:
    return f"--- output of `scenekit render {case.name}` (exit {result.exit_code}) ---\n{result.output}"


def _check_result(case: Case, spec: Path, result: Result) -> None:
    output = result.output  # stdout and stderr, interleaved as a user would see them
    shown = _shown(case, result)
    assert "Traceback" not in output, shown
    assert result.exit_code == 2, f"{shown}\nexception: {result.exception!r}"
    assert isinstance(result.exception, SystemExit), f"{shown}\nexception: {result.exception!r}"
    assert "wrote " not in result.stdout, shown

    errors = [line for line in output.splitlines() if _ERROR_LINE.search(line)]
    assert len(errors) == 1, f"expected exactly one error line\n{shown}"
    error = errors[0]
    assert _ERROR_LINE.search(result.stderr), f"the error must go to stderr\n{shown}"
    where = re.compile(rf"(?:^|[\\/\s]){re.escape(case.file)}:{case.line}:{case.col}: error: ")
    assert where.search(error), f"expected the error at {case.file}:{case.line}:{case.col}\n{shown}"
    head = error.split(": error: ", 1)[1]
    if case.field is not None:
        assert head.startswith(f"{case.field}: "), f"expected field {case.field!r}\n{shown}"
    assert case.message in head, f"expected {case.message!r} in the error message\n{shown}"
    for text in case.rejected:
        assert text not in output, f"the output must not say {text!r}\n{shown}"
    assert f"{spec.name}: invalid spec (1 error)" in output, shown


def test_validate_exits_2_for_a_broken_spec(corpus_copy: Path, runner: CliRunner):
    spec = corpus_copy / "broken" / "24-overlap-not-8k-plus-1.yaml"
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    assert re.search(
        r"24-overlap-not-8k-plus-1\.yaml:10:14: error: clips\[1\]\.overlap: overlap must be 8k\+1", result.stderr
    ), result.output
    assert "ok:" not in result.stdout


def test_validate_accepts_the_example(runner: CliRunner):
    result = runner.invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.stdout
    assert " error: " not in result.output


def test_the_ltx2_example_is_valid_without_weights_and_plans_as_an_animatic(
    runner: CliRunner, monkeypatch, tmp_path: Path
):
    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.delenv("SCENEKIT_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    example = EXAMPLE.with_name("lighthouse-ltx2.yaml")
    result = runner.invoke(app, ["validate", str(example)])
    assert result.exit_code == 0, result.output
    assert "ok: 3 clips, 300 frames (12.500s at 24 fps), 768x512" in result.stdout
    assert result.output.count("note: defaults.model: no weights for model profile `ltx2-distilled`") == 1
    plan = runner.invoke(app, ["plan", str(example), "--model", "preview", "--json", "--cache-dir", str(tmp_path)])
    assert plan.exit_code == 0, plan.output


@pytest.mark.parametrize(
    ("name", "profile", "summary"),
    [
        ("lighthouse-ltxv.yaml", "ltxv-13b-0.9.8-distilled", "ok: 2 clips, 216 frames (9.000s at 24 fps), 768x512"),
        ("lighthouse-ltx23.yaml", "ltx23-distilled", "ok: 3 clips, 276 frames (11.500s at 24 fps), 768x512"),
    ],
)
def test_the_ltxv_and_ltx23_examples_are_valid_without_weights_and_plan_as_animatics(
    runner: CliRunner, monkeypatch, tmp_path: Path, name: str, profile: str, summary: str
):
    from scenekit.spec.loader import load_spec
    from scenekit.spec.paths import PathPolicy

    monkeypatch.setenv("SCENEKIT_DEVICE", "cpu")
    monkeypatch.delenv("SCENEKIT_MODELS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    example = EXAMPLE.with_name(name)
    result = runner.invoke(app, ["validate", str(example)])
    assert result.exit_code == 0, result.output
    assert summary in result.stdout
    assert result.output.count(f"note: defaults.model: no weights for model profile `{profile}`") == 1
    plan = runner.invoke(app, ["plan", str(example), "--model", "preview", "--json", "--cache-dir", str(tmp_path)])
    assert plan.exit_code == 0, plan.output
    assert {node["op"] for node in json.loads(plan.stdout)["nodes"]} == {"preview.generate", "stitch.segment", "stitch"}

    spec = load_spec(example, PathPolicy(example.parents[2])).spec  # what the example shows off
    assert spec.defaults.model == profile
    if profile.startswith("ltxv"):
        assert spec.clips[1].continue_ == spec.clips[0].id and all(clip.conditioning for clip in spec.clips)
    else:
        assert spec.defaults.loras and [clip.control is not None for clip in spec.clips].count(True) == 1
