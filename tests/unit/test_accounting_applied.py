"""cluster/accounting.py --applied: what a new cluster's slurmctld waits for
before it starts (every user's QOS and default QOS, written last)."""

import importlib.util
import json
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[2] / "cluster/accounting.py"
_spec = importlib.util.spec_from_file_location("accounting", _SCRIPT)
accounting = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accounting)

WANT = {"cluster": "minihpc", "qos": [], "accounts": [],
        "users": [{"name": "student", "account": "lab", "qos": ["normal", "debug"], "default_qos": "normal"}]}


def test_applied_only_once_the_users_qos_and_default_are_as_declared(tmp_path, monkeypatch) -> None:
    path = tmp_path / "accounting.json"
    path.write_text(json.dumps(WANT))
    for listed, rc in (("", 1), ("normal|\n", 1), ("normal|normal\n", 1), ("debug,normal|normal\n", 0)):
        monkeypatch.setattr(accounting, "sacctmgr", lambda *a, listed=listed: listed)
        assert accounting.applied(str(path)) == rc, listed
