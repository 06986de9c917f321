"""``gesturekit models list`` on the shipped zoo: names are never cut, less important columns give way first."""

import pytest
from typer.testing import CliRunner

from gesturekit.cli.models import LIST_COLUMNS, app
from gesturekit.models.zoo import zoo_names


def _list(columns: int) -> list[str]:
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def _header(lines: list[str]) -> list[str]:
    return [cell.strip() for cell in lines[1].strip("┃ ").split("┃")]


@pytest.mark.parametrize("columns", [80, 60])
def test_names_whole_in_a_narrow_terminal(columns: int) -> None:
    lines = _list(columns)
    assert all(len(line) <= columns for line in lines)
    cells = {line.split("│")[1].strip() for line in lines if line.startswith("│")}
    assert cells == set(zoo_names())


def test_columns_give_way_in_order_of_importance() -> None:
    assert _header(_list(300)) == list(LIST_COLUMNS)
    at_80 = _header(_list(80))
    assert at_80 == list(LIST_COLUMNS[:len(at_80)]) and "metric" in at_80 and len(at_80) < len(LIST_COLUMNS)
    assert not any("…" in line for line in _list(80))
