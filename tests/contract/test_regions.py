"""link-contract's region table (crates/link-contract/src/regions.rs) agrees with botocore's endpoint data."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/partition_regions.py"
TABLE = ROOT / "crates/link-contract/src/regions.rs"


def check(path):
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--file", str(path)],
                          capture_output=True, text=True)


def test_the_partition_table_has_botocores_regions():
    run = check(TABLE)
    assert run.returncode == 0, run.stderr


def test_the_check_fails_when_a_region_is_added_by_hand(tmp_path):
    stale = tmp_path / "regions.rs"
    stale.write_text(TABLE.read_text().replace('"eu-west-1",', '"eu-west-1",\n            "zz-fake-9",'))
    run = check(stale)
    assert run.returncode == 1 and "differs" in run.stderr
