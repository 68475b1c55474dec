"""No widget keeps a Python attribute named ``metric``: PySide6 looks up QPaintDevice's
virtual ``metric()`` on the Python object whenever Qt asks a widget for its paint metrics,
and an attribute of that name (the Find Plan panel's metric field, the sweep view's metric
name) made every show and paint print "Error calling Python override of QWidget::metric():
TypeError: ... is not callable" and left Qt without the value it asked for."""

from __future__ import annotations

from PySide6.QtGui import QPaintDevice

from bitlens.gui.document import Document
from bitlens.gui.search_panel import SearchPanel
from bitlens.gui.sweep_view import SweepView


def test_panels_keep_qts_metric_method(qtbot, capfd) -> None:
    depth = QPaintDevice.PaintDeviceMetric.PdmDepth
    for widget in (SearchPanel(), SweepView(Document())):
        qtbot.addWidget(widget)
        widget.show()
        widget.repaint()
        assert widget.metric(depth) > 0  # Qt's method, not a field
    assert "Error calling Python override" not in capfd.readouterr().err
