"""moefm.tables: the one markdown table layout every report uses."""

import pytest

from moefm.tables import markdown_table


def test_markdown_table_lays_out_header_rule_and_rows():
    text = markdown_table(["a", "b"], [["1", "2"], ["x", "-"]])
    assert text == "| a | b |\n|---|---|\n| 1 | 2 |\n| x | - |"


def test_markdown_table_without_rows_is_the_header_alone():
    assert markdown_table(["only"], []) == "| only |\n|---|"


def test_markdown_table_refuses_a_row_of_the_wrong_width():
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        markdown_table(["a", "b"], [["1", "2"], ["3"]])


def test_the_report_tables_share_the_layout():
    """yan's benchmark and evaluation tables format cells their way and lay them out here."""
    from yan.bench.report import markdown_table as bench_table
    from yan.eval.report import markdown_table as eval_table

    assert (
        bench_table([{"m": "yan", "v": 1.5}], ["m", "v"], 1)
        == "| m | v |\n|---|---|\n| yan | 1.5 |\n"
    )
    assert eval_table({"yan": {"f1": 2.0}}, 1) == "| run | f1 |\n|---|---|\n| yan | 2.0 |\n"
