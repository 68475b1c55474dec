"""The export report dialog: a table of checks with pass / warning / fail, told by icon,
symbol and word as well as colour (issue 15, item 10)."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication

from bitlens.core.export.checklist import Verdict
from bitlens.gui.export_report import VERDICT_FILL, ExportReportDialog
from bitlens.gui.view_passes import ViewPasses
from tests.core.report_values import failed_report, slow_and_large_report
from tests.gui.conftest import screenshot


def test_report_table_shows_warnings_for_a_slow_large_export(qtbot) -> None:
    dlg = ExportReportDialog(slow_and_large_report())
    qtbot.addWidget(dlg)
    dlg.show()
    t = dlg.table
    assert [t.horizontalHeaderItem(i).text() for i in range(4)] == [
        "Check", "Expected", "Got", "Verdict"
    ]
    rows = {t.item(i, 0).text(): i for i in range(t.rowCount())}
    size = rows["file size"]
    assert dlg.verdict_of(size) == "⚠ warning"
    assert "+26.6%" in t.item(size, 2).text()
    assert t.item(size, 3).background().color() == VERDICT_FILL[Verdict.WARNING]
    assert t.item(size, 3).text() == "warning"  # a word and an icon besides the colour
    assert not t.item(size, 3).icon().isNull()
    assert dlg.verdict_of(rows["y: as written"]) == "✔ pass"
    bops = rows["bit-operations (BOPs)"]  # as the CLI and the text report give them
    assert dlg.verdict_of(bops) == "✔ pass"
    assert t.item(bops, 2).text() == "192.0k (16.0× fewer)"
    assert "float 3.07M" in t.item(bops, 1).text()
    assert "passed with 4 warning(s)" in dlg.headline.text()
    assert not dlg.text.isVisible()
    dlg.details_button.click()  # the full text report
    assert dlg.text.isVisible() and "conv1" in dlg.text.toPlainText()
    dlg.copy_button.click()
    copied = QGuiApplication.clipboard().text()
    assert "file size\t" in copied and "⚠ warning" in copied
    screenshot(dlg, "export_report_warnings")
    dlg.close()


def test_report_table_marks_failures(qtbot) -> None:
    dlg = ExportReportDialog(failed_report())
    qtbot.addWidget(dlg)
    verdicts = [dlg.verdict_of(i) for i in range(dlg.table.rowCount())]
    assert "✖ fail" in verdicts
    assert "FAILED" in dlg.headline.text()
    dlg.close()


def test_report_shown_a_pass_later_and_never_once_closed(qtbot) -> None:
    """The window shows the report on a later pass (gui/view_passes.py): a report closed
    before then (the self-test closes it at once) never shows."""
    passes = ViewPasses()
    shown, closed = ExportReportDialog(failed_report()), ExportReportDialog(failed_report())
    qtbot.addWidget(shown)
    qtbot.addWidget(closed)
    shown.show_later(passes)
    closed.show_later(passes)
    assert not shown.isVisible()
    closed.close()
    qtbot.waitUntil(lambda: not passes.pending and shown.isVisible())
    assert not closed.isVisible()
    shown.close()
