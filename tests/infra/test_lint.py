"""cfn-lint on every stack, and the stacks' order: each imports only what an earlier one exports."""

from __future__ import annotations

import pytest

from infra import check

STAGE = "lint"


@pytest.mark.parametrize("stack", check.STACKS)
def test_cfn_lint_is_clean(stack: str) -> None:
    findings = check.lint(stack)
    assert findings == [], "\n".join(findings)


def test_every_stack_file_is_one_of_the_ordered_stacks() -> None:
    on_disk = {p.stem for p in check.STACK_DIR.glob("*.yaml")}
    assert on_disk == set(check.STACKS)


@pytest.mark.parametrize("stack", check.STACKS)
def test_imports_come_from_earlier_stacks(stack: str) -> None:
    earlier: set[str] = set()
    for name in check.STACKS[: check.STACKS.index(stack)]:
        earlier |= check.export_names(name, STAGE)
    missing = check.imported_names(check.load(stack), STAGE) - earlier
    assert not missing, f"{stack} imports what no earlier stack exports: {sorted(missing)}"


def test_exports_are_unique_and_prefixed_by_stage_and_stack() -> None:
    seen: set[str] = set()
    for name in check.STACKS:
        names = check.export_names(name, STAGE)
        assert not names & seen
        assert all(n.startswith(f"{STAGE}-{name}-") for n in names), sorted(names)
        seen |= names
