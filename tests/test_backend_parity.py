"""bench/backend_parity.py: the comparison, the table it writes into docs/backends.md and the
placeholder package, on numbers made here (the official code itself cannot run in CI)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import backend_parity as parity


def test_differences_are_counted_against_the_tolerance():
    official = np.array([1.0, -2.0, 100.0, 0.0])
    ours = np.array([1.0 + 2e-4, -2.0, 100.0 + 5e-3, 3e-5])
    tolerance = {"atol": 1e-5, "rtol": 1e-4}
    # Entry by entry: 2e-4 > 1e-5 + 1e-4 (out); 0 (in); 5e-3 <= 1e-5 + 1e-2 (in); 3e-5 > 1e-5 (out)
    difference = parity.compare(ours, official, tolerance)
    assert difference.outside == 2 and difference.size == 4
    assert difference.max_abs == pytest.approx(5e-3)
    assert parity.compare(ours, official, None).outside is None


def test_covariances_per_matrix_use_the_matrix_norm_as_scale():
    official = np.diag([4.0, 3.0, 0.0])[None]  # Frobenius norm 5
    ours = official.copy()
    ours[0, 0, 1] = 1e-3  # an off-diagonal entry near zero: elementwise far outside
    tolerance = {"atol": 1e-8, "rtol": 1e-3}
    assert parity.compare(ours, official, tolerance).outside == 1
    # Per matrix the scale is 5: 1e-3 <= 1e-8 + 5e-3.
    assert parity.compare(ours, official, tolerance, per_matrix=True).outside == 0


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="shapes differ"):
        parity.compare(np.zeros(3), np.zeros(4), None)


def test_table_names_what_is_outside_and_replaces_only_its_own_text():
    rows = [
        ("e", "built-in vs official", {"means": parity.Difference(2.5e-6, 0, 10),
                                       "covariances": parity.Difference(3e-7, 12, 90)}),
        ("d", "built-in vs official", {"means": None}),
    ]
    rows[1][2].pop("means")  # a depth-only case has no Gaussians
    table = parity.markdown(rows)
    lines = table.splitlines()
    assert lines[0] == "| case | compared | means | covariances |"
    assert lines[2] == "| e | built-in vs official | 2.5e-06 | 3.0e-07 (12 of 90 outside) |"
    assert lines[3] == "| d | built-in vs official | - | - |"
    document = f"intro\n{parity.TABLE_BEGIN}\nold table\n{parity.TABLE_END}\nafter\n"
    written = parity.replace_table(document, table)
    assert written == f"intro\n{parity.TABLE_BEGIN}\n{table}\n{parity.TABLE_END}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        parity.replace_table("no markers here", table)


def test_the_docs_hold_a_table_the_command_wrote():
    text = (REPO_ROOT / "docs" / "backends.md").read_text()
    begin, end = text.index(parity.TABLE_BEGIN), text.index(parity.TABLE_END)
    table = text[begin + len(parity.TABLE_BEGIN):end].strip().splitlines()
    assert table[0].startswith("| case | compared | final depth |")
    assert "python bench/backend_parity.py --official" in text
    cases = {line.split("|")[1].strip() for line in table[2:]}
    assert len(cases) == 5  # every golden case


def test_the_placeholder_package_imports_and_refuses_calls(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "")  # restored afterwards: the function extends it
    parity.write_placeholder_packages(["fakevision"], tmp_path)
    code = (
        "import fakevision.transforms as T\n"
        "from fakevision.models import resnet50\n"
        "try:\n"
        "    resnet50(weights=None)\n"
        "except RuntimeError as error:\n"
        "    print('refused:', error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "refused: fakevision.models.resnet50 is a placeholder" in result.stdout
