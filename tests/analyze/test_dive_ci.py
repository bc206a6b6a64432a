"""dive's CI rules file (`.dive-ci`) and --max-user-wasted-percent: dive's verdicts, checked against dive itself on
the same archive, and one clear line for a malformed rules file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from analyze_archives import write_legacy_save
from test_archives import one_line_error, waste_image

RULES = {  # rules file -> the rules dive passes (P) or fails (F), in dive's order of evaluation
    "defaults": ("rules:\n", {"lowestEfficiency": "F", "highestUserWastedPercent": "F"}),
    "loose": ("rules:\n  lowestEfficiency: 0.1\n  highestWastedBytes: 20KB\n  highestUserWastedPercent: disabled\n",
              {"lowestEfficiency": "P", "highestWastedBytes": "P"}),
    "tight": ("rules:\n  lowestEfficiency: 0.2\n  highestWastedBytes: 10399\n  highestUserWastedPercent: disabled\n",
              {"lowestEfficiency": "F", "highestWastedBytes": "F"}),
    "edge": ("rules:\n  lowestEfficiency: 0.19\n  highestWastedBytes: 10.4kB\n  highestUserWastedPercent: '1'\n",
             {"lowestEfficiency": "P", "highestWastedBytes": "P", "highestUserWastedPercent": "F"}),
}


@pytest.fixture(scope="module")
def waste_archive(tmp_path_factory) -> Path:
    return write_legacy_save(tmp_path_factory.mktemp("dive-ci") / "waste.tar", waste_image(("none",) * 4))


def dive_verdicts(archive: Path, rules: Path) -> dict[str, str]:
    dive = shutil.which("dive") or str(Path(sys.executable).parent / "dive")
    p = subprocess.run([dive, "--source", "docker-archive", str(archive), "--ci", "--ci-config", str(rules)],
                       capture_output=True, text=True, env={**os.environ, "CI": "true"}, timeout=120)
    out = {}
    for line in re.sub(r"\x1b\[[0-9;]*m", "", p.stdout + p.stderr).splitlines():
        m = re.match(r"^\s*(PASS|FAIL): (\w+)", line)
        if m:
            out[m.group(2)] = m.group(1)[0]
    return out


@pytest.mark.parametrize("name", list(RULES))
def test_dive_ci_verdicts_match_dive(bgeimg, waste_archive, tmp_path, name):
    text, expected = RULES[name]
    rules = tmp_path / ".dive-ci"
    rules.write_text(text)
    assert dive_verdicts(waste_archive, rules) == expected  # what dive says of this archive and these rules
    r = bgeimg("analyze", str(waste_archive), "--ci-config", str(rules), "--json")
    gates = {g["name"].removeprefix("dive-ci:"): "P" if g["passed"] else "F" for g in r.json["gates"]}
    assert gates == expected
    assert r.code == (1 if "F" in expected.values() else 0), r.err


def test_dive_ci_read_from_the_working_directory(waste_archive, tmp_path):
    (tmp_path / ".dive-ci").write_text(RULES["tight"][0])
    p = subprocess.run([sys.executable, "-m", "bgeimg", "analyze", str(waste_archive)], cwd=tmp_path,
                       capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert p.returncode == 1
    assert p.stderr.strip() == ("error: gate failed: .dive-ci lowestEfficiency: dive efficiency 19.17% < 20.00%; "
                                ".dive-ci highestWastedBytes: dive wasted 10.4 kB > 10.4 kB")


def test_max_user_wasted_percent(bgeimg, waste_archive):
    # bgeimg's waste (7020 B: the copies nobody sees) over the bytes above the first layer (2010 + 3400 + 4000)
    share = 7020 / 9410
    ok = bgeimg("analyze", str(waste_archive), "--max-user-wasted-percent", "75%", "--json")
    assert ok.code == 0, ok.err
    gate = ok.json["gates"][0]
    assert gate["name"] == "max-user-wasted-percent" and gate["value"] == pytest.approx(share) and gate["passed"]
    bad = bgeimg("analyze", str(waste_archive), "--max-user-wasted-percent", "0.7")
    assert bad.code == 1
    assert bad.err.strip() == "error: gate failed: wasted / user bytes 74.60% > --max-user-wasted-percent 70.00%"
    one_line_error(bgeimg("analyze", str(waste_archive), "--max-user-wasted-percent", "lots"), 2)


MALFORMED = {
    "rules:\n  lowestEfficiency: [0.9\n": "{f} is not valid YAML at line 3: expected ',' or ']', but got '<stream end>'",
    "- lowestEfficiency\n": "{f}: expected a `rules:` mapping and nothing else (rules: lowestEfficiency, "
                            "highestWastedBytes, highestUserWastedPercent)",
    "rules:\n  lowestEfficency: 0.9\n": "{f}: unknown rule 'lowestEfficency' (dive knows lowestEfficiency, "
                                        "highestWastedBytes, highestUserWastedPercent)",
    "rules:\n  lowestEfficiency: 1.5\n": "{f}: lowestEfficiency '1.5' is not a ratio between 0 and 1 (write it like "
                                         "0.95, or disabled)",
    "rules:\n  highestWastedBytes: 20XB\n": "{f}: highestWastedBytes '20XB' is not a size (write it like 1.2GB, "
                                            "500MB or 10MiB)",
}


def test_malformed_dive_ci(bgeimg, waste_archive, tmp_path):
    for i, (text, message) in enumerate(MALFORMED.items()):
        rules = tmp_path / f"rules{i}.yaml"
        rules.write_text(text)
        r = bgeimg("analyze", str(waste_archive), "--ci-config", str(rules))
        one_line_error(r, 2)
        assert r.err.strip() == "error: " + message.format(f=rules)
    r = bgeimg("analyze", str(waste_archive), "--ci-config", str(tmp_path / "none.yaml"))
    assert r.code == 2 and r.err.strip() == (f"error: cannot read --ci-config {tmp_path / 'none.yaml'}: No such file "
                                             "or directory (give a dive rules file (rules: lowestEfficiency, "
                                             "highestWastedBytes, highestUserWastedPercent))")
