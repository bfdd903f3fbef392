"""Statuses and customization kinds are spelled once: in ``tunesmith/statuses.py`` and
``tunesmith/kinds.py``, with the hosted API's values, and every other module (the store's SQL,
the API's types, the console's templates, the CLI, ``tune``) uses the enums."""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

import botocore.session
import pytest

from tunesmith.kinds import SUPPORTED_KINDS, CustomizationKind
from tunesmith.server import ServiceSettings, create_app
from tunesmith.statuses import ACTIVE_JOB_STATUSES, DeploymentStatus, JobStatus, ModelStatus, PhaseStatus

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tunesmith"
VOCABULARIES = (JobStatus, PhaseStatus, ModelStatus, DeploymentStatus, CustomizationKind)
WORDS = sorted({member.value for vocabulary in VOCABULARIES for member in vocabulary})


def string_literals(path: Path) -> list[str]:
    """Every string constant of a module except docstrings (prose may name a status)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose]


def test_each_status_and_kind_is_a_string_literal_once_in_the_source():
    counts = Counter(text for path in PACKAGE.rglob("*.py") for text in string_literals(path) if text in WORDS)
    assert {word: count for word, count in counts.items() if count > 1} == {}
    assert set(counts) == set(WORDS)  # each one is spelled, in its enum


def test_no_string_quotes_a_status_or_kind():
    """SQL (``status IN ('InProgress', ...)``) and embedded JSON are built from the enums too."""
    quoted = re.compile("|".join(rf"['\"]{word}['\"]" for word in WORDS))
    found = [f"{path.relative_to(PACKAGE)}: {text!r}" for path in PACKAGE.rglob("*.py") for text in string_literals(path)
             if quoted.search(text)]
    assert found == []


def test_templates_compare_with_the_enums():
    quoted = re.compile("|".join(rf"['\"]{word}['\"]" for word in WORDS))
    found = [f"{path.name}:{number}" for path in (PACKAGE / "console" / "templates").glob("*.html")
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if quoted.search(line)]
    assert found == []


@pytest.mark.parametrize("module", ["statuses.py", "kinds.py"])
def test_the_vocabularies_depend_on_the_standard_library_only(module):
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


@pytest.mark.parametrize("vocabulary, shape", [
    (JobStatus, "ModelCustomizationJobStatus"),
    (ModelStatus, "ModelStatus"),
    (DeploymentStatus, "CustomModelDeploymentStatus"),
    (CustomizationKind, "CustomizationType"),
])
def test_the_values_are_the_hosted_apis(vocabulary, shape):
    bedrock = botocore.session.get_session().get_service_model("bedrock")
    assert [member.value for member in vocabulary] == bedrock.shape_for(shape).enum


def test_phase_statuses_are_the_hosted_apis_and_share_the_jobs_spelling():
    bedrock = botocore.session.get_session().get_service_model("bedrock")
    assert {member.value for member in PhaseStatus} <= set(bedrock.shape_for("JobStatusDetails").enum)
    assert PhaseStatus.IN_PROGRESS == JobStatus.IN_PROGRESS and PhaseStatus.FAILED == ModelStatus.FAILED


def test_a_member_is_its_value_on_the_wire_in_text_and_in_comparisons():
    assert f"{JobStatus.IN_PROGRESS}" == "InProgress" and JobStatus.STOPPING == "Stopping"
    assert "Stopping" in ACTIVE_JOB_STATUSES and "Stopped" not in ACTIVE_JOB_STATUSES
    assert ", ".join(SUPPORTED_KINDS) == "FINE_TUNING, CONTINUED_PRE_TRAINING, DISTILLATION"


def test_the_active_job_index_keeps_its_sql():
    """Databases created before hold this partial index; the SQL the store builds must not drift."""
    from tunesmith.jobs.store import ACTIVE_JOB

    assert ACTIVE_JOB.text == "status IN ('InProgress', 'Stopping')"


def test_the_openapi_schema_lists_the_allowed_values(tmp_path):
    schema = create_app(ServiceSettings(home=tmp_path, run_workers=False)).openapi()
    components = schema["components"]["schemas"]
    assert components["CustomizationKind"]["enum"] == [kind.value for kind in CustomizationKind]
    assert components["CreateJobRequest"]["properties"]["customizationType"]["$ref"] == "#/components/schemas/CustomizationKind"
    assert components["JobStatus"]["enum"] == ["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
    listing = next(p for p in schema["paths"]["/model-customization-jobs"]["get"]["parameters"] if p["name"] == "statusEquals")
    assert "JobStatus" in str(listing["schema"])
